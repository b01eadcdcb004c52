"""The recipe of the toy CODI model shipped inside the package (``--model toy``).

A small Llama over bytes, trained from scratch on compact synthetic chains on a CPU.
``thoughtscope train-toy --out DIR --seed S`` runs exactly this; every schedule counts
optimizer steps, so the same seed on the same machine gives the same weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig

from thoughtscope.model.codi import CodiModel, new_codi_model
from thoughtscope.model.tokenizer import byte_level_tokenizer
from thoughtscope.training.config import Phase, TrainConfig
from thoughtscope.training.trainer import train

TOY_SEED = 0
"""Seed of the shipped toy model."""


@dataclass(frozen=True)
class ToyArchitecture:
    """Sizes of the toy Llama and its CODI settings."""

    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 336
    max_positions: int = 256
    num_latent: int = 6
    projection_width: int = 256
    remove_eos: bool = False
    answer_format: str = "{answer}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


TOY_ARCHITECTURE = ToyArchitecture()

TOY_TRAINING = TrainConfig(
    steps=3200,
    batch_size=32,
    lr=1e-3,
    betas=(0.9, 0.95),
    weight_decay=0.01,
    clip=1.0,
    warmup=0.03,
    seed=TOY_SEED,
    student_weight=1.0,
    distill_weight=1.0,
    teacher_weight=1.0,
    question_weight=1.0,
    bare_steps=True,
    data="synthetic",
    data_style="compact",
    data_seed=0,
    data_size=40_000,
    min_steps=1,
    max_steps=6,
    phases=(Phase(until=0.25, student=False), Phase(until=1.0, student=True)),
    checkpoint_every=500,
    log_every=10,
    threads=1,
)


def new_toy_model(
    architecture: ToyArchitecture = TOY_ARCHITECTURE, *, seed: int = TOY_SEED
) -> CodiModel:
    """A freshly initialised toy CODI model (byte tokenizer, eager-attention Llama)."""
    torch.manual_seed(seed)
    lm_config = LlamaConfig(
        hidden_size=architecture.hidden_size,
        intermediate_size=architecture.intermediate_size,
        num_hidden_layers=architecture.layers,
        num_attention_heads=architecture.heads,
        num_key_value_heads=architecture.heads,
        max_position_embeddings=architecture.max_positions,
        tie_word_embeddings=True,
    )
    return new_codi_model(
        lm_config,
        byte_level_tokenizer(),
        num_latent=architecture.num_latent,
        remove_eos=architecture.remove_eos,
        projection_width=architecture.projection_width,
        answer_format=architecture.answer_format,
        name="toy",
    )


def train_toy(
    out: str | Path,
    *,
    seed: int = TOY_SEED,
    config: TrainConfig = TOY_TRAINING,
    architecture: ToyArchitecture = TOY_ARCHITECTURE,
    resume: bool = True,
    progress: bool = True,
) -> CodiModel:
    """Trains the toy model from scratch into ``out`` (final model in ``out/model``)."""
    from dataclasses import replace

    config = replace(config, seed=seed)
    model = new_toy_model(architecture, seed=seed)
    return train(
        model,
        config,
        out,
        resume=resume,
        recipe={"toy_architecture": architecture.to_dict()},
        progress=progress,
    )
