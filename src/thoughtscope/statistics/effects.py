"""Statistics of a thought-to-thought effects run: the causal graph with intervals.

Reads ``RUN/results.jsonl`` (:class:`~thoughtscope.results.effects.EffectRow`) and writes
``RUN/effects_summary.json``::

    {"schema": "thoughtscope-effects-summary/1", "seed": 0, "n_boot": 2000,
     "num_thoughts": 6,
     "nodes": [{"ablation": "zero", "site": "latent", "position": 0, "n": 40,
                "changed": {"estimate", "low", "high", "support"},
                "gold_logprob_change": {...}}, ...],
     "edges": [{"ablation": "zero", "site": "latent", "source": 0, "target": 1,
                "cosine": {...}, "rel_l2": {...}, "kl": {...}}, ...]}

A node is an edited thought ``i`` and its effect on the answer; an edge ``i → j`` the
mean change of thought ``j`` over the problems. All figures of one (ablation, site,
``i``) share their bootstrap resamples over problems.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from thoughtscope.files import write_json
from thoughtscope.results.effects import EffectRow, read_effect_rows
from thoughtscope.statistics.bootstrap import (
    DEFAULT_N_BOOT,
    RatioIntervals,
    bootstrap_ratios,
    group_seed,
)

__all__ = [
    "EFFECTS_SUMMARY",
    "SCHEMA",
    "effects_summary",
    "format_effects",
    "write_effects_summary",
]

SCHEMA = "thoughtscope-effects-summary/1"
EFFECTS_SUMMARY = "effects_summary.json"
METRICS = ("cosine", "rel_l2", "kl")


def _figure(estimate: float, low: float, high: float, support: int) -> dict[str, Any]:
    def number(x: float) -> float | None:
        return None if math.isnan(x) else float(x)

    return {
        "estimate": number(estimate),
        "low": number(low),
        "high": number(high),
        "support": int(support),
    }


def effects_summary(
    rows: Sequence[EffectRow], *, seed: int = 0, n_boot: int = DEFAULT_N_BOOT
) -> dict[str, Any]:
    """The summary (layout in the module docstring)."""
    groups: dict[tuple[str, str, int], list[EffectRow]] = {}
    for row in rows:
        groups.setdefault((row.ablation, row.site, row.position), []).append(row)
    n = max((len(r.cosine) for r in rows), default=0)
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for (ablation, site, i), members in groups.items():
        later = list(range(i + 1, n))
        columns_num = [
            [float(r.changed) for r in members],
            [r.gold_logprob_change for r in members],
        ]
        columns_den = [[1.0] * len(members), [1.0] * len(members)]
        for metric in METRICS:
            for j in later:
                values = [getattr(r, metric)[j] for r in members]
                columns_num.append([0.0 if v is None else float(v) for v in values])
                columns_den.append([0.0 if v is None else 1.0 for v in values])
        intervals = bootstrap_ratios(
            np.array(columns_num).T,
            np.array(columns_den).T,
            n_boot=n_boot,
            seed=group_seed(seed, [r.problem for r in members]),
        )

        def figure(k: int, found: RatioIntervals = intervals) -> dict[str, Any]:
            return _figure(found.estimate[k], found.low[k], found.high[k], found.support[k])

        nodes.append(
            {
                "ablation": ablation,
                "site": site,
                "position": i,
                "n": len(members),
                "changed": figure(0),
                "gold_logprob_change": figure(1),
            }
        )
        for offset, j in enumerate(later):
            edge: dict[str, Any] = {"ablation": ablation, "site": site, "source": i, "target": j}
            for m, metric in enumerate(METRICS):
                edge[metric] = figure(2 + m * len(later) + offset)
            edges.append(edge)
    return {
        "schema": SCHEMA,
        "seed": seed,
        "n_boot": n_boot,
        "num_thoughts": n,
        "nodes": nodes,
        "edges": edges,
    }


def write_effects_summary(run_dir: str | Path, *, n_boot: int = DEFAULT_N_BOOT) -> Path:
    """Writes ``RUN/effects_summary.json``; returns its path."""
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    summary = effects_summary(
        read_effect_rows(run_dir), seed=int(manifest.get("seed", 0)), n_boot=n_boot
    )
    path = run_dir / EFFECTS_SUMMARY
    write_json(path, summary)
    return path


def format_effects(summary: dict[str, Any], metric: str = "rel_l2") -> str:
    """Per (ablation, site): a matrix of the mean ``metric`` of thought j (columns)
    after editing thought i (rows), and the answer-change rate."""
    n = int(summary["num_thoughts"])
    lines: list[str] = []
    keys = list(dict.fromkeys((e["ablation"], e["site"]) for e in summary["nodes"]))
    for ablation, site in keys:
        lines.append(f"{ablation} at {site}: mean {metric} of thought j after editing thought i")
        lines.append("  i\\j " + "".join(f"{j:>8}" for j in range(n)) + "   answer changed %")
        for node in summary["nodes"]:
            if (node["ablation"], node["site"]) != (ablation, site):
                continue
            i = node["position"]
            cells = []
            for j in range(n):
                edge = next(
                    (
                        e
                        for e in summary["edges"]
                        if (e["ablation"], e["site"], e["source"], e["target"])
                        == (ablation, site, i, j)
                    ),
                    None,
                )
                value = None if edge is None else edge[metric]["estimate"]
                cells.append(f"{'-' if value is None else f'{value:.3f}':>8}")
            changed = node["changed"]
            rate = "-" if changed["estimate"] is None else f"{100 * changed['estimate']:.1f}"
            if changed["low"] is not None:
                rate += f" [{100 * changed['low']:.1f}, {100 * changed['high']:.1f}]"
            lines.append(f"  {i:>3} " + "".join(cells) + f"   {rate}")
    return "\n".join(lines)
