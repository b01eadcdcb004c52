"""Coconut: published checkpoints load offline and safely; the engine answers exactly as
the published ``generate`` does, batched or not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import published_coconut_generate, tiny_coconut, write_coconut_checkpoint
from thoughtscope.engine.runner import BASELINE, Runner, RunOptions
from thoughtscope.model.coconut import CoconutCheckpointError, load_published_coconut
from thoughtscope.model.families import CoconutModel, family_names
from thoughtscope.model.families.coconut import TOKENS, token_ids
from thoughtscope.model.thought_model import load_saved

QUESTIONS = ["a=3;b=a*2;b=?", "1+1?", "Tom has 3 apples and buys 4 more. How many?", "x"]


def published_prompt(model: CoconutModel, question: str) -> list[int]:
    c = model.config
    return [
        *model.tokenizer.encode(question + "\n", add_special_tokens=True),
        c.start_id,
        *[c.latent_id] * c.num_latent,
        c.end_id,
    ]


def test_coconut_is_registered_with_ids_read_from_the_tokenizer() -> None:
    assert "coconut" in family_names()
    model = tiny_coconut("llama")
    tok = model.tokenizer
    v = len(tok) - 3
    # Published order start, end, latent, appended after the base vocabulary.
    assert token_ids(tok) == (v, v + 1, v + 2)
    assert [tok.convert_ids_to_tokens(i) for i in token_ids(tok)] == list(TOKENS)
    assert model.family.pad_id == model.family.eos_id == tok.eos_token_id
    assert model.family.banned_ids() == []
    assert model.question_ids("q") == tok.encode("q\n", add_special_tokens=True)
    assert model.question_ids("q")[0] == tok.bos_token_id  # Llama-style bos kept
    assert model.answer_ids(18.0) == [
        *tok.encode("### 18", add_special_tokens=False),
        tok.eos_token_id,
    ]


def test_a_published_checkpoint_loads_with_the_same_logits(tmp_path: Path, family: str) -> None:
    checkpoint, base = write_coconut_checkpoint(tmp_path, family)
    model = load_published_coconut(checkpoint, base, num_latent=4)
    state = torch.load(checkpoint, weights_only=True)
    ids = torch.tensor([[5, 6, 7, model.config.start_id]])
    ref = type(model.lm)(model.lm.config)
    ref.load_state_dict(
        {k[len("base_causallm.") :]: v for k, v in state.items() if k.startswith("base")},
        strict=False,
    )
    ref.tie_weights()
    torch.testing.assert_close(model.lm(ids).logits, ref.eval()(ids).logits)
    assert model.num_thoughts == 4 and model.vocab_size == len(model.tokenizer)


def test_a_pickled_object_is_refused_and_never_run(tmp_path: Path) -> None:
    _, base = write_coconut_checkpoint(tmp_path, "gpt2")
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (marker.touch, ())  # type: ignore[return-value]

    evil = tmp_path / "checkpoint_1"
    torch.save({"base_causallm.x": Payload()}, evil)
    with pytest.raises(CoconutCheckpointError, match=r"pickled Python objects.*never"):
        load_published_coconut(evil, base)
    assert not marker.exists()


def test_keys_and_shapes_that_do_not_fit_are_named(tmp_path: Path) -> None:
    checkpoint, base = write_coconut_checkpoint(tmp_path, "llama")
    state = torch.load(checkpoint, weights_only=True)

    def refused(edited: dict[str, torch.Tensor], pattern: str) -> None:
        path = tmp_path / "edited"
        torch.save(edited, path)
        with pytest.raises(CoconutCheckpointError, match=pattern):
            load_published_coconut(path, base)

    refused({**state, "base_causallm.extra.weight": torch.zeros(1)}, r"1 unexpected keys.*extra")
    norm = "base_causallm.model.norm.weight"
    refused({k: v for k, v in state.items() if k != norm}, r"1 missing keys.*model\.norm")
    refused({**state, norm: torch.zeros(7)}, r"shape mismatches.*model\.norm\.weight \(7,\)")
    alias = {**state, "embedding.weight": state["embedding.weight"] + 1}
    refused(alias, r"embedding\.weight differs")
    # A CoT (stage-0) checkpoint has raw HF keys: not a Coconut model.
    refused(
        {k[len("base_causallm.") :]: v for k, v in state.items() if "." in k[14:]}, "unexpected"
    )


def test_saved_and_loaded_back_in_thoughtscopes_format(tmp_path: Path) -> None:
    checkpoint, base = write_coconut_checkpoint(tmp_path, "gpt2")
    model = load_published_coconut(checkpoint, base, num_latent=3, c_thought=1)
    model.save_pretrained(tmp_path / "saved")
    again = load_saved(tmp_path / "saved")
    assert isinstance(again, CoconutModel) and again.config == model.config
    ids = torch.tensor([published_prompt(model, "1+1?")])
    torch.testing.assert_close(again.lm(ids).logits, model.lm(ids).logits)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_the_engine_answers_token_identically_to_the_published_generate(
    family: str, batch_size: int
) -> None:
    model = tiny_coconut(family, num_latent=4)
    c = model.config
    want = [
        published_coconut_generate(model.lm, published_prompt(model, q), c.latent_id, c.eos_id, 12)
        for q in QUESTIONS
    ]
    got = Runner(model).run(
        QUESTIONS, [BASELINE], RunOptions(batch_size=batch_size, max_new_tokens=12)
    )
    assert [g[0].answer_ids for g in got] == want


def test_a_first_token_eos_is_kept_and_decoding_goes_on(tmp_path: Path) -> None:
    model = tiny_coconut("llama", num_latent=2)
    c = model.config
    prompt = published_prompt(model, QUESTIONS[0])
    # Make eos the argmax at <|end-latent|> for this question only: its head row points
    # along the normed state there.
    with torch.no_grad():
        wte = model.lm.get_input_embeddings()
        wte.weight[c.eos_id] = torch.randn(model.d_model) * 4  # eos fed back leads elsewhere
        embeds = wte(torch.tensor(prompt))[None]
        for p in [i for i, t in enumerate(prompt) if t == c.latent_id]:
            hidden = model.lm(inputs_embeds=embeds[:, :p], output_hidden_states=True).hidden_states[
                -1
            ]
            embeds = torch.cat([embeds[:, :p], hidden[:, p - 1 : p], embeds[:, p + 1 :]], dim=1)
        state = model.lm(inputs_embeds=embeds, output_hidden_states=True).hidden_states[-1][0, -1]
        head = model.lm.get_output_embeddings().weight
        # Just enough to win at <|end-latent|> (a larger row would win the next step too).
        base = head[c.eos_id].clone()
        for scale in [x / 2 for x in range(1, 40)]:
            head[c.eos_id] = base + scale * state / state.norm()
            want = published_coconut_generate(model.lm, prompt, c.latent_id, c.eos_id, 8)
            if want[0] == c.eos_id:
                break
    assert want[0] == c.eos_id and len(want) > 1
    got = Runner(model).run(QUESTIONS[:2], [BASELINE], RunOptions(batch_size=2, max_new_tokens=8))
    assert got[0][0].answer_ids == want
