"""Official-layout checkpoints load, are refused when they do not fit, and reproduce the
published inference protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import write_official_checkpoint
from thoughtscope.engine.runner import Runner, RunOptions
from thoughtscope.model import OfficialOptions, load_model
from thoughtscope.model.official import CheckpointMismatchError, load_official


def _options(base: Path, **kwargs: object) -> OfficialOptions:
    return OfficialOptions(base_model=str(base), preset="codi-gpt2", **kwargs)  # type: ignore[arg-type]


def published_protocol(
    peft_lm,
    projection,
    tokenizer,
    question: str,
    *,
    num_latent: int,
    remove_eos: bool,
    max_new_tokens: int,
    normalise: bool = True,
) -> list[int]:
    """The published inference loop (zhenyi4/codi test.py), one question, no batching.

    Written out plainly against the PEFT-wrapped LM with unmerged LoRA, using HF's own
    ``hidden_states`` and cache handling: clean the question as the published evaluation
    does (``strip``, then ``replace('  ', ' ')``), encode question [+eos] + bot, feed the
    projected last hidden state back ``num_latent`` times, feed eot [+eos], then
    greedy-decode over every id but the last (eot) until eos.
    """
    if normalise:
        question = question.strip().replace("  ", " ")
    vocab_rows = peft_lm.get_input_embeddings().weight.shape[0]
    bot_id, eot_id = vocab_rows - 2, vocab_rows - 1
    eos = tokenizer.eos_token_id
    ids = tokenizer(question)["input_ids"] + ([] if remove_eos else [eos]) + [bot_id]
    embed = peft_lm.get_input_embeddings()
    out = peft_lm(input_ids=torch.tensor([ids]), use_cache=True, output_hidden_states=True)
    cache = out.past_key_values
    latent = projection(out.hidden_states[-1][:, -1:, :])
    for _ in range(num_latent):
        out = peft_lm(
            inputs_embeds=latent, past_key_values=cache, use_cache=True, output_hidden_states=True
        )
        cache = out.past_key_values
        latent = projection(out.hidden_states[-1][:, -1:, :])
    step = embed(torch.tensor([[eot_id] if remove_eos else [eot_id, eos]]))
    answer: list[int] = []
    for _ in range(max_new_tokens):
        out = peft_lm(inputs_embeds=step, past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        token = int(out.logits[0, -1, : vocab_rows - 1].argmax())
        if token == eos:
            break
        answer.append(token)
        step = embed(torch.tensor([[token]]))
    return answer


def _spaced(questions: list[str]) -> list[str]:
    """Questions as datasets sometimes hold them: surrounding and doubled spaces."""
    return [
        "  " + questions[0] + " ",
        questions[1].replace(" ", "  ", 1) if " " in questions[1] else questions[1] + "  x",
        questions[2] + "   ",
        " a  =  1 ;   b = a + 2 ; b = ? \n",
    ]


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_official_checkpoint_reproduces_the_published_protocol(
    tmp_path: Path, family: str, fmt: str, questions: list[str]
) -> None:
    ckpt, base = write_official_checkpoint(tmp_path, family, fmt=fmt)
    questions = questions[:6] + _spaced(questions)
    for remove_eos in (True, False):
        model = load_official(ckpt, _options(base, remove_eos=remove_eos, merge_lora=False))
        with torch.inference_mode():
            expected = [
                published_protocol(
                    model.lm,
                    model.projection,
                    model.tokenizer,
                    q,
                    num_latent=6,
                    remove_eos=remove_eos,
                    max_new_tokens=10,
                )
                for q in questions
            ]
        got = Runner(model).run(questions, options=RunOptions(max_new_tokens=10))
        assert [g[0].answer_ids for g in got] == expected


def test_question_normalisation_is_recorded_and_can_be_switched_off(
    tmp_path: Path, family: str, questions: list[str]
) -> None:
    ckpt, base = write_official_checkpoint(tmp_path, family)
    spaced = _spaced(questions)
    on = load_official(ckpt, _options(base, merge_lora=False))
    off = load_official(ckpt, _options(base, merge_lora=False, normalise_question=False))
    assert on.config.to_dict()["normalise_question"] is True
    assert off.config.to_dict()["normalise_question"] is False
    assert on.question_ids(spaced[0]) == on.question_ids(spaced[0].strip())
    assert off.question_ids(spaced[0]) != off.question_ids(spaced[0].strip())
    with torch.inference_mode():
        expected = [
            published_protocol(
                off.lm,
                off.projection,
                off.tokenizer,
                q,
                num_latent=6,
                remove_eos=True,
                max_new_tokens=10,
                normalise=False,
            )
            for q in spaced
        ]
    got = Runner(off).run(spaced, options=RunOptions(max_new_tokens=10))
    assert [g[0].answer_ids for g in got] == expected


def test_settings_are_read_from_the_state_dict(tmp_path: Path, family: str) -> None:
    ckpt, base = write_official_checkpoint(tmp_path, family)
    model = load_official(ckpt, _options(base, merge_lora=False))
    assert model.projection.width == 48 and model.projection.has_layer_norm
    assert model.config.base_vocab_size == len(model.tokenizer)
    assert model.config.bot_id == model.config.base_vocab_size + 1
    assert model.config.num_latent == 6 and model.config.remove_eos
    lora = model.lm.peft_config["default"]
    assert lora.r == 4 and lora.lora_alpha == 32


def test_merged_and_unmerged_lora_give_the_same_answers(
    tmp_path: Path, family: str, questions: list[str]
) -> None:
    ckpt, base = write_official_checkpoint(tmp_path, family)
    merged = load_official(ckpt, _options(base))
    unmerged = load_official(ckpt, _options(base, merge_lora=False))
    assert not hasattr(merged.lm, "peft_config")
    options = RunOptions(max_new_tokens=12, batch_size=8)
    a = Runner(merged).run(questions, options=options)
    b = Runner(unmerged).run(questions, options=options)
    assert [g[0].answer_ids for g in a] == [g[0].answer_ids for g in b]


def test_load_model_routes_official_folders(tmp_path: Path) -> None:
    ckpt, base = write_official_checkpoint(tmp_path, "gpt2")
    model = load_model(ckpt, official=_options(base))
    assert model.config.num_latent == 6


def test_missing_base_model_and_settings_are_named(tmp_path: Path) -> None:
    ckpt, base = write_official_checkpoint(tmp_path, "gpt2")
    with pytest.raises(ValueError, match="--base-model"):
        load_official(ckpt, OfficialOptions(preset="codi-gpt2"))
    with pytest.raises(ValueError, match="--preset"):
        load_official(ckpt, OfficialOptions(base_model=str(base)))
    with pytest.raises(ValueError, match="unknown"):
        load_official(ckpt, OfficialOptions(base_model=str(base), preset="codi-gpt9"))
    with pytest.raises(FileNotFoundError, match="--allow-download"):
        load_official(ckpt, OfficialOptions(base_model=str(tmp_path / "nope"), preset="codi-gpt2"))


def _rewrite(ckpt: Path, edit) -> None:
    path = ckpt / "model.safetensors"
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))


def test_a_checkpoint_with_foreign_keys_is_refused_by_name(tmp_path: Path) -> None:
    ckpt, base = write_official_checkpoint(tmp_path, "gpt2")
    _rewrite(
        ckpt, lambda s: s.__setitem__("codi.base_model.model.transformer.h.7.mlp.w", torch.zeros(2))
    )
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys.*h\.7\.mlp\.w"):
        load_official(ckpt, _options(base))


def test_a_checkpoint_with_wrong_shapes_is_refused_by_name(tmp_path: Path) -> None:
    ckpt, _ = write_official_checkpoint(tmp_path / "a", "gpt2")
    # A base model of another width: every block weight mismatches.
    _, other_base = write_official_checkpoint(tmp_path / "b", "llama")
    with pytest.raises(CheckpointMismatchError, match="does not fit the base model"):
        load_official(ckpt, _options(other_base))
    ckpt2, base2 = write_official_checkpoint(tmp_path / "c", "gpt2")
    key = "codi.base_model.model.transformer.h.0.attn.c_attn.lora_A.default.weight"

    def shrink(state: dict) -> None:
        state["codi.base_model.model.transformer.h.1.attn.c_attn.lora_A.default.weight"] = (
            torch.zeros(4, 16)
        )

    _rewrite(ckpt2, shrink)
    with pytest.raises(
        CheckpointMismatchError, match=r"shape mismatches.*h\.1\.attn\.c_attn\.lora_A"
    ):
        load_official(ckpt2, _options(base2))
    assert key  # the untouched layer is not named


def test_missing_lora_weights_are_refused(tmp_path: Path) -> None:
    ckpt, base = write_official_checkpoint(tmp_path, "gpt2")
    _rewrite(
        ckpt,
        lambda s: s.pop("codi.base_model.model.transformer.h.1.mlp.c_fc.lora_B.default.weight"),
    )
    with pytest.raises(CheckpointMismatchError, match=r"missing keys.*h\.1\.mlp\.c_fc\.lora_B"):
        load_official(ckpt, _options(base))


def test_not_a_codi_layout_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    folder.mkdir()
    save_file({"transformer.wte.weight": torch.zeros(3, 2)}, str(folder / "model.safetensors"))
    _, base = write_official_checkpoint(tmp_path, "gpt2")
    with pytest.raises(CheckpointMismatchError, match="published CODI layout"):
        load_official(folder, _options(base))


def test_pickled_checkpoints_cannot_run_code(tmp_path: Path) -> None:
    import pickle

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    folder = tmp_path / "evil"
    folder.mkdir()
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"prj.1.weight": Boom()}, f)
    _, base = write_official_checkpoint(tmp_path, "gpt2")
    with pytest.raises(Exception, match=r"(?i)weights_only|unpickl|global"):
        load_official(folder, _options(base))
