"""Reading ``--schedule``: which schedules, and which position sets, a sweep ablates.

The schedules themselves (position sets, order, labels, axis titles) are
:class:`~thoughtscope.results.conditions.Schedule` objects in
:data:`~thoughtscope.results.conditions.SCHEDULES`, the vocabulary shared with the
statistics and the report; this module resolves what the user wrote for a model with ``N``
thoughts. Positions are 0-based continuous thoughts (:mod:`thoughtscope.engine.sites`):
position 0 is the first vector fed back, not the ``<bot>`` step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from thoughtscope.engine.sites import BOT, Position
from thoughtscope.results.conditions import (
    EARLY_EXIT,
    EXPLICIT,
    SCHEDULES,
    Schedule,
    format_positions,
    register_schedule,
    schedule,
)

__all__ = [
    "EARLY_EXIT",
    "EXPLICIT",
    "SCHEDULES",
    "ScheduleSpec",
    "format_positions",
    "parse_schedules",
    "register_schedule",
]


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule of a run, resolved for a model with ``N`` thoughts.

    Attributes:
        name: ``prefix``, ``single``, …, ``positions`` (explicit) or ``early-exit``.
        text: As the user wrote it (``{0,2}`` for an explicit set).
        position_sets: The sets to ablate (for ``early-exit``: ``(k,)`` per exit step).
    """

    name: str
    text: str
    position_sets: tuple[tuple[Position, ...], ...]

    @property
    def schedule(self) -> Schedule:
        """The schedule this is an instance of."""
        return schedule(self.name)

    @property
    def is_early_exit(self) -> bool:
        """Whether this schedule stops reasoning early instead of ablating."""
        return not self.schedule.ablates


def _split_outside_braces(text: str) -> list[str]:
    """Splits at commas that are not inside ``{…}``."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return parts


def _position(item: str, n: int, option: str) -> Position:
    if item == "bot":
        return BOT
    if item.isdigit() and int(item) < n:
        return int(item)
    raise ValueError(
        f"{option}: position {item!r} is out of range; this model has thoughts 0…{n - 1} "
        "(0 is the first continuous thought; bot is the <bot> step)"
    )


_POSITION_ITEM = re.compile(r"^(bot|\d+)$")


def parse_schedules(
    text: str, num_latent: int, option: str = "--schedule", *, group: int = 1
) -> list[ScheduleSpec]:
    """Reads a comma-separated list of schedules, e.g. ``prefix,single,{0,2,4}``;
    ``group`` is the model's thoughts per stage (``per-stage``).

    Explicit sets are ``{0,2,4}`` or ``positions:0,2`` (the integers after
    ``positions:`` belong to it until the next name); ``{}`` is the empty set.

    Raises:
        ValueError: naming ``option``, the bad item, and the accepted forms.
    """
    n = num_latent
    names = ", ".join(s for s in SCHEDULES if s != EXPLICIT)
    accepted = f"use {names}, or a position set like {{0,2,4}} or positions:0,2, comma-separated"
    tokens = [t for t in _split_outside_braces(text)]
    if not text.strip() or any(not t for t in tokens):
        raise ValueError(f"{option}: empty item in {text!r}; {accepted}")
    specs: list[ScheduleSpec] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token in SCHEDULES and token != EXPLICIT:
            sets = tuple(SCHEDULES[token].position_sets(n, group))
            specs.append(ScheduleSpec(token, token, sets))
        elif token.startswith("{"):
            if not token.endswith("}"):
                raise ValueError(f"{option}: unclosed position set {token!r}; {accepted}")
            inner = token[1:-1].strip()
            items = [i.strip() for i in inner.split(",")] if inner else []
            positions = tuple(sorted({_position(i, n, option) for i in items}))
            specs.append(ScheduleSpec(EXPLICIT, token, (positions,)))
        elif token.startswith("positions:"):
            items = [token.removeprefix("positions:").strip()]
            while index < len(tokens) and _POSITION_ITEM.match(tokens[index]):
                items.append(tokens[index])
                index += 1
            positions = tuple(sorted({_position(i, n, option) for i in items if i}))
            specs.append(ScheduleSpec(EXPLICIT, format_positions(positions), (positions,)))
        else:
            raise ValueError(f"{option}: unknown schedule {token!r}; {accepted}")
    return specs
