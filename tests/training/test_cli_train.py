"""`thoughtscope train` and `thoughtscope train-toy` on tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

import thoughtscope.cli  # noqa: F401  # registers every command
from tests.training.conftest import tiny_config, tiny_model
from thoughtscope.cli.app import app
from thoughtscope.model import CodiModel


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), prog_name="thoughtscope")


def test_train_continues_a_model_folder_and_saves_the_result(tmp_path: Path) -> None:
    start = tiny_model().save_pretrained(tmp_path / "start")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(steps=2, data_size=16, max_steps=2).to_dict()))
    result = run(
        "train", "--model", str(start), "--config", str(config), "--out", str(tmp_path / "run")
    )
    assert result.exit_code == 0, result.output
    trained = CodiModel.from_pretrained(tmp_path / "run" / "model")
    assert trained.config.num_latent == 3
    log = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in log] == [1, 2]


def test_train_needs_exactly_one_starting_point(tmp_path: Path) -> None:
    result = run("train", "--out", str(tmp_path))
    assert result.exit_code != 0
    assert "--model" in result.output and "--base-model" in result.output


def test_train_toy_eval_only_prints_accuracy_by_steps(tmp_path: Path) -> None:
    folder = tiny_model().save_pretrained(tmp_path / "m")
    result = run("train-toy", "--eval-only", str(folder), "--eval-n", "12")
    assert result.exit_code == 0, result.output
    assert "synthetic:test:seed=0:n=12:style=compact" in result.output
    for row in ("student (latent)", "zero@latent:all", "zero@L0:all", "zero@L1:all", "teacher"):
        assert row in result.output
    assert "| problems | 2 | 2 | 2 | 2 | 2 | 2 | 12 |" in result.output


def test_train_toy_without_out_is_refused() -> None:
    result = run("train-toy")
    assert result.exit_code != 0
    assert "--out" in result.output
