"""Interventions on continuous thoughts: ablation kinds, their resources, schedules and
the planning of a sweep's conditions.

Built on the runner's sites and per-row edits; the runner knows nothing about ablation
kinds. The vocabulary these share with the statistics and the report (schedules,
:class:`~thoughtscope.results.conditions.ConditionSpec`) is torch-free and lives in
:mod:`thoughtscope.results.conditions`. Positions are 0-based continuous thoughts:
position 0 is the first vector fed back, not the ``<bot>`` step (see
:mod:`thoughtscope.engine.sites`).
"""

from __future__ import annotations

from thoughtscope.analyses.interventions.ablations import (
    ABLATIONS,
    AblationKind,
    noise_direction,
    parse_ablations,
    register_ablation,
)
from thoughtscope.analyses.interventions.activations import (
    MEANS_FILE,
    DonorActivations,
    MeanActivations,
    compute_means,
    load_or_compute_means,
)
from thoughtscope.analyses.interventions.conditions import bind, plan_conditions, site_of
from thoughtscope.analyses.interventions.resources import (
    RESOURCES,
    AblationResources,
    Resource,
    ResourceContext,
    donor_indices,
    register_resource,
)
from thoughtscope.analyses.interventions.schedules import (
    EARLY_EXIT,
    SCHEDULES,
    ScheduleSpec,
    format_positions,
    parse_schedules,
    register_schedule,
)
from thoughtscope.results.conditions import ConditionSpec, condition_name

__all__ = [
    "ABLATIONS",
    "EARLY_EXIT",
    "MEANS_FILE",
    "RESOURCES",
    "SCHEDULES",
    "AblationKind",
    "AblationResources",
    "ConditionSpec",
    "DonorActivations",
    "MeanActivations",
    "Resource",
    "ResourceContext",
    "ScheduleSpec",
    "bind",
    "compute_means",
    "condition_name",
    "donor_indices",
    "format_positions",
    "load_or_compute_means",
    "noise_direction",
    "parse_ablations",
    "parse_schedules",
    "plan_conditions",
    "register_ablation",
    "register_resource",
    "register_schedule",
    "site_of",
]
