"""Probe and numeric-lens statistics: accuracies and hit rates with bootstrap intervals.

Reads the per-problem outcomes the probe analysis writes
(:mod:`thoughtscope.analyses.probes`) and writes, in the same run folder:

``probes.jsonl``
    One line per (target, site, position): ``target``, ``site``, ``position``, ``n``,
    ``kind`` (classification/regression), ``classes``, ``accuracy``, ``accuracy_ci``,
    ``control_accuracy``, ``control_ci``, ``majority``, ``majority_ci``, ``selectivity``
    (accuracy − control accuracy, paired over problems), ``selectivity_ci`` and
    ``unconverged`` (probe fits that stopped at the solver's iteration cap). Outcome
    files of the first version also carry ``control_majority``; it is ignored (that
    control task is gone: see :mod:`thoughtscope.analyses.probes`).
``lens.jsonl``
    One line per (site, position, target): ``n``, ``rate`` (the numeric lens's reading
    equals the target's value), ``rate_ci``, and per (site, position) the most frequent
    readings (``top_readings``) and the share of states whose top token is a numeral.

Intervals: seeded percentile bootstrap over problems (:mod:`.bootstrap`), the probe,
control and majority columns of a cell resampled together.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from thoughtscope.files import replacing
from thoughtscope.statistics.bootstrap import bootstrap_ratios, group_seed

__all__ = [
    "LENS_FILE",
    "PROBES_FILE",
    "read_jsonl",
    "write_lens_statistics",
    "write_probe_statistics",
]

PROBES_FILE = "probes.jsonl"
LENS_FILE = "lens.jsonl"
_PROBE_OUTCOMES = "probe_outcomes.jsonl"
_LENS_OUTCOMES = "lens_outcomes.jsonl"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every JSON line of ``path`` (none when it does not exist)."""
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _bits(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.float64) - 48.0


def _interval(low: float, high: float) -> list[float | None]:
    return [None if np.isnan(low) else round(low, 4), None if np.isnan(high) else round(high, 4)]


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    with replacing(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


def _by_problems(cells: list[dict[str, Any]], ids: Any) -> dict[tuple[str, ...], list[int]]:
    """Indices of the cells, grouped by their problem ids (in first-seen order)."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, cell in enumerate(cells):
        groups.setdefault(tuple(ids(cell)), []).append(index)
    return groups


def write_probe_statistics(run_dir: str | Path, *, n_boot: int = 1000, seed: int = 0) -> Path:
    """``RUN/probe_outcomes.jsonl`` → ``RUN/probes.jsonl``; returns its path.

    Cells over the same problems are bootstrapped together, in one call: their seed is
    the same (:func:`group_seed` of the ids), so each gets the resamples it would get
    alone, at a fraction of the cost."""
    run_dir = Path(run_dir)
    cells = read_jsonl(run_dir / _PROBE_OUTCOMES)
    width = 4  # accuracy, control, majority, selectivity
    estimates: dict[int, tuple[list[float], Any, Any]] = {}
    for ids, members in _by_problems(cells, lambda cell: cell["ids"]).items():
        columns = []
        for index in members:
            cell = cells[index]
            correct, control, majority = (
                _bits(cell[k]) for k in ("correct", "control", "majority")
            )
            columns.append(np.stack([correct, control, majority, correct - control], axis=1))
        num = np.concatenate(columns, axis=1)
        stats = bootstrap_ratios(
            num, np.ones_like(num), n_boot=n_boot, seed=group_seed(seed, list(ids))
        )
        for j, index in enumerate(members):
            part = slice(width * j, width * (j + 1))
            estimates[index] = (
                [round(float(v), 4) for v in stats.estimate[part]],
                stats.low[part],
                stats.high[part],
            )
    rows: list[dict[str, Any]] = []
    for index, cell in enumerate(cells):
        est, low, high = estimates[index]
        rows.append(
            {
                "target": cell["target"],
                "site": cell["site"],
                "position": cell["position"],
                "n": len(cell["ids"]),
                "kind": cell["kind"],
                "classes": cell["classes"],
                "accuracy": est[0],
                "accuracy_ci": _interval(low[0], high[0]),
                "control_accuracy": est[1],
                "control_ci": _interval(low[1], high[1]),
                "majority": est[2],
                "majority_ci": _interval(low[2], high[2]),
                "selectivity": est[3],
                "selectivity_ci": _interval(low[3], high[3]),
                "unconverged": int(cell.get("unconverged", 0)),
            }
        )
    return _write(run_dir / PROBES_FILE, rows)


def write_lens_statistics(run_dir: str | Path, *, n_boot: int = 1000, seed: int = 0) -> Path:
    """``RUN/lens_outcomes.jsonl`` → ``RUN/lens.jsonl``; returns its path (entries over
    the same problems bootstrapped together, as in :func:`write_probe_statistics`)."""
    run_dir = Path(run_dir)
    entries: list[dict[str, Any]] = []  # one per (site, position, target) with outcomes
    for cell in read_jsonl(run_dir / _LENS_OUTCOMES):
        numbers = [v for v in cell["numbers"] if v is not None]
        readings = Counter(f"{v:g}" for v in numbers).most_common(3)
        total = max(1, len(cell["numbers"]))
        top1 = _bits(cell["top1"])
        for target, outcome in cell["targets"].items():
            if outcome["hit"]:
                entries.append(
                    {
                        "site": cell["site"],
                        "position": cell["position"],
                        "target": target,
                        "ids": outcome["ids"],
                        "hits": _bits(outcome["hit"]),
                        "read_rate": round(len(numbers) / total, 4),
                        "top1_numeral_rate": round(float(top1.mean()) if len(top1) else 0.0, 4),
                        "top_readings": [[value, count] for value, count in readings],
                    }
                )
    stats_of: dict[int, tuple[float, list[float | None]]] = {}
    for ids, members in _by_problems(entries, lambda entry: entry["ids"]).items():
        hits = np.stack([entries[i]["hits"] for i in members], axis=1)
        stats = bootstrap_ratios(
            hits, np.ones_like(hits), n_boot=n_boot, seed=group_seed(seed, list(ids))
        )
        for j, index in enumerate(members):
            stats_of[index] = (
                round(float(stats.estimate[j]), 4),
                _interval(stats.low[j], stats.high[j]),
            )
    rows: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        rate, interval = stats_of[index]
        rows.append(
            {
                "site": entry["site"],
                "position": entry["position"],
                "target": entry["target"],
                "n": len(entry["hits"]),
                "rate": rate,
                "rate_ci": interval,
                "read_rate": entry["read_rate"],
                "top1_numeral_rate": entry["top1_numeral_rate"],
                "top_readings": entry["top_readings"],
            }
        )
    return _write(run_dir / LENS_FILE, rows)
