"""Importance, effects and steering compare rows within a batch (each condition's row with
its problem's empty row of the same call): with the engine's ballast row, an edit that
changes nothing gives exactly no difference on every problem, the batch's last included
(the shipped toy model, whose MLP width of 336 makes the last row round differently)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor

from thoughtscope.analyses.effects import EffectsConfig, run_effects
from thoughtscope.analyses.importance import ImportanceConfig, plan_run, run_importance
from thoughtscope.analyses.interventions.ablations import ABLATIONS, register_ablation
from thoughtscope.analyses.interventions.conditions import bind
from thoughtscope.analyses.interventions.resources import AblationResources
from thoughtscope.analyses.steering import SteerConfig, read_steer_rows, run_steering
from thoughtscope.engine.edits import Edit, EditContext
from thoughtscope.engine.runner import Condition, Runner, RunOptions
from thoughtscope.engine.sites import Position, Site
from thoughtscope.files import save_tensors
from thoughtscope.model import load_model
from thoughtscope.results.store import read_records


def _keep(site: Site, position: Position, resources: AblationResources) -> Edit:
    def edit(hidden: Tensor, context: EditContext) -> Tensor:
        return hidden

    return edit


@pytest.fixture
def keep_kind() -> Iterator[str]:
    register_ablation("keep", "the activation itself (changes nothing)")(_keep)
    try:
        yield "keep"
    finally:
        ABLATIONS.pop("keep", None)


def test_a_condition_that_changes_nothing_has_kl_exactly_zero_on_every_problem(
    keep_kind: str, tmp_path: Path
) -> None:
    model = load_model("toy")  # its MLP width (336) shows the last-row effect
    config = ImportanceConfig(
        data="synthetic:test:seed=13:n=5",
        sites="latent+block:2",
        schedules="single",
        ablations=keep_kind,
        max_new_tokens=8,
        batch_size=5 * 13,  # one batch: 5 problems x (12 conditions + the empty one)
    )
    # This batch shows the effect: run as importance runs it, without the ballast, the
    # last problem's KL to its own empty row is not 0 under some conditions.
    plan = plan_run(model, config)
    problems = plan.problems
    resources = AblationResources([p.id for p in problems], 0, {})
    conditions = [Condition("empty")] + [bind(c, resources) for c in plan.conditions]
    options = RunOptions(max_new_tokens=8, batch_size=config.batch_size, kl_reference="empty")
    gold = {"gold": [model.answer_ids(p.answer) for p in problems]}
    plain = Runner(model).run([p.question for p in problems], conditions, options, targets=gold)
    assert any(float(g.target_kl["gold"].abs().max()) > 0.0 for row in plain for g in row)

    run_importance(model, config, tmp_path, progress=False)
    records = read_records(tmp_path / "results.jsonl")
    assert len(records) == 5
    last = max(problems, key=lambda p: len(p.question)).id
    assert last in {r.id for r in records}
    for record in records:
        assert len(record.conditions) == 12
        for c in record.conditions:
            assert c.kl == 0.0
            assert c.output == record.baseline.output and not c.changed
            assert c.gold_logprob == record.baseline.gold_logprob


def test_effects_of_an_edit_that_changes_nothing_are_exactly_none(
    keep_kind: str, tmp_path: Path
) -> None:
    # Without the ballast, the last problem of this batch (toy model) showed a relative L2
    # and a lens KL above 0 at block 2.
    model = load_model("toy")
    config = EffectsConfig(
        data="synthetic:test:seed=13:n=5",
        sites="latent+block:2",
        ablations=keep_kind,
        batch_size=5,
        max_new_tokens=8,
    )
    run_effects(model, config, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 5 * 2 * 6
    for row in rows:
        assert row["output"] == row["baseline_output"] and row["gold_logprob_change"] == 0.0
        assert all(x in (None, 0.0) for x in row["rel_l2"] + row["kl"])
        # A vector's cosine distance to itself rounds to 0 or a few 1e-8.
        assert all(x is None or abs(x) < 1e-6 for x in row["cosine"])


def test_steering_along_a_zero_direction_changes_nothing_exactly(tmp_path: Path) -> None:
    # Without the ballast, two rows of this run (toy model, batches of 3) changed the gold
    # log-probability by 1e-7 to 9e-7.
    model = load_model("toy")
    path = tmp_path / "zero.safetensors"
    save_tensors({"direction": torch.zeros(model.d_model)}, str(path))
    config = SteerConfig(
        data="synthetic:test:seed=13:n=9",
        target_value=4,
        direction=str(path),
        sites="latent+block:2",
        modes="add,project",
        alphas="1,3",
        max_new_tokens=8,
        batch_size=3,
    )
    run_steering(model, config, tmp_path / "run")
    rows = read_steer_rows(tmp_path / "run")
    assert len(rows) == 9 * 2 * 2 * 2
    assert all(r.gold_logprob_change == 0.0 and r.output == r.baseline_output for r in rows)
