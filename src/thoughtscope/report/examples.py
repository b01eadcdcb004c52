"""Example problems for the report: which ones, and their decoded thoughts.

Examples are picked without looking at outcomes, so they are not cherry-picked: strata
in difficulty order take turns, and each gives its next problem (in file order) that has
condition results. Decoded thoughts need the model: the baseline is re-run with hidden
states recorded, and every recorded state is read through the logit lens
(:func:`thoughtscope.engine.lens.decode_states`). That is a reading aid, not causal evidence.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from thoughtscope.results.records import ProblemRecord

if TYPE_CHECKING:
    from thoughtscope.engine.lens import DecodedState
    from thoughtscope.model.codi import CodiModel

__all__ = ["DecodedThoughts", "choose_examples", "decode_thoughts"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodedThoughts:
    """The logit-lens reading of one problem's baseline run.

    Attributes:
        states: Top-k tokens per (position, site), as :func:`decode_states` gives them.
        answer: The answer the model gave in this re-run (compare with the record's).
    """

    states: list[DecodedState]
    answer: str


def choose_examples(
    records: Sequence[ProblemRecord], strata: Sequence[str], n: int
) -> list[ProblemRecord]:
    """Up to ``n`` problems with condition results, taking strata in turn."""
    if n <= 0:
        return []
    queues: dict[str, list[ProblemRecord]] = {label: [] for label in strata}
    for record in records:
        if record.conditions:
            queues.setdefault(record.stratum, []).append(record)
    chosen: list[ProblemRecord] = []
    while len(chosen) < n and any(queues.values()):
        for label in list(queues):
            if queues[label] and len(chosen) < n:
                chosen.append(queues[label].pop(0))
    return chosen


def decode_thoughts(
    model: CodiModel,
    records: Sequence[ProblemRecord],
    *,
    top_k: int = 5,
    max_new_tokens: int = 32,
) -> list[DecodedThoughts]:
    """Re-runs each problem's baseline with hidden states recorded and decodes them."""
    from thoughtscope.engine.lens import decode_states
    from thoughtscope.engine.runner import Runner, RunOptions

    if not records:
        return []
    options = RunOptions(max_new_tokens=max_new_tokens, batch_size=8, record_hidden=True)
    generations = Runner(model).run([r.question for r in records], options=options)
    out = []
    for row in generations:
        generation = row[0]
        assert generation.hidden is not None  # record_hidden=True
        states = decode_states(model, generation.hidden, top_k=top_k)
        out.append(DecodedThoughts(states, generation.text))
    return out
