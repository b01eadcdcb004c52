"""The conditions a run holds, as members of the schedule families the statistics compare.

A condition several schedules asked for (``{0}`` is the first ``prefix`` and the first
``single`` condition) is recorded once, but is a member of each schedule: the statistics
give figures per (condition, schedule) *member*, and count it as one test (Holm).

A :class:`ScheduleFamily` is the set of members one schedule produced at one site with one
ablation kind, e.g. every ``prefix`` condition of ``zero`` at ``block:8``, indexed along the
schedule (:attr:`thoughtscope.results.conditions.Schedule.index`: prefix by how many
leading thoughts it ablates, single by the thought it ablates).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from thoughtscope.results.conditions import PREFIX, SINGLE, ConditionSpec, schedule
from thoughtscope.results.records import ProblemRecord

__all__ = [
    "Member",
    "ScheduleFamily",
    "members_of",
    "prefix_families",
    "schedule_families",
    "single_families",
]


@dataclass(frozen=True)
class Member:
    """One condition as a member of one of its schedules.

    Attributes:
        condition: What the condition changes.
        schedule: The schedule it stands for here (one of ``condition.schedules``).
    """

    condition: ConditionSpec
    schedule: str

    @property
    def name(self) -> str:
        """The condition's name."""
        return self.condition.name

    @property
    def key(self) -> tuple[str, str]:
        """``(name, schedule)``: unique within a run."""
        return (self.condition.name, self.schedule)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready description: the condition's fields and this member's ``schedule``."""
        described: dict[str, object] = {"name": self.name, "schedule": self.schedule}
        return {**described, **self.condition.to_dict()}


@dataclass(frozen=True)
class ScheduleFamily:
    """Members of one schedule at one site with one ablation kind.

    Attributes:
        schedule: ``prefix``, ``single``, …
        site, layers, ablation, num_latent: Shared by every member.
        members: ``index → condition name`` in increasing index order.
    """

    schedule: str
    site: str
    layers: tuple[int, ...]
    ablation: str
    num_latent: int | None
    members: dict[int, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Short readable label, e.g. ``prefix zero @ block:8``."""
        return f"{self.schedule} {self.ablation} @ {self.site}"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready description (members as a list of names in index order)."""
        return {
            "schedule": self.schedule,
            "site": self.site,
            "layers": list(self.layers),
            "ablation": self.ablation,
            "num_latent": self.num_latent,
            "members": [self.members[i] for i in sorted(self.members)],
        }


def members_of(records: Iterable[ProblemRecord]) -> list[Member]:
    """Every distinct (condition, schedule) member, in order of first appearance."""
    seen: dict[tuple[str, str], Member] = {}
    for record in records:
        for c in record.conditions:
            for name in c.condition.schedules or ("",):
                seen.setdefault((c.name, name), Member(c.condition, name))
    return list(seen.values())


def schedule_families(members: Iterable[Member], schedule_name: str) -> list[ScheduleFamily]:
    """Families of ``schedule_name``: its regular members grouped by site and ablation."""
    order = schedule(schedule_name)
    groups: dict[tuple[str, tuple[int, ...], str, int | None], dict[int, str]] = {}
    for member in members:
        c = member.condition
        index = order.index(c) if member.schedule == schedule_name else None
        if index is None:
            continue
        key = (c.site, tuple(c.layers), c.ablation, c.num_latent)
        groups.setdefault(key, {}).setdefault(index, c.name)
    return [
        ScheduleFamily(schedule_name, site, layers, ablation, n, dict(sorted(found.items())))
        for (site, layers, ablation, n), found in groups.items()
    ]


def prefix_families(members: Iterable[Member]) -> list[ScheduleFamily]:
    """Prefix families: members of ``prefix`` that ablate thoughts ``0…i-1``."""
    return schedule_families(members, PREFIX)


def single_families(members: Iterable[Member]) -> list[ScheduleFamily]:
    """Single families: members of ``single`` that ablate one thought."""
    return schedule_families(members, SINGLE)
