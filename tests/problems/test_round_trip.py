"""What `thoughtscope data D --out F` writes, `--data F` reads back as the same problems."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import thoughtscope.cli  # noqa: F401  # registers every command
from tests.conftest import GSM8K_TEST
from thoughtscope.cli.app import app
from thoughtscope.problems import load_problems


def export(spec: str, out: Path) -> None:
    result = CliRunner().invoke(app, ["data", spec, "--out", str(out)])
    assert result.exit_code == 0, result.output


def assert_round_trip(spec: str, tmp_path: Path) -> None:
    original = load_problems(spec)
    written = tmp_path / "written.jsonl"
    export(spec, written)
    again = load_problems(str(written))
    assert again.layout == "thoughtscope"
    assert again.problems == original.problems  # every field, steps and source included
    # Writing the read-back file again gives the same bytes: nothing drifts.
    rewritten = tmp_path / "rewritten.jsonl"
    export(str(written), rewritten)
    assert rewritten.read_bytes() == written.read_bytes()


def test_synthetic_problems_round_trip_with_their_steps(tmp_path: Path) -> None:
    assert_round_trip("synthetic:test:seed=3:n=40", tmp_path)
    strata = {p.steps for p in load_problems(str(tmp_path / "written.jsonl")).problems}
    assert None not in strata and len(strata) > 1


@pytest.mark.skipif(
    not GSM8K_TEST.is_file(),
    reason=f"GSM8K test set not at {GSM8K_TEST} (set THOUGHTSCOPE_GSM8K to its test.jsonl)",
)
def test_gsm8k_jsonl_round_trips_with_annotation_step_counts(tmp_path: Path) -> None:
    assert_round_trip(str(GSM8K_TEST), tmp_path)
    problems = load_problems(str(tmp_path / "written.jsonl")).problems
    assert len(problems) == 1319
    assert all(p.steps_source != "unknown" for p in problems)


def test_original_study_json_round_trips_with_given_steps(tmp_path: Path) -> None:
    rows = [
        {"question": "Ann has 3 apples and buys 4. How many?", "answer": 7, "reasoning_steps": 1},
        {"question": "Tom has 2.5 litres.", "answer": "2.5", "reasoning_steps": 3, "id": "t"},
        {"question": "Lost 5.", "answer": -5, "reasoning_steps": "2", "gsm8k_id": 12},
    ]
    study = tmp_path / "study.json"
    study.write_text(json.dumps(rows))
    assert_round_trip(str(study), tmp_path)
    steps = [p.steps for p in load_problems(str(tmp_path / "written.jsonl")).problems]
    assert steps == [1, 3, 2]


def test_plain_jsonl_round_trips_with_unknown_steps(tmp_path: Path) -> None:
    plain = tmp_path / "plain.jsonl"
    plain.write_text(
        "\n".join(
            json.dumps(row)
            for row in [
                {"question": "What is 2+2?", "answer": 4},
                {"question": "Half of 3?", "answer": 1.5, "solution": "3/2"},
            ]
        )
    )
    assert_round_trip(str(plain), tmp_path)


def test_plain_csv_round_trips(tmp_path: Path) -> None:
    plain = tmp_path / "plain.csv"
    with plain.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "answer"])
        writer.writerow(["How many legs, 3 cats?", "12"])
        writer.writerow(["Cost of 2 at $1,250.50?", "$2,501"])
    assert_round_trip(str(plain), tmp_path)


def test_a_csv_in_thoughtscope_layout_reads_steps_from_text_cells(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text(
        "id,question,answer,steps,steps_source,solution,source\n"
        "a,q one,3,2,given,,elsewhere\n"
        "b,q two,4,,unknown,,\n"
    )
    problems = load_problems(str(path)).problems
    assert [(p.id, p.steps, p.steps_source, p.source) for p in problems] == [
        ("a", 2, "given", "elsewhere"),
        ("b", None, "unknown", str(path)),
    ]


def test_a_damaged_thoughtscope_row_names_its_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    good = {"id": "a", "question": "q", "answer": 1, "steps": 2, "steps_source": "given"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "b", "steps": 1.5}))
    result = CliRunner().invoke(app, ["data", str(path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: {path}, line 2, field 'steps': 1.5 is not a whole number of steps (or null); "
        "fix or remove that row, or pass --skip-bad to skip bad rows (they are listed)"
    ]
