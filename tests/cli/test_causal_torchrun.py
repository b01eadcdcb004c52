"""`torchrun -m thoughtscope patch|effects|steer` on 2 CPU processes (gloo) gives exactly
the rows of one process, each once, with the self-patch checks summed over the ranks;
`stats` and `report` read the run; a run left in shards by a killed launch of another
size resumes to the same rows, each once."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import torch
from typer.testing import CliRunner

from tests.analyses.test_cli import _close
from tests.results.helpers import torchrun_thoughtscope
from thoughtscope.analyses.effects import EffectsConfig, run_effects
from thoughtscope.analyses.patching import PatchConfig, run_patching
from thoughtscope.analyses.steering import SteerConfig, run_steering
from thoughtscope.cli import app
from thoughtscope.model import load_model
from thoughtscope.results.lock import lock_path
from thoughtscope.results.patching import CHECKS_FILE, read_patch_rows
from thoughtscope.results.shards import shard_files
from thoughtscope.results.store import read_manifest

DATA = "synthetic:test:seed=13:n=12"
SITES = "latent+block:2"


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sorted_rows(path: Path) -> list[str]:
    return sorted(json.dumps(row, sort_keys=True) for row in rows(path))


def torchrun(args: list[str], out: Path) -> subprocess.CompletedProcess[str]:
    options = ["--model", "toy", "--threads", "1", "--no-progress", "--out", str(out)]
    done = torchrun_thoughtscope([*args, *options])
    assert done.returncode == 0, done.stderr[-3000:]
    results = out / "results.jsonl"
    assert shard_files(results) == [results]  # rank 0 merged the shards
    assert not lock_path(results).exists()
    return done


def test_two_ranks_patch_exactly_the_rows_of_one_process(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = PatchConfig(data=DATA, pairs="counterfactual", sites=SITES, batch_size=3)
    reference = tmp_path / "one"
    one = run_patching(load_model("toy"), config, reference, model_spec="toy")
    expected = reference / "results.jsonl"
    assert one.n_pairs == 12 and one.n_rows == len(rows(expected)) == 12 * 14

    sharded = tmp_path / "two"
    args = ["patch", "--data", DATA, "--pairs", "counterfactual", "--sites", SITES]
    done = torchrun([*args, "--batch-size", "3"], sharded)
    assert sorted_rows(sharded / "results.jsonl") == sorted_rows(expected)  # each row once
    assert rows(sharded / "results.jsonl") == rows(expected)  # merged in pair order
    assert "rank 1 of 2: 84 rows written (12 pairs)" in done.stdout
    # The self-patch check of every batch, from both ranks' shards, counted once each.
    assert shard_files(sharded / CHECKS_FILE) == [sharded / CHECKS_FILE]
    assert sorted_rows(sharded / CHECKS_FILE) == sorted_rows(reference / CHECKS_FILE)
    checks = read_manifest(sharded)["checks"]
    assert checks == read_manifest(reference)["checks"]
    assert checks["self_patch_batches"] == 4
    assert checks["self_patch_rows"] == one.self_patch_rows > 0
    assert f"self-patch check: {one.self_patch_identical} of {one.self_patch_rows}" in done.stdout

    for command in (["stats", str(sharded)], ["report", str(sharded)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
    assert (sharded / "patching_summary.json").is_file() and (sharded / "report.html").is_file()

    # A 3-rank launch killed midway left two partial shards (one with a cut-off line) and
    # the checks of the batches it finished; a one-process run finishes it.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(reference / "manifest.json", resumed)
    lines = expected.read_text().splitlines(keepends=True)
    (resumed / "results.rank0of3.jsonl").write_text("".join(lines[:42]))
    (resumed / "results.rank2of3.jsonl").write_text("".join(lines[84:100]) + lines[100][:60])
    checked = (reference / CHECKS_FILE).read_text().splitlines(keepends=True)
    (resumed / "checks.rank0of3.jsonl").write_text(checked[0])
    again = run_patching(load_model("toy"), config, resumed, model_spec="toy")
    assert (again.n_skipped, again.n_rows) == (42 + 16, 168 - 42 - 16)
    assert shard_files(resumed / "results.jsonl") == [resumed / "results.jsonl"]
    assert shard_files(resumed / CHECKS_FILE) == [resumed / CHECKS_FILE]
    finished = rows(resumed / "results.jsonl")
    assert [r["pair"] for r in finished] == [r["pair"] for r in rows(expected)]
    assert len({(r["pair"], r["site"], str(r["positions"])) for r in finished}) == 168
    # Resuming re-cuts partly done batches (other padding), so floats may differ slightly.
    assert all(_close(a, b) for a, b in zip(finished, rows(expected), strict=True))
    assert read_manifest(resumed)["checks"]["self_patch_batches"] == 1 + 3
    assert len(read_patch_rows(resumed)) == 168


def test_two_ranks_measure_effects_and_steer_exactly_as_one_process(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = "synthetic:test:seed=13:n=6"
    model = load_model("toy")
    # The mean ablation's reference means are computed by rank 0 and read by rank 1.
    effects = EffectsConfig(data=data, sites="latent", ablations="zero,mean", batch_size=2)
    run_effects(model, effects, tmp_path / "effects-one", model_spec="toy")
    args = ["effects", "--data", data, "--sites", "latent", "--ablation", "zero,mean"]
    done = torchrun([*args, "--batch-size", "2"], tmp_path / "effects-two")
    expected = sorted_rows(tmp_path / "effects-one" / "results.jsonl")
    assert sorted_rows(tmp_path / "effects-two" / "results.jsonl") == expected
    assert len(expected) == 6 * 2 * model.num_thoughts
    per_problem = 2 * model.num_thoughts  # batches of 2: rank 1 takes the second of three
    assert f"rank 1 of 2: {2 * per_problem} rows written (6 problems)" in done.stdout

    # mean-diff directions are computed by rank 0, saved, and read by rank 1.
    steer = SteerConfig(
        data=data, target_value=6, alphas="1,4", sites="latent", positions="all", batch_size=2
    )
    run_steering(model, steer, tmp_path / "steer-one", model_spec="toy")
    args = ["steer", "--data", data, "--target-value", "6", "--alphas", "1,4"]
    done = torchrun([*args, "--sites", "latent", "--batch-size", "2"], tmp_path / "steer-two")
    expected = sorted_rows(tmp_path / "steer-one" / "results.jsonl")
    assert sorted_rows(tmp_path / "steer-two" / "results.jsonl") == expected
    assert len(expected) == 6 * 2
    assert "rank 1 of 2: 4 rows written (6 problems)" in done.stdout
    stats = CliRunner().invoke(app, ["stats", str(tmp_path / "steer-two")])
    assert stats.exit_code == 0, stats.output
