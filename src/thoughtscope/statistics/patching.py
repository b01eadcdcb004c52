"""Statistics of a patching run: outcome rates and mean metric changes, with seeded
percentile bootstrap intervals over pairs, per site × positions and per stratum.

Reads ``RUN/results.jsonl`` (:class:`~thoughtscope.results.patching.PatchRow`) and writes
``RUN/patching_summary.json``::

    {"schema": "thoughtscope-patching-summary/1", "seed": 0, "n_boot": 2000,
     "cells": [{"site": "latent", "positions": [0], "schedule": "single",
                "stratum": "all", "n": 58,
                "stays": {"estimate": .., "low": .., "high": .., "support": ..},
                "source": {...}, "other": {...},
                "gold_logprob_change": {...}, "logit_diff_change": {...}}, ...]}

``source`` is a rate over the pairs whose two baselines differ (``distinguishable``);
the other rates are over all pairs of the cell. Every figure of a cell uses the same
resamples (:func:`~thoughtscope.statistics.bootstrap.bootstrap_ratios`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from thoughtscope.files import write_json
from thoughtscope.results.patching import PatchRow, read_patch_rows
from thoughtscope.statistics.bootstrap import DEFAULT_N_BOOT, bootstrap_ratios, group_seed

__all__ = [
    "FIGURES",
    "PATCHING_SUMMARY",
    "SCHEMA",
    "format_patching",
    "patching_summary",
    "write_patching_summary",
]

SCHEMA = "thoughtscope-patching-summary/1"
PATCHING_SUMMARY = "patching_summary.json"
FIGURES = ("stays", "source", "other", "gold_logprob_change", "logit_diff_change")
"""The figures of every cell, in order."""
ALL = "all"


def _cell(rows: Sequence[PatchRow], seed: int, n_boot: int) -> dict[str, Any]:
    ones = np.ones(len(rows))
    distinguishable = np.array([float(r.distinguishable) for r in rows])
    num = np.stack(
        [
            [float(r.outcome == "stays") for r in rows],
            [float(r.outcome == "source") for r in rows],
            [float(r.outcome == "other") for r in rows],
            [r.gold_logprob_change for r in rows],
            [r.logit_diff_change for r in rows],
        ],
        axis=1,
    )
    den = np.stack([ones, distinguishable, ones, ones, ones], axis=1)
    intervals = bootstrap_ratios(
        num, den, n_boot=n_boot, seed=group_seed(seed, [r.pair for r in rows])
    )

    def number(x: float) -> float | None:
        return None if math.isnan(x) else float(x)

    return {
        name: {
            "estimate": number(intervals.estimate[k]),
            "low": number(intervals.low[k]),
            "high": number(intervals.high[k]),
            "support": int(intervals.support[k]),
        }
        for k, name in enumerate(FIGURES)
    }


def patching_summary(
    rows: Sequence[PatchRow], *, seed: int = 0, n_boot: int = DEFAULT_N_BOOT
) -> dict[str, Any]:
    """The summary (layout in the module docstring): one cell per (site, positions)
    over all strata (``stratum: "all"``), then one per (site, positions, stratum)."""
    groups: dict[tuple[str, tuple[int, ...], str], list[PatchRow]] = {}
    schedule: dict[tuple[str, tuple[int, ...]], str] = {}
    for row in rows:
        where = (row.site, tuple(row.positions))
        schedule.setdefault(where, row.schedule)
        groups.setdefault((*where, ALL), []).append(row)
    for row in rows:
        groups.setdefault((row.site, tuple(row.positions), row.stratum), []).append(row)
    cells = []
    for (site, positions, stratum), members in groups.items():
        cells.append(
            {
                "site": site,
                "positions": list(positions),
                "schedule": schedule[(site, positions)],
                "stratum": stratum,
                "n": len(members),
                **_cell(members, seed, n_boot),
            }
        )
    return {"schema": SCHEMA, "seed": seed, "n_boot": n_boot, "cells": cells}


def write_patching_summary(run_dir: str | Path, *, n_boot: int = DEFAULT_N_BOOT) -> Path:
    """Writes ``RUN/patching_summary.json`` from the run's rows; returns its path."""
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    summary = patching_summary(
        read_patch_rows(run_dir), seed=int(manifest.get("seed", 0)), n_boot=n_boot
    )
    path = run_dir / PATCHING_SUMMARY
    write_json(path, summary)
    return path


def format_patching(summary: dict[str, Any]) -> str:
    """The all-strata cells as a terminal table (rates in %, 95% intervals)."""

    def show(figure: dict[str, Any], scale: float, digits: int) -> str:
        if figure["estimate"] is None:
            return "-"
        text = f"{figure['estimate'] * scale:.{digits}f}"
        if figure["low"] is not None:
            text += f" [{figure['low'] * scale:.{digits}f}, {figure['high'] * scale:.{digits}f}]"
        return text

    header = f"{'site':<10} {'positions':<14} {'n':>4}  {'stays %':<20} {'source %':<20} "
    header += f"{'other %':<20} {'d gold logprob':<22} d logit diff"
    lines = [header]
    for cell in summary["cells"]:
        if cell["stratum"] != ALL:
            continue
        positions = "{" + ",".join("bot" if p == -1 else str(p) for p in cell["positions"]) + "}"
        lines.append(
            f"{cell['site']:<10} {positions:<14} {cell['n']:>4}  "
            f"{show(cell['stays'], 100, 1):<20} {show(cell['source'], 100, 1):<20} "
            f"{show(cell['other'], 100, 1):<20} {show(cell['gold_logprob_change'], 1, 3):<22} "
            f"{show(cell['logit_diff_change'], 1, 3)}"
        )
    return "\n".join(lines)
