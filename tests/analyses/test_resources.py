"""Ablation kinds declare the resources they need; the sweep prepares whatever they are.

A new kind needing a new resource is registered here, outside the sweep: restoring each
problem's own baseline activation (a resource the sweep has never heard of) must leave
every answer as the baseline's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import torch
from torch import Tensor

from thoughtscope.analyses.importance import ImportanceConfig, run_importance
from thoughtscope.analyses.interventions import (
    ABLATIONS,
    RESOURCES,
    AblationResources,
    DonorActivations,
    Resource,
    register_ablation,
    register_resource,
)
from thoughtscope.engine.runner import Edit, EditContext, Generation
from thoughtscope.engine.sites import Position, Site
from thoughtscope.model import CodiModel
from thoughtscope.problems.problem import Problem
from thoughtscope.results.store import read_manifest, read_records


class OwnBaseline(Resource):
    """Each problem's own baseline activations (recorded in the sweep's baseline pass)."""

    name = "own-baseline"
    records_hidden = True
    prepared = 0
    batches = 0

    def prepare(self) -> None:
        type(self).prepared += 1

    def for_batch(self, problems: Sequence[Problem], baselines: Mapping[str, Generation]) -> object:
        type(self).batches += 1
        hidden = [baselines[p.id].hidden for p in problems]
        return DonorActivations(torch.stack([h for h in hidden if h is not None]))


def _restore(site: Site, position: Position, resources: AblationResources) -> Edit:
    own = resources.get("own-baseline", DonorActivations)

    def edit(hidden: Tensor, context: EditContext) -> Tensor:
        return own.at(site, position, context.problems).to(hidden)

    return edit


@pytest.fixture
def restore_kind() -> Iterator[str]:
    register_resource(OwnBaseline)
    register_ablation("restore", "the problem's own baseline activation", needs=("own-baseline",))(
        _restore
    )
    try:
        yield "restore"
    finally:
        ABLATIONS.pop("restore", None)
        RESOURCES.pop("own-baseline", None)


def test_a_new_kind_with_a_new_resource_runs_without_touching_the_sweep(
    restore_kind: str, tiny_model: CodiModel, tmp_path: Path
) -> None:
    config = ImportanceConfig(
        data="synthetic:test:seed=1:n=5",
        sites="latent+block:1",
        schedules="prefix",
        ablations=f"zero,{restore_kind}",
        max_new_tokens=4,
        batch_size=32,
    )
    run_importance(tiny_model, config, tmp_path, progress=False)
    assert OwnBaseline.prepared == 1 and OwnBaseline.batches >= 1
    records = read_records(tmp_path)
    restored = [c for r in records for c in r.conditions if c.condition.ablation == "restore"]
    assert len(restored) == 5 * 2 * 6
    for record in records:
        for c in record.conditions:
            if c.condition.ablation == "restore":
                assert c.output == record.baseline.output and not c.changed
                assert c.kl == pytest.approx(0.0, abs=1e-5)
    assert any(c.changed for r in records for c in r.conditions)  # zero does change answers
    assert read_manifest(tmp_path)["ablation_kinds"]["restore"].startswith("the problem's own")


def test_an_ablation_needing_an_unknown_resource_is_refused_at_registration() -> None:
    with pytest.raises(ValueError, match="unregistered resources"):
        register_ablation("broken", "needs what nobody provides", needs=("nothing",))(_restore)
    assert "broken" not in ABLATIONS
