"""The vocabulary of conditions: schedules and what one condition changes.

One type per concept, shared by every layer that meets a condition: the sweep plans
:class:`ConditionSpec` s (and writes them to the manifest, their single source), the
records carry one with each outcome, the statistics group them into schedule families,
and the report orders and labels them through their :class:`Schedule`.

This module lives in ``results`` because it is the language results are written in; it
imports neither torch nor the engine, so statistics and report can use it. Positions are
0-based continuous thoughts (thought 0 is the first vector fed back), ``-1`` is the
``<bot>`` step; the same numbering as :mod:`thoughtscope.engine.sites`.

Schedules:

========== ============================================== ==============================
schedule   position sets                                  why
========== ============================================== ==============================
prefix     ``{0}``, ``{0,1}``, …, ``{0..N-1}``            the original study's; it rises
                                                          by construction, so read its
                                                          *marginal steps*, not levels
suffix     ``{0..N-1}``, ``{1..N-1}``, …, ``{N-1}``        the mirror image of prefix
single     ``{0}``, ``{1}``, …, ``{N-1}``                  one thought at a time
keep-one   all but ``k``, for each ``k``                   is one thought enough?
all        ``{0..N-1}``                                    every thought at once
per-stage  ``{0..c-1}``, ``{0..2c-1}``, …: whole stages of    Coconut's curriculum puts
           ``c`` thoughts (``c_thought``; 1 without one)  ``c`` thoughts per step
positions  an explicit set such as ``{0,2,4}``             (``{}``: the empty control)
early-exit ``exit@k``: ``<eot>`` after ``k`` thoughts,      at which step is the answer
           ``k = 0 … N``; no ablation, no site             already there?
========== ============================================== ==============================

Condition names say exactly what changes, with the site written as in ``--sites``:
``zero@block:8:{0,1,2}``, ``mean@latent:{3}``, ``noise@block:0:{bot,0}``, ``exit@3``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from thoughtscope.positions import BOT, Position, position_name

__all__ = [
    "BOT",
    "EARLY_EXIT",
    "EXPLICIT",
    "PREFIX",
    "SCHEDULES",
    "SINGLE",
    "ConditionSpec",
    "Position",
    "Schedule",
    "condition_name",
    "format_positions",
    "positions_label",
    "register_schedule",
    "schedule",
    "site_sort_key",
]


PREFIX = "prefix"
"""The original study's cumulative schedule: ablate thoughts ``0…i-1``."""
SINGLE = "single"
"""One thought at a time."""
EARLY_EXIT = "early-exit"
"""The schedule (and the ``ablation``) of conditions that stop reasoning early."""
EXPLICIT = "positions"
"""The schedule of an explicit position set such as ``{0,2,4}``."""

PositionSet = tuple[Position, ...]


def format_positions(positions: Iterable[Position]) -> str:
    """``{0,1,2}`` (``bot`` first when present; ``{}`` for none): the one position-set
    formatter, used in condition names, the CLI and the report."""
    return "{" + ",".join(position_name(p) for p in sorted(positions)) + "}"


def positions_label(positions: Sequence[Position]) -> str:
    """``0–2,4`` for ``[0, 1, 2, 4]``; ``bot`` for ``-1``; ``none`` for ``[]`` (axis ticks)."""
    if not positions:
        return "none"
    values = sorted(positions)
    parts: list[str] = ["bot"] if values[0] == BOT else []
    values = [v for v in values if v >= 0]
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    parts += [str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs]
    return ",".join(parts)


def condition_name(ablation: str, site: str, positions: Iterable[Position]) -> str:
    """``zero@block:8:{0,1,2}``, ``mean@latent:{0}``: what is replaced, where, when."""
    return f"{ablation}@{site}:{format_positions(positions)}"


def site_sort_key(site: str) -> tuple[int, int, str]:
    """Sites in reading order: ``latent``, then ``block:L`` by layer, then the rest."""
    if site == "latent":
        return (0, 0, site)
    match = re.fullmatch(r"block:(\d+)", site)
    if match:
        return (1, int(match[1]), site)
    return (2, 0, site)


@dataclass(frozen=True)
class ConditionSpec:
    """What one condition changes: its identity in the manifest, records and statistics.

    Attributes:
        name: Unique within the run (see the module docstring).
        schedules: Every schedule that asked for this condition, in order (``prefix``
            and ``single`` both ask for ``{0}``; it is run and recorded once).
        ablation: An ablation kind (``zero``, ``mean``, …), or ``early-exit``.
        site: ``latent``, ``block:L``, ``""`` (early exit) or ``original`` (a condition
            read from an original-study file).
        positions: Thoughts edited, sorted (``-1`` is ``bot``; empty for early exit).
        num_latent: Thoughts fed before ``<eot>`` (``None``: all).
    """

    name: str
    schedules: tuple[str, ...]
    ablation: str
    site: str
    positions: tuple[Position, ...]
    num_latent: int | None = None

    @property
    def layers(self) -> list[int]:
        """Blocks edited (empty for the latent site and early exit)."""
        match = re.fullmatch(r"block:(\d+)", self.site)
        return [int(match[1])] if match else []

    @property
    def is_early_exit(self) -> bool:
        """Whether this condition stops reasoning early instead of ablating."""
        return self.ablation == EARLY_EXIT

    def with_schedule(self, name: str) -> ConditionSpec:
        """The same condition, also a member of schedule ``name``."""
        if name in self.schedules:
            return self
        return ConditionSpec(
            self.name,
            (*self.schedules, name),
            self.ablation,
            self.site,
            self.positions,
            self.num_latent,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (manifest entry; the identity part of a record)."""
        return {
            "name": self.name,
            "schedules": list(self.schedules),
            "ablation": self.ablation,
            "site": self.site,
            "layers": self.layers,
            "positions": list(self.positions),
            "num_latent": self.num_latent,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConditionSpec:
        """Inverse of :meth:`to_dict`; also reads records written before conditions were
        recorded once (a single ``schedule`` field per entry)."""
        schedules = data.get("schedules")
        if schedules is None:
            schedules = [data["schedule"]] if data.get("schedule") else []
        num_latent = data.get("num_latent")
        return cls(
            name=str(data["name"]),
            schedules=tuple(str(s) for s in schedules),
            ablation=str(data.get("ablation", "")),
            site=str(data.get("site", "")),
            positions=tuple(int(p) for p in data.get("positions") or ()),
            num_latent=None if num_latent is None else int(num_latent),
        )


@dataclass(frozen=True)
class Schedule:
    """One schedule: its position sets, the order of its members, and how to label them.

    Attributes:
        name: As written in ``--schedule`` and recorded in ``schedules``.
        description: One line for docs and help.
        axis_title: What a figure's x axis counts along this schedule.
        sets: ``num_latent -> position sets`` in schedule order (``None``: explicit sets
            and early exit, which the parser builds).
        index: A member's place along the schedule (prefix: how many leading thoughts it
            ablates; single: the thought; early exit: thoughts fed), or ``None`` when the
            condition does not have the schedule's regular shape.
        ablates: ``False`` for early exit (no site, no ablation kind).
        cumulative: Each member ablates the previous member's thoughts and one more, so
            index 0 is "nothing ablated" (the baseline) and consecutive members differ
            by one thought (marginal steps are defined).
        grouped: ``(num_latent, group) -> position sets`` for schedules over groups of
            thoughts (``per-stage``: a family's stages of ``c_thought``); when set it
            replaces ``sets``.
    """

    name: str
    description: str
    axis_title: str
    sets: Callable[[int], list[PositionSet]] | None
    index: Callable[[ConditionSpec], int | None]
    ablates: bool = True
    cumulative: bool = False
    grouped: Callable[[int, int], list[PositionSet]] | None = None

    def position_sets(self, num_latent: int, group: int = 1) -> list[PositionSet]:
        """The position sets for a model with ``num_latent`` thoughts (in groups of
        ``group``: a stage's thoughts, for ``per-stage``)."""
        if self.grouped is not None:
            return self.grouped(num_latent, max(1, group))
        if self.name == EARLY_EXIT:
            return [(k,) for k in range(num_latent + 1)]
        if self.sets is None:
            raise ValueError(f"schedule {self.name!r} has no generated position sets")
        return self.sets(num_latent)

    def sort_key(self, condition: ConditionSpec) -> tuple[int, ...]:
        """Where a member goes along the x axis (regular members by :attr:`index`)."""
        i = self.index(condition)
        return (0, i) if i is not None else (1, *condition.positions)

    def ordered(self, members: Iterable[ConditionSpec]) -> list[ConditionSpec]:
        """Members in schedule order."""
        return sorted(members, key=self.sort_key)

    def tick(self, condition: ConditionSpec, members: Sequence[ConditionSpec]) -> str:
        """Short x-axis label of one member (``0–2`` for ``{0,1,2}``, ``all but 3``, ``4``)."""
        if self.name == EARLY_EXIT or condition.is_early_exit:
            return str(condition.num_latent)
        if self.name == "keep-one":
            every = set().union(*(set(m.positions) for m in members))
            missing = sorted(every - set(condition.positions))
            if len(missing) == 1:
                return f"all but {missing[0]}"
        return positions_label(condition.positions)


SCHEDULES: dict[str, Schedule] = {}
"""Schedule name → schedule; adding one is one :func:`register_schedule` call."""


def register_schedule(item: Schedule) -> Schedule:
    """Registers a schedule under its name."""
    SCHEDULES[item.name] = item
    return item


def schedule(name: str) -> Schedule:
    """The registered schedule ``name``; unknown names (from other tools' files) get a
    plain schedule ordered by positions."""
    known = SCHEDULES.get(name)
    if known is not None:
        return known
    return Schedule(name, "", "thoughts ablated", None, lambda c: None)


def _prefix_index(c: ConditionSpec) -> int | None:
    p = list(c.positions)
    return len(p) if p and p == list(range(len(p))) else None


def _suffix_index(c: ConditionSpec) -> int | None:
    p = list(c.positions)
    return p[0] if p and p[0] >= 0 and p == list(range(p[0], p[0] + len(p))) else None


def _single_index(c: ConditionSpec) -> int | None:
    return c.positions[0] if len(c.positions) == 1 and c.positions[0] >= 0 else None


def _keep_one_index(c: ConditionSpec) -> int | None:
    present = set(c.positions)
    missing = [k for k in range(max(c.positions, default=0) + 2) if k not in present]
    return missing[0] if missing else None


register_schedule(
    Schedule(
        PREFIX,
        "ablate the first i thoughts together, i = 1 … N (cumulative)",
        "thoughts ablated together (the first i)",
        lambda n: [tuple(range(i)) for i in range(1, n + 1)],
        _prefix_index,
        cumulative=True,
    )
)
register_schedule(
    Schedule(
        "suffix",
        "ablate thoughts i … N-1 together, i = 0 … N-1",
        "thoughts ablated together (the last ones)",
        lambda n: [tuple(range(i, n)) for i in range(n)],
        _suffix_index,
    )
)
register_schedule(
    Schedule(
        SINGLE,
        "ablate one thought at a time",
        "thought ablated (alone)",
        lambda n: [(i,) for i in range(n)],
        _single_index,
    )
)
register_schedule(
    Schedule(
        "keep-one",
        "ablate every thought but one, for each thought",
        "thoughts ablated (every thought but one)",
        lambda n: [tuple(j for j in range(n) if j != i) for i in range(n)],
        _keep_one_index,
    )
)
register_schedule(
    Schedule(
        "all",
        "ablate every thought at once",
        "thoughts ablated",
        lambda n: [tuple(range(n))],
        lambda c: 0,
    )
)
register_schedule(
    Schedule(EXPLICIT, "an explicit position set", "thoughts ablated", None, lambda c: None)
)
register_schedule(
    Schedule(
        EARLY_EXIT,
        "feed <eot> after k thoughts, k = 0 … N; no ablation",
        "thoughts fed before <eot> (early exit)",
        None,
        lambda c: c.num_latent,
        ablates=False,
    )
)


def _stage_prefixes(n: int, group: int) -> list[PositionSet]:
    """``{0..g-1}``, ``{0..2g-1}``, …, ``{0..N-1}``: the first i stages of ``group``."""
    ends = [*range(group, n, group), n] if n else []
    return [tuple(range(end)) for end in ends]


register_schedule(
    Schedule(
        "per-stage",
        "ablate the first i stages of c_thought thoughts together (Coconut's curriculum "
        "stages; single thoughts without one)",
        "thoughts ablated together (whole stages)",
        None,
        _prefix_index,
        grouped=_stage_prefixes,
    )
)
