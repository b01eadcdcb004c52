"""The original study's file layout: writing it from a run, and reading it back.

The original study (see ``docs/statistics.md``) wrote three files:

* ``step_importance_scores.json``: a list, one object per problem: ``problem_id,
  question, expected_answer, baseline_answer, baseline_correct, difficulty,
  position_results[{position, ablated_answer, ablated_correct, importance_score,
  baseline_to_ablated}]``;
* ``step_importance_summary_stats.json``: ``n_problems, baseline_accuracy,
  position_importance{"0".."5"}, by_difficulty{steps: {n_problems, baseline_accuracy,
  early_importance, late_importance, pattern_validated}}``;
* ``step_importance_validation.json``: ``validation_status, n_samples, results,
  statistics`` (results and statistics as in the two files above).

**Its positions.** The original's "position i" zeroed positions ``0 … i-1`` (cumulative),
so its position 0 ablated nothing and equals the baseline. Written from a thoughtscope
run, original position ``i`` (``1 ≤ i ≤ 5``) holds the ``prefix`` condition that ablates
thoughts ``{0, …, i-1}`` in thoughtscope's numbering (thought 0 = the first vector fed
back); the original's own numbering counted the ``<bot>`` step as position 0, so old files
and new ones ablate sets shifted by one step. The condition that ablates every thought
has no place in the layout and appears only in ``summary.json``.

**Its importance.** ``importance_score`` is 1.0 when correctness *changed* in either
direction (``baseline_correct != ablated_correct``), else 0.0, exactly as the original
computed it; thoughtscope's own ``importance`` metric counts only right → wrong.

:func:`original_statistics` is a line-by-line port of the original's statistics, so an
old scores file gives back the original's own figures (NaN, which the original wrote for
empty means, becomes ``null``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from thoughtscope.results.conditions import PREFIX, ConditionSpec
from thoughtscope.results.records import ConditionOutcome, Outcome, ProblemRecord
from thoughtscope.statistics.conditions import (
    Member,
    ScheduleFamily,
    members_of,
    prefix_families,
)
from thoughtscope.statistics.summary import caveat_text

__all__ = [
    "ORIGINAL_POSITIONS",
    "ORIGINAL_SITE",
    "OriginalLayoutChoice",
    "OriginalLayoutError",
    "choose_original_family",
    "original_scores",
    "original_statistics",
    "original_validation",
    "parse_original",
    "records_from_original",
]

ORIGINAL_POSITIONS = range(6)
"""The original layout's positions: 0 (nothing ablated) to 5."""

ORIGINAL_SITE = "original"
"""Site name given to conditions read from an original file (its layer is not recorded)."""

_LAYER_COUNT_KEYS = ("num_layers", "n_layers", "num_hidden_layers", "n_layer")


class OriginalLayoutError(ValueError):
    """A file is not in the original study's layout; the message says where and why."""


@dataclass(frozen=True)
class OriginalLayoutChoice:
    """Which prefix family fills the original layout, and why.

    Attributes:
        family: The chosen ``zero`` prefix family, or ``None`` when the run has none.
        reason: Plain words: why this family (or why none).
        positions: Original position → condition name, for positions 1…5 present.
    """

    family: ScheduleFamily | None
    reason: str
    positions: dict[int, str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (for ``summary.json``)."""
        return {
            "written": self.family is not None,
            "reason": self.reason,
            "family": None if self.family is None else self.family.to_dict(),
            "positions": {
                "0": "baseline (nothing ablated)",
                **{str(i): name for i, name in sorted(self.positions.items())},
            },
        }


def _layer_count(manifest: Mapping[str, Any]) -> int | None:
    model = manifest.get("model")
    if isinstance(model, Mapping):
        for key in _LAYER_COUNT_KEYS:
            value = model.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def choose_original_family(
    members: Iterable[Member], manifest: Mapping[str, Any]
) -> OriginalLayoutChoice:
    """The ``zero`` ablation ``prefix`` family at one site that fills the original layout.

    Rule: a family read from an original file if there is one; else a one-layer block
    family: the block nearest the model's middle layer (``num_layers // 2``, ties to the
    lower) when the manifest gives the layer count, else the middle of the blocks the run
    has (lower median); else the ``latent`` family; else none.
    """
    candidates = [
        f
        for f in prefix_families(members)
        if f.ablation == "zero"
        and (
            f.site in ("latent", ORIGINAL_SITE)
            or (f.site.startswith("block:") and len(f.layers) == 1)
        )
        and any(i in ORIGINAL_POSITIONS for i in f.members)
    ]

    def choice(family: ScheduleFamily, reason: str) -> OriginalLayoutChoice:
        positions = {i: n for i, n in family.members.items() if i in ORIGINAL_POSITIONS}
        return OriginalLayoutChoice(family, reason, positions)

    for family in candidates:
        if family.site == ORIGINAL_SITE:
            return choice(family, "the conditions read from the original file")
    blocks = sorted((f for f in candidates if f.site.startswith("block:")), key=lambda f: f.layers)
    if blocks:
        layers = [f.layers[0] for f in blocks]
        count = _layer_count(manifest)
        if count is not None:
            middle = count // 2
            best = min(range(len(blocks)), key=lambda k: (abs(layers[k] - middle), layers[k]))
            how = "is the model's middle block" if layers[best] == middle else "is nearest"
            reason = (
                f"block:{layers[best]} {how} (layer count {count}, middle {middle}); "
                f"zero prefix blocks in the run: {layers}"
            )
        else:
            best = (len(blocks) - 1) // 2
            reason = (
                f"block:{layers[best]} is the middle of the zero prefix blocks in the run "
                f"{layers} (the manifest does not give the model's layer count)"
            )
        return choice(blocks[best], reason)
    for family in candidates:
        if family.site == "latent":
            return choice(family, "the run has no one-layer block zero prefix family")
    return OriginalLayoutChoice(
        None,
        "the run has no zero-ablation prefix conditions at one site, which is what the "
        "original layout describes",
        {},
    )


def _plain_number(value: float) -> float | int | None:
    """``18.0`` → ``18`` (the original wrote integers); non-finite → ``None``."""
    if not math.isfinite(value):
        return None
    return int(value) if float(value).is_integer() else value


def original_scores(
    records: Sequence[ProblemRecord], choice: OriginalLayoutChoice
) -> list[dict[str, Any]]:
    """``step_importance_scores.json`` content for a run, in the original's layout.

    Problems without condition results (baseline-wrong problems under the
    ``baseline-correct`` selection) get an empty ``position_results``. Position 0 is the
    baseline itself, as in the original.
    """
    results = []
    for record in records:
        outcomes = {c.name: c for c in record.conditions}
        position_results = []
        if record.conditions:
            base = record.baseline.correct
            position_results.append(_position_result(0, record.baseline.output, base, base))
            for position, name in sorted(choice.positions.items()):
                if name in outcomes:
                    c = outcomes[name]
                    position_results.append(_position_result(position, c.output, base, c.correct))
        results.append(
            {
                "problem_id": record.id,
                "question": record.question,
                "expected_answer": _plain_number(record.expected),
                "baseline_answer": record.baseline.output,
                "baseline_correct": record.baseline.correct,
                "difficulty": record.steps if record.steps is not None else "unknown",
                "position_results": position_results,
            }
        )
    return results


def _position_result(
    position: int, answer: str, baseline_correct: bool, ablated_correct: bool
) -> dict[str, Any]:
    return {
        "position": position,
        "ablated_answer": answer,
        "ablated_correct": ablated_correct,
        "importance_score": 0.0 if baseline_correct == ablated_correct else 1.0,
        "baseline_to_ablated": f"{int(baseline_correct)} → {int(ablated_correct)}",
    }


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _mean(values: Sequence[float]) -> float:
    # np.mean of an empty list is NaN in the original (with a warning); keep the NaN
    # silently and turn it into null at the end.
    return float(np.mean(values)) if len(values) else math.nan


def original_statistics(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The original's ``compute_statistics``, figure for figure.

    ``position_importance[i]`` is the mean ``importance_score`` over problems with a
    result at position ``i``; ``by_difficulty`` groups by the ``difficulty`` value (keys
    are its ``str``, in order of first appearance); ``early_importance`` is the mean of the
    per-position means at positions 0-2 present in the group, ``late_importance`` at 3-5;
    ``pattern_validated`` is ``early >= late`` (no test). Empty means become ``null``
    (the original wrote NaN); ``baseline_accuracy`` is ``null`` for an empty list (the
    original divided by zero).
    """
    n_total = len(results)
    baseline_correct = sum(bool(r["baseline_correct"]) for r in results)

    position_scores: dict[Any, list[float]] = defaultdict(list)
    for result in results:
        for pos_result in result["position_results"]:
            position_scores[pos_result["position"]].append(float(pos_result["importance_score"]))
    position_avg = {
        str(pos): _finite_or_none(_mean(scores)) for pos, scores in position_scores.items()
    }

    by_difficulty: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for result in results:
        by_difficulty[result["difficulty"]].append(result)

    difficulty_stats: dict[str, dict[str, Any]] = {}
    for difficulty, diff_results in by_difficulty.items():
        baseline_acc = sum(bool(r["baseline_correct"]) for r in diff_results) / len(diff_results)
        pos_imp: dict[Any, list[float]] = defaultdict(list)
        for result in diff_results:
            for pos_result in result["position_results"]:
                pos_imp[pos_result["position"]].append(float(pos_result["importance_score"]))
        early = _mean([_mean(pos_imp[i]) for i in (0, 1, 2) if i in pos_imp])
        late = _mean([_mean(pos_imp[i]) for i in (3, 4, 5) if i in pos_imp])
        difficulty_stats[str(difficulty)] = {
            "n_problems": len(diff_results),
            "baseline_accuracy": float(baseline_acc),
            "early_importance": _finite_or_none(early),
            "late_importance": _finite_or_none(late),
            "pattern_validated": bool(early >= late),
        }

    return {
        "n_problems": n_total,
        "baseline_accuracy": float(baseline_correct / n_total) if n_total else None,
        "position_importance": position_avg,
        "by_difficulty": difficulty_stats,
    }


def original_validation(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``step_importance_validation.json`` content: the results and their statistics."""
    return {
        "validation_status": "COMPLETE",
        "n_samples": len(results),
        "results": list(results),
        "statistics": original_statistics(results),
    }


_LAYOUT_HINT = (
    "expected the original study's layout: a list of problems (step_importance_scores.json) "
    "or an object with a 'results' list (step_importance_validation.json), each problem "
    "with baseline_correct, difficulty and position_results[{position, ablated_correct, "
    "importance_score}]"
)


def parse_original(data: Any, source: str) -> list[dict[str, Any]]:
    """The problem list of an original-layout file, checked.

    Args:
        data: The parsed JSON: a scores list, or a validation object with ``results``.
        source: The file name, for messages.

    Raises:
        OriginalLayoutError: The layout is wrong; the message names the file, the
            problem (index and id) and the missing or bad field.
    """
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        data = data["results"]
    if not isinstance(data, list):
        raise OriginalLayoutError(f"{source}: top level is {type(data).__name__}; {_LAYOUT_HINT}")
    for k, result in enumerate(data):
        if not isinstance(result, dict):
            raise OriginalLayoutError(f"{source}: problem {k} is not an object; {_LAYOUT_HINT}")
        where = f"{source}: problem {k} (problem_id {result.get('problem_id', '?')!r})"
        for key in ("baseline_correct", "difficulty", "position_results"):
            if key not in result:
                raise OriginalLayoutError(f"{where} has no {key!r}; {_LAYOUT_HINT}")
        if not isinstance(result["baseline_correct"], bool | int):
            raise OriginalLayoutError(f"{where}: baseline_correct must be true/false")
        if isinstance(result["difficulty"], dict | list):
            raise OriginalLayoutError(f"{where}: difficulty must be a number or a string")
        if not isinstance(result["position_results"], list):
            raise OriginalLayoutError(f"{where}: position_results must be a list")
        for j, pos in enumerate(result["position_results"]):
            ok = (
                isinstance(pos, dict)
                and isinstance(pos.get("position"), int)
                and not isinstance(pos.get("position"), bool)
                and isinstance(pos.get("importance_score"), int | float)
                and isinstance(pos.get("ablated_correct"), bool | int)
            )
            if not ok:
                raise OriginalLayoutError(
                    f"{where}, position_results[{j}]: needs an integer 'position', a numeric "
                    f"'importance_score' and a true/false 'ablated_correct'"
                )
    return data


def _same_answer(a: object, b: object) -> bool:
    return " ".join(str(a).split()) == " ".join(str(b).split())


def _as_float(value: object) -> float:
    try:
        return float(str(value).replace(",", "").strip())
    except ValueError:
        return math.nan


def original_condition_name(position: int) -> str:
    """Name of the condition holding original position ``position`` (its own numbering)."""
    return "zero@orig:{" + ",".join(str(p) for p in range(position)) + "}"


def records_from_original(
    results: Sequence[Mapping[str, Any]],
) -> tuple[list[ProblemRecord], dict[str, Any]]:
    """Records and a manifest-like dict for re-analysing an original-layout file.

    Original position ``i ≥ 1`` becomes a ``prefix`` condition named
    ``zero@orig:{0,…,i-1}`` at site ``original``, positions in the *original's* numbering
    (its position 0 was the ``<bot>`` step). Position 0 is the baseline and is skipped.
    The stratum is ``str(difficulty)``, the original's grouping. ``changed`` compares the
    answer texts (the file holds no extracted numbers); gold log-probability and KL are
    absent.
    """
    records = []
    for k, result in enumerate(results):
        baseline_answer = result.get("baseline_answer", "")
        baseline_correct = bool(result["baseline_correct"])
        conditions = []
        for pos in result["position_results"]:
            position = int(pos["position"])
            if position < 1:
                continue
            answer = pos.get("ablated_answer", "")
            conditions.append(
                ConditionOutcome(
                    ConditionSpec(
                        name=original_condition_name(position),
                        schedules=(PREFIX,),
                        ablation="zero",
                        site=ORIGINAL_SITE,
                        positions=tuple(range(position)),
                    ),
                    output=str(answer),
                    predicted=None,
                    correct=bool(pos["ablated_correct"]),
                    changed=not _same_answer(answer, baseline_answer),
                )
            )
        difficulty = result["difficulty"]
        steps = (
            difficulty if isinstance(difficulty, int) and not isinstance(difficulty, bool) else None
        )
        records.append(
            ProblemRecord(
                id=str(result.get("problem_id", f"#{k}")),
                question=str(result.get("question", "")),
                steps=steps,
                steps_source="original",
                stratum=str(difficulty),
                expected=_as_float(result.get("expected_answer")),
                baseline=Outcome(
                    output=str(baseline_answer), predicted=None, correct=baseline_correct
                ),
                conditions=conditions,
            )
        )
    all_correct = bool(records) and all(r.baseline.correct for r in records)
    rule = (
        "not recorded in the original file; every problem in it is baseline-correct, so it "
        "was most likely filtered to baseline-correct problems before the sweep"
        if all_correct
        else "not recorded in the original file; it holds baseline-correct and "
        "baseline-wrong problems, every one measured at every position it lists"
    )
    manifest = {
        "source": "original-file",
        "selection": "unknown",
        "selection_rule": rule,
        "strata": None,
        "num_latent": 6,
    }
    return records, manifest


def original_layout_section(
    records: Sequence[ProblemRecord],
    manifest: Mapping[str, Any],
    figures: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``original_layout`` entry the writers add to ``summary.json``: which family
    fills the original's files and why, and the original's own statistics (``figures``:
    given when re-analysing an original file, else recomputed from ``records``).

    The statistics themselves know nothing of the original layout; this adapter reads the
    same records and writes beside them.
    """
    choice = choose_original_family(members_of(records), manifest)
    layout = choice.to_dict()
    if figures is None and choice.family is not None:
        figures = original_statistics(original_scores(records, choice))
    layout["figures"] = None if figures is None else dict(figures)
    return layout


def original_files_caveat(site: str) -> str:
    """The caveat a run's summary gets when the original-layout files are written."""
    return caveat_text("original_files", site=site)
