"""`thoughtscope table RUN`: one row per (problem, condition) that pandas reads and pivots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from thoughtscope.cli import app
from thoughtscope.results.table import COLUMNS, table_rows, write_table

pandas = pytest.importorskip("pandas")


def condition(name: str, schedule: str, positions: list[int], **outcome: Any) -> dict[str, Any]:
    return {
        "name": name,
        "schedule": schedule,
        "site": "latent",
        "layers": [],
        "positions": positions,
        "ablation": "zero",
        "output": "7",
        "predicted": 7.0,
        "correct": True,
        "changed": False,
        "gold_logprob": -0.5,
        "kl": 0.01,
        "num_latent": None,
        **outcome,
    }


def record(problem_id: str, *, correct: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "id": problem_id,
        "question": "q",
        "steps": 2,
        "steps_source": "given",
        "stratum": "2",
        "expected": 7.0,
        "baseline": {"output": "7", "predicted": 7.0, "correct": correct, "gold_logprob": -0.1},
        # {0} belongs to both schedules: listed twice, as runs before the fix wrote it.
        "conditions": [
            condition("zero@latent:{0}", "prefix", [0]),
            condition("zero@latent:{0}", "single", [0]),
            condition("zero@latent:{0,1}", "prefix", [0, 1], correct=False, changed=True),
            condition("zero@latent:{1}", "single", [1], output="0000", predicted=0.0),
        ],
        **extra,
    }


def write_run(folder: Path, records: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "results.jsonl").open("w") as handle:
        for item in records:
            handle.write(json.dumps(item) + "\n")
    return folder


def test_a_condition_in_two_schedules_is_one_row_naming_both() -> None:
    rows, duplicates = table_rows([record("a")])
    assert duplicates == 0
    assert [(r["condition"], r["schedules"]) for r in rows] == [
        ("baseline", None),
        ("zero@latent:{0}", "prefix;single"),
        ("zero@latent:{0,1}", "prefix"),
        ("zero@latent:{1}", "single"),
    ]


def test_a_listed_schedules_field_is_used_as_is() -> None:
    merged = record("a")
    merged["conditions"] = [
        {**condition("zero@latent:{0}", "prefix", [0]), "schedules": ["prefix", "single"]}
    ]
    rows, _ = table_rows([merged])
    assert rows[1]["schedules"] == "prefix;single"


def test_pandas_reads_the_csv_and_pivots_without_json_normalize(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [record("a"), record("b", correct=False)])
    result = CliRunner().invoke(app, ["table", str(run)])
    assert result.exit_code == 0, result.output
    assert f"8 rows (2 problems) -> {run / 'results.csv'}" in result.stdout
    table = pandas.read_csv(run / "results.csv", dtype={"output": str})
    assert list(table.columns[: len(COLUMNS)]) == list(COLUMNS)
    pivot = table.pivot(index="id", columns="condition", values="correct")
    assert pivot.shape == (2, 4)
    assert bool(pivot.loc["a", "zero@latent:{0,1}"]) is False
    assert bool(pivot.loc["b", "baseline"]) is False
    assert table["baseline_correct"].tolist() == [True] * 4 + [False] * 4
    assert table.loc[table["condition"] == "zero@latent:{1}", "output"].tolist() == ["0000"] * 2
    assert table["n_positions"].fillna(0).tolist() == [0, 1, 2, 1] * 2


def test_extra_outcome_fields_become_columns(tmp_path: Path) -> None:
    item = record("a")
    item["baseline"].update(finished=True, clean=True)
    for entry in item["conditions"]:
        entry.update(finished=entry["output"] != "0000", clean=entry["output"] != "0000")
    files = write_table(write_run(tmp_path / "run", [item]))
    table = pandas.read_csv(files.csv)
    assert list(table.columns[len(COLUMNS) :]) == ["finished", "clean"]
    assert table["clean"].tolist() == [True, True, True, False]


def test_a_repeated_problem_id_is_kept_once_and_counted(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [record("a"), record("b"), record("a", correct=False)])
    result = CliRunner().invoke(app, ["table", str(run)])
    assert result.exit_code == 0, result.output
    assert "1 lines repeat an earlier problem id" in result.stderr
    table = pandas.read_csv(run / "results.csv")
    assert sorted(set(table["id"])) == ["a", "b"] and len(table) == 8
    assert table.loc[table["id"] == "a", "baseline_correct"].all()  # the first line wins


def test_a_damaged_line_is_one_line_naming_it(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [record("a"), record("b")])
    lines = (run / "results.jsonl").read_text().splitlines(keepends=True)
    (run / "results.jsonl").write_text(lines[0] + "{oops\n" + lines[1])
    result = CliRunner().invoke(app, ["table", str(run)])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(
        f"Error: {run / 'results.jsonl'}, line 2: not valid JSON"
    )
    assert not (run / "results.csv").exists()


def test_parquet_holds_the_same_rows_when_pyarrow_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    files = write_table(write_run(tmp_path / "run", [record("a"), record("b")]))
    assert files.parquet is not None
    from_parquet = pandas.read_parquet(files.parquet)
    from_csv = pandas.read_csv(files.csv, dtype={"output": str})
    assert from_parquet.shape == from_csv.shape
    assert from_parquet["condition"].tolist() == from_csv["condition"].tolist()
    assert from_parquet["predicted"].tolist() == from_csv["predicted"].tolist()
