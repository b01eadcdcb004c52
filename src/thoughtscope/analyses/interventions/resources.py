"""Resources some ablation kinds need besides the activation itself (means, donors, …).

An ablation kind names the resources it needs (``register_ablation(..., needs=("means",))``);
each resource is one :class:`Resource` subclass registered in :data:`RESOURCES`, and
prepares itself: once per run (:meth:`Resource.prepare`), and for each batch of problems
(:meth:`Resource.for_batch`), possibly asking the sweep's baseline pass to also run some
problems with their activations recorded (:meth:`Resource.baseline_problems`). The sweep
only calls these verbs, so adding an ablation kind that needs something new is one new
resource class plus its kind, and nothing in the sweep.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from thoughtscope.analyses.interventions.activations import (
    DonorActivations,
    MeanActivations,
    load_or_compute_means,
)
from thoughtscope.engine.runner import Generation
from thoughtscope.model.thought_model import ThoughtModel
from thoughtscope.problems.problem import Problem
from thoughtscope.problems.seeded import SeededStream

__all__ = [
    "RESOURCES",
    "AblationResources",
    "DonorsResource",
    "MeansResource",
    "Resource",
    "ResourceContext",
    "donor_indices",
    "register_resource",
]

T = TypeVar("T")


@dataclass(frozen=True)
class AblationResources:
    """What ablations may use beyond the activation itself, for one runner call.

    Attributes:
        problem_ids: Problem id of each of the runner's questions (by index).
        seed: The run's seed (noise).
        values: Resource name → its value for this call (``means``, ``donors``, …).
    """

    problem_ids: Sequence[str]
    seed: int = 0
    values: Mapping[str, object] = field(default_factory=dict)

    def get(self, name: str, kind: type[T]) -> T:
        """The resource ``name`` (of type ``kind``).

        Raises:
            ValueError: The resource was not prepared for this call.
        """
        value = self.values.get(name)
        if not isinstance(value, kind):
            raise ValueError(f"this ablation needs the {name!r} resource; prepare it first")
        return value


@dataclass(frozen=True)
class ResourceContext:
    """What a resource may use to prepare itself: the run, not one batch.

    Attributes:
        model: The model of the run.
        run_dir: The run folder (for caches such as ``means.safetensors``).
        problems: The run's selected problems, in order.
        seed: The run's seed.
        batch_size: Rows per forward pass.
        mean_reference: Problems averaged over for means (capped at the selection).
    """

    model: ThoughtModel
    run_dir: Path
    problems: Sequence[Problem]
    seed: int = 0
    batch_size: int = 32
    mean_reference: int = 100


class Resource:
    """A resource some ablation kinds need. Subclasses set :attr:`name` and override the
    verbs they use; the defaults do nothing."""

    name: ClassVar[str] = ""
    records_hidden: ClassVar[bool] = False
    """Whether the baseline pass must record activations for :meth:`for_batch`."""

    def __init__(self, context: ResourceContext) -> None:
        self.context = context

    @classmethod
    def manifest(cls, problems: Sequence[Problem], mean_reference: int) -> dict[str, Any]:
        """Manifest entries describing how this resource is made (keys → values).

        Raises:
            ValueError: The resource cannot be made for these problems (one line for the
                user, naming ``--ablation``).
        """
        return {}

    def prepare(self) -> None:
        """Once per run, before the first batch (e.g. compute or load means)."""

    def baseline_problems(self, batch: Sequence[Problem]) -> list[Problem]:
        """Problems the baseline pass must run too (their activations recorded)."""
        return []

    def for_batch(self, problems: Sequence[Problem], baselines: Mapping[str, Generation]) -> object:
        """The value ablations see for a runner call over ``problems``.

        Args:
            problems: The call's problems, in row order.
            baselines: Problem id → baseline generation (with ``hidden`` when
                :attr:`records_hidden`).
        """
        raise NotImplementedError


RESOURCES: dict[str, type[Resource]] = {}
"""Resource name → class."""


def register_resource(cls: type[Resource]) -> type[Resource]:
    """Registers a :class:`Resource` subclass under its ``name``."""
    RESOURCES[cls.name] = cls
    return cls


@register_resource
class MeansResource(Resource):
    """Mean baseline activations over a seeded reference set, cached in the run folder."""

    name = "means"

    @classmethod
    def manifest(cls, problems: Sequence[Problem], mean_reference: int) -> dict[str, Any]:
        return {
            "mean_reference": {
                "n": min(mean_reference, len(problems)),
                "rule": "the first n selected problems after a shuffle seeded by the run's "
                "seed; activations from their baseline runs; cached in means.safetensors",
            }
        }

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        self.means: MeanActivations | None = None

    def prepare(self) -> None:
        c = self.context
        n = min(c.mean_reference, len(c.problems))
        reference = SeededStream(f"thoughtscope.mean-reference|{c.seed}").shuffled(
            list(c.problems)
        )[:n]
        self.means = load_or_compute_means(
            c.run_dir,
            c.model,
            [p.question for p in reference],
            [p.id for p in reference],
            batch_size=c.batch_size,
        )

    def for_batch(self, problems: Sequence[Problem], baselines: Mapping[str, Generation]) -> object:
        return self.means


def donor_indices(answers: Sequence[float]) -> list[int]:
    """The patching donor of each problem: the next problem (cyclically, in selection
    order) whose expected answer differs from its own.

    Raises:
        ValueError: Every problem has the same answer (no donor exists).
    """
    n = len(answers)
    donors: list[int] = []
    for i, answer in enumerate(answers):
        for step in range(1, n):
            j = (i + step) % n
            if answers[j] != answer:
                donors.append(j)
                break
        else:
            raise ValueError(
                "--ablation patch: every selected problem has the same expected answer, so "
                "no problem has a donor; select more problems"
            )
    return donors


@register_resource
class DonorsResource(Resource):
    """Each problem's donor activations, from the donor's baseline run in the same batch."""

    name = "donors"
    records_hidden = True

    @classmethod
    def manifest(cls, problems: Sequence[Problem], mean_reference: int) -> dict[str, Any]:
        donor_indices([p.answer for p in problems])
        return {
            "patch_pairing": "each problem's donor is the next selected problem (cyclically, "
            "in source order) whose expected answer differs; activations from the donor's "
            "baseline run"
        }

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        problems = list(context.problems)
        donors = donor_indices([p.answer for p in problems])
        self.donor_of = {p.id: problems[d] for p, d in zip(problems, donors, strict=True)}

    def baseline_problems(self, batch: Sequence[Problem]) -> list[Problem]:
        return [self.donor_of[p.id] for p in batch]

    def for_batch(self, problems: Sequence[Problem], baselines: Mapping[str, Generation]) -> object:
        hidden = [baselines[self.donor_of[p.id].id].hidden for p in problems]
        return DonorActivations(torch.stack([h for h in hidden if h is not None]))
