"""Fixtures for the intervention and sweep tests: one tiny random Llama CODI model (four
blocks, six thoughts), built in the test, never a mock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig

from thoughtscope.model import CodiModel, byte_level_tokenizer, new_codi_model

QUESTIONS = [
    "a=3;b=a*2;b=?",
    "1+1?",
    "a=9;b=a-3;c=b*2;d=c+1;d=?",
    "What is 7 times 8?",
    "x",
]


def build_tiny_model(seed: int = 0) -> CodiModel:
    """A random 4-block Llama CODI model with 6 thoughts and an <eos> around bot/eot."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    model = new_codi_model(
        config, byte_level_tokenizer(bos=True), num_latent=6, remove_eos=False, name="tiny"
    )
    return model.eval()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and the CPU is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model() -> CodiModel:
    """The shared tiny model (tests must not modify it)."""
    return build_tiny_model()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model: CodiModel) -> Path:
    """The tiny model saved as a thoughtscope model folder (for the CLI)."""
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_model.save_pretrained(folder)
    return folder


@pytest.fixture
def questions() -> list[str]:
    """A few questions of different lengths."""
    return list(QUESTIONS)
