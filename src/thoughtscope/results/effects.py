"""Rows of a thought-to-thought effects run: ``RUN/results.jsonl``, one line per
(problem, ablation, site, position). Written by :mod:`thoughtscope.analyses.effects`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from thoughtscope.results.rows import append_rows, read_rows
from thoughtscope.results.store import RESULTS_FILE

__all__ = ["EffectRow", "append_effect_rows", "read_effect_rows"]


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EffectRow:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def read_effect_rows(run_dir: str | Path) -> list[EffectRow]:
    """Every row of ``RUN/results.jsonl``."""
    return read_rows(Path(run_dir) / RESULTS_FILE, EffectRow.from_dict, "effects row")


def append_effect_rows(run_dir: str | Path, rows: Iterable[EffectRow]) -> int:
    """Appends rows (flushed and fsynced); returns how many."""
    return append_rows(Path(run_dir) / RESULTS_FILE, [r.to_dict() for r in rows])
