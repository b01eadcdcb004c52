"""Example problems for the report: which ones, and their decoded thoughts.

Examples are picked without looking at outcomes, so they are not cherry-picked: strata
in difficulty order take turns, and each gives its next problem (in file order) that has
condition results. Their decoded thoughts were recorded by the sweep
(``RUN/thoughts.jsonl``, :func:`thoughtscope.results.records.read_thoughts`): the report
never loads a model. The logit lens is a reading aid, not causal evidence.
"""

from __future__ import annotations

from collections.abc import Sequence

from thoughtscope.results.records import ProblemRecord

__all__ = ["choose_examples"]


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
