"""The CODI model object: its own folder format, dtypes, and model families."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import GPTNeoXConfig

from tests.conftest import tiny_codi
from thoughtscope.engine.runner import Runner, RunOptions
from thoughtscope.model import CodiModel, byte_level_tokenizer, load_model, new_codi_model
from thoughtscope.model.architectures import architecture_for


def test_save_and_load_round_trip(tmp_path: Path, family: str, questions: list[str]) -> None:
    model = tiny_codi(family, remove_eos=False)
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config == model.config
    options = RunOptions(max_new_tokens=8)
    a = Runner(model).run(questions[:4], options=options)
    b = Runner(loaded).run(questions[:4], options=options)
    assert [r[0].answer_ids for r in a] == [r[0].answer_ids for r in b]
    assert all(torch.equal(x[0].thoughts, y[0].thoughts) for x, y in zip(a, b, strict=True))


def test_special_ids_follow_the_base_vocabulary() -> None:
    model = tiny_codi("llama")
    v = len(model.tokenizer)
    assert (model.config.pad_id, model.config.bot_id, model.config.eot_id) == (v, v + 1, v + 2)
    assert model.lm.get_input_embeddings().weight.shape[0] == v + 3
    assert model.question_ids("ab")[0] == model.tokenizer.bos_token_id


def test_answer_ids_follow_the_answer_format() -> None:
    model = tiny_codi("gpt2")
    ids = model.answer_ids(18)
    assert model.decode(ids) == "The answer is: 18"
    assert ids[-1] == model.config.eos_id


def test_loading_in_bfloat16(tmp_path: Path) -> None:
    tiny_codi("gpt2").save_pretrained(tmp_path / "m")
    model = CodiModel.from_pretrained(tmp_path / "m", dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="--dtype"):
        CodiModel.from_pretrained(tmp_path / "m", dtype="float8")


def test_cuda_is_refused_clearly_without_a_gpu(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    tiny_codi("gpt2").save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="CUDA is not available"):
        CodiModel.from_pretrained(tmp_path / "m", device="cuda")


def test_not_a_model_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_model(tmp_path / "missing")


def test_an_unregistered_family_is_found_by_structure() -> None:
    config = GPTNeoXConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    model = new_codi_model(config, byte_level_tokenizer(), num_latent=2).eval()
    assert model.num_layers == 2
    results = Runner(model).run(
        ["1+2?", "a much longer question"], options=RunOptions(max_new_tokens=3)
    )
    assert len(results) == 2


def test_a_model_without_findable_blocks_gets_a_clear_error() -> None:
    class Opaque(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = type("C", (), {"model_type": "opaque"})()
            self.stack = nn.Sequential(nn.Linear(2, 2))

    with pytest.raises(ValueError, match="cannot find the decoder blocks"):
        architecture_for(Opaque())
