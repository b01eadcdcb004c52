"""Rows of a steering run: ``RUN/results.jsonl``, one line per (problem, site, positions,
mode, α). Written by :mod:`thoughtscope.analyses.steering` through the shared run store
(:mod:`thoughtscope.results.shards`), read by :mod:`thoughtscope.statistics.steering`."""

from __future__ import annotations

from dataclasses import dataclass

from thoughtscope.results.shards import RowKind, StoredRow

__all__ = ["STEER_ROWS", "SteerRow", "read_steer_rows"]


@dataclass(frozen=True)
class SteerRow(StoredRow):
    """One steered run of one problem (a line of ``RUN/results.jsonl``).

    Attributes:
        problem, stratum: The problem and its difficulty stratum.
        site, positions, mode, alpha: The edit.
        output, baseline_output: Answers with the edit and at ``α = 0``.
        changed: The number differs from ``α = 0``'s.
        hit: The number equals the target value (``None`` where the ``α = 0`` answer
            already does).
        gold_logprob_change: log p(expected answer), steered minus ``α = 0``.
    """

    problem: str
    stratum: str
    site: str
    positions: list[int]
    mode: str
    alpha: float
    output: str
    baseline_output: str
    changed: bool
    hit: bool | None
    gold_logprob_change: float

    @property
    def key(self) -> tuple[str, str, tuple[int, ...], str, float]:
        """Unique within a run."""
        return (self.problem, self.site, tuple(self.positions), self.mode, self.alpha)


STEER_ROWS = RowKind.of(SteerRow, "steering row")
"""How ``RUN/results.jsonl`` of a steering run is stored."""

read_steer_rows = STEER_ROWS.read
"""Every row of ``RUN/results.jsonl`` and its shards, each once (see :class:`RowKind`)."""
