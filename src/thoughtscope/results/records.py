"""One record per problem: its baseline outcome and its outcome under each condition.

These are the lines of ``RUN/results.jsonl``; the statistics and the report read them.
Each condition is recorded once per problem with its identity
(:class:`~thoughtscope.results.conditions.ConditionSpec`: ``name``, ``schedules``,
``ablation``, ``site``, ``layers``, ``positions``, ``num_latent``) beside its outcome, so a
pandas pivot on ``(id, name)`` has one row per cell. Positions are 0-based continuous
thoughts (thought 0 is the first vector fed back); see :mod:`thoughtscope.results.conditions`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from thoughtscope.results.conditions import ConditionSpec

__all__ = [
    "THOUGHTS_FILE",
    "ConditionOutcome",
    "DecodedThoughts",
    "LensReading",
    "Outcome",
    "ProblemRecord",
    "read_thoughts",
]

THOUGHTS_FILE = "thoughts.jsonl"
"""Decoded thoughts of a run's example problems, one :class:`DecodedThoughts` a line."""


@dataclass(frozen=True)
class Outcome:
    """What the model answered under one condition.

    Attributes:
        output: Decoded answer text (special tokens skipped).
        predicted: The number read from ``output``, or ``None``.
        correct: Whether ``predicted`` matches the expected answer.
        gold_logprob: Sum of the log-probabilities of the expected answer's tokens,
            teacher-forced after ``<eot>`` (``None`` when not computed).
        finished: The answer ended with ``<eos>`` (``False``: it ran to
            ``--max-new-tokens``); ``None`` in files written before it was recorded.
        clean: The output holds one clean number (:func:`thoughtscope.problems.is_clean`);
            ``None`` in older files.
        n_thoughts: How many thoughts were fed (``None`` in files written before it
            was recorded); a family with a stopping rule thinks for different counts.
        thoughts_capped: The family's stopping rule never stopped this run: thinking
            was closed at its cap.
    """

    output: str
    predicted: float | None
    correct: bool
    gold_logprob: float | None = None
    finished: bool | None = None
    clean: bool | None = None
    n_thoughts: int | None = None
    thoughts_capped: bool = False


@dataclass(frozen=True)
class ConditionOutcome:
    """One condition on one problem: what it changes and what the model then answered.

    Attributes:
        condition: The condition's identity (as in the manifest).
        output, predicted, correct, gold_logprob: As in :class:`Outcome`.
        changed: The predicted number differs from the baseline's.
        kl: Mean over the baseline answer's tokens of KL(baseline ‖ condition) between
            next-token distributions, teacher-forced along the baseline answer.
        finished, clean: As in :class:`Outcome`.
        n_thoughts: How many thoughts this run fed (``None`` when not recorded).
    """

    condition: ConditionSpec
    output: str
    predicted: float | None
    correct: bool
    changed: bool
    gold_logprob: float | None = None
    kl: float | None = None
    finished: bool | None = None
    clean: bool | None = None
    n_thoughts: int | None = None

    @property
    def name(self) -> str:
        """The condition's name, e.g. ``zero@block:8:{0,1,2}``."""
        return self.condition.name

    def to_dict(self) -> dict[str, Any]:
        """One flat JSON object: the condition's fields, then the outcome's.

        ``schedule`` (the first schedule listing the condition) is kept beside
        ``schedules`` (all of them) for readers of files written before 0.2."""
        identity = self.condition.to_dict()
        return {
            **identity,
            "schedule": identity["schedules"][0] if identity["schedules"] else None,
            "output": self.output,
            "predicted": self.predicted,
            "correct": self.correct,
            "changed": self.changed,
            "gold_logprob": self.gold_logprob,
            "kl": self.kl,
            "finished": self.finished,
            "clean": self.clean,
            "n_thoughts": self.n_thoughts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConditionOutcome:
        """Inverse of :meth:`to_dict`."""
        return cls(
            condition=ConditionSpec.from_dict(data),
            output=str(data.get("output", "")),
            predicted=data.get("predicted"),
            correct=bool(data["correct"]),
            changed=bool(data.get("changed", False)),
            gold_logprob=data.get("gold_logprob"),
            kl=data.get("kl"),
            finished=data.get("finished"),
            clean=data.get("clean"),
            n_thoughts=data.get("n_thoughts"),
        )


def _merge_repeats(conditions: list[ConditionOutcome]) -> list[ConditionOutcome]:
    """One entry per condition name; files written before conditions were recorded once
    list a shared condition once per schedule: their schedules are merged."""
    by_name: dict[str, ConditionOutcome] = {}
    for c in conditions:
        known = by_name.get(c.name)
        if known is None:
            by_name[c.name] = c
            continue
        merged = known.condition
        for name in c.condition.schedules:
            merged = merged.with_schedule(name)
        by_name[c.name] = ConditionOutcome(
            merged, known.output, known.predicted, known.correct, known.changed,
            known.gold_logprob, known.kl, known.finished, known.clean, known.n_thoughts,
        )  # fmt: skip
    return list(by_name.values())


@dataclass(frozen=True)
class ProblemRecord:
    """One line of ``results.jsonl``.

    Attributes:
        id: Problem id.
        question: Question text.
        steps: Reasoning steps (difficulty), ``None`` if unknown.
        steps_source: Where ``steps`` came from.
        stratum: Difficulty stratum label (e.g. ``5+``).
        expected: Expected numeric answer.
        baseline: Outcome without intervention.
        conditions: One outcome per condition (each condition once).
    """

    id: str
    question: str
    steps: int | None
    steps_source: str
    stratum: str
    expected: float
    baseline: Outcome
    conditions: list[ConditionOutcome] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "id": self.id,
            "question": self.question,
            "steps": self.steps,
            "steps_source": self.steps_source,
            "stratum": self.stratum,
            "expected": self.expected,
            "baseline": asdict(self.baseline),
            "conditions": [c.to_dict() for c in self.conditions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProblemRecord:
        """Inverse of :meth:`to_dict` (older files' per-schedule repeats are merged)."""
        return cls(
            id=str(data["id"]),
            question=str(data.get("question", "")),
            steps=data.get("steps"),
            steps_source=str(data.get("steps_source", "unknown")),
            stratum=str(data.get("stratum", "unknown")),
            expected=float(data["expected"]),
            baseline=Outcome(**data["baseline"]),
            conditions=_merge_repeats(
                [ConditionOutcome.from_dict(c) for c in data.get("conditions", [])]
            ),
        )


@dataclass(frozen=True)
class LensReading:
    """The logit-lens reading of one recorded state: its top tokens.

    Attributes:
        position: ``bot``, a thought index (``0``, ``1``, …) or ``eot``.
        site: ``latent`` (the step's input: the thought itself at thought positions),
            ``input`` (at ``bot``/``eot``) or ``block:L``.
        tokens: Decoded tokens, most probable first.
        probs: Their probabilities under the softmax over the full vocabulary.
    """

    position: str
    site: str
    tokens: list[str]
    probs: list[float]


@dataclass(frozen=True)
class DecodedThoughts:
    """One example problem's baseline run read through the logit lens, recorded by the
    sweep so that the report never needs the model.

    Attributes:
        id: Problem id.
        answer: The baseline answer of that run.
        states: One reading per (position, site), positions in order.
    """

    id: str
    answer: str
    states: list[LensReading]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecodedThoughts:
        """Inverse of :meth:`to_dict`."""
        return cls(
            id=str(data["id"]),
            answer=str(data.get("answer", "")),
            states=[
                LensReading(
                    str(s["position"]),
                    str(s["site"]),
                    [str(t) for t in s["tokens"]],
                    [float(p) for p in s["probs"]],
                )
                for s in data.get("states", [])
            ],
        )


def read_thoughts(run_dir: str | Path) -> list[DecodedThoughts]:
    """The decoded example thoughts of a run (``[]`` when it has none); a problem written
    twice (a batch re-run after an interruption) keeps its last line; a damaged line (an
    interrupted write) is skipped."""
    path = Path(run_dir) / THOUGHTS_FILE
    if not path.is_file():
        return []
    found: dict[str, DecodedThoughts] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            item = DecodedThoughts.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError):
            continue
        found[item.id] = item
    return list(found.values())
