"""Attention to thoughts: every attention row sums to 1, left padding gets 0, and the
masses land on the right sources (run through the batched engine with eager attention)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from tests.analyses.conftest import QUESTIONS
from thoughtscope.analyses.attention import (
    ATTENTION_FILE,
    AttentionCapture,
    eager_attention,
    record_attention,
    run_attention,
)
from thoughtscope.engine.runner import BASELINE, Runner, RunOptions
from thoughtscope.model import CodiModel
from thoughtscope.statistics.attention import write_attention_statistics


def test_rows_sum_to_one_and_left_padding_gets_nothing(tiny_model: CodiModel) -> None:
    capture = AttentionCapture([])
    before = tiny_model.base_lm.config._attn_implementation
    with eager_attention(tiny_model), capture.installed(tiny_model):
        Runner(tiny_model).run(QUESTIONS, [BASELINE], RunOptions(max_new_tokens=3, batch_size=5))
    assert len(capture.calls) == 1 + 1 + tiny_model.num_thoughts + 1 + 2
    lengths = sorted(len(tiny_model.question_ids(q)) for q in QUESTIONS)
    width = max(lengths)
    for call in capture.calls[1:]:
        for weights in call:
            sums = weights.sum(dim=-1)
            assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
            for row, length in enumerate(lengths):  # rows in the runner's length order
                assert float(weights[row, :, :, : width - length].abs().sum()) == 0.0
    assert tiny_model.base_lm.config._attn_implementation == before  # restored


def test_masses_cover_the_sources_a_thought_can_see(tiny_model: CodiModel) -> None:
    mass = record_attention(tiny_model, QUESTIONS, answer_tokens=2)
    n_thoughts = tiny_model.num_thoughts
    assert mass.shape == (5, tiny_model.num_layers, 4, n_thoughts + 4, n_thoughts + 2)
    # bot and thought queries see only the question, bot and earlier thoughts: all of it.
    seen = mass[:, :, :, : n_thoughts + 1].sum(dim=-1)
    assert torch.allclose(seen, torch.ones_like(seen), atol=1e-5)
    # No query attends to a later thought.
    for k in range(n_thoughts):
        assert float(mass[:, :, :, 1 + k, 2 + k + 1 :].abs().sum()) == 0.0


def test_run_writes_masses_and_statistics(tiny_model: CodiModel, tmp_path: Path) -> None:
    result = run_attention(tiny_model, "synthetic:test:seed=1:n=6", tmp_path, batch_size=4)
    assert result.n_problems == 6
    with safe_open(str(tmp_path / ATTENTION_FILE), framework="pt") as handle:
        assert len(json.loads(handle.metadata()["ids"])) == 6
    path = write_attention_statistics(tmp_path, n_boot=20)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    row = rows[0]
    assert {"layer", "head", "query", "source", "n", "mean", "ci"} <= set(row)
    assert {r["source"] for r in rows} >= {"question", "bot", "thought:0"}
