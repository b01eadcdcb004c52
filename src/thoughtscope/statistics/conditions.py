"""The conditions a run holds, and the schedule families the statistics compare.

A *family* is the set of conditions one schedule produced at one site with one ablation
kind, e.g. every ``prefix`` condition of ``zero`` at ``block:8``. Prefix families are
indexed by how many leading thoughts they ablate (``{0}`` → 1, ``{0,1}`` → 2, ...);
single families by the one thought they ablate. Positions are 0-based continuous
thoughts (thought 0 is the first vector fed back), as in :mod:`thoughtscope.engine.sites`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from thoughtscope.results.records import ProblemRecord

__all__ = ["ConditionInfo", "Family", "condition_infos", "prefix_families", "single_families"]


@dataclass(frozen=True)
class ConditionInfo:
    """What one condition changes (everything but its outcomes)."""

    name: str
    schedule: str
    site: str
    layers: tuple[int, ...]
    positions: tuple[int, ...]
    ablation: str
    num_latent: int | None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready description."""
        return {
            "name": self.name,
            "schedule": self.schedule,
            "site": self.site,
            "layers": list(self.layers),
            "positions": list(self.positions),
            "ablation": self.ablation,
            "num_latent": self.num_latent,
        }


@dataclass(frozen=True)
class Family:
    """Conditions of one schedule at one site with one ablation kind.

    Attributes:
        schedule: ``prefix`` or ``single``.
        site, layers, ablation, num_latent: Shared by every member.
        members: ``index → condition name``; the index is the number of leading thoughts
            ablated (prefix) or the thought ablated (single), in increasing order.
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


def condition_infos(records: Iterable[ProblemRecord]) -> list[ConditionInfo]:
    """Every distinct (condition, schedule) pair, in order of first appearance.

    One condition may be produced by several schedules (``zero@L8:{0}`` is both the first
    ``prefix`` step and the first ``single`` one); the sweep runs it once and records it
    under each schedule, so a condition is identified by its name *and* its schedule.
    """
    seen: dict[tuple[str, str], ConditionInfo] = {}
    for record in records:
        for c in record.conditions:
            if (c.name, c.schedule) not in seen:
                seen[(c.name, c.schedule)] = ConditionInfo(
                    name=c.name,
                    schedule=c.schedule,
                    site=c.site,
                    layers=tuple(c.layers),
                    positions=tuple(c.positions),
                    ablation=c.ablation,
                    num_latent=c.num_latent,
                )
    return list(seen.values())


def _families(
    infos: Iterable[ConditionInfo], schedule: str, index_of: dict[str, int]
) -> list[Family]:
    groups: dict[tuple[str, tuple[int, ...], str, int | None], dict[int, str]] = {}
    for info in infos:
        if info.schedule != schedule or info.name not in index_of:
            continue
        key = (info.site, info.layers, info.ablation, info.num_latent)
        members = groups.setdefault(key, {})
        members.setdefault(index_of[info.name], info.name)
    return [
        Family(schedule, site, layers, ablation, num_latent, dict(sorted(members.items())))
        for (site, layers, ablation, num_latent), members in groups.items()
    ]


def prefix_families(infos: Iterable[ConditionInfo]) -> list[Family]:
    """Prefix families: conditions of schedule ``prefix`` that ablate thoughts ``0…i-1``."""
    infos = list(infos)
    index_of = {
        info.name: len(info.positions)
        for info in infos
        if info.schedule == "prefix"
        and info.positions
        and list(info.positions) == list(range(len(info.positions)))
    }
    return _families(infos, "prefix", index_of)


def single_families(infos: Iterable[ConditionInfo]) -> list[Family]:
    """Single families: conditions of schedule ``single`` that ablate one thought."""
    infos = list(infos)
    index_of = {
        info.name: info.positions[0]
        for info in infos
        if info.schedule == "single" and len(info.positions) == 1 and info.positions[0] >= 0
    }
    return _families(infos, "single", index_of)
