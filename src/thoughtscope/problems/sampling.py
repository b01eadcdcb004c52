"""Choosing which problems a run uses: step filters, a limit, and stratified sampling.

Selection happens in a fixed order so that a run is easy to describe and reproduce:

1. **steps filter** (``min_steps``/``max_steps``): problems outside the range, and
   problems whose steps are unknown when a range is given, are dropped;
2. **limit**: only the first ``limit`` remaining problems (source order) are kept;
3. **stratified sampling** (when ``n`` is given), by :class:`~thoughtscope.problems.
   difficulty.Strata`: either ``n`` per stratum, or ``n`` in total spread evenly over the
   strata that have problems (the first ``n mod k`` strata get one more). A stratum
   smaller than its share is taken whole and the shortfall is reported, never made up
   from other strata, so strata stay comparable.

Problems with unknown steps form an ``unknown`` stratum and problems outside every band
an ``other`` stratum; both are sampled like the bands when present. Each stratum is
sampled with its own seeded stream, so one stratum's sample does not change when another
stratum's size does. The output keeps the source's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from thoughtscope.problems.difficulty import DEFAULT_STRATA, Strata
from thoughtscope.problems.problem import Problem
from thoughtscope.problems.seeded import SeededStream

__all__ = ["Sample", "SampleReport", "StratumCount", "sample_stratified"]


@dataclass(frozen=True)
class StratumCount:
    """How one stratum fared.

    Attributes:
        label: Stratum label (``1``, ``5+``, ``unknown``, ``other``).
        available: Problems in the stratum after the steps filter and the limit.
        requested: Problems asked of it, or ``None`` without sampling.
        taken: Problems selected from it.
    """

    label: str
    available: int
    requested: int | None
    taken: int

    @property
    def shortfall(self) -> int:
        """How many fewer problems were taken than requested (0 when none)."""
        return 0 if self.requested is None else max(0, self.requested - self.taken)


@dataclass(frozen=True)
class SampleReport:
    """What a selection kept and dropped, stratum by stratum.

    Attributes:
        strata: One count per stratum: the configured bands in order, then ``other``
            and ``unknown`` when any problem falls there.
        given: Problems passed in.
        dropped_by_steps: Problems removed by the steps filter.
        dropped_by_limit: Problems removed by the limit.
        n: The requested sample size, or ``None`` without sampling.
        per_stratum: Whether ``n`` was per stratum (else in total).
        seed: The sampling seed.
    """

    strata: tuple[StratumCount, ...]
    given: int
    dropped_by_steps: int
    dropped_by_limit: int
    n: int | None
    per_stratum: bool
    seed: int

    @property
    def taken(self) -> int:
        """Problems selected in all."""
        return sum(s.taken for s in self.strata)

    @property
    def shortfall(self) -> int:
        """Problems requested but not available, over all strata."""
        return sum(s.shortfall for s in self.strata)

    def short_strata(self) -> list[StratumCount]:
        """The strata that could not supply what was requested."""
        return [s for s in self.strata if s.shortfall]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with each stratum's shortfall included."""
        out = asdict(self)
        out["strata"] = [{**asdict(s), "shortfall": s.shortfall} for s in self.strata]
        out["taken"] = self.taken
        out["shortfall"] = self.shortfall
        return out


@dataclass(frozen=True)
class Sample:
    """The selected problems (in source order) and the report on how they were chosen."""

    problems: list[Problem]
    report: SampleReport


def sample_stratified(
    problems: Sequence[Problem],
    n: int | None = None,
    *,
    strata: Strata = DEFAULT_STRATA,
    per_stratum: bool = True,
    seed: int = 0,
    min_steps: int | None = None,
    max_steps: int | None = None,
    limit: int | None = None,
) -> Sample:
    """The problems a run should use, chosen as the module docstring describes.

    Args:
        problems: Problems in source order.
        n: Sample size (per stratum or in total); ``None`` keeps every problem that
            passes the filters.
        strata: Difficulty bands (default ``1,2,3,4,5+``).
        per_stratum: ``True``: ``n`` from each stratum; ``False``: ``n`` in total.
        seed: Sampling seed; the same seed and input give the same sample everywhere.
        min_steps: Drop problems with fewer steps (and those with unknown steps).
        max_steps: Drop problems with more steps (and those with unknown steps).
        limit: Keep only the first ``limit`` problems left after the steps filter.

    Raises:
        ValueError: ``n``, ``limit`` or the steps range is invalid.
    """
    if n is not None and n < 0:
        raise ValueError(f"sample size must be 0 or more, got {n}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more, got {limit}")
    if min_steps is not None and max_steps is not None and min_steps > max_steps:
        raise ValueError(f"min_steps ({min_steps}) is larger than max_steps ({max_steps})")

    def in_range(problem: Problem) -> bool:
        if min_steps is None and max_steps is None:
            return True
        if problem.steps is None:
            return False
        low_ok = min_steps is None or problem.steps >= min_steps
        return low_ok and (max_steps is None or problem.steps <= max_steps)

    kept = [p for p in problems if in_range(p)]
    dropped_by_steps = len(problems) - len(kept)
    dropped_by_limit = 0
    if limit is not None and len(kept) > limit:
        dropped_by_limit = len(kept) - limit
        kept = kept[:limit]

    members: dict[str, list[int]] = {label: [] for label in strata.labels}
    for index, problem in enumerate(kept):
        members.setdefault(strata.label_for(problem.steps), []).append(index)
    for extra in (Strata.OTHER, Strata.UNKNOWN):  # fixed order after the bands
        if extra in members:
            members[extra] = members.pop(extra)

    requests = _requests(members, n, per_stratum)
    chosen: list[int] = []
    counts: list[StratumCount] = []
    for label, indices in members.items():
        request = requests.get(label)
        if request is None:
            picked = indices
        else:
            stream = SeededStream(f"thoughtscope.sample|{seed}|{label}")
            picked = stream.shuffled(indices)[:request]
        chosen.extend(picked)
        counts.append(StratumCount(label, len(indices), request, len(picked)))

    report = SampleReport(
        strata=tuple(counts),
        given=len(problems),
        dropped_by_steps=dropped_by_steps,
        dropped_by_limit=dropped_by_limit,
        n=n,
        per_stratum=per_stratum,
        seed=seed,
    )
    return Sample([kept[i] for i in sorted(chosen)], report)


def _requests(members: dict[str, list[int]], n: int | None, per_stratum: bool) -> dict[str, int]:
    """How many problems to ask of each stratum (empty without sampling)."""
    if n is None:
        return {}
    if per_stratum:
        return {label: n for label in members}
    present = [label for label, indices in members.items() if indices]
    if not present:
        return {label: 0 for label in members}
    share, remainder = divmod(n, len(present))
    requests = {label: 0 for label in members}
    for position, label in enumerate(present):
        requests[label] = share + (1 if position < remainder else 0)
    return requests
