"""Conditions of a sweep: every (ablation, site, position set) and early exit, named by
exactly what they change.

Names:

* ``zero@L8:{0,1,2}``: zero the output of block 8 at thoughts 0, 1 and 2;
* ``mean@latent:{3}``: replace thought 3 itself (the fed-back vector) by its mean;
* ``noise@L0:{bot,0}``: block 0's output at the ``<bot>`` step and at thought 0;
* ``exit@3``: feed ``<eot>`` after three thoughts (positions 0, 1, 2), then decode.

Edits apply while the latents are generated, so later thoughts see the change. A
:class:`ConditionSpec` is static (it goes into the manifest); :meth:`ConditionSpec.bind`
turns it into a runner :class:`~thoughtscope.engine.runner.Condition` for one runner call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from thoughtscope.analyses.interventions.ablations import ABLATIONS, AblationResources
from thoughtscope.analyses.interventions.schedules import ScheduleSpec, format_positions
from thoughtscope.engine.runner import Condition
from thoughtscope.engine.sites import Position, Site

__all__ = ["EARLY_EXIT_ABLATION", "ConditionSpec", "condition_name", "plan_conditions"]

EARLY_EXIT_ABLATION = "early-exit"
"""The ``ablation`` recorded for early-exit conditions."""


def condition_name(ablation: str, site: Site, positions: Sequence[Position]) -> str:
    """``zero@L8:{0,1,2}``, ``mean@latent:{0}``: what is replaced, where, at which thoughts."""
    return f"{ablation}@{site.short}:{format_positions(list(positions))}"


@dataclass(frozen=True)
class ConditionSpec:
    """One condition of a run, before it is bound to a batch.

    Attributes:
        name: Unique within the run (see the module docstring).
        schedules: Every schedule that asked for this condition, in order (``prefix``
            and ``single`` both ask for ``{0}``; it is run once).
        ablation: An :data:`~thoughtscope.analyses.interventions.ablations.ABLATIONS` name, or
            ``early-exit``.
        site: Where it edits (``None`` for early exit).
        positions: Thoughts edited, sorted (``-1`` is ``bot``; empty for early exit).
        num_latent: Thoughts fed before ``<eot>`` (``None``: all).
    """

    name: str
    schedules: tuple[str, ...]
    ablation: str
    site: Site | None
    positions: tuple[Position, ...]
    num_latent: int | None = None

    @property
    def layers(self) -> list[int]:
        """Blocks edited (empty for the latent site and early exit)."""
        return [] if self.site is None or self.site.layer is None else [self.site.layer]

    @property
    def site_name(self) -> str:
        """``latent``, ``block:L`` or ``""`` (early exit)."""
        return "" if self.site is None else str(self.site)

    def bind(self, resources: AblationResources) -> Condition:
        """The runner condition for one runner call."""
        if self.site is None:
            return Condition(self.name, num_latent=self.num_latent)
        kind = ABLATIONS[self.ablation]
        edits = {(self.site, p): kind.build(self.site, p, resources) for p in self.positions}
        return Condition(self.name, edits=edits, num_latent=self.num_latent)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (for the manifest)."""
        return {
            "name": self.name,
            "schedules": list(self.schedules),
            "ablation": self.ablation,
            "site": self.site_name,
            "layers": self.layers,
            "positions": list(self.positions),
            "num_latent": self.num_latent,
        }


def plan_conditions(
    sites: Sequence[Site],
    schedules: Sequence[ScheduleSpec],
    ablations: Sequence[str],
) -> list[ConditionSpec]:
    """Every condition of a run: ablation × site × position set of each ablating
    schedule, then early exit (once, whatever the sites and ablations).

    A condition several schedules ask for is listed once, with all of them.
    """
    by_name: dict[str, ConditionSpec] = {}

    def add(spec: ConditionSpec, schedule: str) -> None:
        known = by_name.get(spec.name)
        if known is None:
            by_name[spec.name] = spec
        elif schedule not in known.schedules:
            by_name[spec.name] = ConditionSpec(
                known.name,
                (*known.schedules, schedule),
                known.ablation,
                known.site,
                known.positions,
                known.num_latent,
            )

    for ablation in ablations:
        for site in sites:
            for schedule in schedules:
                if schedule.is_early_exit:
                    continue
                for positions in schedule.position_sets:
                    name = condition_name(ablation, site, positions)
                    add(
                        ConditionSpec(name, (schedule.name,), ablation, site, positions),
                        schedule.name,
                    )
    for schedule in schedules:
        if schedule.is_early_exit:
            for (k,) in schedule.position_sets:
                add(
                    ConditionSpec(f"exit@{k}", (schedule.name,), EARLY_EXIT_ABLATION, None, (), k),
                    schedule.name,
                )
    return list(by_name.values())
