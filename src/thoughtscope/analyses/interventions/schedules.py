"""Schedules: which sets of thought positions a sweep ablates.

Positions are 0-based continuous thoughts (:mod:`thoughtscope.engine.sites`): position 0 is the
first vector fed back, not the ``<bot>`` step. With ``N`` thoughts:

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
``{0,2,4}`` exactly those positions (``positions:0,2`` too; ``bot`` allowed at block sites,
           ``{}`` is the empty intervention, a control that must equal the baseline)
early-exit ``exit@k``: ``<eot>`` after ``k`` thoughts,      at which step is the answer
           ``k = 0 … N``; no ablation, no site             already there?
========== ============================================== ==============================

Each schedule is one function in :data:`SCHEDULES`; adding one is adding an entry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from thoughtscope.engine.sites import BOT, Position

__all__ = [
    "EARLY_EXIT",
    "EXPLICIT",
    "SCHEDULES",
    "ScheduleSpec",
    "parse_schedules",
    "register_schedule",
]

EARLY_EXIT = "early-exit"
"""The schedule that stops latent reasoning early instead of ablating."""
EXPLICIT = "positions"
"""The schedule name recorded for an explicit position set such as ``{0,2,4}``."""

PositionSets = list[tuple[Position, ...]]

SCHEDULES: dict[str, Callable[[int], PositionSets]] = {}
"""Schedule name → function of the number of thoughts giving the position sets."""


def register_schedule(
    name: str,
) -> Callable[[Callable[[int], PositionSets]], Callable[[int], PositionSets]]:
    """Registers a schedule: a function ``num_latent -> [position set, ...]``."""

    def decorate(function: Callable[[int], PositionSets]) -> Callable[[int], PositionSets]:
        SCHEDULES[name] = function
        return function

    return decorate


@register_schedule("prefix")
def _prefix(n: int) -> PositionSets:
    return [tuple(range(i)) for i in range(1, n + 1)]


@register_schedule("suffix")
def _suffix(n: int) -> PositionSets:
    return [tuple(range(i, n)) for i in range(n)]


@register_schedule("single")
def _single(n: int) -> PositionSets:
    return [(i,) for i in range(n)]


@register_schedule("keep-one")
def _keep_one(n: int) -> PositionSets:
    return [tuple(j for j in range(n) if j != i) for i in range(n)]


@register_schedule("all")
def _all(n: int) -> PositionSets:
    return [tuple(range(n))]


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
    def is_early_exit(self) -> bool:
        """Whether this schedule stops reasoning early instead of ablating."""
        return self.name == EARLY_EXIT


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


def parse_schedules(text: str, num_latent: int, option: str = "--schedule") -> list[ScheduleSpec]:
    """Reads a comma-separated list of schedules, e.g. ``prefix,single,{0,2,4}``.

    Explicit sets are ``{0,2,4}`` or ``positions:0,2`` (the integers after
    ``positions:`` belong to it until the next name); ``{}`` is the empty set.

    Raises:
        ValueError: naming ``option``, the bad item, and the accepted forms.
    """
    n = num_latent
    accepted = (
        f"use {', '.join([*SCHEDULES, EARLY_EXIT])}, or a position set like {{0,2,4}} or "
        "positions:0,2, comma-separated"
    )
    tokens = [t for t in _split_outside_braces(text)]
    if not text.strip() or any(not t for t in tokens):
        raise ValueError(f"{option}: empty item in {text!r}; {accepted}")
    specs: list[ScheduleSpec] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token in SCHEDULES:
            specs.append(ScheduleSpec(token, token, tuple(SCHEDULES[token](n))))
        elif token == EARLY_EXIT:
            specs.append(ScheduleSpec(EARLY_EXIT, token, tuple((k,) for k in range(n + 1))))
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
            text_form = "{" + ",".join(_label(p) for p in positions) + "}"
            specs.append(ScheduleSpec(EXPLICIT, text_form, (positions,)))
        else:
            raise ValueError(f"{option}: unknown schedule {token!r}; {accepted}")
    return specs


def _label(position: Position) -> str:
    return "bot" if position == BOT else str(position)


def format_positions(positions: tuple[Position, ...] | list[Position]) -> str:
    """``{0,1,2}`` (``bot`` first when present; ``{}`` for none)."""
    return "{" + ",".join(_label(p) for p in sorted(positions)) + "}"
