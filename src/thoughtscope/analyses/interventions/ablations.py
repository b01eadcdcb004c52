"""Ablation kinds: what an activation is replaced with.

Each kind is one entry in :data:`ABLATIONS`, registered with :func:`register_ablation`:
a function that, given a site, a position and the run's :class:`AblationResources`,
returns the runner's :class:`~thoughtscope.engine.runner.Edit` (``(rows, d) -> (rows, d)``).

* ``zero``: the zero vector. Simple, but off-distribution: a zero residual stream is
  something the model never sees, so zeroing can overstate importance.
* ``mean`` / ``mean-pooled``: the mean activation at that site and position (pooled:
  over all thought positions) over a reference set of problems. Removes what is specific
  to the problem while staying near the activations the model is used to.
* ``noise``: a seeded Gaussian direction rescaled to the activation's own norm, i.e. the
  activation's information is destroyed but its scale kept. The draw depends only on
  (seed, problem id, site, position), so it does not change with batch composition or
  condition (conditions that share a position share its noise: paired comparisons).
* ``patch``: the same site and position from the baseline run of a *donor* problem
  (activation patching). Pairing is deterministic: see :func:`donor_indices`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from thoughtscope.analyses.interventions.activations import DonorActivations, MeanActivations
from thoughtscope.analyses.interventions.resources import RESOURCES, AblationResources
from thoughtscope.engine.runner import Edit, EditContext
from thoughtscope.engine.sites import Position, Site, position_name

__all__ = [
    "ABLATIONS",
    "AblationKind",
    "AblationResources",
    "parse_ablations",
    "register_ablation",
]


EditFactory = Callable[[Site, Position, AblationResources], Edit]


@dataclass(frozen=True)
class AblationKind:
    """One ablation kind.

    Attributes:
        name: As written on the command line and in condition names.
        description: One line for docs and the manifest.
        build: ``(site, position, resources) -> edit``.
        needs: Names of the :data:`~thoughtscope.analyses.interventions.resources.RESOURCES`
            it uses (``means``, ``donors``); the sweep prepares them, whatever they are.
    """

    name: str
    description: str
    build: EditFactory
    needs: tuple[str, ...] = ()


ABLATIONS: dict[str, AblationKind] = {}
"""Ablation name → kind."""


def register_ablation(
    name: str, description: str, *, needs: tuple[str, ...] = ()
) -> Callable[[EditFactory], EditFactory]:
    """Registers an edit factory ``(site, position, resources) -> edit`` under ``name``,
    using the resources named in ``needs``."""

    def decorate(build: EditFactory) -> EditFactory:
        unknown = [n for n in needs if n not in RESOURCES]
        if unknown:
            raise ValueError(f"ablation {name!r} needs unregistered resources {unknown}")
        ABLATIONS[name] = AblationKind(name, description, build, tuple(needs))
        return build

    return decorate


@register_ablation("zero", "the zero vector")
def _zero(site: Site, position: Position, resources: AblationResources) -> Edit:
    def edit(hidden: Tensor, context: EditContext) -> Tensor:
        return torch.zeros_like(hidden)

    return edit


@register_ablation(
    "mean",
    "the mean activation at that site and position over the reference problems",
    needs=("means",),
)
def _mean(site: Site, position: Position, resources: AblationResources) -> Edit:
    vector = resources.get("means", MeanActivations).at(site, position)

    def edit(hidden: Tensor, context: EditContext) -> Tensor:
        return vector.to(hidden).expand_as(hidden).clone()

    return edit


@register_ablation(
    "mean-pooled",
    "the mean activation at that site over the reference problems and all thought positions",
    needs=("means",),
)
def _mean_pooled(site: Site, position: Position, resources: AblationResources) -> Edit:
    vector = resources.get("means", MeanActivations).pooled(site)

    def edit(hidden: Tensor, context: EditContext) -> Tensor:
        return vector.to(hidden).expand_as(hidden).clone()

    return edit


def noise_direction(seed: int, problem_id: str, site: Site, position: Position, d: int) -> Tensor:
    """``(d,)`` float32 standard Gaussian draw fixed by (seed, problem, site, position)."""
    key = f"thoughtscope.noise|{seed}|{problem_id}|{site}|{position_name(position)}"
    generator = torch.Generator().manual_seed(
        int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") >> 1
    )
    return torch.randn(d, generator=generator, dtype=torch.float32)


@register_ablation(
    "noise", "a seeded Gaussian direction rescaled to the activation's norm (replaces it)"
)
def _noise(site: Site, position: Position, resources: AblationResources) -> Edit:
    def edit(hidden: Tensor, context: EditContext) -> Tensor:
        d = hidden.shape[-1]
        ids = [resources.problem_ids[int(p)] for p in context.problems.tolist()]
        directions = torch.stack(
            [noise_direction(resources.seed, pid, site, position, d) for pid in ids]
        ).to(hidden.device)
        directions = directions / directions.norm(dim=-1, keepdim=True)
        norms = hidden.float().norm(dim=-1, keepdim=True)
        return (directions * norms).to(hidden.dtype)

    return edit


@register_ablation(
    "patch",
    "the same site and position from the baseline run of a donor problem (the next problem "
    "of the selection, cyclically, whose expected answer differs)",
    needs=("donors",),
)
def _patch(site: Site, position: Position, resources: AblationResources) -> Edit:
    donors = resources.get("donors", DonorActivations)

    def edit(hidden: Tensor, context: EditContext) -> Tensor:
        return donors.at(site, position, context.problems).to(hidden)

    return edit


def parse_ablations(text: str, option: str = "--ablation") -> list[str]:
    """Reads a comma-separated list of ablation kinds (``zero,mean``).

    Raises:
        ValueError: naming the option, the unknown kind and the known ones.
    """
    names = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not name for name in names):
        raise ValueError(f"{option}: empty item in {text!r}; use {', '.join(ABLATIONS)}")
    for name in names:
        if name not in ABLATIONS:
            raise ValueError(
                f"{option}: unknown ablation {name!r}; use {', '.join(ABLATIONS)}, comma-separated"
            )
    return list(dict.fromkeys(names))
