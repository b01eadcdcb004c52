"""Conditions: named sets of per-row edits at (site, position), and an early exit.

The engine knows nothing about ablation kinds: an :class:`Edit` is any function that
receives the activations of the rows it applies to and returns their replacement (see
:mod:`thoughtscope.analyses.interventions` for the kinds). Sites and positions are
defined in :mod:`thoughtscope.engine.sites`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from torch import Tensor

from thoughtscope.engine.sites import Position, Site


@dataclass(frozen=True)
class EditContext:
    """What an :class:`Edit` may need to know about the rows it edits.

    Attributes:
        site: Where the activation was read.
        position: ``BOT`` or the thought index.
        problems: ``(rows,)`` index of each edited row's problem in the runner's input.
        condition: Name of the condition being applied (when several conditions share
            the rows up to here, because their edits agree, the first of them).
    """

    site: Site
    position: Position
    problems: Tensor
    condition: str


class Edit(Protocol):
    """Replaces activations: ``hidden (rows, d) -> (rows, d)``, same dtype and device."""

    def __call__(self, hidden: Tensor, context: EditContext) -> Tensor: ...


@dataclass(frozen=True)
class Condition:
    """One way to run the thoughts: a name, edits and, optionally, an early exit.

    Attributes:
        name: Unique within a run; says exactly what changes (e.g. ``zero@L8:{0,1,2}``).
        edits: ``(site, position) -> edit``. Empty for the baseline.
        num_latent: Close the thoughts after this many (``None``: the model's N).
    """

    name: str
    edits: Mapping[tuple[Site, Position], Edit] = field(default_factory=dict)
    num_latent: int | None = None


BASELINE = Condition("baseline")
