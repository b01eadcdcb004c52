"""Importance compares rows within a batch (every condition's KL against the empty row):
with the engine's ballast row, a condition that changes nothing gives KL exactly 0 on
every problem, the batch's last included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from torch import Tensor

from thoughtscope.analyses.importance import ImportanceConfig, plan_run, run_importance
from thoughtscope.analyses.interventions.ablations import ABLATIONS, register_ablation
from thoughtscope.analyses.interventions.conditions import bind
from thoughtscope.analyses.interventions.resources import AblationResources
from thoughtscope.engine.edits import Edit, EditContext
from thoughtscope.engine.runner import Condition, Runner, RunOptions
from thoughtscope.engine.sites import Position, Site
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
