"""Every command speaks the same way: the same defaults, placeholders and messages."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import thoughtscope.cli.importance as importance_cli
from thoughtscope.cli import app
from thoughtscope.model import load_model


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    ("command", "placeholder"), [("data", "DATA"), ("stats", "RUN_OR_FILE"), ("report", "RUN")]
)
def test_usage_lines_name_arguments_in_capitals(command: str, placeholder: str) -> None:
    usage = invoke(command, "--help").stdout.splitlines()[0]
    # Typer marks a required argument with braces; the name is a placeholder, not the
    # Python parameter's name.
    assert usage.endswith((placeholder, f"{{{placeholder}}}"))
    assert f"{{{placeholder.lower()}}}" not in usage


@pytest.mark.parametrize("command", ["answer", "thoughts", "importance"])
def test_model_defaults_to_the_toy_in_every_command_that_runs_one(command: str) -> None:
    assert "[default: toy]" in invoke(command, "--help").stdout


@pytest.mark.parametrize(
    "args",
    [
        ["answer", "--data", "synthetic:n=2", "--out", "a.jsonl"],
        ["thoughts", "--data", "synthetic:n=2", "--out", "t.safetensors"],
        ["importance", "--data", "synthetic:n=2", "--out", "run"],
        ["demo"],
        ["train", "--model", "new-toy", "--out", "run"],
    ],
)
def test_a_bad_batch_size_gets_one_message_everywhere(args: list[str]) -> None:
    result = invoke(*args, "--batch-size", "0")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --batch-size must be 1 or more, got 0"


RUNS = {
    "answer": ["answer", "--data", "synthetic:n=2", "--out", "a.jsonl"],
    "thoughts": ["thoughts", "--data", "synthetic:n=2", "--out", "t.safetensors"],
    "importance": ["importance", "--data", "synthetic:n=2", "--out", "run"],
    "patch": ["patch", "--data", "synthetic:n=2", "--out", "run"],
    "effects": ["effects", "--data", "synthetic:n=2", "--out", "run"],
    "steer": ["steer", "--data", "synthetic:n=2", "--out", "run", "--target-value", "3"],
    "probe": ["probe", "--data", "synthetic:n=2", "--out", "run"],
    "attention": ["attention", "--data", "synthetic:n=2", "--out", "run"],
}
DECODING = ["answer", "thoughts", "importance", "patch", "effects", "steer"]


@pytest.mark.parametrize(
    ("command", "option", "message"),
    [(c, "--limit", "Error: --limit must be 1 or more (or left out)") for c in RUNS]
    + [(c, "--max-new-tokens", "Error: --max-new-tokens must be 1 or more") for c in DECODING],
)
def test_a_bad_limit_or_answer_length_gets_one_message_everywhere(
    command: str, option: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(*RUNS[command], option, "0")
    assert result.exit_code == 2
    assert result.stderr.strip() == message
    assert not any(tmp_path.iterdir())  # refused before anything was written


@pytest.fixture
def umask_027() -> Iterator[None]:
    previous = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_safetensors_outputs_get_the_mode_of_every_other_output(
    tmp_path: Path, umask_027: None
) -> None:
    out, decoded = tmp_path / "t.safetensors", tmp_path / "d.jsonl"
    result = invoke(
        "thoughts",
        "--data",
        "synthetic:n=2",
        "--out",
        str(out),
        "--decoded",
        str(decoded),
        "--max-new-tokens",
        "2",
    )
    assert result.exit_code == 0, result.output
    assert mode(out) == mode(decoded) == 0o640
    folder = load_model("toy").save_pretrained(tmp_path / "model")
    assert mode(folder / "model.safetensors") == mode(folder / "thoughtscope.json") == 0o640


def test_the_demo_prints_a_summary_and_where_the_report_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importance_cli, "DEMO_DATA", "synthetic:test:seed=0:n=6")
    result = invoke("demo", "--out", str(tmp_path / "demo"), "--no-progress")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) <= 19, result.stdout
    for label in ("validation", "sweep"):
        assert f"statistics: {tmp_path / 'demo' / label / 'summary.json'}" in result.stdout
        assert f"report: {tmp_path / 'demo' / label / 'report.html'}" in result.stdout
    causal = tmp_path / "demo" / "sweep" / "causal"
    for name in ("patch", "effects", "steer"):  # small causal runs, linked from the report
        assert f"report: {causal / name / 'report.html'}" in result.stdout
        link = f"causal/{name}/report.html"
        assert link in (tmp_path / "demo" / "sweep" / "report.html").read_text()
    checked = re.search(r"self-patch check: (\d+) of (\d+) rows identical", result.stdout)
    assert checked is not None and checked[1] == checked[2] != "0", result.stdout
    assert f"compare: {tmp_path / 'demo' / 'compare' / 'compare.html'}" in result.stdout


def test_a_changed_data_spec_on_resume_is_named_not_hashed(tmp_path: Path) -> None:
    args = ["importance", "--out", str(tmp_path / "run"), "--sites", "latent"]
    args += ["--schedule", "single", "--max-new-tokens", "2", "--no-progress"]
    assert invoke(*args, "--data", "synthetic:n=2").exit_code == 0
    result = invoke(*args, "--data", "synthetic:n=3")
    assert result.exit_code == 2
    assert '(--data "synthetic:n=2" here, "synthetic:n=3" now)' in result.stderr
    assert "fingerprint" not in result.stderr
