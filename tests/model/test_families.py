"""The thought-family seam: a registry, and special ids read from the model, not assumed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_codi
from thoughtscope.engine.runner import BASELINE, Condition, EditContext, Runner, RunOptions
from thoughtscope.engine.sites import block
from thoughtscope.model import CodiModel
from thoughtscope.model.families import CodiFamily, family_entry, family_names
from thoughtscope.model.families.codi import normalise_question
from thoughtscope.model.thought_model import ThoughtModel, load_saved


def test_codi_is_registered_and_unknown_families_are_named() -> None:
    assert "codi" in family_names()
    assert family_entry("codi").name == "codi"
    with pytest.raises(ValueError, match=r"'quiet-star' is unknown.*codi"):
        family_entry("quiet-star")


def test_a_codi_model_is_a_thought_model_whose_family_defines_the_protocol() -> None:
    model = tiny_codi("llama", remove_eos=False)
    assert isinstance(model, ThoughtModel) and isinstance(model.family, CodiFamily)
    c = model.config
    assert model.family.start_ids() == [c.bot_id]
    assert model.family.closing_ids() == [c.eot_id, c.eos_id]
    assert model.family.banned_ids() == [c.eot_id]
    assert model.num_thoughts == c.num_latent == 6
    assert model.question_ids("1+1?") == [*model.tokenizer("1+1?")["input_ids"], c.eos_id]


def test_the_published_normalisation_is_one_pass_of_replace() -> None:
    assert normalise_question("  a  b   c ") == "a b  c"
    assert normalise_question("a b") == "a b"


def _permuted(model: CodiModel, order: list[int]) -> CodiModel:
    """A copy of ``model`` whose CODI embedding rows V…V+2 are stored in ``order``, with
    special ids that say where each one now lives."""
    v = model.config.base_vocab_size
    lm = type(model.lm)(model.lm.config)
    lm.load_state_dict(model.lm.state_dict())
    rows = torch.arange(model.vocab_size)
    rows[v : v + 3] = torch.tensor([v + i for i in order])
    with torch.no_grad():
        lm.get_input_embeddings().weight.copy_(model.lm.get_input_embeddings().weight[rows])
        head = lm.get_output_embeddings()
        if head.weight.data_ptr() != lm.get_input_embeddings().weight.data_ptr():
            head.weight.copy_(model.lm.get_output_embeddings().weight[rows])
    where = {old: v + new for new, old in enumerate(order)}  # old offset -> new id
    special = (where[0], where[1], where[2])
    config = replace(model.config, special_ids=special)
    return CodiModel(lm, model.projection, model.tokenizer, config, name="permuted").eval()


def test_special_ids_come_from_the_config_not_from_the_vocabulary_size(
    family: str, questions: list[str]
) -> None:
    model = tiny_codi(family, remove_eos=False)
    moved = _permuted(model, order=[2, 0, 1])  # bot now lives at V, eot at V+1, pad at V+2
    assert moved.config.special_ids != model.config.special_ids

    def zero(hidden: torch.Tensor, context: EditContext) -> torch.Tensor:
        return torch.zeros_like(hidden)

    conditions = [BASELINE, Condition("zero", {(block(0), 1): zero})]
    options = RunOptions(max_new_tokens=8, batch_size=5)
    want = Runner(model).run(questions, conditions, options)
    got = Runner(moved).run(questions, conditions, options)
    for a_row, b_row in zip(want, got, strict=True):
        for a, b in zip(a_row, b_row, strict=True):
            assert a.text == b.text
            torch.testing.assert_close(a.thoughts, b.thoughts)


def test_saved_folders_name_their_family_and_old_ones_are_codi(tmp_path: Path) -> None:
    model = tiny_codi("gpt2")
    folder = model.save_pretrained(tmp_path / "m")
    meta = json.loads((folder / "thoughtscope.json").read_text())
    assert meta["family"] == "codi" and meta["codi"]["normalise_question"] is True
    del meta["family"]  # the first format had no family key
    (folder / "thoughtscope.json").write_text(json.dumps(meta))
    loaded = load_saved(folder)
    assert isinstance(loaded, CodiModel) and loaded.config == model.config
