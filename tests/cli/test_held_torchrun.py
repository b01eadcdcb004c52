"""`torchrun -m thoughtscope probe|attention` on 2 CPU processes (gloo): each rank records
its share of the batches and fits its share of the cells, rank 0 merges, and the files
equal a one-process run's."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from typer.testing import CliRunner

from tests.results.helpers import torchrun_thoughtscope
from thoughtscope.cli import app

BASE = ["--model", "toy", "--data", "synthetic:test:seed=14:n=40", "--threads", "1"]
BASE += ["--no-progress", "--batch-size", "8", "--n-boot", "50"]
PROBE = ["--sites", "block:1", "--targets", "final_answer,step_count", "--folds", "2"]
PROBE += ["--min-problems", "10"]


def _masses(path: Path) -> torch.Tensor:
    with safe_open(str(path), framework="pt") as handle:
        return torch.nan_to_num(handle.get_tensor("mass"), nan=-1.0)


def test_two_ranks_probe_and_attend_exactly_as_one_process(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    for command, options, files in (
        ("probe", PROBE, ["probe_outcomes.jsonl", "probes.jsonl", "lens.jsonl"]),
        ("attention", [], ["attention.jsonl"]),
    ):
        one, two = tmp_path / f"{command}-one", tmp_path / f"{command}-two"
        single = CliRunner().invoke(app, [command, *BASE, *options, "--out", str(one)])
        assert single.exit_code == 0, single.output
        done = torchrun_thoughtscope([command, *BASE, *options, "--out", str(two)])
        assert done.returncode == 0, done.stderr[-3000:]
        assert "rank 1 of 2:" in done.stdout
        if command == "probe":  # 8 positions x 2 targets, every other position
            assert "rank 1 of 2: 8 probe cells fitted" in done.stdout
        for name in files:
            assert (two / name).read_text() == (one / name).read_text(), name
        assert not list(two.glob("*.partial*")) and not list(two.glob("*.lock"))
        if command == "attention":
            masses = _masses(two / "attention.safetensors")
            assert masses.shape[0] == 40
            assert torch.equal(masses, _masses(one / "attention.safetensors"))
        assert (two / "report.html").is_file()
