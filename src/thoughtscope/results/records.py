"""One record per problem: its baseline outcome and its outcome under each condition.

These are the lines of ``RUN/results.jsonl``; the statistics and the report read them.
Positions are 0-based continuous thoughts (thought 0 is the first vector fed back, the
projection of the hidden state at ``<bot>``); see :mod:`thoughtscope.engine.sites`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """What the model answered under one condition.

    Attributes:
        output: Decoded answer text (special tokens skipped).
        predicted: The number read from ``output``, or ``None``.
        correct: Whether ``predicted`` matches the expected answer.
        gold_logprob: Sum of the log-probabilities of the expected answer's tokens,
            teacher-forced after ``<eot>`` (``None`` when not computed).
    """

    output: str
    predicted: float | None
    correct: bool
    gold_logprob: float | None = None


@dataclass(frozen=True)
class ConditionOutcome:
    """The outcome of one intervention condition on one problem.

    Attributes:
        name: Says exactly what changes, e.g. ``zero@L8:{0,1,2}`` or ``exit@3``.
        schedule: The schedule that produced it (``prefix``, ``single``, ``early-exit``...).
        site: ``latent`` or ``block:L`` (``""`` for early exit).
        layers: Block indices edited (empty for the latent site and early exit).
        positions: Thought positions edited (0-based; ``-1`` stands for ``bot``).
        ablation: Kind of edit (``zero``, ``mean``, ``noise``, ``patch``, ``early-exit``).
        output, predicted, correct, gold_logprob: As in :class:`Outcome`.
        changed: The predicted number differs from the baseline's.
        kl: Mean over the baseline answer's tokens of KL(baseline ‖ condition) between
            next-token distributions, teacher-forced along the baseline answer.
        num_latent: Thoughts fed before ``<eot>`` (``None``: all of them).
    """

    name: str
    schedule: str
    site: str
    layers: list[int]
    positions: list[int]
    ablation: str
    output: str
    predicted: float | None
    correct: bool
    changed: bool
    gold_logprob: float | None = None
    kl: float | None = None
    num_latent: int | None = None


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
        conditions: One outcome per condition.
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
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProblemRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            id=str(data["id"]),
            question=str(data.get("question", "")),
            steps=data.get("steps"),
            steps_source=str(data.get("steps_source", "unknown")),
            stratum=str(data.get("stratum", "unknown")),
            expected=float(data["expected"]),
            baseline=Outcome(**data["baseline"]),
            conditions=[ConditionOutcome(**c) for c in data.get("conditions", [])],
        )
