"""A run's statistics as one JSON-ready dict: the content of ``RUN/summary.json``.

:func:`summary_from_records` is pure: records and the run's manifest in, a dict out.
Every figure is a ratio over problems with a seeded percentile bootstrap interval
(:mod:`~thoughtscope.statistics.bootstrap`); correctness changes get an exact McNemar
test (:mod:`~thoughtscope.statistics.significance`).

**Views.** Each figure is given for two populations, always labelled:

* ``unconditional``: every problem with a result for the condition, whatever its
  baseline outcome;
* ``conditional``: only the baseline-correct ones among them (what the original study
  reported, without saying so).

Under the ``baseline-correct`` selection, conditions were only run on baseline-correct
problems, so both views hold the same problems (each view says so in its ``note``).

**Layout.** The result is the JSON layout of ``summary.json``; its typed form, field by
field, is :class:`~thoughtscope.statistics.schema.Summary` (the writers round-trip every
summary through it, and the report reads only that). ``docs/statistics.md`` lists every
key; the prose (definitions, caveats) is package data (``texts.json``).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from itertools import pairwise
from typing import Any

import numpy as np
from numpy.typing import NDArray

from thoughtscope.problems.difficulty import Strata
from thoughtscope.results.conditions import schedule
from thoughtscope.results.records import ProblemRecord
from thoughtscope.statistics.bootstrap import (
    DEFAULT_LEVEL,
    DEFAULT_N_BOOT,
    RatioIntervals,
    bootstrap_ratios,
    group_seed,
)
from thoughtscope.statistics.conditions import (
    Member,
    ScheduleFamily,
    members_of,
    prefix_families,
    single_families,
)
from thoughtscope.statistics.significance import holm_adjust, mcnemar_exact

__all__ = [
    "CONDITION_METRICS",
    "SCHEMA",
    "STEP_METRICS",
    "VIEWS",
    "summary_from_records",
]

SCHEMA = "thoughtscope.summary/1"
VIEWS = ("unconditional", "conditional")
EARLY = (0, 1, 2)
LATE = (3, 4, 5)
SMALL_STRATUM = 30
"""Strata with fewer problems than this get a caveat about wide, unreliable intervals."""

Bool = NDArray[np.bool_]
Float = NDArray[np.float64]


@dataclass(frozen=True)
class _Table:
    """Per-problem arrays: ``n`` problems, ``m`` conditions."""

    ids: list[str]
    strata: list[str]
    base_correct: Bool  # (n,)
    base_finished: list[bool | None]  # (n,) None where not recorded
    base_clean: list[bool | None]  # (n,) None where not recorded
    base_gold: Float  # (n,), NaN where missing
    has: Bool  # (n, m)
    correct: Bool  # (n, m)
    changed: Bool  # (n, m)
    gold: Float  # (n, m)
    kl: Float  # (n, m)

    @classmethod
    def build(cls, records: Sequence[ProblemRecord], members: Sequence[Member]) -> _Table:
        n, m = len(records), len(members)
        columns: dict[str, list[int]] = {}
        for j, member in enumerate(members):
            columns.setdefault(member.name, []).append(j)
        has = np.zeros((n, m), dtype=bool)
        correct = np.zeros((n, m), dtype=bool)
        changed = np.zeros((n, m), dtype=bool)
        gold = np.full((n, m), np.nan)
        kl = np.full((n, m), np.nan)
        base_gold = np.full(n, np.nan)
        for i, record in enumerate(records):
            if record.baseline.gold_logprob is not None:
                base_gold[i] = record.baseline.gold_logprob
            for c in record.conditions:
                for j in columns[c.name]:  # one column per schedule the condition is in
                    if has[i, j]:
                        continue  # a repeated condition on one problem: keep the first
                    has[i, j] = True
                    correct[i, j] = c.correct
                    changed[i, j] = c.changed
                    if c.gold_logprob is not None:
                        gold[i, j] = c.gold_logprob
                    if c.kl is not None:
                        kl[i, j] = c.kl
        return cls(
            ids=[r.id for r in records],
            strata=[r.stratum for r in records],
            base_correct=np.array([r.baseline.correct for r in records], dtype=bool),
            base_finished=[r.baseline.finished for r in records],
            base_clean=[r.baseline.clean for r in records],
            base_gold=base_gold,
            has=has,
            correct=correct,
            changed=changed,
            gold=gold,
            kl=kl,
        )

    @property
    def n(self) -> int:
        return len(self.ids)


class _Columns:
    """Ratio figures to bootstrap together: per-problem numerator and denominator."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.num: list[Float] = []
        self.den: list[Float] = []
        self.empty_reason: list[str] = []

    def add(self, num: Float, den: Bool | Float, empty_reason: str) -> int:
        weight = np.asarray(den, dtype=np.float64)
        self.num.append(np.where(weight != 0, np.nan_to_num(np.asarray(num, float)), 0.0))
        self.den.append(weight)
        self.empty_reason.append(empty_reason)
        return len(self.num) - 1

    def matrices(self) -> tuple[Float, Float]:
        if not self.num:
            return np.zeros((self.n, 0)), np.zeros((self.n, 0))
        return np.stack(self.num, axis=1), np.stack(self.den, axis=1)


# --- condition metrics -------------------------------------------------------------

_NO_RESULTS = "no problems with a result for this condition in this group"

MetricBuilder = Callable[[_Table, int], tuple[Float, Bool, str]]


def _accuracy(t: _Table, j: int) -> tuple[Float, Bool, str]:
    return t.correct[:, j].astype(float), t.has[:, j], _NO_RESULTS


def _baseline_accuracy(t: _Table, j: int) -> tuple[Float, Bool, str]:
    return t.base_correct.astype(float), t.has[:, j], _NO_RESULTS


def _accuracy_change(t: _Table, j: int) -> tuple[Float, Bool, str]:
    diff = t.correct[:, j].astype(float) - t.base_correct.astype(float)
    return diff, t.has[:, j], _NO_RESULTS


def _importance(t: _Table, j: int) -> tuple[Float, Bool, str]:
    broke = t.base_correct & ~t.correct[:, j]
    return broke.astype(float), t.has[:, j], _NO_RESULTS


def _flip_right_to_wrong(t: _Table, j: int) -> tuple[Float, Bool, str]:
    broke = t.base_correct & ~t.correct[:, j]
    return (
        broke.astype(float),
        t.has[:, j] & t.base_correct,
        ("no baseline-correct problems with a result for this condition in this group"),
    )


def _flip_wrong_to_right(t: _Table, j: int) -> tuple[Float, Bool, str]:
    fixed = ~t.base_correct & t.correct[:, j]
    return (
        fixed.astype(float),
        t.has[:, j] & ~t.base_correct,
        ("no baseline-wrong problems with a result for this condition in this group"),
    )


def _changed(t: _Table, j: int) -> tuple[Float, Bool, str]:
    return t.changed[:, j].astype(float), t.has[:, j], _NO_RESULTS


def _delta_gold(t: _Table, j: int) -> tuple[Float, Bool, str]:
    valid = t.has[:, j] & np.isfinite(t.gold[:, j]) & np.isfinite(t.base_gold)
    return (
        t.gold[:, j] - t.base_gold,
        valid,
        ("no gold log-probabilities recorded for both baseline and condition in this group"),
    )


def _kl(t: _Table, j: int) -> tuple[Float, Bool, str]:
    valid = t.has[:, j] & np.isfinite(t.kl[:, j])
    return t.kl[:, j], valid, "no KL values recorded in this group"


CONDITION_METRICS: dict[str, MetricBuilder] = {
    "accuracy": _accuracy,
    "baseline_accuracy": _baseline_accuracy,
    "accuracy_change": _accuracy_change,
    "importance": _importance,
    "flip_right_to_wrong": _flip_right_to_wrong,
    "flip_wrong_to_right": _flip_wrong_to_right,
    "changed": _changed,
    "delta_gold_logprob": _delta_gold,
    "kl": _kl,
}
"""Per-condition metrics: name → (numerator, denominator, reason when empty) builder."""

STEP_METRICS = ("importance", "accuracy", "changed", "gold_logprob", "kl")
"""Quantities whose marginal step between prefix conditions is reported."""


def _state(t: _Table, j: int | None) -> dict[str, tuple[Float, Bool]]:
    """Per-problem value and validity of each step quantity; ``j=None`` is the baseline."""
    n = t.n
    if j is None:
        ones = np.ones(n, dtype=bool)
        zeros = np.zeros(n)
        return {
            "importance": (zeros, ones),
            "accuracy": (t.base_correct.astype(float), ones),
            "changed": (zeros, ones),
            "gold_logprob": (t.base_gold, np.isfinite(t.base_gold)),
            "kl": (zeros, ones),
        }
    has = t.has[:, j]
    return {
        "importance": ((t.base_correct & ~t.correct[:, j]).astype(float), has),
        "accuracy": (t.correct[:, j].astype(float), has),
        "changed": (t.changed[:, j].astype(float), has),
        "gold_logprob": (t.gold[:, j], has & np.isfinite(t.gold[:, j])),
        "kl": (t.kl[:, j], has & np.isfinite(t.kl[:, j])),
    }


# --- output pieces --------------------------------------------------------------------


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _metric(res: RatioIntervals, col: int, empty_reason: str, n_boot: int) -> dict[str, Any]:
    support = int(res.support[col])
    estimate = _num(res.estimate[col])
    low, high = _num(res.low[col]), _num(res.high[col])
    ci = None if low is None or high is None else [low, high]
    reason: str | None = None
    if estimate is None:
        reason = empty_reason
    elif ci is None:
        if n_boot <= 0:
            reason = "bootstrap disabled (n_boot = 0)"
        elif support < 2:
            reason = "one problem only: no interval"
        else:
            reason = "no resample drew a problem that counts towards this figure"
    return {"estimate": estimate, "ci": ci, "n": support, "reason": reason}


def _stratum_key(label: str) -> tuple[int, int, str]:
    match = re.match(r"\d+", label)
    return (0, int(match[0]), label) if match else (1, 0, label)


def _strata(table: _Table, manifest: Mapping[str, Any]) -> list[str]:
    """Stratum labels in order: the manifest's configured bands (even when empty) and
    every label the records carry (``other`` and ``unknown`` last)."""
    labels = set(table.strata)
    configured = manifest.get("strata")
    if isinstance(configured, str):
        # an unreadable manifest value: use the records' labels only
        with contextlib.suppress(ValueError):
            labels |= set(Strata.parse(configured).labels)
    return sorted(labels, key=_stratum_key)


_POPULATION = {
    "unconditional": "every problem with a result for this condition, whatever its "
    "baseline outcome",
    "conditional": "only the problems answered correctly without intervention "
    "(baseline-correct) among those with a result for this condition",
}
_SAME_POPULATION = (
    "every problem here was baseline-correct, so this view holds the same problems as "
    "the conditional one"
)
_CONDITIONAL_MCNEMAR = (
    "c is 0 by construction in this view (only baseline-correct problems); the test asks "
    "whether the condition breaks answers the model got right, not whether accuracy differs"
)


@dataclass(frozen=True)
class _Step:
    """One marginal step of a prefix family and the columns of its figures."""

    from_name: str
    to_name: str
    from_positions: list[int]
    to_positions: list[int]
    cols: dict[str, int]

    def describe(self) -> dict[str, Any]:
        return {
            "from": self.from_name,
            "to": self.to_name,
            "from_positions": self.from_positions,
            "to_positions": self.to_positions,
            "added_positions": sorted(set(self.to_positions) - set(self.from_positions)),
        }


@dataclass(frozen=True)
class _EarlyLate:
    """Early and late members of one family and the columns of their figures."""

    family: ScheduleFamily
    parts: dict[str, list[tuple[int, str]]]  # "early"/"late" -> (index, member name)
    cols: dict[str, int]


def _condition_columns(table: _Table, cols: _Columns) -> list[dict[str, int]]:
    """Columns of every condition metric, per condition."""
    out = []
    for j in range(table.has.shape[1]):
        entry = {}
        for key, builder in CONDITION_METRICS.items():
            num, den, empty = builder(table, j)
            entry[key] = cols.add(num, den, empty)
        out.append(entry)
    return out


def _prefix_steps(
    table: _Table,
    cols: _Columns,
    family: ScheduleFamily,
    infos: Mapping[tuple[str, str], tuple[int, Member]],
) -> list[_Step]:
    """Baseline → first → second …: each step's figures are paired ``to − from`` means."""
    chain: list[tuple[str, int | None, list[int]]] = [("baseline", None, [])]
    for _, name in sorted(family.members.items()):
        j, member = infos[(name, family.schedule)]
        chain.append((name, j, list(member.condition.positions)))
    steps = []
    for (from_name, from_j, from_pos), (to_name, to_j, to_pos) in pairwise(chain):
        before, after = _state(table, from_j), _state(table, to_j)
        step_cols = {}
        for key in STEP_METRICS:
            (v0, ok0), (v1, ok1) = before[key], after[key]
            valid = ok0 & ok1
            step_cols[key] = cols.add(
                np.where(valid, v1 - np.nan_to_num(v0), 0.0),
                valid,
                "no problem has both sides of this step recorded in this group",
            )
        steps.append(_Step(from_name, to_name, from_pos, to_pos, step_cols))
    return steps


def _early_late(
    table: _Table, cols: _Columns, family: ScheduleFamily, column_of: Mapping[tuple[str, str], int]
) -> _EarlyLate | None:
    """Early (indices 0-2) and late (3-5) mean importance of a family, or ``None`` when
    one side has no member. For prefix families index 0 is the baseline (importance 0)."""
    parts: dict[str, list[tuple[int, str]]] = {}
    values: dict[str, tuple[Float, Bool]] = {}
    for part, indices in (("early", EARLY), ("late", LATE)):
        chosen: list[tuple[int, str]] = []
        states = []
        for i in indices:
            if schedule(family.schedule).cumulative and i == 0:
                chosen.append((0, "baseline"))
                states.append(_state(table, None)["importance"])
            elif i in family.members:
                name = family.members[i]
                chosen.append((i, name))
                states.append(_state(table, column_of[(name, family.schedule)])["importance"])
        if not chosen:
            return None
        parts[part] = chosen
        valid = np.logical_and.reduce([ok for _, ok in states])
        mean = np.mean([np.where(ok, v, 0.0) for v, ok in states], axis=0)
        values[part] = (mean, valid)
    (early, early_ok), (late, late_ok) = values["early"], values["late"]
    el_cols = {
        "early": cols.add(early, early_ok, _NO_RESULTS),
        "late": cols.add(late, late_ok, _NO_RESULTS),
        "late_minus_early": cols.add(late - early, early_ok & late_ok, _NO_RESULTS),
    }
    return _EarlyLate(family, parts, el_cols)


class _Groups:
    """Bootstrap results of every figure for every group of problems.

    Scopes are ``overall`` and each stratum; within a scope the groups are ``baseline``
    (every problem), ``unconditional`` (problems with any condition result) and
    ``conditional`` (those of them that are baseline-correct). A set of problems is
    resampled once, however many groups share it.
    """

    def __init__(
        self, table: _Table, cols: _Columns, strata: list[str], *, n_boot: int, seed: int
    ) -> None:
        self.cols = cols
        self.n_boot = n_boot
        num, den = cols.matrices()
        self.strata = strata
        any_condition = table.has.any(axis=1)
        cache: dict[tuple[int, ...], RatioIntervals] = {}
        self.results: dict[str, dict[str, tuple[RatioIntervals, Bool]]] = {}
        for scope in ["overall", *self.strata]:
            in_scope = np.array([scope in ("overall", s) for s in table.strata], dtype=bool)
            masks = {
                "baseline": in_scope,
                "unconditional": in_scope & any_condition,
                "conditional": in_scope & any_condition & table.base_correct,
            }
            self.results[scope] = {}
            for group, mask in masks.items():
                rows = np.flatnonzero(mask)
                key = tuple(int(r) for r in rows)
                if key not in cache:
                    cache[key] = bootstrap_ratios(
                        num[rows],
                        den[rows],
                        n_boot=n_boot,
                        seed=group_seed(seed, [table.ids[r] for r in rows]),
                    )
                self.results[scope][group] = (cache[key], mask)

    def mask(self, scope: str, group: str) -> Bool:
        """Which problems form the group."""
        return self.results[scope][group][1]

    def metric(self, scope: str, group: str, col: int) -> dict[str, Any]:
        """One figure as a metric dict."""
        res = self.results[scope][group][0]
        return _metric(res, col, self.cols.empty_reason[col], self.n_boot)

    def by_scope(self, make: Callable[[str, str], dict[str, Any]]) -> dict[str, Any]:
        """``{"overall": {view: …}, "by_stratum": {label: {view: …}}}`` from ``make``."""
        return {
            "overall": {view: make("overall", view) for view in VIEWS},
            "by_stratum": {
                label: {view: make(label, view) for view in VIEWS} for label in self.strata
            },
        }


def _count_flag(flags: Sequence[bool | None], mask: Bool, value: bool) -> int | None:
    """How many problems in ``mask`` have ``flag == value``; ``None`` when any problem in
    ``mask`` has no flag recorded (files written before the flag existed)."""
    chosen = [f for f, m in zip(flags, mask.tolist(), strict=True) if m]
    if any(f is None for f in chosen):
        return None
    return sum(f is value for f in chosen)


def _baseline_json(groups: _Groups, table: _Table, base_col: int) -> dict[str, Any]:
    def block(scope: str) -> dict[str, Any]:
        mask = groups.mask(scope, "baseline")
        m = groups.metric(scope, "baseline", base_col)
        return {
            "accuracy": m["estimate"],
            "ci": m["ci"],
            "n": int(mask.sum()),
            "n_correct": int((mask & table.base_correct).sum()),
            "reason": m["reason"],
            "n_unfinished": _count_flag(table.base_finished, mask, False),
            "n_unclean": _count_flag(table.base_clean, mask, False),
        }

    return {
        **block("overall"),
        "population": "every problem in the run, whether or not conditions were run on it",
        "by_stratum": {label: block(label) for label in groups.strata},
    }


def _condition_json(
    groups: _Groups, table: _Table, info: Member, j: int, metric_cols: dict[str, int]
) -> dict[str, Any]:
    def view_json(scope: str, view: str) -> dict[str, Any]:
        rows = groups.mask(scope, view) & table.has[:, j]
        note = None
        if view == "unconditional" and rows.any() and table.base_correct[rows].all():
            note = _SAME_POPULATION
        b = int((rows & table.base_correct & ~table.correct[:, j]).sum())
        c = int((rows & ~table.base_correct & table.correct[:, j]).sum())
        test = mcnemar_exact(b, c)
        return {
            "population": _POPULATION[view],
            "n": int(rows.sum()),
            "note": note,
            "metrics": {key: groups.metric(scope, view, col) for key, col in metric_cols.items()},
            "mcnemar": {
                "b": b,
                "c": c,
                "discordant": test.discordant,
                "p_value": test.p_value if rows.any() else None,
                "note": _CONDITIONAL_MCNEMAR if view == "conditional" else None,
            },
        }

    return {**info.to_dict(), **groups.by_scope(view_json)}


def _add_holm(conditions: list[dict[str, Any]]) -> None:
    """Adds ``p_value_holm`` (over all distinct conditions) to each overall McNemar test.

    A condition listed under two schedules is one test, adjusted once: its entries share
    the adjusted p-value.
    """
    for view in VIEWS:
        first: dict[str, dict[str, Any]] = {}
        for c in conditions:
            first.setdefault(c["name"], c["overall"][view]["mcnemar"])
        tests = list(first.values())
        adjusted = dict(zip(first, holm_adjust([t["p_value"] for t in tests]), strict=True))
        for c in conditions:
            c["overall"][view]["mcnemar"]["p_value_holm"] = adjusted[c["name"]]


def _figures_json(
    groups: _Groups, cols: dict[str, int], population: str, n_key: str
) -> Callable[[str, str], dict[str, Any]]:
    def view_json(scope: str, view: str) -> dict[str, Any]:
        metrics = {key: groups.metric(scope, view, col) for key, col in cols.items()}
        return {
            "population": _POPULATION[view].replace("this condition", population),
            "n": metrics[n_key]["n"],
            "metrics": metrics,
        }

    return view_json


def summary_from_records(
    records: Sequence[ProblemRecord],
    manifest: Mapping[str, Any],
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """The statistics of a run, laid out as the module docstring describes.

    Args:
        records: One record per problem (baseline-wrong problems may have no conditions).
        manifest: The run's manifest (``selection``, ``model``... are read when present).
        n_boot: Bootstrap resamples per group (0: no intervals).
        seed: Bootstrap seed; the same seed and records give the same summary.
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be 0 or more, got {n_boot}")
    infos = members_of(records)
    table = _Table.build(records, infos)
    cols = _Columns(table.n)
    column_of = {info.key: j for j, info in enumerate(infos)}

    # Every figure becomes a column first, so that one bootstrap per group serves all.
    base_col = cols.add(table.base_correct.astype(float), np.ones(table.n, bool), "no problems")
    metric_cols = _condition_columns(table, cols)
    indexed = {info.key: (j, info) for j, info in enumerate(infos)}
    prefix = prefix_families(infos)
    steps = [(family, _prefix_steps(table, cols, family, indexed)) for family in prefix]
    early_late = [
        el
        for family in [*prefix, *single_families(infos)]
        if (el := _early_late(table, cols, family, column_of)) is not None
    ]
    groups = _Groups(table, cols, _strata(table, manifest), n_boot=n_boot, seed=seed)

    conditions = [
        _condition_json(groups, table, info, j, metric_cols[j]) for j, info in enumerate(infos)
    ]
    _add_holm(conditions)
    prefix_marginals = [
        {
            "family": family.to_dict(),
            "label": family.label,
            "steps": [
                {
                    **step.describe(),
                    **groups.by_scope(
                        _figures_json(groups, step.cols, "both sides of the step", "importance")
                    ),
                }
                for step in family_steps
            ],
        }
        for family, family_steps in steps
    ]
    early_late_json = [
        {
            "family": el.family.to_dict(),
            "label": el.family.label,
            "semantics": _texts()["early_late"][el.family.schedule],
            **{
                part: {"indices": [i for i, _ in chosen], "members": [m for _, m in chosen]}
                for part, chosen in el.parts.items()
            },
            **groups.by_scope(_figures_json(groups, el.cols, "every member", "late_minus_early")),
        }
        for el in early_late
    ]

    summary: dict[str, Any] = {
        "schema": SCHEMA,
        "source": str(manifest.get("source", "run")),
        "selection": str(manifest.get("selection", "unknown")),
        "selection_rule": _selection_rule(manifest),
        "n_problems": table.n,
        "n_with_conditions": int(table.has.any(axis=1).sum()),
        "n_baseline_correct": int(table.base_correct.sum()),
        "strata": groups.strata,
        "bootstrap": {
            "n_boot": n_boot,
            "seed": seed,
            "level": DEFAULT_LEVEL,
            "method": "percentile bootstrap over problems (resampled with replacement); "
            "all figures of one group share the resamples, so differences are paired",
        },
        "baseline": _baseline_json(groups, table, base_col),
        "conditions": conditions,
        "prefix_marginals": prefix_marginals,
        "early_late": early_late_json,
        "definitions": definitions(),
    }
    lengths = thought_lengths(records)
    if lengths is not None:
        summary["thought_lengths"] = lengths
    summary["caveats"] = caveats(summary, manifest)
    return summary


def thought_lengths(records: Sequence[ProblemRecord]) -> dict[str, Any] | None:
    """How many thoughts the baselines fed, when that differs between problems or some
    were capped (a family with a stopping rule): ``min``, ``max``, ``n_capped`` and the
    first capped ids; ``None`` for a fixed count or records without counts."""
    counts = [r.baseline.n_thoughts for r in records if r.baseline.n_thoughts is not None]
    capped = [r.id for r in records if r.baseline.thoughts_capped]
    if not counts or (len(set(counts)) == 1 and not capped):
        return None
    return {
        "min": min(counts),
        "max": max(counts),
        "n_capped": len(capped),
        "capped_ids": capped[:20],
    }


def _selection_rule(manifest: Mapping[str, Any]) -> str:
    if "selection_rule" in manifest:
        return str(manifest["selection_rule"])
    selection = manifest.get("selection")
    if selection == "baseline-correct":
        return (
            "conditions were run only on problems the model answered correctly without "
            "intervention; baseline-wrong problems count towards baseline accuracy only"
        )
    if selection == "all":
        return "conditions were run on every problem, whatever its baseline outcome"
    return "not recorded in the manifest"


@lru_cache(maxsize=1)
def _texts() -> dict[str, dict[str, str]]:
    """The prose of ``summary.json`` (``texts.json``, package data)."""
    raw = resources.files("thoughtscope.statistics").joinpath("texts.json").read_text("utf-8")
    data = json.loads(raw)
    return {key: data[key] for key in ("definitions", "caveats", "early_late")}


def definitions() -> dict[str, str]:
    """Plain-words definitions of every figure in ``summary.json``."""
    return dict(_texts()["definitions"])


def caveat_text(key: str, **fields: object) -> str:
    """The caveat ``key`` of ``texts.json`` with its fields filled in."""
    return _texts()["caveats"][key].format(**fields)


_caveat = caveat_text


def _strata_sizes(summary: Mapping[str, Any]) -> dict[str, int]:
    return {label: int(b["n"]) for label, b in summary["baseline"]["by_stratum"].items()}


def _has_zero_width(summary: Mapping[str, Any]) -> bool:
    for condition in summary["conditions"]:
        for view in condition["overall"].values():
            for m in view["metrics"].values():
                if m["ci"] is not None and m["ci"][0] == m["ci"][1] and m["n"] >= 2:
                    return True
    return False


def caveats(summary: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[str]:
    """Plain-English caveats that apply to this summary."""
    out: list[str] = []
    selection = summary["selection"]
    if summary["source"] == "original-file":
        out.append(_caveat("original_file"))
        out.append(_caveat("selection_rule", selection_rule=summary["selection_rule"]))
    if selection == "baseline-correct":
        out.append(_caveat("baseline_correct_selection"))
    elif summary["n_with_conditions"] and summary["n_baseline_correct"] == summary["n_problems"]:
        out.append(_caveat("all_baseline_correct"))
    if summary["n_with_conditions"] and not any(
        c["overall"]["conditional"]["n"] for c in summary["conditions"]
    ):
        out.append(_caveat("no_baseline_correct"))
    sizes = _strata_sizes(summary)
    small = [f"{label} (n={size})" for label, size in sizes.items() if size < SMALL_STRATUM]
    if small:
        out.append(_caveat("small_strata", strata=", ".join(small), limit=SMALL_STRATUM))
    odd = [label for label in sizes if label in ("unknown", "other")]
    if odd:
        out.append(_caveat("odd_strata", strata=", ".join(odd)))
    if summary["prefix_marginals"]:
        out.append(_caveat("cumulative_prefix"))
    if len(summary["conditions"]) > 1:
        out.append(_caveat("many_tests"))
    if _has_zero_width(summary):
        out.append(_caveat("zero_width"))
    missing = []
    for key, label in (("delta_gold_logprob", "gold log-probabilities"), ("kl", "KL values")):
        if summary["conditions"] and all(
            c["overall"]["unconditional"]["metrics"][key]["estimate"] is None
            for c in summary["conditions"]
        ):
            missing.append(label)
    if missing and summary["source"] != "original-file":
        out.append(_caveat("missing", what=" or ".join(missing)))
    num_latent = manifest.get("num_latent")
    if isinstance(num_latent, int) and num_latent != 6 and summary["early_late"]:
        out.append(_caveat("early_late_split", num_latent=num_latent))
    lengths = summary.get("thought_lengths")
    if lengths:
        out.append(
            _caveat(
                "ragged_thoughts",
                low=lengths["min"],
                high=lengths["max"],
                capped=lengths["n_capped"],
                n=summary["n_problems"],
                cap=num_latent if num_latent is not None else "?",
            )
        )
    return out
