"""``thoughtscope stats`` on a run folder, on an original-layout file, and on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.statistics.build import (
    ORIGINAL_SCORES,
    F,
    T,
    manifest,
    prefix_problem,
    problem,
    write_run,
)
from thoughtscope.cli import app

runner = CliRunner()


def _says(output: str, expected: str) -> bool:
    """Whether ``expected`` is in ``output``, ignoring line wrapping."""
    return " ".join(expected.split()) in " ".join(output.split())


def _no_nan(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} holds {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    records = [
        prefix_problem("p1", 1, T, [T, F, F, F, F, F]),
        prefix_problem("p2", 2, T, [F, F, F, F, F, F]),
        prefix_problem("p3", 3, F, [F, T, F, F, F, F]),
        prefix_problem("p4", 5, T, [T, T, T, F, F, F]),
    ]
    return write_run(tmp_path / "run", records, manifest())


def test_stats_on_a_run_folder_writes_the_files_and_prints_tables(run_dir: Path) -> None:
    result = runner.invoke(app, ["stats", str(run_dir), "--n-boot", "200", "--seed", "3"])
    assert result.exit_code == 0, result.output
    summary = _no_nan(run_dir / "summary.json")
    assert summary["bootstrap"] == {**summary["bootstrap"], "n_boot": 200, "seed": 3}
    assert summary["n_problems"] == 4
    for name in ("step_importance_scores.json", "step_importance_summary_stats.json"):
        assert (run_dir / name).is_file()
    assert "Baseline accuracy" in result.output
    assert "75.0% [" in result.output
    assert "Prefix marginal steps" in result.output
    assert f"Wrote {run_dir / 'summary.json'}" in result.output


def test_stats_writes_into_out_and_uses_the_run_seed_by_default(
    run_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "elsewhere"
    result = runner.invoke(app, ["stats", str(run_dir), "--out", str(out), "--n-boot", "50"])
    assert result.exit_code == 0, result.output
    assert _no_nan(out / "summary.json")["bootstrap"]["seed"] == 0  # the manifest's seed
    assert not (run_dir / "summary.json").exists()


def test_stats_tolerates_a_truncated_last_line(run_dir: Path) -> None:
    with (run_dir / "results.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"id": "p5", "question": "cut sh')
    result = runner.invoke(app, ["stats", str(run_dir), "--n-boot", "20"])
    assert result.exit_code == 0, result.output
    assert _no_nan(run_dir / "summary.json")["n_problems"] == 4


def test_stats_on_an_original_file_gives_the_original_figures_and_new_ones(
    tmp_path: Path,
) -> None:
    path = tmp_path / "step_importance_scores.json"
    path.write_text(json.dumps(ORIGINAL_SCORES, indent=2), encoding="utf-8")
    result = runner.invoke(app, ["stats", str(path), "--n-boot", "200"])
    assert result.exit_code == 0, result.output
    stats = _no_nan(tmp_path / "step_importance_summary_stats.json")
    assert stats["position_importance"] == {
        "0": 0.0, "1": 0.25, "2": 0.25, "3": 0.5, "4": 0.625, "5": 0.75
    }  # fmt: skip
    assert stats["baseline_accuracy"] == 0.875
    assert stats["by_difficulty"]["5"] == {
        "n_problems": 2,
        "baseline_accuracy": 1.0,
        "early_importance": 0.0,
        "late_importance": 0.5,
        "pattern_validated": False,
    }
    summary = _no_nan(tmp_path / "summary.json")
    assert summary["source"] == "original-file"
    assert summary["conditions"][0]["overall"]["unconditional"]["mcnemar"]["b"] == 1
    assert "The original study's figures, computed its way" in result.output
    # Again: the stats file now exists and matches, so it is confirmed, not refused.
    again = runner.invoke(app, ["stats", str(path), "--n-boot", "20"])
    assert again.exit_code == 0, again.output
    assert "Recomputed original figures match" in again.output


def test_stats_never_overwrites_a_different_original_stats_file(tmp_path: Path) -> None:
    path = tmp_path / "step_importance_scores.json"
    path.write_text(json.dumps(ORIGINAL_SCORES), encoding="utf-8")
    other = tmp_path / "step_importance_summary_stats.json"
    other.write_text('{"n_problems": 1000}', encoding="utf-8")
    result = runner.invoke(app, ["stats", str(path), "--n-boot", "20"])
    assert result.exit_code == 2
    assert _says(result.output, "already exists and differs")
    assert _says(result.output, "--out")
    assert other.read_text(encoding="utf-8") == '{"n_problems": 1000}'


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file or folder"),
        ('[{"problem_id": 1,\n  "difficulty" 2}]', "not valid JSON at line 2, column"),
        ('{"n_problems": 3}', "expected the original study's layout"),
        ('[{"problem_id": "a", "baseline_correct": true, "difficulty": 2}]', "position_results"),
    ],
)
def test_bad_files_give_one_message_naming_the_file_and_exit_2(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "old_scores.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = runner.invoke(app, ["stats", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert expected in lines[0]
    assert "old_scores.json" in lines[0]


def test_bad_run_folders_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["stats", str(empty)])
    assert result.exit_code == 2
    assert _says(result.output, "no manifest.json")

    no_results = tmp_path / "no_results"
    no_results.mkdir()
    (no_results / "manifest.json").write_text(json.dumps(manifest()), encoding="utf-8")
    result = runner.invoke(app, ["stats", str(no_results)])
    assert result.exit_code == 2
    assert _says(result.output, "results.jsonl")

    damaged = write_run(tmp_path / "damaged", [problem("p1", 1, T, [])], manifest())
    lines = (damaged / "results.jsonl").read_text(encoding="utf-8")
    (damaged / "results.jsonl").write_text("{oops\n" + lines, encoding="utf-8")
    result = runner.invoke(app, ["stats", str(damaged)])
    assert result.exit_code == 2
    assert _says(result.output, "line 1")


def test_negative_n_boot_is_refused(run_dir: Path) -> None:
    result = runner.invoke(app, ["stats", str(run_dir), "--n-boot", "-1"])
    assert result.exit_code == 2
    assert _says(result.output, "--n-boot must be 0 or more")
