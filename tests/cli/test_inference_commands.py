"""`thoughtscope answer` and `thoughtscope thoughts` on a tiny saved model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open
from typer.testing import CliRunner

from tests.conftest import tiny_codi, write_official_checkpoint
from thoughtscope.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "tiny"
    tiny_codi("llama", remove_eos=False).save_pretrained(folder)
    return folder


def test_answer_writes_one_scored_line_per_problem(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    result = runner.invoke(
        app,
        [
            "answer",
            "--model",
            str(model_dir),
            "--data",
            "synthetic:test:seed=1:n=5",
            "--out",
            str(out),
            "--max-new-tokens",
            "6",
            "--batch-size",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5
    assert {"id", "question", "expected", "output", "predicted", "correct"} <= set(rows[0])
    assert "accuracy" in result.output


def test_thoughts_saves_tensors_and_decoded_tokens(model_dir: Path, tmp_path: Path) -> None:
    out, decoded = tmp_path / "t.safetensors", tmp_path / "decoded.jsonl"
    result = runner.invoke(
        app,
        [
            "thoughts",
            "--model",
            str(model_dir),
            "--data",
            "synthetic:test:seed=1:n=3",
            "--out",
            str(out),
            "--layers",
            "1",
            "--top-k",
            "2",
            "--decoded",
            str(decoded),
            "--max-new-tokens",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    with safe_open(str(out), "pt") as f:
        assert f.get_tensor("thoughts").shape == (3, 6, 32)
        assert f.get_tensor("hidden").shape == (3, 8, 1, 32)
        assert json.loads(f.metadata()["layers"]) == [1]
    row = json.loads(decoded.read_text().splitlines()[0])
    assert {s["site"] for s in row["states"]} == {"input", "latent", "block:1"}


def test_official_checkpoint_options_reach_the_loader(tmp_path: Path) -> None:
    ckpt, base = write_official_checkpoint(tmp_path, "gpt2")
    out = tmp_path / "a.jsonl"
    result = runner.invoke(
        app,
        [
            "answer",
            "--model",
            str(ckpt),
            "--base-model",
            str(base),
            "--preset",
            "codi-gpt2",
            "--data",
            "synthetic:test:n=2",
            "--out",
            str(out),
            "--max-new-tokens",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/no/such/folder"], "no such folder"),
        (["--data", "/no/such.jsonl"], "such.jsonl"),
        (["--layers", "99"], "block 99 does not exist"),
        (["--layers", "x,y"], "cannot read"),
    ],
)
def test_bad_input_is_named(model_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    base = {"--model": str(model_dir), "--data": "synthetic:test:n=2", "--layers": "all"}
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value
    argv = ["thoughts", "--out", str(tmp_path / "t.safetensors")]
    for key, value in base.items():
        argv += [key, value]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert message in result.output
