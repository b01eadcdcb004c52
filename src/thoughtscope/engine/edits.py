"""Conditions: named sets of per-row edits at (site, position), and an early exit.

The engine knows nothing about ablation kinds: an :class:`Edit` is any function that
receives the activations of the rows it applies to and returns their replacement (see
:mod:`thoughtscope.analyses.interventions` for the kinds). Sites and positions are
defined in :mod:`thoughtscope.engine.sites`.

Besides its own rows, an edit may read, through :meth:`EditContext.reference`, the
*unedited* activation of any problem of the same forward pass at the same site and step:
the problem's row under the run's first condition without edits (its *reference row*).
Patching a source's state into a target this way needs no recording pass, and copies
exactly the value that the reference row computes in the same batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch
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
        reference_problems: ``(n,)`` the problems that have a reference row in this
            forward pass (``None``: the run has no condition without edits).
        reference_rows: ``(n,)`` the batch row of each of them.
        activations: ``(batch rows, d)`` every row's activation at this site and step
            before this step's edits (set by the engine just before the edit runs).
        reference_active: ``(n,)`` bool, for a family with a stopping rule: whether
            each reference row still thinks at this step (``None``: all do). A row that
            stopped sits the step out, so its activation there is no thought's.
    """

    site: Site
    position: Position
    problems: Tensor
    condition: str
    reference_problems: Tensor | None = None
    reference_rows: Tensor | None = None
    activations: Tensor | None = None
    reference_active: Tensor | None = None

    def reference_reached(self, problems: Tensor) -> Tensor:
        """``(k,)`` bool: whether each problem's reference row reached this step (always
        true for a family without a stopping rule)."""
        if self.reference_active is None:
            return torch.ones(len(problems), dtype=torch.bool, device=problems.device)
        return self.reference_active[self._reference_index(problems)].to(problems.device)

    def reference(self, problems: Tensor) -> Tensor:
        """``(k, d)`` the unedited activation, at this site and step, of each problem of
        ``problems`` ``(k,)`` (the runner's problem numbers) on its reference row: its
        row under the first condition without edits, in this same forward pass.

        Raises:
            MissingReferenceError: A problem has no reference row in this batch.
        """
        if self.activations is None:
            raise MissingReferenceError(
                f"{self.condition} at {self.site}, position {self.position}: no "
                "activations to read (only the engine, while applying edits, sets them)"
            )
        index = self._reference_index(problems)
        assert self.reference_rows is not None
        rows = self.reference_rows[index]
        return self.activations[rows.to(self.activations.device)]

    def _reference_index(self, problems: Tensor) -> Tensor:
        """Each problem's index among :attr:`reference_problems`."""
        if self.reference_problems is None:
            raise MissingReferenceError(
                f"{self.condition} at {self.site}, position {self.position}: reading a "
                "reference row needs a condition without edits in the same run (add "
                "Condition('empty') to the conditions)"
            )
        wanted = problems.to(self.reference_problems.device)
        match = wanted[:, None] == self.reference_problems[None, :]
        found = match.any(dim=1)
        if not bool(found.all()):
            missing = sorted(set(wanted[~found].tolist()))
            raise MissingReferenceError(
                f"{self.condition} at {self.site}, position {self.position}: problem(s) "
                f"{missing[:5]} have no reference row in this batch; run every source "
                "problem in the same runner batch as the rows that read it (one batch: "
                "batch_size >= problems x conditions)"
            )
        return match.to(torch.uint8).argmax(dim=1)


class MissingReferenceError(ValueError):
    """An edit asked for a reference row that this forward pass does not hold."""


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
