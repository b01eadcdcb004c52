"""Attention statistics: mean attention mass per (layer, head, query, source) over
problems, with percentile bootstrap intervals over problems (:mod:`.bootstrap`).

Reads ``RUN/attention.safetensors`` (:mod:`thoughtscope.analyses.attention`) and writes
``RUN/attention.jsonl``: one line per (layer, head, query, source) with ``n``, ``mean``
and ``ci``; queries that see a source only after it (a thought reading a later one) are
left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import safe_open

from thoughtscope.files import replacing
from thoughtscope.statistics.bootstrap import bootstrap_ratios, group_seed

__all__ = ["ATTENTION_STATS_FILE", "write_attention_statistics"]

ATTENTION_STATS_FILE = "attention.jsonl"
_MASSES = "attention.safetensors"


def write_attention_statistics(run_dir: str | Path, *, n_boot: int = 1000, seed: int = 0) -> Path:
    """``RUN/attention.safetensors`` → ``RUN/attention.jsonl``; returns its path."""
    run_dir = Path(run_dir)
    with safe_open(str(run_dir / _MASSES), framework="np") as handle:
        meta = handle.metadata()
        mass = handle.get_tensor("mass").astype(np.float64)
    ids = json.loads(meta["ids"])
    queries = json.loads(meta["queries"])
    sources = json.loads(meta["sources"])
    n, _, heads, n_q, n_s = mass.shape
    flat = mass.reshape(n, -1)
    present = ~np.isnan(flat)
    stats = bootstrap_ratios(
        np.nan_to_num(flat), present.astype(np.float64), n_boot=n_boot, seed=group_seed(seed, ids)
    )
    with (
        replacing(run_dir / ATTENTION_STATS_FILE) as tmp,
        tmp.open("w", encoding="utf-8") as out,
    ):
        for index in range(flat.shape[1]):
            layer, rest = divmod(index, heads * n_q * n_s)
            head, rest = divmod(rest, n_q * n_s)
            q, s = divmod(rest, n_s)
            if stats.support[index] == 0 or not np.any(flat[present[:, index], index] > 0):
                continue  # a source this query never sees
            low, high = stats.low[index], stats.high[index]
            row = {
                "layer": layer,
                "head": head,
                "query": queries[q],
                "source": sources[s],
                "n": int(stats.support[index]),
                "mean": round(float(stats.estimate[index]), 5),
                "ci": None if np.isnan(low) else [round(float(low), 5), round(float(high), 5)],
            }
            out.write(json.dumps(row) + "\n")
    return run_dir / ATTENTION_STATS_FILE
