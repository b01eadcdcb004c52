"""``thoughtscope importance`` and ``demo`` on the command line: bad input is one line
and exit code 2; a run killed at a random moment resumes to the same results."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from thoughtscope.cli import app

DATA = "synthetic:test:seed=2:n=8"


def base_args(model_dir: Path, out: Path) -> list[str]:
    return [
        "importance",
        "--model",
        str(model_dir),
        "--data",
        DATA,
        "--out",
        str(out),
        "--sites",
        "latent+block:2",
        "--schedule",
        "prefix",
        "--max-new-tokens",
        "4",
        "--batch-size",
        "16",
        "--no-progress",
    ]


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, args)


def records_by_id(path: Path) -> dict[str, dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {record["id"]: record for record in map(json.loads, lines)}


def test_a_run_writes_results_manifest_and_statistics(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = invoke(base_args(tiny_model_dir, tmp_path / "run"))
    assert result.exit_code == 0, result.output
    for name in ("manifest.json", "results.jsonl", "summary.json", "results.csv"):
        assert (tmp_path / "run" / name).is_file()
    assert len(records_by_id(tmp_path / "run" / "results.jsonl")) == 8
    assert "position 0 is the first continuous thought" in result.output


def test_a_validation_sample_larger_than_the_data_is_taken_whole_and_reported(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    result = invoke([*base_args(tiny_model_dir, tmp_path / "run"), "--validate", "20"])
    assert result.exit_code == 0, result.output
    assert "Note: 8 problems sampled, 12 fewer than requested" in result.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["validate"] == 20 and manifest["data"]["n_problems"] == 8
    assert (tmp_path / "run" / "step_importance_validation.json").is_file()


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--sites", "block:9"], "--sites: block 9 does not exist"),
        (["--sites", "lattent"], "--sites: cannot read 'lattent'"),
        (["--schedule", "{0,6}"], "--schedule: position '6' is out of range"),
        (["--schedule", "{bot,1}"], "--schedule {bot,1}: the latent site has no bot position"),
        (["--schedule", "prefx"], "--schedule: unknown schedule 'prefx'"),
        (["--ablation", "zeros"], "--ablation: unknown ablation 'zeros'"),
        (["--validate", "4", "--all"], "--validate and --all exclude each other"),
        (["--validate", "0"], "--validate needs a sample size"),
        (["--limit", "0"], "--limit must be 1 or more"),
        (["--batch-size", "0"], "--batch-size must be 1 or more, got 0"),
        (["--batch-size", "many"], "--batch-size must be auto or a whole number, got many"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be 1 or more"),
        (["--strata", "3,1"], "--strata:"),
        (["--data", "EMPTY"], "--data: "),
        (["--data", "synthetic:nosuchsplit"], "--data: "),
        (["--model", "no/such/folder"], "--model no/such/folder: no such folder"),
        (["--dtype", "float8"], "--dtype 'float8'"),
        (["--threads", "0"], "--threads must be 1 or more"),
    ],
)
def test_bad_input_is_one_line_naming_the_option_and_exit_code_2(
    tiny_model_dir: Path, tmp_path: Path, extra: list[str], fragment: str
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    extra = [str(empty) if item == "EMPTY" else item for item in extra]
    result = invoke(base_args(tiny_model_dir, tmp_path / "run") + extra)
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("Error: ") and "\n" not in message
    assert fragment in message
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_a_different_configuration_in_the_same_folder_is_refused_on_the_command_line(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    assert invoke([*base_args(tiny_model_dir, tmp_path / "run"), "--limit", "2"]).exit_code == 0
    result = invoke([*base_args(tiny_model_dir, tmp_path / "run"), "--limit", "3"])
    assert result.exit_code == 2
    assert "different configuration (limit: 2 here, 3 now" in result.stderr


def test_demo_without_the_toy_model_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import thoughtscope.model.loading as loading

    monkeypatch.setattr(loading, "toy_model_path", lambda: tmp_path / "no-toy")
    result = invoke(["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 1
    assert "the demo needs the toy model" in result.stderr
    assert not (tmp_path / "demo").exists()


def test_a_run_killed_at_a_random_moment_resumes_to_the_same_results(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    assert invoke(base_args(tiny_model_dir, reference)).exit_code == 0
    expected = records_by_id(reference / "results.jsonl")

    killed = tmp_path / "killed"
    command = [sys.executable, "-c", "from thoughtscope.cli import main; main()"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command + base_args(tiny_model_dir, killed),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (killed / "manifest.json").exists() and time.monotonic() < deadline:
        if process.poll() is not None:
            break
        time.sleep(0.02)
    delay = random.uniform(0.0, 2.0)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = killed / "results.jsonl"
    n_before = len(partial.read_text().splitlines()) if partial.exists() else 0

    result = invoke(base_args(tiny_model_dir, killed))
    assert result.exit_code == 0, result.output
    resumed = records_by_id(killed / "results.jsonl")
    note = f"killed {delay:.2f} s after the manifest appeared, with {n_before} lines written"
    assert resumed.keys() == expected.keys(), note
    for key, record in resumed.items():
        assert _close(record, expected[key]), f"{key}: {note}"


def _close(a: Any, b: Any) -> bool:
    """Equal, with floats within 1e-5 (the kill may have split a batch)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-5 * max(1.0, abs(b))
    return bool(a == b)


def test_every_config_field_is_an_option_declared_once_in_the_config() -> None:
    from dataclasses import fields

    from thoughtscope.analyses.importance import ImportanceConfig

    result = invoke(["importance", "--help"])
    assert result.exit_code == 0, result.output
    for item in fields(ImportanceConfig):
        assert item.metadata["option"] in result.output, item.name
