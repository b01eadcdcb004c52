"""The published Coconut curriculum: the sequences of each stage, a loss computed by the
engine's own latent loop that equals the published full recompute, the optimiser reset,
and a resumed run that ends exactly where an uninterrupted one does."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import tiny_coconut
from thoughtscope.problems.synthetic import generate
from thoughtscope.training.coconut import (
    TOY_COCONUT_TRAINING,
    CoconutTrainConfig,
    coconut_loss,
    encode_example,
    learning_rate,
    published_preset,
    stage_layout,
    train_coconut,
)


def test_stages_replace_steps_by_c_thought_thoughts_each_then_drop_all() -> None:
    config = CoconutTrainConfig(stage_steps=(1, 1, 1, 1, 1), c_thought=2, max_latent_stage=3)
    assert [stage_layout(config, s) for s in range(5)] == [
        (0, None),  # chain of thought, no markers
        (1, 2),
        (2, 4),
        (3, 6),
        (10_000, 6),  # after the last latent stage: every step dropped, k = 6
    ]
    assert config.num_latent == 6


def test_the_published_preset_resets_adamw_every_epoch_as_the_code_does() -> None:
    preset = published_preset(1280)
    assert (preset.lr, preset.weight_decay, preset.batch_size, preset.clip) == (1e-4, 0.01, 128, 0)
    assert preset.reset == "epoch" and preset.epoch_steps == 10
    assert preset.stage_steps == (60, 30, 30, 30, 130)
    assert learning_rate(preset, 0) == learning_rate(preset, 299) == 1e-4  # constant


def published_sequence_loss(model, example, skip: int, thoughts: int | None) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The published forward, transcribed: the whole sequence, each latent filled by a
    full recompute of the prefix (state at the position before it), loss on the tokens
    after <|end-latent|> (after the question at stage 0)."""
    c = model.config
    rest = [t for s in example.steps[skip:] for t in s] + example.answer
    markers = [] if thoughts is None else [c.start_id, *[c.latent_id] * thoughts, c.end_id]
    ids = example.question + markers + rest
    embeds = model.embed(torch.tensor(ids))[None]
    for p in [i for i, t in enumerate(ids) if t == c.latent_id]:
        hidden = model.lm(inputs_embeds=embeds[:, :p], output_hidden_states=True).hidden_states[-1]
        embeds = torch.cat([embeds[:, :p], hidden[:, p - 1 : p], embeds[:, p + 1 :]], dim=1)
    logits = model.lm(inputs_embeds=embeds).logits[0]
    first = len(ids) - len(rest)
    return F.cross_entropy(logits[first - 1 : -1], torch.tensor(rest), reduction="sum")


@pytest.mark.parametrize("stage", [0, 1, 4])
def test_the_engine_loop_loss_equals_the_published_full_recompute(family: str, stage: int) -> None:
    model = tiny_coconut(family, num_latent=6, c_thought=2)
    config = replace(TOY_COCONUT_TRAINING, c_thought=2, max_latent_stage=3)
    problems = generate("train", 0, 3, style="compact", min_steps=1, max_steps=6)
    examples = [encode_example(model, p) for p in problems]
    skip, thoughts = stage_layout(config, stage)
    got = coconut_loss(model, examples, skip, thoughts)
    sums = [published_sequence_loss(model, e, skip, thoughts) for e in examples]
    count = sum(len([t for s in e.steps[skip:] for t in s] + e.answer) for e in examples)
    torch.testing.assert_close(got, sum(sums) / count, rtol=1e-5, atol=1e-5)


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    problems = generate("train", 0, 40, style="compact", min_steps=1, max_steps=4)
    config = CoconutTrainConfig(
        stage_steps=(2, 1, 1, 1, 2),
        batch_size=4,
        reset="epoch",
        epoch_steps=2,
        checkpoint_every=3,
        threads=1,
    )

    def run(folder: Path, stop_at: int | None = None) -> dict[str, torch.Tensor]:
        model = tiny_coconut("llama", num_latent=6, c_thought=2)
        trained = train_coconut(
            model, config, folder, problems=problems, stop_at=stop_at, progress=False
        )
        return trained.state_dict()

    straight = run(tmp_path / "a")
    run(tmp_path / "b", stop_at=3)
    resumed = run(tmp_path / "b")
    assert straight.keys() == resumed.keys()
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0)
    assert (tmp_path / "b" / "model" / "thoughtscope.json").is_file()
