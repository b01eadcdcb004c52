"""`torchrun -m thoughtscope importance` on 2 CPU processes (gloo) gives exactly the rows
of one process, each problem once; `stats` reads it; a run left in shards by a killed
launch of another size resumes to the same rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from typer.testing import CliRunner

from tests.analyses.test_cli import _close
from tests.results.helpers import torchrun_thoughtscope
from thoughtscope.analyses.importance import ImportanceConfig, run_importance
from thoughtscope.cli import app
from thoughtscope.model import load_model
from thoughtscope.results.lock import lock_path
from thoughtscope.results.shards import shard_files

N = 12
DATA = f"synthetic:test:seed=12:n={N}"
OPTIONS = ["--sites", "latent+block:2", "--schedule", "single", "--ablation", "zero"]
CONFIG = ImportanceConfig(data=DATA, sites="latent+block:2", schedules="single", ablations="zero")


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_two_ranks_write_exactly_the_rows_of_one_process(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    reference = tmp_path / "one"
    run_importance(load_model("toy"), CONFIG, reference, model_spec="toy", progress=False)
    expected = rows(reference / "results.jsonl")

    sharded = tmp_path / "two"
    args = ["importance", "--model", "toy", "--data", DATA, *OPTIONS]
    done = torchrun_thoughtscope([*args, "--threads", "1", "--no-progress", "--out", str(sharded)])
    assert done.returncode == 0, done.stderr[-3000:]

    results = sharded / "results.jsonl"
    assert shard_files(results) == [results]  # rank 0 merged the shards
    assert rows(results) == expected  # same rows, same order, each problem once
    assert not lock_path(results).exists()
    assert "rank 1 of 2:" in done.stdout and "Baseline accuracy" in done.stdout
    stats = CliRunner().invoke(app, ["stats", str(sharded)])
    assert stats.exit_code == 0, stats.output

    # A 3-rank launch killed midway left two partial shards (one with a cut-off line).
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(sharded / "manifest.json", resumed)
    lines = results.read_text().splitlines(keepends=True)
    (resumed / "results.rank0of3.jsonl").write_text("".join(lines[:3]))
    (resumed / "results.rank2of3.jsonl").write_text("".join(lines[5:8]) + lines[8][:50])
    result = run_importance(load_model("toy"), CONFIG, resumed, model_spec="toy", progress=False)
    assert (result.n_skipped, result.n_written) == (6, N - 6)
    assert shard_files(resumed / "results.jsonl") == [resumed / "results.jsonl"]
    again = rows(resumed / "results.jsonl")
    assert [r["id"] for r in again] == [r["id"] for r in expected]
    # Resuming splits partly done batches, so floats may differ in the last digits.
    assert all(_close(a, b) for a, b in zip(again, expected, strict=True))


def test_two_ranks_answer_exactly_as_one_process(tmp_path: Path) -> None:
    args = ["answer", "--data", "synthetic:test:seed=4:n=10", "--batch-size", "3"]
    args += ["--max-new-tokens", "12", "--threads", "1", "--no-progress"]
    reference = tmp_path / "one.jsonl"
    assert CliRunner().invoke(app, [*args, "--out", str(reference)]).exit_code == 0

    out = tmp_path / "two.jsonl"
    done = torchrun_thoughtscope([*args, "--out", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.read_text() == reference.read_text()
    assert shard_files(out) == [out] and not lock_path(out).exists()
    assert "rank 1: 4 answers written" in done.stdout  # chunks of 3: 0,6,9 and 3
