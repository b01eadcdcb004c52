"""Rows of a steering run: ``RUN/results.jsonl``, one line per (problem, site, positions,
mode, α). Written by :mod:`thoughtscope.analyses.steering` through the shared run store
(:mod:`thoughtscope.results.shards`), read by :mod:`thoughtscope.statistics.steering`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from thoughtscope.results.shards import RowKind

__all__ = ["STEER_ROWS", "SteerRow", "read_steer_rows", "steer_row_id"]


@dataclass(frozen=True)
class SteerRow:
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

    @property
    def row_id(self) -> str:
        """:attr:`key` as text: what resume and merging know a row by."""
        return steer_row_id(self.problem, self.site, self.positions, self.mode, self.alpha)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SteerRow:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def steer_row_id(problem: str, site: str, positions: Iterable[int], mode: str, alpha: float) -> str:
    """The id of the row of ``problem`` steered at ``site``/``positions`` by ``mode``, ``alpha``."""
    return json.dumps([problem, site, [int(p) for p in positions], mode, float(alpha)])


STEER_ROWS: RowKind[SteerRow] = RowKind(
    SteerRow.from_dict, SteerRow.to_dict, lambda row: row.row_id, "steering row"
)
"""How ``RUN/results.jsonl`` of a steering run is stored."""


def read_steer_rows(run_dir: str | Path) -> list[SteerRow]:
    """Every row of ``RUN/results.jsonl`` and its shards, each once.

    Raises:
        FileNotFoundError: No results file (nor shard).
        ResultStoreError: A damaged line, or two rows share an id but differ.
    """
    return STEER_ROWS.read(run_dir)
