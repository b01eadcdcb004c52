"""Rows of a patching run: ``RUN/results.jsonl``, one line per (pair, site, positions).

Written by :mod:`thoughtscope.analyses.patching`, read by
:mod:`thoughtscope.statistics.patching` and the report. Appends are whole lines, flushed
and fsynced; a cut-off last line (a killed write) is ignored when reading and trimmed
before the next append, as in :mod:`thoughtscope.results.store`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from thoughtscope.results.rows import append_rows, read_rows
from thoughtscope.results.store import RESULTS_FILE

__all__ = ["OUTCOMES", "PatchRow", "append_patch_rows", "read_patch_rows"]

Outcome = Literal["stays", "source", "other"]
OUTCOMES: tuple[Outcome, ...] = ("stays", "source", "other")
"""What the patched answer became: the target's baseline answer, the source's, or else."""


@dataclass(frozen=True)
class PatchRow:
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatchRow:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        values["positions"] = [int(p) for p in values["positions"]]
        return cls(**values)


def read_patch_rows(run_dir: str | Path) -> list[PatchRow]:
    """Every row of ``RUN/results.jsonl`` (a cut-off last line is ignored).

    Raises:
        FileNotFoundError: No results file.
        ResultStoreError: A line other than the last is damaged.
    """
    return read_rows(Path(run_dir) / RESULTS_FILE, PatchRow.from_dict, "patching row")


def append_patch_rows(run_dir: str | Path, rows: Iterable[PatchRow]) -> int:
    """Appends rows to ``RUN/results.jsonl`` (flushed and fsynced); returns how many."""
    return append_rows(Path(run_dir) / RESULTS_FILE, [r.to_dict() for r in rows])
