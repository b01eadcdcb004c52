"""Rows of a thought-to-thought effects run: ``RUN/results.jsonl``, one line per
(problem, ablation, site, position). Written by :mod:`thoughtscope.analyses.effects`
through the shared run store (:mod:`thoughtscope.results.shards`)."""

from __future__ import annotations

from dataclasses import dataclass

from thoughtscope.results.shards import RowKind, StoredRow

__all__ = ["EFFECT_ROWS", "EffectRow", "read_effect_rows"]


@dataclass(frozen=True)
class EffectRow(StoredRow):
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


EFFECT_ROWS = RowKind.of(EffectRow, "effects row")
"""How ``RUN/results.jsonl`` of an effects run is stored."""

read_effect_rows = EFFECT_ROWS.read
"""Every row of ``RUN/results.jsonl`` and its shards, each once (see :class:`RowKind`)."""
