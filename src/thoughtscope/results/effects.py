"""Rows of a thought-to-thought effects run: ``RUN/results.jsonl``, one line per
(problem, ablation, site, position). Written by :mod:`thoughtscope.analyses.effects`
through the shared run store (:mod:`thoughtscope.results.shards`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from thoughtscope.results.shards import RowKind

__all__ = ["EFFECT_ROWS", "EffectRow", "effect_row_id", "read_effect_rows"]


@dataclass(frozen=True)
class EffectRow:
    """How editing thought ``position`` at ``site`` changed the later thoughts and answer.

    Attributes:
        problem: Problem id.
        stratum: Its difficulty stratum.
        ablation: The edit (``zero``, ``mean``, ``noise``, ``patch``).
        site: ``latent`` or ``block:L``.
        position: The edited thought ``i``.
        output / baseline_output: Answers with and without the edit.
        changed: The answer's number changed.
        gold_logprob_change: log p(expected answer), edited minus unedited.
        cosine / rel_l2 / kl: Per thought ``j`` (index ``j``, length N): cosine distance,
            relative L2 distance of thought ``j``, and KL of its logit-lens distribution;
            ``None`` for ``j <= position``.
    """

    problem: str
    stratum: str
    ablation: str
    site: str
    position: int
    output: str
    baseline_output: str
    changed: bool
    gold_logprob_change: float
    cosine: list[float | None]
    rel_l2: list[float | None]
    kl: list[float | None]

    @property
    def key(self) -> tuple[str, str, str, int]:
        """``(problem, ablation, site, position)``: unique within a run."""
        return (self.problem, self.ablation, self.site, self.position)

    @property
    def row_id(self) -> str:
        """:attr:`key` as text: what resume and merging know a row by."""
        return effect_row_id(*self.key)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EffectRow:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def effect_row_id(problem: str, ablation: str, site: str, position: int) -> str:
    """The id of the row of ``problem`` with ``ablation`` at ``site`` and ``position``."""
    return json.dumps([problem, ablation, site, int(position)])


EFFECT_ROWS: RowKind[EffectRow] = RowKind(
    EffectRow.from_dict, EffectRow.to_dict, lambda row: row.row_id, "effects row"
)
"""How ``RUN/results.jsonl`` of an effects run is stored."""


def read_effect_rows(run_dir: str | Path) -> list[EffectRow]:
    """Every row of ``RUN/results.jsonl`` and its shards, each once.

    Raises:
        FileNotFoundError: No results file (nor shard).
        ResultStoreError: A damaged line, or two rows share an id but differ.
    """
    return EFFECT_ROWS.read(run_dir)
