"""`thoughtscope data`: the table, the exported problems and the error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

import thoughtscope.cli  # noqa: F401  # registers every command
from tests.conftest import GSM8K_TEST
from thoughtscope.cli.app import app


def run(*args: str) -> Result:
    """Invoke `thoughtscope data ...` (Typer runs a lone command without its name)."""
    command = typer.main.get_command(app)
    is_group = getattr(command, "commands", None) is not None
    argv = ["data", *args] if is_group else list(args)
    return CliRunner().invoke(app, argv, prog_name="thoughtscope")


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_data_prints_counts_per_stratum_and_writes_the_problems(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "problems.jsonl"
    result = run("synthetic:test:seed=3:n=60", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "synthetic:test:seed=3:n=60" in result.output
    table = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()}
    assert table["1"] == ["10"] and table["5+"] == ["20"] and table["total"] == ["60"]
    rows = read_jsonl(out)
    assert len(rows) == 60
    assert list(rows[0]) == [
        "id",
        "question",
        "answer",
        "steps",
        "steps_source",
        "solution",
        "source",
    ]
    assert rows[0]["id"] == "synthetic-test-s3-00000"
    assert isinstance(rows[0]["answer"], int)
    assert f"wrote 60 problems to {out}" in result.output


def test_sampling_reports_the_shortfall(tmp_path: Path) -> None:
    out = tmp_path / "p.jsonl"
    result = run("synthetic:n=30:max_steps=3", "--sample", "12", "--seed", "4", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "shortfall: stratum 1 has 10 of the 12 requested" in result.output
    assert "shortfall: stratum 4 has 0 of the 12 requested" in result.output
    rows = read_jsonl(out)
    assert len(rows) == 30
    assert [r["id"] for r in rows] == sorted(str(r["id"]) for r in rows)  # source order


def test_total_mode_filters_and_limit(tmp_path: Path) -> None:
    out = tmp_path / "p.jsonl"
    result = run(
        "synthetic:n=120",
        "--sample",
        "10",
        "--total",
        "--min-steps",
        "2",
        "--max-steps",
        "3",
        "--limit",
        "30",
        "--strata",
        "2,3",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "sample: 10 in total" in result.output
    rows = read_jsonl(out)
    assert len(rows) == 10
    assert {r["steps"] for r in rows} == {2, 3}


def test_out_dash_writes_problems_to_stdout() -> None:
    result = run("synthetic:n=3", "--out", "-")
    assert result.exit_code == 0, result.output
    ids = [json.loads(line)["id"] for line in result.stdout.splitlines() if line.startswith("{")]
    assert ids == [f"synthetic-test-s0-0000{i}" for i in range(3)]


def test_bad_rows_stop_the_command_with_one_line_naming_file_line_and_field(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": 1}\n{"question": "q2", "answer": "ten"}\n')
    result = run(str(path))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: ")
    assert f"{path}, line 2, field 'answer'" in line
    assert "--skip-bad" in line


def test_skip_bad_lists_the_skipped_rows(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": 1}\n{oops\n{"question": "q3", "answer": 3}\n')
    out = tmp_path / "p.jsonl"
    result = run(str(path), "--skip-bad", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "skipped 1 bad rows:" in result.output
    assert f"{path}, line 2: not valid JSON" in result.output
    assert len(read_jsonl(out)) == 2


def test_an_unknown_source_lists_the_accepted_forms() -> None:
    result = run("nowhere.jsonl")
    assert result.exit_code == 2
    assert "no such file: 'nowhere.jsonl'" in result.output
    assert "Accepted --data forms" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strata", "1,x"], "--strata"),
        (["--min-steps", "4", "--max-steps", "2"], "--min-steps"),
        (["--sample", "-1"], "--sample"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], message: str) -> None:
    result = run("synthetic:n=5", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.skipif(not GSM8K_TEST.exists(), reason=f"GSM8K test set not found at {GSM8K_TEST}")
def test_gsm8k_sample_of_100_per_stratum(tmp_path: Path) -> None:
    out = tmp_path / "p.jsonl"
    result = run(str(GSM8K_TEST), "--sample", "100", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "shortfall: stratum 1 has 65 of the 100 requested" in result.output
    assert len(read_jsonl(out)) == 465
