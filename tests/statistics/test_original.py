"""The original study's layout: its figures recomputed exactly, and written from a run."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.statistics.build import (
    ORIGINAL_SCORES,
    F,
    T,
    manifest,
    prefix_name,
    prefix_problem,
    problem,
    write_run,
)
from thoughtscope.statistics import StatisticsInputError, write_original_file_statistics
from thoughtscope.statistics.conditions import members_of
from thoughtscope.statistics.files import write_run_statistics
from thoughtscope.statistics.original import (
    choose_original_family,
    original_layout_section,
    original_statistics,
    parse_original,
    records_from_original,
)
from thoughtscope.statistics.summary import summary_from_records

# Hand-computed from ORIGINAL_SCORES (importance_score = correctness changed either way):
# per position, the problems scoring 1: pos1 {4, 5}, pos2 {2, 4}, pos3 {1, 2, 4},
# pos4 {1, 2, 4, 6}, pos5 {1, 2, 3, 4, 6, 7}; eight problems, problem 5 baseline-wrong.
EXPECTED_POSITIONS = {"0": 0.0, "1": 0.25, "2": 0.25, "3": 0.5, "4": 0.625, "5": 0.75}
EXPECTED_BY_DIFFICULTY = {
    # steps 2 (problems 1-3): position means 0, 0, 1/3 | 2/3, 2/3, 1
    "2": {"n_problems": 3, "baseline_accuracy": 1.0, "early": 1 / 9, "late": 7 / 9},
    # steps 3 (problems 4-6): position means 0, 2/3, 1/3 | 1/3, 2/3, 2/3
    "3": {"n_problems": 3, "baseline_accuracy": 2 / 3, "early": 1 / 3, "late": 5 / 9},
    # steps 5 (problems 7-8): position means 0, 0, 0 | 1/2, 1/2, 1/2
    "5": {"n_problems": 2, "baseline_accuracy": 1.0, "early": 0.0, "late": 0.5},
}


def test_original_figures_come_out_as_the_original_computed_them() -> None:
    stats = original_statistics(parse_original(copy.deepcopy(ORIGINAL_SCORES), "scores.json"))
    assert stats["n_problems"] == 8
    assert stats["baseline_accuracy"] == 0.875
    assert list(stats["position_importance"]) == ["0", "1", "2", "3", "4", "5"]
    assert stats["position_importance"] == EXPECTED_POSITIONS
    assert list(stats["by_difficulty"]) == ["2", "3", "5"]
    for key, expected in EXPECTED_BY_DIFFICULTY.items():
        got = stats["by_difficulty"][key]
        assert got["n_problems"] == expected["n_problems"]
        assert got["baseline_accuracy"] == pytest.approx(expected["baseline_accuracy"], abs=1e-15)
        assert got["early_importance"] == pytest.approx(expected["early"], abs=1e-15)
        assert got["late_importance"] == pytest.approx(expected["late"], abs=1e-15)
        assert got["pattern_validated"] is False  # early >= late nowhere


def test_original_empty_means_become_null_not_nan() -> None:
    only_zero = [
        {**ORIGINAL_SCORES[0], "position_results": ORIGINAL_SCORES[0]["position_results"][:1]}
    ]
    stats = original_statistics(only_zero)
    assert stats["by_difficulty"]["2"]["late_importance"] is None
    assert stats["by_difficulty"]["2"]["pattern_validated"] is False
    json.dumps(stats, allow_nan=False)


def test_new_figures_beside_the_original_ones() -> None:
    records, meta = records_from_original(ORIGINAL_SCORES)
    summary = summary_from_records(records, meta, n_boot=200, seed=0)
    layout = original_layout_section(records, meta, original_statistics(ORIGINAL_SCORES))
    assert summary["source"] == "original-file"
    assert layout["figures"]["position_importance"] == EXPECTED_POSITIONS
    assert layout["written"] and layout["family"]["site"] == "original"
    names = [c["name"] for c in summary["conditions"]]
    assert names == ["zero@orig:{0}", "zero@orig:{0,1}", "zero@orig:{0,1,2}",
                     "zero@orig:{0,1,2,3}", "zero@orig:{0,1,2,3,4}"]  # fmt: skip
    last = summary["conditions"][-1]["overall"]
    # the original's 0.75 counts problem 5 (wrong -> wrong) in the denominator and would
    # count a wrong -> right change as importance; ours splits the two directions
    assert last["conditional"]["metrics"]["importance"]["estimate"] == pytest.approx(6 / 7)
    assert last["unconditional"]["metrics"]["importance"]["estimate"] == 0.75
    assert (last["unconditional"]["mcnemar"]["b"], last["unconditional"]["mcnemar"]["c"]) == (6, 0)
    assert last["unconditional"]["mcnemar"]["p_value"] == pytest.approx(0.03125)
    first = summary["conditions"][0]["overall"]["unconditional"]["metrics"]
    assert first["flip_wrong_to_right"]["estimate"] == 1.0  # problem 5 fixed at position 1
    assert summary["strata"] == ["2", "3", "5"]
    steps = summary["prefix_marginals"][0]["steps"]
    assert [s["added_positions"] for s in steps] == [[0], [1], [2], [3], [4]]
    assert any("original's numbering" in c for c in summary["caveats"])


def test_reading_the_validation_layout_and_checking_its_statistics(tmp_path: Path) -> None:
    validation = {
        "validation_status": "COMPLETE",
        "n_samples": 8,
        "results": ORIGINAL_SCORES,
        "statistics": original_statistics(ORIGINAL_SCORES),
    }
    path = tmp_path / "step_importance_validation.json"
    path.write_text(json.dumps(validation), encoding="utf-8")
    summary = json.loads(write_original_file_statistics(path, n_boot=50).read_text())
    assert summary["original_layout"]["check"] == [
        {"against": "step_importance_validation.json 'statistics'", "matches": True}
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"n_problems": 3}, "top level is dict"),
        ([{"problem_id": "x", "baseline_correct": True, "difficulty": 2}], "position_results"),
        ([{**ORIGINAL_SCORES[0], "position_results": [{"position": "one"}]}], "integer"),
        ([3], "not an object"),
    ],
)
def test_wrong_layouts_are_refused_with_the_file_and_field(
    tmp_path: Path, data: Any, message: str
) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(StatisticsInputError, match=message) as error:
        write_original_file_statistics(path, n_boot=10)
    assert "old.json" in str(error.value)


def _six_prefix(pid: str, steps: int, base: bool, sizes: list[bool], site: str) -> Any:
    return prefix_problem(pid, steps, base, sizes, site=site)


def test_choice_of_site_for_the_original_layout() -> None:
    def infos(*sites: str) -> Any:
        return members_of([_six_prefix("p", 2, T, [T] * 6, s) for s in sites])

    with_count = manifest()  # model has 16 layers: middle block 8
    no_count = manifest(model={"name": "toy"})

    def chosen(meta: dict[str, Any], *sites: str) -> str:
        return choose_original_family(infos(*sites), meta).family.site

    assert chosen(with_count, "block:4", "block:8", "block:14") == "block:8"
    assert chosen(with_count, "block:4", "block:12") == "block:4"  # tie: the lower
    assert chosen(no_count, "block:2", "block:6", "block:10") == "block:6"  # median
    assert chosen(no_count, "latent", "block:3") == "block:3"
    only_latent = choose_original_family(infos("latent"), with_count)
    assert only_latent.family.site == "latent"
    assert only_latent.positions == {i: prefix_name("latent", i) for i in range(1, 6)}
    nothing = choose_original_family([], with_count)
    assert nothing.family is None and "no zero-ablation prefix" in nothing.reason


def test_run_written_in_the_original_layout(tmp_path: Path) -> None:
    records = [
        _six_prefix("p1", 2, T, [T, T, F, F, F, F], "block:8"),
        _six_prefix("p2", 3, T, [T, F, F, F, F, F], "block:8"),
        problem("p3", 5, F, []),  # baseline-wrong, not measured
    ]
    run = write_run(tmp_path / "run", records, manifest("baseline-correct", validate=100))
    summary = json.loads(write_run_statistics(run, n_boot=50).read_text())
    scores = json.loads((run / "step_importance_scores.json").read_text())
    assert [s["problem_id"] for s in scores] == ["p1", "p2", "p3"]
    first = scores[0]
    assert first["expected_answer"] == 18 and first["difficulty"] == 2
    assert first["baseline_correct"] is True
    assert [p["position"] for p in first["position_results"]] == [0, 1, 2, 3, 4, 5]
    assert [p["ablated_correct"] for p in first["position_results"]] == [T, T, T, F, F, F]
    assert [p["importance_score"] for p in first["position_results"]] == [0, 0, 0, 1, 1, 1]
    assert first["position_results"][3]["baseline_to_ablated"] == "1 → 0"
    assert scores[2]["position_results"] == []
    stats = json.loads((run / "step_importance_summary_stats.json").read_text())
    assert stats["n_problems"] == 3 and stats["baseline_accuracy"] == pytest.approx(2 / 3)
    assert stats["position_importance"] == {"0": 0, "1": 0, "2": 0.5, "3": 1, "4": 1, "5": 1}
    assert stats == summary["original_layout"]["figures"]
    validation = json.loads((run / "step_importance_validation.json").read_text())
    assert validation["n_samples"] == 3 and validation["statistics"] == stats
    layout = summary["original_layout"]
    assert layout["written"] and layout["family"]["site"] == "block:8"
    assert layout["positions"]["1"] == prefix_name("block:8", 1)
    assert "6" not in layout["positions"]  # ablating every thought has no original place
    assert summary["files"] == [
        "summary.json",
        "step_importance_scores.json",
        "step_importance_summary_stats.json",
        "step_importance_validation.json",
    ]


def test_a_run_without_zero_prefix_conditions_writes_only_the_summary(tmp_path: Path) -> None:
    records = [prefix_problem("p1", 2, T, [F], site="latent")]
    records = [
        replace(r, conditions=[
            replace(c, condition=replace(c.condition, ablation="mean", name="mean@latent:{0}"))
            for c in r.conditions
        ])
        for r in records
    ]  # fmt: skip
    run = write_run(tmp_path / "run", records, manifest())
    summary = json.loads(write_run_statistics(run, n_boot=20).read_text())
    assert summary["files"] == ["summary.json"]
    assert not (run / "step_importance_scores.json").exists()
    assert summary["original_layout"]["written"] is False
    assert summary["original_layout"]["figures"] is None
