"""Planning a sweep's conditions, and binding each to the runner for one call.

The conditions are every (ablation, site, position set) of the ablating schedules, then
early exit; each is a :class:`~thoughtscope.results.conditions.ConditionSpec` (the type the
manifest, the records, the statistics and the report share), named by exactly what it
changes (``zero@block:8:{0,1,2}``, ``mean@latent:{3}``, ``exit@3``). Edits apply while the
latents are generated, so later thoughts see the change. :func:`bind` turns a spec into a
runner :class:`~thoughtscope.engine.runner.Condition` for one runner call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor

from thoughtscope.analyses.interventions.ablations import ABLATIONS
from thoughtscope.analyses.interventions.resources import AblationResources
from thoughtscope.analyses.interventions.schedules import ScheduleSpec
from thoughtscope.engine.runner import Condition, Edit, EditContext
from thoughtscope.engine.sites import LATENT, Position, Site, block
from thoughtscope.results.conditions import EARLY_EXIT, ConditionSpec, condition_name

__all__ = ["bind", "plan_conditions", "site_of"]


def site_of(text: str) -> Site:
    """The engine site a condition's ``site`` text names (``latent``, ``block:L``)."""
    if text == str(LATENT):
        return LATENT
    return block(int(text.removeprefix("block:")))


@dataclass(frozen=True)
class KindEdit:
    """An ablation kind's edit at one site and position, equal to another exactly when it
    does the same: same kind, site and position, built from the same resources.

    The engine lets a problem's conditions share rows while their edits compare equal, so
    ``zero@block:2:{0}`` and ``zero@block:2:{0,1}`` run thought 0 once and fork at 1.
    """

    kind: str
    site: Site
    position: Position
    resources: int  # id() of the AblationResources the edit was built from
    apply: Edit = field(compare=False, repr=False)

    def __call__(self, hidden: Tensor, context: EditContext) -> Tensor:
        return self.apply(hidden, context)


def bind(spec: ConditionSpec, resources: AblationResources) -> Condition:
    """The runner condition for one runner call."""
    if spec.is_early_exit:
        return Condition(spec.name, num_latent=spec.num_latent)
    site = site_of(spec.site)
    kind = ABLATIONS[spec.ablation]
    edits: dict[tuple[Site, Position], Edit] = {
        (site, p): KindEdit(spec.ablation, site, p, id(resources), kind.build(site, p, resources))
        for p in spec.positions
    }
    return Condition(spec.name, edits=edits, num_latent=spec.num_latent)


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
        by_name[spec.name] = spec if known is None else known.with_schedule(schedule)

    for ablation in ablations:
        for site in sites:
            for schedule in schedules:
                if schedule.is_early_exit:
                    continue
                for positions in schedule.position_sets:
                    name = condition_name(ablation, str(site), positions)
                    spec = ConditionSpec(name, (schedule.name,), ablation, str(site), positions)
                    add(spec, schedule.name)
    for schedule in schedules:
        if schedule.is_early_exit:
            for (k,) in schedule.position_sets:
                add(
                    ConditionSpec(f"exit@{k}", (schedule.name,), EARLY_EXIT, "", (), k),
                    schedule.name,
                )
    return list(by_name.values())
