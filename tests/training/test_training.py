"""The CODI training loop: loss goes down, runs save, load and resume exactly."""

from __future__ import annotations

import itertools
import json

import torch

from tests.training.conftest import tiny_config, tiny_model
from thoughtscope.engine.runner import Runner
from thoughtscope.model import CodiModel
from thoughtscope.training.trainer import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LOG_FILE,
    MODEL_DIR,
    BatchOrder,
    learning_rate,
    train,
)


def _params(model: CodiModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_few_steps_lower_the_loss(tmp_path, problems):
    config = tiny_config(steps=16, checkpoint_every=0)
    losses: list[float] = []
    train(
        tiny_model(),
        config,
        tmp_path,
        problems=problems,
        progress=False,
        on_step=lambda step, logged: losses.append(logged["teacher"]),
    )
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.5


def test_run_folder_holds_config_log_checkpoint_and_model(tmp_path, problems):
    train(tiny_model(), tiny_config(), tmp_path, problems=problems, progress=False)
    saved = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert saved["train"]["steps"] == 6
    lines = [json.loads(x) for x in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert "student" not in lines[0] and "distill" in lines[-1]  # teacher-only, then CODI
    assert (tmp_path / CHECKPOINT_FILE).is_file()
    assert (tmp_path / MODEL_DIR / "thoughtscope.json").is_file()


def test_saved_model_round_trips(tmp_path, problems):
    model = train(tiny_model(), tiny_config(), tmp_path, problems=problems, progress=False)
    loaded = CodiModel.from_pretrained(tmp_path / MODEL_DIR)
    assert loaded.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    questions = [p.question for p in problems[:5]]
    first = Runner(model).run(questions)
    second = Runner(loaded).run(questions)
    assert [r[0].answer_ids for r in first] == [r[0].answer_ids for r in second]


def test_resume_from_checkpoint_continues_identically(tmp_path, problems):
    straight = train(
        tiny_model(), tiny_config(), tmp_path / "straight", problems=problems, progress=False
    )
    split = tmp_path / "split"
    train(tiny_model(), tiny_config(), split, problems=problems, progress=False, stop_at=4)
    assert not (split / MODEL_DIR).exists()
    resumed = train(tiny_model(seed=99), tiny_config(), split, problems=problems, progress=False)
    for name, tensor in _params(straight).items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    steps = [json.loads(x)["step"] for x in (split / LOG_FILE).read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_same_seed_same_weights(tmp_path, problems):
    a = train(tiny_model(), tiny_config(), tmp_path / "a", problems=problems, progress=False)
    b = train(tiny_model(), tiny_config(), tmp_path / "b", problems=problems, progress=False)
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name


def test_schedule_warms_up_then_decays_to_zero():
    config = tiny_config(steps=100, warmup=0.1)
    lrs = [learning_rate(config, s) for s in range(100)]
    assert lrs[0] < lrs[5] < lrs[9] == config.lr
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[-1] < 0.01 * config.lr


def test_curriculum_phase_draws_only_capped_problems(problems):
    from thoughtscope.training.config import Phase
    from thoughtscope.training.data import encode_problem

    model = tiny_model()
    config = tiny_config(
        steps=10, phases=(Phase(until=0.5, max_steps=1), Phase(until=1.0, max_steps=3))
    )
    order = BatchOrder([encode_problem(model, p, bare_steps=True) for p in problems], config)
    assert all(e.steps == 1 for s in range(5) for e in order.batch(s))
    assert {e.steps for s in range(5, 10) for e in order.batch(s)} == {1, 2, 3}
    assert [e.question for e in order.batch(7)] == [e.question for e in order.batch(7)]
