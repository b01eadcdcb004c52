"""Interventions on continuous thoughts: ablation kinds, schedules and named conditions.

Built on the runner's sites and per-row edits; the runner knows nothing about ablation
kinds. Positions are 0-based continuous thoughts: position 0 is the first vector fed
back, not the ``<bot>`` step (see :mod:`thoughtscope.engine.sites`).
"""

from __future__ import annotations

from thoughtscope.analyses.interventions.ablations import (
    ABLATIONS,
    AblationKind,
    AblationResources,
    donor_indices,
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
from thoughtscope.analyses.interventions.conditions import (
    ConditionSpec,
    condition_name,
    plan_conditions,
)
from thoughtscope.analyses.interventions.schedules import (
    EARLY_EXIT,
    SCHEDULES,
    ScheduleSpec,
    format_positions,
    parse_schedules,
    register_schedule,
)

__all__ = [
    "ABLATIONS",
    "EARLY_EXIT",
    "MEANS_FILE",
    "SCHEDULES",
    "AblationKind",
    "AblationResources",
    "ConditionSpec",
    "DonorActivations",
    "MeanActivations",
    "ScheduleSpec",
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
    "register_schedule",
]
