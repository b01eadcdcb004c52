"""summary.json has a typed form: written, read back into the same types, unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.report.build import write_original_scores, write_run
from thoughtscope.statistics import (
    StatisticsInputError,
    Summary,
    read_summary,
    write_original_file_statistics,
    write_run_statistics,
)


def test_a_run_summary_reads_back_into_the_same_types_key_for_key(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "run", n=20, sites=("latent", "block:1"), schedules=("prefix", "single")
    )
    path = write_run_statistics(run, n_boot=30)
    data = json.loads(path.read_text(encoding="utf-8"))
    summary = read_summary(path)
    assert summary.to_dict() == data
    assert Summary.from_dict(summary.to_dict()) == summary
    shared = [c for c in summary.conditions if c.name == "zero@block:1:{0}"]
    assert [c.schedule for c in shared] == ["prefix", "single"]
    assert shared[0].condition.schedules == ("prefix", "single")
    importance = shared[0].scopes.metric("conditional", "importance")
    assert importance is not None and importance.n == shared[1].scopes.overall["conditional"].n
    view = shared[0].scopes.view("unconditional")
    assert view is not None and view.mcnemar is not None and view.mcnemar.has_holm


def test_an_original_file_summary_reads_back_unchanged(tmp_path: Path) -> None:
    scores = write_original_scores(tmp_path / "step_importance_scores.json")
    path = write_original_file_statistics(scores, tmp_path / "out", n_boot=20)
    summary = read_summary(path)
    assert summary.is_original_file and summary.to_dict() == json.loads(path.read_text())
    assert summary.original_layout.extra["check"] == []


def test_a_malformed_summary_is_one_line_naming_the_file(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", n=6, sites=("block:1",), schedules=("prefix",))
    path = write_run_statistics(run, n_boot=0)
    data = json.loads(path.read_text())
    del data["conditions"][0]["overall"]
    path.write_text(json.dumps(data))
    with pytest.raises(StatisticsInputError, match="malformed") as error:
        read_summary(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_records_written_once_per_schedule_are_read_as_one_condition() -> None:
    from thoughtscope.results.records import ProblemRecord

    shared = {"name": "zero@L8:{0}", "site": "block:8", "layers": [8], "positions": [0],
              "ablation": "zero", "output": "7", "predicted": 7.0, "correct": False,
              "changed": True, "gold_logprob": -2.0, "kl": 0.5, "num_latent": None}  # fmt: skip
    line = {
        "id": "p1",
        "expected": 7.0,
        "baseline": {"output": "7", "predicted": 7.0, "correct": True},
        "conditions": [{**shared, "schedule": "prefix"}, {**shared, "schedule": "single"}],
    }
    record = ProblemRecord.from_dict(line)
    (condition,) = record.conditions
    assert condition.condition.schedules == ("prefix", "single")
    assert condition.to_dict()["schedules"] == ["prefix", "single"]


def test_the_terminal_table_lists_a_shared_condition_once_with_its_schedules(
    tmp_path: Path,
) -> None:
    from thoughtscope.statistics import format_tables

    run = write_run(tmp_path / "run", n=12, sites=("block:1",), schedules=("prefix", "single"))
    text = format_tables(read_summary(write_run_statistics(run, n_boot=0)))
    conditions = text.split("Conditions, ")[1].split("\n\n")[0].splitlines()
    shared = [line for line in conditions if line.startswith("zero@block:1:{0} ")]
    assert len(shared) == 1 and "prefix,single" in shared[0]
