"""Soft thinking (arXiv 2505.15778) on a tiny random LM: the batched engine, with rows
that stop thinking at different steps, against a plain transcription of the published
algorithm run one question at a time."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.conftest import tiny_lm_config
from thoughtscope.engine.edits import Condition
from thoughtscope.engine.runner import BASELINE, Runner, RunOptions
from thoughtscope.engine.sites import LATENT
from thoughtscope.model import ThoughtModel, byte_level_tokenizer
from thoughtscope.model.families.soft_thinking import (
    PRESETS,
    SoftThinkingConfig,
    load_soft_thinking_lm,
    soft_thinking_around,
)
from thoughtscope.model.thought_model import load_saved

# Settings under which the tiny LM's rows stop at different steps, by either rule:
# the end marker "O" is often the most likely token, and entropy dips below 3.3 nats.
SETTINGS = SoftThinkingConfig(
    think_start="<think>",
    think_end="O",
    temperature=0.6,
    top_k=5,
    top_p=0.9,
    min_p=0.01,
    max_topk=3,
    entropy_threshold=3.3,
    entropy_steps=2,
    max_thoughts=8,
)
QUESTIONS = [
    "1+1?",
    "a=3;b=a*2;b=?",
    "Tom has 3 apples",
    "x",
    "What is 7 times 8?",
    "Sum 2, 3 and 4.",
    "A farmer has 12 cows and sells 5.",
    "9-4?",
]


def tiny_soft_thinker(config: SoftThinkingConfig = SETTINGS) -> ThoughtModel:
    """A random 2-block Llama whose head is scaled up (peaked, varied distributions),
    with ``<think>`` added to the byte tokenizer."""
    torch.manual_seed(0)
    tokenizer = byte_level_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<think>", "</think>"]})
    lm = AutoModelForCausalLM.from_config(
        tiny_lm_config("llama", len(tokenizer)), attn_implementation="eager"
    )
    with torch.no_grad():
        lm.lm_head.weight.mul_(12)
    return soft_thinking_around(lm.eval(), tokenizer, config, name="tiny")


@dataclass
class Published:
    """What the transcription gives for one question."""

    thoughts: list[torch.Tensor]  # the fed mixtures, (d,) each
    top_ids: list[list[int]]  # each mixture's token ids, most likely first
    stop_step: int  # thoughts fed before the end marker
    capped: bool
    answer: list[int]


def published_soft_thinking(
    model: ThoughtModel, question: str, config: SoftThinkingConfig, max_new_tokens: int
) -> Published:
    """The reference implementation's soft-thinking loop for one request, written out
    against the HF model with its own cache and logits: each step, softmax(logits / T);
    entropy on that; top-k, top-p, min-p filters renormalising; the max_topk best,
    renormalised; stop when the best is the end marker or the entropy was below the
    threshold for entropy_steps steps in a row; else feed sum w_i E[i]. Then the end
    marker, then greedy decoding until eos. (Plus this library's cap on thoughts.)"""
    lm, tokenizer = model.lm, model.tokenizer
    embedding = lm.get_input_embeddings().weight
    end_id = tokenizer(config.think_end, add_special_tokens=False)["input_ids"][-1]
    start = tokenizer(config.think_start, add_special_tokens=False)["input_ids"]
    ids = tokenizer(question)["input_ids"] + start
    out = lm(input_ids=torch.tensor([ids]), use_cache=True)
    cache = out.past_key_values
    thoughts: list[torch.Tensor] = []
    tops: list[list[int]] = []
    confident_run = 0
    capped = False
    while True:
        p = torch.softmax(out.logits[0, -1].float() / config.temperature, dim=-1)
        entropy = float(-(p * torch.log(torch.clamp(p, min=1e-12))).sum())
        values, order = torch.sort(p, descending=True)
        values[config.top_k :] = 0  # top-k
        values = values / values.sum()
        mass_before = torch.cumsum(values, 0) - values  # top-p
        values[mass_before >= config.top_p] = 0
        values = values / values.sum()
        values[values < config.min_p * values[0]] = 0  # min-p
        values = values / values.sum()
        weights = values[: config.max_topk] / values[: config.max_topk].sum()
        chosen = order[: config.max_topk]
        if int(chosen[0]) == end_id:
            break
        confident_run = confident_run + 1 if entropy < config.entropy_threshold else 0
        if confident_run >= config.entropy_steps:
            break
        if len(thoughts) == config.max_thoughts:
            capped = True
            break
        mixture = (weights[:, None] * embedding[chosen]).sum(0)
        thoughts.append(mixture)
        tops.append([int(i) for i, w in zip(chosen, weights, strict=True) if w > 0])
        out = lm(inputs_embeds=mixture[None, None], past_key_values=cache, use_cache=True)
        cache = out.past_key_values
    out = lm(input_ids=torch.tensor([[end_id]]), past_key_values=cache, use_cache=True)
    cache = out.past_key_values
    answer: list[int] = []
    for _ in range(max_new_tokens):
        token = int(out.logits[0, -1].argmax())
        if token == tokenizer.eos_token_id:
            break
        answer.append(token)
        out = lm(input_ids=torch.tensor([[token]]), past_key_values=cache, use_cache=True)
        cache = out.past_key_values
    return Published(thoughts, tops, len(thoughts), capped, answer)


def test_batched_soft_thinking_matches_the_published_loop_one_question_at_a_time() -> None:
    model = tiny_soft_thinker()
    with torch.inference_mode():
        expected = [published_soft_thinking(model, q, SETTINGS, 6) for q in QUESTIONS]
    stop_steps = [e.stop_step for e in expected]
    assert len(set(stop_steps)) >= 3, f"the rows should stop at different steps: {stop_steps}"
    assert any(e.capped for e in expected) and not all(e.capped for e in expected)
    got = Runner(model).run(QUESTIONS, options=RunOptions(max_new_tokens=6, batch_size=8))
    for question, published, (gen,) in zip(QUESTIONS, expected, got, strict=True):
        assert gen.thoughts.shape[0] == published.stop_step, question
        assert gen.thoughts_capped == published.capped, question
        if published.thoughts:
            torch.testing.assert_close(gen.thoughts, torch.stack(published.thoughts))
        assert gen.answer_ids == published.answer, question


def test_batched_equals_one_at_a_time_with_hidden_states() -> None:
    model = tiny_soft_thinker()
    options = RunOptions(max_new_tokens=6, batch_size=8, record_hidden=True)
    together = Runner(model).run(QUESTIONS, options=options)
    for i, question in enumerate(QUESTIONS):
        (alone,) = Runner(model).run([question], options=options)[0]
        (batched,) = together[i]
        assert alone.answer_ids == batched.answer_ids
        assert alone.hidden is not None and batched.hidden is not None
        assert (
            alone.hidden.shape
            == batched.hidden.shape
            == (
                alone.thoughts.shape[0] + 2,
                model.num_layers + 1,
                model.d_model,
            )
        )
        torch.testing.assert_close(alone.hidden, batched.hidden, atol=1e-4, rtol=1e-4)


def _zero(hidden: torch.Tensor, context: object) -> torch.Tensor:
    return torch.zeros_like(hidden)


def test_ablated_rows_keep_the_baselines_length_unless_told_to_stop_on_their_own() -> None:
    model = tiny_soft_thinker()
    ablated = Condition("zero@0", {(LATENT, 0): _zero})
    early = Condition("first-2", num_latent=2)
    held = Runner(model).run(QUESTIONS, [BASELINE, ablated, early], RunOptions(max_new_tokens=4))
    for base, zeroed, cut in held:
        n = base.thoughts.shape[0]
        assert zeroed.thoughts.shape[0] == n
        assert cut.thoughts.shape[0] == min(2, n)
        if n > 0:
            assert not zeroed.thoughts[0].any()  # the edit applied where position 0 exists
    free = Runner(model).run(
        QUESTIONS, [BASELINE, ablated], RunOptions(max_new_tokens=4, hold_thoughts=None)
    )
    alone = [published_soft_thinking(model, q, SETTINGS, 4).stop_step for q in QUESTIONS]
    assert [b.thoughts.shape[0] for b, _ in free] == alone
    assert [z.thoughts.shape[0] for _, z in free] != alone  # zeroing changes when rows stop


def test_the_end_marker_and_cold_stop_each_stop_thinking() -> None:
    no_cold = replace(SETTINGS, entropy_threshold=0.0, max_thoughts=6)
    model = tiny_soft_thinker(no_cold)
    got = Runner(model).run(QUESTIONS, options=RunOptions(max_new_tokens=2))
    with torch.inference_mode():
        expected = [published_soft_thinking(model, q, no_cold, 2) for q in QUESTIONS]
    assert [g[0].thoughts.shape[0] for g in got] == [e.stop_step for e in expected]
    assert [g[0].thoughts_capped for g in got] == [e.capped for e in expected]
    assert any(not e.capped for e in expected)  # the marker alone stopped some rows


def test_a_saved_soft_thinker_and_an_hf_folder_load_with_their_settings(tmp_path: Path) -> None:
    model = tiny_soft_thinker()
    again = load_saved(model.save_pretrained(tmp_path / "saved"))
    assert again.family.to_dict() == SETTINGS.to_dict()
    model.lm.save_pretrained(tmp_path / "hf")
    model.tokenizer.save_pretrained(tmp_path / "hf")
    plain = load_soft_thinking_lm(tmp_path / "hf", SETTINGS)
    a = Runner(model).run(QUESTIONS[:3], options=RunOptions(max_new_tokens=4))
    b = Runner(again).run(QUESTIONS[:3], options=RunOptions(max_new_tokens=4))
    c = Runner(plain).run(QUESTIONS[:3], options=RunOptions(max_new_tokens=4))
    assert (
        [g[0].answer_ids for g in a] == [g[0].answer_ids for g in b] == [g[0].answer_ids for g in c]
    )


def test_settings_come_from_a_preset_and_key_value_text() -> None:
    config = SoftThinkingConfig().with_text("preset=qwq-math,max_thoughts=64,top_k=1")
    assert config.max_topk == PRESETS["qwq-math"].max_topk == 10
    assert config.max_thoughts == 64 and config.top_k == 1 and config.chat_template
    with pytest.raises(ValueError, match="'topk' is not a setting"):
        SoftThinkingConfig().with_text("topk=3")
    with pytest.raises(ValueError, match="preset 'qwq' is unknown"):
        SoftThinkingConfig().with_text("preset=qwq")


def test_a_soft_thoughts_decoding_is_the_mixture_that_was_fed() -> None:
    from thoughtscope.analyses.thoughts import extract_thoughts
    from thoughtscope.problems import Problem

    model = tiny_soft_thinker()
    problems = [
        Problem(f"p{i}", q, 1.0, None, "unknown", None, "test") for i, q in enumerate(QUESTIONS)
    ]
    dump = extract_thoughts(model, problems, max_new_tokens=2)
    with torch.inference_mode():
        expected = [published_soft_thinking(model, q, SETTINGS, 2) for q in QUESTIONS]
    assert dump.n_thoughts == [e.stop_step for e in expected]
    assert dump.capped == [e.capped for e in expected]
    embedding = model.lm.get_input_embeddings().weight.detach()
    for i, published in enumerate(expected):
        assert [m.ids for m in dump.mixtures[i]] == published.top_ids
        for k, mixture in enumerate(dump.mixtures[i]):
            assert sum(mixture.weights) == pytest.approx(1.0, abs=1e-5)
            mixed = (torch.tensor(mixture.weights)[:, None] * embedding[mixture.ids]).sum(0)
            torch.testing.assert_close(mixed, dump.thoughts[i, k], atol=1e-4, rtol=1e-4)
        assert not dump.thoughts[i, published.stop_step :].any()  # padding past its count


def test_forking_and_a_start_step_edit_leave_ragged_results_unchanged() -> None:
    from thoughtscope.engine.sites import BOT, Site

    model = tiny_soft_thinker()
    block = Site("block", 0)
    conditions = [
        BASELINE,
        Condition("zero@1", {(LATENT, 1): _zero}),
        Condition("zero@3", {(LATENT, 3): _zero}),
        Condition("block@bot", {(block, BOT): _zero}),
    ]
    runs = [
        Runner(model).run(QUESTIONS, conditions, RunOptions(max_new_tokens=4, fork=fork))
        for fork in (True, False)
    ]
    for forked, separate in zip(*runs, strict=True):
        for a, b in zip(forked, separate, strict=True):
            assert a.answer_ids == b.answer_ids and a.thoughts.shape == b.thoughts.shape
            torch.testing.assert_close(a.thoughts, b.thoughts)
    # Without the start-step edit, the start step runs once per problem before the fan-out.
    shared = Runner(model).run(QUESTIONS, conditions[:3], RunOptions(max_new_tokens=4))
    for with_bot, without in zip(runs[0], shared, strict=True):
        for a, b in zip(with_bot[:3], without, strict=True):
            assert a.answer_ids == b.answer_ids
            torch.testing.assert_close(a.thoughts, b.thoughts)


def test_the_toy_teachers_soft_thoughts_spell_its_text_reasoning() -> None:
    """The shipped toy's LM, read with the toy-teacher preset, thinks in (nearly) one-hot
    mixtures that spell the teacher's chain "a op b=c ...", then answers."""
    from thoughtscope.analyses.thoughts import extract_thoughts
    from thoughtscope.model import load_model
    from thoughtscope.problems.sources import load_problems
    from thoughtscope.training.data import steps_text

    toy = load_model("toy")
    config = SoftThinkingConfig().with_text("preset=toy-teacher")
    model = soft_thinking_around(toy.lm, toy.tokenizer, config, name="toy")
    problems = load_problems("synthetic:test:seed=0:n=8:style=compact").problems
    dump = extract_thoughts(model, problems, layers=[0], max_new_tokens=6)
    spelled = ["".join(m.tokens[0] for m in row) for row in dump.mixtures]
    assert spelled == [steps_text(p, bare=True) for p in problems]
    assert dump.n_thoughts == [len(s) for s in spelled]
    assert [float(a) for a in dump.answers] == [p.answer for p in problems]
