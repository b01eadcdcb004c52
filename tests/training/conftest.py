"""Tiny real CODI models and problems for the training tests."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, LlamaConfig

from thoughtscope.model import CodiModel, byte_level_tokenizer, new_codi_model
from thoughtscope.problems import Problem
from thoughtscope.problems.synthetic import generate
from thoughtscope.training.config import Phase, TrainConfig


def tiny_model(family: str = "llama", *, remove_eos: bool = False, seed: int = 0) -> CodiModel:
    """A 2-block random CODI model over bytes, answers written as bare numbers."""
    torch.manual_seed(seed)
    tokenizer = byte_level_tokenizer()
    config: GPT2Config | LlamaConfig
    if family == "gpt2":
        config = GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=256)
    else:
        config = LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=256,
        )
    return new_codi_model(
        config,
        tokenizer,
        num_latent=3,
        remove_eos=remove_eos,
        projection_width=48,
        answer_format="{answer}",
        name=f"tiny-{family}",
    )


def tiny_config(**changes: object) -> TrainConfig:
    """A few-step run with a teacher-only phase then CODI."""
    base = TrainConfig(
        steps=6,
        batch_size=8,
        lr=3e-3,
        warmup=0.2,
        question_weight=1.0,
        bare_steps=True,
        data_size=64,
        phases=(Phase(until=0.5, student=False), Phase(until=1.0, student=True)),
        checkpoint_every=2,
        log_every=1,
    )
    from dataclasses import replace

    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, above all on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def problems() -> list[Problem]:
    """64 compact training problems of 1 to 3 steps."""
    return generate("train", 0, 64, style="compact", max_steps=3)
