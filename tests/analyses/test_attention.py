"""Attention to thoughts, for every family the engine knows (CODI, Coconut, soft
thinking): the replay reproduces the engine's run, every attention row sums to 1, left
padding gets 0, and rows with fewer thoughts or shorter answers get NaN, not a shifted
reading."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from tests.analyses.conftest import QUESTIONS
from tests.conftest import tiny_coconut, tiny_codi
from tests.model.test_soft_thinking import QUESTIONS as SOFT_QUESTIONS
from tests.model.test_soft_thinking import tiny_soft_thinker
from thoughtscope.analyses.attention import (
    ATTENTION_FILE,
    BATCH_DIR,
    attention_modules,
    eager_attention,
    lay_out,
    query_names,
    record_attention,
    replay,
    run_attention,
    source_names,
)
from thoughtscope.engine.runner import BASELINE, Runner, RunOptions
from thoughtscope.model import CodiModel, ThoughtModel
from thoughtscope.statistics.attention import write_attention_statistics

FAMILIES = ["codi-llama", "codi-gpt2", "coconut-llama", "coconut-gpt2", "soft-thinking"]


def _model(name: str) -> tuple[ThoughtModel, list[str]]:
    if name == "soft-thinking":
        return tiny_soft_thinker(), SOFT_QUESTIONS
    family, arch = name.split("-")
    build = tiny_codi if family == "codi" else tiny_coconut
    return build(arch), QUESTIONS


@pytest.fixture(params=FAMILIES)
def family_model(request: pytest.FixtureRequest) -> tuple[ThoughtModel, list[str]]:
    torch.set_num_threads(1)
    return _model(str(request.param))


def test_the_replay_reproduces_the_engines_states(
    family_model: tuple[ThoughtModel, list[str]],
) -> None:
    model, questions = family_model
    options = RunOptions(max_new_tokens=3, batch_size=len(questions), record_hidden=True)
    generations = [row[0] for row in Runner(model).run(questions, [BASELINE], options)]
    layout = lay_out(model, questions, generations, answer_tokens=3)
    with torch.inference_mode():
        states = replay(model, layout, hidden_states=True).hidden_states
    for r, generation in enumerate(generations):
        recorded = generation.hidden
        assert recorded is not None
        columns = layout.positions[r]
        assert len(columns) == recorded.shape[0] == generation.thoughts.shape[0] + 2
        # The inputs (GPT-2 adds position embeddings inside, so compare the layout).
        torch.testing.assert_close(layout.embeds[r, columns].float(), recorded[:, 0])
        for layer in range(1, model.num_layers + 1):
            expected = recorded[:, layer]
            if layer == model.num_layers:  # HF's last entry is after the final norm
                with torch.no_grad():
                    expected = model.final_norm(expected.to(model.dtype)).float()
            got = states[layer][r, columns].float()
            torch.testing.assert_close(got, expected, atol=2e-4, rtol=2e-4)


def _raw_weights(model: ThoughtModel, questions: list[str]) -> tuple[Any, list[torch.Tensor]]:
    generations = [
        row[0] for row in Runner(model).run(questions, [BASELINE], RunOptions(max_new_tokens=3))
    ]
    layout = lay_out(model, questions, generations, answer_tokens=3)
    weights: list[torch.Tensor] = []

    def grab(_module: Any, _inputs: Any, output: Any) -> None:
        weights.append(output[1].detach().float())

    handles = [m.register_forward_hook(grab) for m in attention_modules(model)]
    before = model.base_lm.config._attn_implementation
    try:
        with torch.inference_mode(), eager_attention(model):
            replay(model, layout)
    finally:
        for handle in handles:
            handle.remove()
    assert model.base_lm.config._attn_implementation == before  # restored
    return layout, weights


def test_rows_sum_to_one_and_left_padding_gets_nothing(
    family_model: tuple[ThoughtModel, list[str]],
) -> None:
    model, questions = family_model
    layout, weights = _raw_weights(model, questions)
    assert len(weights) == model.num_layers
    real = layout.mask.bool().cpu()
    for layer_weights in weights:
        sums = layer_weights.sum(dim=-1)[real[:, None].expand(-1, layer_weights.shape[1], -1)]
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
        padded = ~real[:, None, None, :].expand_as(layer_weights)
        queries = real[:, None, :, None].expand_as(layer_weights)
        assert float(layer_weights[padded & queries].abs().sum()) == 0.0


def test_masses_over_all_sources_sum_to_one_and_missing_steps_are_nan(
    family_model: tuple[ThoughtModel, list[str]],
) -> None:
    model, questions = family_model
    n = model.num_thoughts
    mass = record_attention(model, questions, answer_tokens=2)
    queries, sources = query_names(n, 2), source_names(n)
    assert mass.shape[:2] == (len(questions), model.num_layers)
    assert mass.shape[3:] == (len(queries), len(sources))
    counts = [
        row[0].thoughts.shape[0]
        for row in Runner(model).run(questions, [BASELINE], RunOptions(max_new_tokens=2))
    ]
    for r, count in enumerate(counts):
        for q, name in enumerate(queries):
            row = mass[r, :, :, q]
            exists = not (name.isdigit() and int(name) >= count)
            if not exists:
                assert bool(row.isnan().all()), (r, name)
                continue
            seen = torch.nan_to_num(row).sum(dim=-1)
            assert torch.allclose(seen, torch.ones_like(seen), atol=1e-5), (r, name)
        for k in range(n):
            thought = mass[r, :, :, :, sources.index(f"thought:{k}")]
            assert bool(thought.isnan().all()) == (k >= count)
            # No step reads a thought fed after it.
            for q in range(1 + min(k, count)):
                assert float(torch.nan_to_num(thought[:, :, q]).abs().sum()) == 0.0


def test_soft_thinking_rows_have_their_own_number_of_thoughts() -> None:
    model = tiny_soft_thinker()
    mass = record_attention(model, SOFT_QUESTIONS, answer_tokens=2)
    sources = source_names(model.num_thoughts)
    have = [
        int((~mass[r, 0, 0, :, 2 : 2 + model.num_thoughts].isnan().all(dim=0)).sum())
        for r in range(len(SOFT_QUESTIONS))
    ]
    got = Runner(model).run(SOFT_QUESTIONS, [BASELINE], RunOptions(max_new_tokens=2))
    assert have == [row[0].thoughts.shape[0] for row in got]
    assert len(set(have)) > 1  # ragged: the case the first version could not read
    eot = query_names(model.num_thoughts, 2).index("eot")
    assert not bool(mass[:, :, :, eot, sources.index("question")].isnan().any())


def test_a_shorter_answer_leaves_its_missing_answer_queries_empty(tiny_model: CodiModel) -> None:
    generations = [
        row[0]
        for row in Runner(tiny_model).run(QUESTIONS, [BASELINE], RunOptions(max_new_tokens=3))
    ]
    generations[1] = replace(generations[1], answer_ids=generations[1].answer_ids[:1])
    layout = lay_out(tiny_model, QUESTIONS, generations, answer_tokens=3)
    queries = query_names(tiny_model.num_thoughts, 3)
    assert int(layout.query_at[1, queries.index("answer:0")]) >= 0
    assert int(layout.query_at[1, queries.index("answer:1")]) == -1
    assert bool((layout.query_at[0] >= 0).all())


def test_run_writes_masses_manifest_and_statistics(tiny_model: CodiModel, tmp_path: Path) -> None:
    result = run_attention(tiny_model, "synthetic:test:seed=1:n=6", tmp_path, batch_size=4)
    assert result.n_problems == 6
    with safe_open(str(tmp_path / ATTENTION_FILE), framework="pt") as handle:
        assert len(json.loads(handle.metadata()["ids"])) == 6
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["attention"]["answer_tokens"] == 3
    path = write_attention_statistics(tmp_path, n_boot=20)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    row = rows[0]
    assert {"layer", "head", "query", "source", "n", "mean", "ci"} <= set(row)
    assert {r["source"] for r in rows} >= {"question", "bot", "thought:0", "eot", "answer"}


def test_a_killed_run_resumes_from_its_batches_and_other_data_is_refused(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    data = "synthetic:test:seed=1:n=10"
    whole = run_attention(tiny_model, data, tmp_path / "whole", batch_size=4)
    assert whole.n_batches_reused == 0
    with safe_open(str(tmp_path / "whole" / ATTENTION_FILE), framework="pt") as handle:
        expected = handle.get_tensor("mass")

    # A run killed after its first two batches: the third is computed, the two reused.
    killed = tmp_path / "killed"
    run_attention(tiny_model, data, killed, batch_size=4)
    (killed / ATTENTION_FILE).unlink()
    (killed / BATCH_DIR / "batch-00002.safetensors").unlink()
    resumed = run_attention(tiny_model, data, killed, batch_size=4)
    assert resumed.n_batches_reused == 2
    with safe_open(str(killed / ATTENTION_FILE), framework="pt") as handle:
        got = handle.get_tensor("mass")
    assert torch.equal(torch.nan_to_num(got, nan=-1.0), torch.nan_to_num(expected, nan=-1.0))

    with pytest.raises(ValueError, match=r"--out .* holds attention batches of another run"):
        run_attention(tiny_model, "synthetic:test:seed=2:n=10", killed, batch_size=4)
