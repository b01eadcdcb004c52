"""Nothing computed is lost or counted twice: a second run into a busy folder is refused,
and a killed `answer` resumes to exactly the rows of an uninterrupted run."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.results.helpers import thoughtscope_process, wait_until
from thoughtscope.cli import app
from thoughtscope.results.lock import OutputLock, lock_path

IMPORTANCE = [
    "importance",
    "--model",
    "toy",
    "--data",
    "synthetic:test:seed=12:n=16",
    "--sites",
    "latent+block:2",
    "--schedule",
    "single",
    "--ablation",
    "zero",
    "--threads",
    "1",
    "--no-progress",
]
N_ANSWER = 30
ANSWER = ["answer", "--data", f"synthetic:test:seed=5:n={N_ANSWER}", "--batch-size", "2"]
ANSWER += ["--max-new-tokens", "12", "--threads", "1", "--no-progress"]


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_second_run_into_a_busy_folder_is_refused_and_nothing_is_doubled(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    first = thoughtscope_process([*IMPORTANCE, "--out", str(run)])
    try:
        wait_until(lambda: lock_path(run / "results.jsonl").exists(), first)
        first.send_signal(signal.SIGSTOP)  # hold it mid-run while the second one starts
        second = CliRunner().invoke(app, [*IMPORTANCE, "--out", str(run)])
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.exit_code == 1
    message = second.output.strip()
    assert message.count("\n") == 0
    assert f"is being written by another run (pid {first.pid} on host" in message
    rows = lines(run / "results.jsonl")
    assert len(rows) == 16 and len({r["id"] for r in rows}) == 16
    assert not lock_path(run / "results.jsonl").exists()


def test_answer_killed_midway_resumes_to_the_rows_of_an_uninterrupted_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reference = tmp_path / "reference.jsonl"
    result = CliRunner().invoke(app, [*ANSWER, "--out", str(reference)])
    assert result.exit_code == 0, result.output
    expected = lines(reference)

    out = tmp_path / "answers.jsonl"
    killed = thoughtscope_process([*ANSWER, "--out", str(out)])
    wait_until(lambda: out.exists() and len(out.read_bytes().splitlines()) >= 6, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    n_before = len(lines(out))
    assert 6 <= n_before < N_ANSWER
    assert lock_path(out).exists()

    with caplog.at_level(logging.WARNING):
        resumed = CliRunner().invoke(app, [*ANSWER, "--out", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert f"taking over a stale lock left by pid {killed.pid}" in caplog.text
    assert f"({n_before} already there, {N_ANSWER - n_before} new)" in resumed.output
    assert lines(out) == expected  # same rows, same order: none lost, none doubled
    assert not lock_path(out).exists()


def test_answer_refuses_a_different_configuration_and_force_starts_over(tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    runner = CliRunner()
    small = ["answer", "--data", "synthetic:test:seed=5:n=4", "--threads", "1", "--no-progress"]
    assert runner.invoke(app, [*small, "--out", str(out), "--max-new-tokens", "8"]).exit_code == 0
    refused = runner.invoke(app, [*small, "--out", str(out), "--max-new-tokens", "9"])
    assert refused.exit_code == 2
    assert "max_new_tokens: 8 here, 9 now" in refused.output
    other_data = [*small[:2], "synthetic:test:seed=6:n=4", *small[3:]]
    refused = runner.invoke(app, [*other_data, "--out", str(out), "--max-new-tokens", "8"])
    assert '"synthetic:test:seed=5:n=4" here, "synthetic:test:seed=6:n=4" now' in refused.output
    forced = runner.invoke(
        app, [*other_data, "--out", str(out), "--max-new-tokens", "8", "--force"]
    )
    assert forced.exit_code == 0, forced.output
    assert [r["id"] for r in lines(out)] == [f"synthetic-test-s6-0000{i}" for i in range(4)]


def test_answer_does_not_silently_overwrite_answers_it_cannot_resume(tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    out.write_text('{"id": "old-1", "correct": true}\n')
    args = ["answer", "--data", "synthetic:test:seed=5:n=3", "--threads", "1", "--no-progress"]
    refused = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert refused.exit_code == 2
    assert "already holds 1 answers but no answers.manifest.json" in refused.output
    assert out.read_text() == '{"id": "old-1", "correct": true}\n'
    forced = CliRunner().invoke(app, [*args, "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert len(lines(out)) == 3 and "old-1" not in out.read_text()


def test_thoughts_into_an_output_another_run_writes_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "t.safetensors"
    args = ["thoughts", "--data", "synthetic:test:seed=5:n=2", "--threads", "1", "--no-progress"]
    with OutputLock(out):  # held by "another run" (this process, through another handle)
        refused = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert refused.exit_code == 1
    assert f"Error: {out} is being written by another run (pid {os.getpid()}" in refused.output
    assert not out.exists()
