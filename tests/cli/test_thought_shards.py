"""The ranks' `thoughts` shards merge into the file one process would have written."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from tests.analyses.conftest import build_tiny_model
from thoughtscope.analyses.thoughts import extract_thoughts
from thoughtscope.cli.inference import merge_thought_shards
from thoughtscope.engine.distributed import Ranks
from thoughtscope.problems import load_problems
from thoughtscope.results.shards import shard_path


def test_thought_shards_merge_in_problem_order(tmp_path: Path) -> None:
    model = build_tiny_model()
    problems = load_problems("synthetic:test:seed=2:n=7").problems
    chunks = [problems[i : i + 2] for i in range(0, len(problems), 2)]
    whole = extract_thoughts(model, problems, layers=[1, 3], batch_size=2, max_new_tokens=4)
    whole.save(tmp_path / "one.safetensors")

    out = tmp_path / "two.safetensors"
    for rank in range(2):
        mine = [p for chunk in Ranks(rank, 2).share(chunks) for p in chunk]
        part = extract_thoughts(model, mine, layers=[1, 3], batch_size=2, max_new_tokens=4)
        part.save(shard_path(out, rank, 2))
    merged = merge_thought_shards(out, 2, [p.id for p in problems])

    assert not any(shard_path(out, rank, 2).exists() for rank in range(2))
    assert merged.ids == whole.ids and merged.answers == whole.answers
    # The engine groups each call's problems by length, so the ranks' batches hold other
    # neighbours than the whole run's: equal up to float rounding, not bit for bit.
    torch.testing.assert_close(merged.thoughts, whole.thoughts, rtol=0, atol=1e-5)
    torch.testing.assert_close(merged.hidden, whole.hidden, rtol=0, atol=1e-5)
    with safe_open(str(out), "pt") as a, safe_open(str(tmp_path / "one.safetensors"), "pt") as b:
        assert a.metadata() == b.metadata()
