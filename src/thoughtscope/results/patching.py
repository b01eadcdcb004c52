"""Rows of a patching run: ``RUN/results.jsonl``, one line per (pair, site, positions).

Written by :mod:`thoughtscope.analyses.patching`, read by
:mod:`thoughtscope.statistics.patching` and the report, through the shared run store
(:mod:`thoughtscope.results.shards`): append-only, one shard per ``torchrun`` rank,
merged by rank 0. Beside the rows, ``RUN/checks.jsonl`` (sharded the same way) holds one
:class:`SelfPatchCheck` per batch of pairs; :func:`self_patch_totals` sums them over every
batch of every rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from thoughtscope.results.shards import RowKind, StoredRow, shard_files

__all__ = [
    "CHECKS_FILE",
    "OUTCOMES",
    "PATCH_ROWS",
    "SELF_PATCH_CHECKS",
    "PatchRow",
    "SelfPatchCheck",
    "read_patch_rows",
    "self_patch_totals",
]

CHECKS_FILE = "checks.jsonl"
"""The self-patch check of every batch (and its shards under ``torchrun``)."""

Outcome = Literal["stays", "source", "other"]
OUTCOMES: tuple[Outcome, ...] = ("stays", "source", "other")
"""What the patched answer became: the target's baseline answer, the source's, or else."""


@dataclass(frozen=True)
class PatchRow(StoredRow):
    """One patched run: the source's states at ``site`` and ``positions`` in the target.

    Attributes:
        pair: ``target<-source``.
        target: Target problem id.
        source: Source problem id.
        rule: The pair rule (``counterfactual``, ``same-value:1``, …).
        note: What the rule knows about the pair.
        stratum: The target's difficulty stratum.
        site: ``latent`` or ``block:L``.
        positions: Patched positions (``-1`` is ``bot``).
        schedule: The ``--positions`` schedule that asked for them (``single``, ``all``, …).
        output: The patched run's answer text.
        predicted: Its number (``None`` if none).
        target_baseline_output / source_baseline_output: The unpatched answers.
        target_expected / source_expected: The expected answers.
        outcome: ``stays`` (the target's baseline number), ``source`` (the source's
            baseline number, where it differs from the target's) or ``other``.
        distinguishable: The two baselines' numbers differ (else ``source`` is impossible).
        correct: The patched number equals the target's expected answer.
        gold_logprob: Sum log-probability of the target's expected answer, patched.
        gold_logprob_change: Patched minus unpatched.
        logit_diff: log p(target's expected answer) - log p(source's expected answer),
            teacher-forced, patched (0 when both answers are the same number).
        logit_diff_change: Patched minus unpatched.
    """

    pair: str
    target: str
    source: str
    rule: str
    note: str
    stratum: str
    site: str
    positions: list[int]
    schedule: str
    output: str
    predicted: float | None
    target_baseline_output: str
    source_baseline_output: str
    target_expected: float
    source_expected: float
    outcome: Outcome
    distinguishable: bool
    correct: bool
    gold_logprob: float
    gold_logprob_change: float
    logit_diff: float
    logit_diff_change: float

    @property
    def key(self) -> tuple[str, str, tuple[int, ...]]:
        """``(pair, site, positions)``: unique within a run."""
        return (self.pair, self.site, tuple(self.positions))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatchRow:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        values["positions"] = [int(p) for p in values["positions"]]
        return cls(**values)


PATCH_ROWS = RowKind.of(PatchRow, "patching row")
"""How ``RUN/results.jsonl`` of a patching run is stored."""


read_patch_rows = PATCH_ROWS.read
"""Every row of ``RUN/results.jsonl`` and its shards, each once (see :class:`RowKind`)."""


@dataclass(frozen=True)
class SelfPatchCheck(StoredRow):
    """The self-patch check of one batch of pairs: every problem of the batch patched at
    every thought position of each site with its own problem's empty-row state.

    Attributes:
        batch: The batch's pair ids, joined (its id in ``checks.jsonl``).
        rows: Self-patched rows (problems x sites).
        identical: Of those, rows with the same answer ids and teacher-forced
            log-probabilities as the empty condition, bit for bit.
        same_answer: Rows with the same answer ids.
        max_difference: Largest absolute log-probability difference.
        differing: ``problem (condition)`` of each row that was not identical.
    """

    batch: str
    rows: int
    identical: int
    same_answer: int
    max_difference: float
    differing: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str]:
        """The batch: unique within a run."""
        return (self.batch,)


SELF_PATCH_CHECKS = RowKind.of(SelfPatchCheck, "self-patch check")
"""How ``RUN/checks.jsonl`` is stored."""

SELF_PATCH_RULE = (
    "per batch and site, every row patched at every thought position with its own "
    "problem's empty-row state of the same forward pass; identical = same answer ids and "
    "teacher-forced log-probabilities as the empty condition, bit for bit; same_answer = "
    "same answer ids; summed over every batch of every rank (checks.jsonl). Expected: "
    "identical on every row on one CPU thread (the default); with several CPU threads an "
    "elementwise kernel may split the batch mid-row and round a row's last bits "
    "differently (max_logprob_difference); a different answer would mean the patch did "
    "not put back the model's own state"
)


def self_patch_totals(run_dir: str | Path) -> dict[str, Any]:
    """The self-patch checks of every batch of a run (``RUN/checks.jsonl`` and its
    shards), summed: the manifest's ``checks`` entry. Zero counts when there is none."""
    path = Path(run_dir) / CHECKS_FILE
    checks = SELF_PATCH_CHECKS.read(run_dir, CHECKS_FILE) if shard_files(path) else []
    return {
        "self_patch_batches": len(checks),
        "self_patch_rows": sum(c.rows for c in checks),
        "self_patch_identical": sum(c.identical for c in checks),
        "self_patch_same_answer": sum(c.same_answer for c in checks),
        "self_patch_max_logprob_difference": max((c.max_difference for c in checks), default=0.0),
        "self_patch_differing": [d for c in checks for d in c.differing],
        "self_patch_rule": SELF_PATCH_RULE,
    }
