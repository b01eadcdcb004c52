"""Statistics of a steering run: dose-response curves over α with bootstrap intervals.

Reads ``RUN/results.jsonl`` (:class:`~thoughtscope.analyses.steering.SteerRow` lines,
read here as plain JSON: statistics never import the engine) and writes
``RUN/steering_summary.json``::

    {"schema": "thoughtscope-steering-summary/1", "seed": 0, "n_boot": 2000,
     "target_value": 12,
     "curves": [{"mode": "add", "site": "latent", "positions": [0, …],
                 "points": [{"alpha": 0.0, …}, {"alpha": 1.0, "n": 40,
                             "changed": {"estimate", "low", "high", "support"},
                             "hit": {...}, "gold_logprob_change": {...}}, …]}]}

``α = 0`` is the reference (nothing changes; its hit rate is 0 by definition). ``hit``
is a rate over the problems whose ``α = 0`` answer is not the target value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from thoughtscope.files import write_json
from thoughtscope.results.steering import read_steer_rows
from thoughtscope.statistics.bootstrap import DEFAULT_N_BOOT, bootstrap_ratios, group_seed

__all__ = [
    "SCHEMA",
    "STEERING_SUMMARY",
    "format_steering",
    "steering_summary",
    "write_steering_summary",
]

SCHEMA = "thoughtscope-steering-summary/1"
STEERING_SUMMARY = "steering_summary.json"


def _number(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def steering_summary(
    rows: list[dict[str, Any]],
    *,
    seed: int = 0,
    n_boot: int = DEFAULT_N_BOOT,
    target_value: float | None = None,
) -> dict[str, Any]:
    """The summary (layout in the module docstring) from the rows as dicts."""
    groups: dict[tuple[str, str, tuple[int, ...]], dict[float, list[dict[str, Any]]]] = {}
    for row in rows:
        key = (row["mode"], row["site"], tuple(row["positions"]))
        groups.setdefault(key, {}).setdefault(float(row["alpha"]), []).append(row)
    curves = []
    for (mode, site, positions), by_alpha in groups.items():
        problems = sorted({r["problem"] for members in by_alpha.values() for r in members})
        zero = {"estimate": 0.0, "low": None, "high": None, "support": len(problems)}
        points: list[dict[str, Any]] = [
            {
                "alpha": 0.0,
                "n": len(problems),
                "changed": zero,
                "hit": zero,
                "gold_logprob_change": zero,
            }
        ]
        for alpha in sorted(by_alpha):
            members = by_alpha[alpha]
            num = np.array(
                [
                    [float(r["changed"]), float(bool(r["hit"])), r["gold_logprob_change"]]
                    for r in members
                ]
            )
            den = np.array([[1.0, 0.0 if r["hit"] is None else 1.0, 1.0] for r in members])
            found = bootstrap_ratios(
                num, den, n_boot=n_boot, seed=group_seed(seed, [r["problem"] for r in members])
            )
            point: dict[str, Any] = {"alpha": alpha, "n": len(members)}
            for k, name in enumerate(("changed", "hit", "gold_logprob_change")):
                point[name] = {
                    "estimate": _number(found.estimate[k]),
                    "low": _number(found.low[k]),
                    "high": _number(found.high[k]),
                    "support": int(found.support[k]),
                }
            points.append(point)
        points.sort(key=lambda p: p["alpha"])
        curves.append({"mode": mode, "site": site, "positions": list(positions), "points": points})
    return {
        "schema": SCHEMA,
        "seed": seed,
        "n_boot": n_boot,
        "target_value": target_value,
        "curves": curves,
    }


def write_steering_summary(run_dir: str | Path, *, n_boot: int = DEFAULT_N_BOOT) -> Path:
    """Writes ``RUN/steering_summary.json``; returns its path."""
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    rows = [row.to_dict() for row in read_steer_rows(run_dir)]
    summary = steering_summary(
        rows,
        seed=int(manifest.get("seed", 0)),
        n_boot=n_boot,
        target_value=manifest.get("target_value"),
    )
    path = run_dir / STEERING_SUMMARY
    write_json(path, summary)
    return path


def format_steering(summary: dict[str, Any]) -> str:
    """The curves as a terminal table (rates in %, 95% intervals)."""

    def show(figure: dict[str, Any]) -> str:
        if figure["estimate"] is None:
            return "-"
        text = f"{100 * figure['estimate']:.1f}"
        if figure["low"] is not None:
            text += f" [{100 * figure['low']:.1f}, {100 * figure['high']:.1f}]"
        return text

    lines = [f"{'edit':<34} {'alpha':>6}  {'changed %':<20} hit {summary['target_value']} %"]
    for curve in summary["curves"]:
        where = f"{curve['mode']} at {curve['site']} {curve['positions']}"
        for point in curve["points"]:
            lines.append(
                f"{where:<34} {point['alpha']:>6g}  {show(point['changed']):<20} "
                f"{show(point['hit'])}"
            )
    return "\n".join(lines)
