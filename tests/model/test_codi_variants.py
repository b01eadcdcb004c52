"""Community CODI checkpoints: thought markers named in the tokenizer, and no projection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from tests.conftest import tiny_lm_config
from thoughtscope.engine.runner import Runner, RunOptions
from thoughtscope.model import OfficialOptions, Projection, byte_level_tokenizer
from thoughtscope.model.official import load_official

BOT, EOT = "<|bocot|>", "<|eocot|>"


def write_named_marker_checkpoint(
    root: Path, *, projection: bool, seed: int = 0
) -> tuple[Path, Path]:
    """A GPT-2 CODI checkpoint whose tokenizer gained ``<|bocot|>``/``<|eocot|>`` (ids
    V, V+1; embeddings resized to V+2), with or without ``prj.`` weights; returns
    (checkpoint, base) folders. The checkpoint folder ships its tokenizer."""
    torch.manual_seed(seed)
    tokenizer = byte_level_tokenizer()
    base_dir, ckpt_dir = root / "base", root / "ckpt"
    lm = AutoModelForCausalLM.from_config(tiny_lm_config("gpt2", len(tokenizer)))
    lm.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": [BOT, EOT]})
    lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    peft_lm = get_peft_model(
        lm,
        LoraConfig(r=4, lora_alpha=32, target_modules=["c_attn", "c_fc"], lora_dropout=0.0),
    )
    with torch.no_grad():
        for name, param in peft_lm.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    state = {f"codi.{k}": v for k, v in peft_lm.state_dict().items()}
    if projection:
        state.update({f"prj.{k}": v for k, v in Projection(32, 48).state_dict().items()})
    kept: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state.items():
        if value.data_ptr() not in seen:
            seen.add(value.data_ptr())
            kept[key] = value.contiguous()
    ckpt_dir.mkdir(parents=True)
    save_file(kept, str(ckpt_dir / "model.safetensors"))
    tokenizer.save_pretrained(ckpt_dir)
    return ckpt_dir, base_dir


def published_loop_with_markers(
    peft_lm, feedback, tokenizer, question: str, *, num_latent: int, max_new_tokens: int
) -> list[int]:
    """The published CODI inference loop, one question, with the markers looked up by
    name: question ids + <|bocot|>, ``num_latent`` fed-back states, <|eocot|>, then
    greedy decoding that never picks <|eocot|>, until eos."""
    question = question.strip().replace("  ", " ")
    bot_id = tokenizer.convert_tokens_to_ids(BOT)
    eot_id = tokenizer.convert_tokens_to_ids(EOT)
    eos = tokenizer.eos_token_id
    embed = peft_lm.get_input_embeddings()
    out = peft_lm(
        input_ids=torch.tensor([tokenizer(question)["input_ids"] + [bot_id]]),
        use_cache=True,
        output_hidden_states=True,
    )
    cache = out.past_key_values
    latent = feedback(out.hidden_states[-1][:, -1:, :])
    for _ in range(num_latent):
        out = peft_lm(
            inputs_embeds=latent, past_key_values=cache, use_cache=True, output_hidden_states=True
        )
        cache = out.past_key_values
        latent = feedback(out.hidden_states[-1][:, -1:, :])
    step = embed(torch.tensor([[eot_id]]))
    answer: list[int] = []
    for _ in range(max_new_tokens):
        out = peft_lm(inputs_embeds=step, past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        logits = out.logits[0, -1].clone()
        logits[eot_id] = -torch.inf
        token = int(logits.argmax())
        if token == eos:
            break
        answer.append(token)
        step = embed(torch.tensor([[token]]))
    return answer


def _options(base: Path, **kwargs: object) -> OfficialOptions:
    return OfficialOptions(base_model=str(base), preset="codi-gpt2", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("projection", [True, False])
def test_named_markers_load_and_answer_like_the_published_loop(
    tmp_path: Path, projection: bool, questions: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    ckpt, base = write_named_marker_checkpoint(tmp_path, projection=projection)
    with caplog.at_level("WARNING"):
        model = load_official(ckpt, _options(base, bot_token=BOT, eot_token=EOT, merge_lora=False))
    tokenizer = model.tokenizer
    assert model.config.bot_id == tokenizer.convert_tokens_to_ids(BOT) == len(tokenizer) - 2
    assert model.config.eot_id == tokenizer.convert_tokens_to_ids(EOT)
    assert model.vocab_size == len(tokenizer)  # nothing appended past the named markers
    assert model.config.feedback == ("projection" if projection else "identity")
    assert ("identity feedback" in caplog.text) is not projection
    with torch.inference_mode():
        expected = [
            published_loop_with_markers(
                model.lm, model.projection, tokenizer, q, num_latent=6, max_new_tokens=10
            )
            for q in questions[:8]
        ]
    got = Runner(model).run(questions[:8], options=RunOptions(max_new_tokens=10, batch_size=8))
    assert [g[0].answer_ids for g in got] == expected


def test_the_checkpoints_own_config_names_the_markers(tmp_path: Path) -> None:
    ckpt, base = write_named_marker_checkpoint(tmp_path, projection=False)
    (ckpt / "config.json").write_text(json.dumps({"bot_token": BOT, "eot_token": EOT}))
    model = load_official(ckpt, _options(base))
    assert model.config.bot_id == model.tokenizer.convert_tokens_to_ids(BOT)


def test_a_saved_variant_reloads_with_its_markers_and_feedback(tmp_path: Path) -> None:
    from thoughtscope.model.thought_model import load_saved

    ckpt, base = write_named_marker_checkpoint(tmp_path, projection=False)
    model = load_official(ckpt, _options(base, bot_token=BOT, eot_token=EOT))
    again = load_saved(model.save_pretrained(tmp_path / "saved"))
    assert again.family.to_dict() == model.family.to_dict()
    a = Runner(model).run(["1+1?", "a=3;b=a*2;b=?"], options=RunOptions(max_new_tokens=6))
    b = Runner(again).run(["1+1?", "a=3;b=a*2;b=?"], options=RunOptions(max_new_tokens=6))
    assert [g[0].answer_ids for g in a] == [g[0].answer_ids for g in b]


def test_a_wrong_marker_name_is_refused_with_the_names_the_tokenizer_has(tmp_path: Path) -> None:
    ckpt, base = write_named_marker_checkpoint(tmp_path, projection=True)
    with pytest.raises(ValueError) as caught:
        load_official(ckpt, _options(base, bot_token="<|bot|>", eot_token=EOT))
    message = str(caught.value)
    assert "\n" not in message
    assert "--bot-token '<|bot|>'" in message and BOT in message and EOT in message


def test_the_cli_names_the_markers_and_refuses_a_wrong_one_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from thoughtscope.cli.app import app

    ckpt, base = write_named_marker_checkpoint(tmp_path, projection=False)
    common = ["answer", "--model", str(ckpt), "--base-model", str(base), "--preset", "codi-gpt2"]
    common += ["--data", "synthetic:n=2", "--max-new-tokens", "3"]
    ok = CliRunner().invoke(
        app, [*common, "--bot-token", BOT, "--eot-token", EOT, "--out", str(tmp_path / "a")]
    )
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(
        app, [*common, "--bot-token", "<bot>", "--eot-token", EOT, "--out", str(tmp_path / "b")]
    )
    assert bad.exit_code != 0
    errors = [line for line in bad.output.splitlines() if "--bot-token '<bot>'" in line]
    assert len(errors) == 1 and BOT in errors[0] and "Traceback" not in bad.output
