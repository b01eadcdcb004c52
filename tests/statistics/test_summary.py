"""summary_from_records on small cases worked out by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.statistics.build import (
    F,
    T,
    condition,
    manifest,
    prefix_name,
    prefix_problem,
    problem,
)
from thoughtscope.statistics import format_tables, summary_from_records

A, B = prefix_name("block:8", 1), prefix_name("block:8", 2)


def _two_condition_records() -> list:
    """Five problems, conditions A = zero {0} and B = zero {0,1} at block 8.

    id  stratum  baseline  A  B
    p1  1        right     R  W
    p2  1        right     W  W
    p3  2        wrong     R  W
    p4  2        right     R  R
    p5  2        wrong     W  W
    """
    rows = [("p1", 1, T, T, F), ("p2", 1, T, F, F), ("p3", 2, F, T, F)]
    rows += [("p4", 2, T, T, T), ("p5", 2, F, F, F)]
    return [prefix_problem(pid, steps, base, [a, b]) for pid, steps, base, a, b in rows]


def _condition(summary: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in summary["conditions"] if c["name"] == name)


def _estimates(view: dict[str, Any]) -> dict[str, float | None]:
    return {key: m["estimate"] for key, m in view["metrics"].items()}


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    return summary_from_records(_two_condition_records(), manifest(), n_boot=400, seed=5)


def test_baseline_accuracy_overall_and_per_stratum(summary: dict[str, Any]) -> None:
    base = summary["baseline"]
    assert (base["accuracy"], base["n"], base["n_correct"]) == (0.6, 5, 3)
    assert base["by_stratum"]["1"]["accuracy"] == 1.0
    assert base["by_stratum"]["2"]["accuracy"] == pytest.approx(1 / 3)
    assert summary["selection"] == "all"
    assert "every problem" in summary["selection_rule"]
    assert summary["strata"] == ["1", "2", "3", "4", "5+"]  # the manifest's bands


def test_unconditional_rates_count_every_problem(summary: dict[str, Any]) -> None:
    a = _condition(summary, A)["overall"]["unconditional"]
    assert a["n"] == 5
    assert _estimates(a) == pytest.approx(
        {
            "accuracy": 0.6,
            "baseline_accuracy": 0.6,
            "accuracy_change": 0.0,
            "importance": 0.2,  # p2 only
            "flip_right_to_wrong": 1 / 3,  # p2 of p1, p2, p4
            "flip_wrong_to_right": 0.5,  # p3 of p3, p5
            "changed": 0.4,  # p2, p3
            "delta_gold_logprob": None,
            "kl": None,
        }
    )
    assert a["mcnemar"]["b"] == 1 and a["mcnemar"]["c"] == 1
    assert a["mcnemar"]["p_value"] == 1.0
    b = _condition(summary, B)["overall"]["unconditional"]
    assert b["metrics"]["importance"]["estimate"] == 0.4  # p1, p2
    assert b["metrics"]["flip_wrong_to_right"]["estimate"] == 0.0
    assert (b["mcnemar"]["b"], b["mcnemar"]["c"], b["mcnemar"]["p_value"]) == (2, 0, 0.5)


def test_conditional_view_uses_only_baseline_correct_problems(summary: dict[str, Any]) -> None:
    a = _condition(summary, A)["overall"]["conditional"]
    b = _condition(summary, B)["overall"]["conditional"]
    assert a["n"] == b["n"] == 3
    assert a["metrics"]["importance"]["estimate"] == pytest.approx(1 / 3)
    assert b["metrics"]["importance"]["estimate"] == pytest.approx(2 / 3)
    wrong_to_right = a["metrics"]["flip_wrong_to_right"]
    assert wrong_to_right["estimate"] is None and "baseline-wrong" in wrong_to_right["reason"]
    assert "baseline-correct" in a["population"]
    assert "c is 0 by construction" in a["mcnemar"]["note"]


def test_every_interval_contains_its_estimate(summary: dict[str, Any]) -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if {"estimate", "ci", "n", "reason"} <= node.keys() and node["ci"] is not None:
                low, high = node["ci"]
                assert low - 1e-12 <= node["estimate"] <= high + 1e-12
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(summary)


def test_small_strata_get_null_intervals_with_a_reason(summary: dict[str, Any]) -> None:
    # stratum 2 has one baseline-correct problem (p4): estimate, no interval
    one = _condition(summary, A)["by_stratum"]["2"]["conditional"]["metrics"]["importance"]
    assert one == {"estimate": 0.0, "ci": None, "n": 1, "reason": "one problem only: no interval"}
    # stratum 1 has no baseline-wrong problem at all
    none = _condition(summary, A)["by_stratum"]["1"]["unconditional"]["metrics"]
    assert none["flip_wrong_to_right"]["estimate"] is None
    assert none["flip_wrong_to_right"]["n"] == 0
    assert any("Small strata" in c for c in summary["caveats"])


def test_prefix_marginal_steps_are_paired_differences(summary: dict[str, Any]) -> None:
    (family,) = summary["prefix_marginals"]
    first, second = family["steps"]
    assert (first["from"], first["to"], first["added_positions"]) == ("baseline", A, [0])
    assert (second["from"], second["to"], second["added_positions"]) == (A, B, [1])
    step = second["overall"]["unconditional"]["metrics"]
    assert step["importance"]["estimate"] == pytest.approx(0.2)  # p1 broke only under B
    assert step["accuracy"]["estimate"] == pytest.approx(-0.4)  # 3/5 -> 1/5
    assert first["overall"]["unconditional"]["metrics"]["importance"]["estimate"] == 0.2
    conditional = second["overall"]["conditional"]["metrics"]["importance"]
    assert conditional["estimate"] == pytest.approx(1 / 3)
    assert any("cumulative" in c for c in summary["caveats"])


def test_summary_is_json_without_nan_and_seeded(summary: dict[str, Any]) -> None:
    text = json.dumps(summary, allow_nan=False)
    again = summary_from_records(_two_condition_records(), manifest(), n_boot=400, seed=5)
    assert json.dumps(again, allow_nan=False) == text
    other = summary_from_records(_two_condition_records(), manifest(), n_boot=400, seed=6)
    assert json.dumps(other) != text
    assert {"definitions", "caveats", "early_late"} <= summary.keys()
    assert "original_layout" not in summary  # an adapter the writers add, not a statistic
    assert "thought 0 is the first" in summary["definitions"]["positions"]


def test_early_and_late_follow_the_original_positions() -> None:
    # Prefix sizes 1..5 (original positions 1..5); position 0 is the baseline (0).
    records = [
        prefix_problem("p1", 2, T, [T, F, F, F, F]),  # early (0+0+1)/3, late 1
        prefix_problem("p2", 2, T, [T, T, T, F, F]),  # early 0, late 2/3
        prefix_problem("p3", 3, F, [F, F, F, F, F]),  # baseline wrong: importance 0
    ]
    summary = summary_from_records(records, manifest(), n_boot=200, seed=0)
    (entry,) = summary["early_late"]
    assert entry["early"]["indices"] == [0, 1, 2]
    assert entry["early"]["members"][0] == "baseline"
    assert entry["late"]["indices"] == [3, 4, 5]
    conditional = entry["overall"]["conditional"]["metrics"]
    assert conditional["early"]["estimate"] == pytest.approx(1 / 6)
    assert conditional["late"]["estimate"] == pytest.approx(5 / 6)
    assert conditional["late_minus_early"]["estimate"] == pytest.approx(2 / 3)
    unconditional = entry["overall"]["unconditional"]["metrics"]
    assert unconditional["early"]["estimate"] == pytest.approx(1 / 9)
    assert unconditional["late"]["estimate"] == pytest.approx(5 / 9)


def test_single_thought_families_get_early_and_late_by_thought() -> None:
    def single(pid: str, broken: set[int]) -> Any:
        conds = [
            condition(f"zero@block:8:{{{t}}}", t not in broken, baseline_correct=True,
                      schedule="single", positions=[t])
            for t in range(6)
        ]  # fmt: skip
        return problem(pid, 3, True, conds)

    summary = summary_from_records(
        [single("p1", {4, 5}), single("p2", {0})], manifest(), n_boot=100, seed=0
    )
    (entry,) = summary["early_late"]
    assert entry["family"]["schedule"] == "single"
    metrics = entry["overall"]["conditional"]["metrics"]
    assert metrics["early"]["estimate"] == pytest.approx(1 / 6)
    assert metrics["late"]["estimate"] == pytest.approx(2 / 6)
    assert summary["prefix_marginals"] == []


def test_gold_logprob_change_and_kl_are_means_over_recorded_values() -> None:
    records = [
        problem("p1", 1, T, [condition(A, T, baseline_correct=T, positions=[0],
                                       gold_logprob=-3.0, kl=0.5)], gold_logprob=-1.0),
        problem("p2", 1, T, [condition(A, F, baseline_correct=T, positions=[0],
                                       gold_logprob=-2.0, kl=1.5)], gold_logprob=-1.0),
        problem("p3", 1, T, [condition(A, T, baseline_correct=T, positions=[0])]),
    ]  # fmt: skip
    summary = summary_from_records(records, manifest(), n_boot=200, seed=0)
    metrics = summary["conditions"][0]["overall"]["unconditional"]["metrics"]
    assert metrics["delta_gold_logprob"]["estimate"] == pytest.approx(-1.5)
    assert metrics["delta_gold_logprob"]["n"] == 2
    assert metrics["kl"]["estimate"] == pytest.approx(1.0)
    assert metrics["kl"]["n"] == 2
    step = summary["prefix_marginals"][0]["steps"][0]["overall"]["unconditional"]["metrics"]
    assert step["gold_logprob"]["estimate"] == pytest.approx(-1.5)


def test_baseline_correct_selection_says_the_views_coincide() -> None:
    records = [
        prefix_problem("p1", 1, T, [T, F]),
        prefix_problem("p2", 2, T, [F, F]),
        problem("p3", 2, F, []),  # baseline-wrong: no conditions were run
    ]
    summary = summary_from_records(records, manifest("baseline-correct"), n_boot=200, seed=0)
    assert summary["baseline"]["accuracy"] == pytest.approx(2 / 3)
    assert summary["n_with_conditions"] == 2
    cond = _condition(summary, A)["overall"]
    assert cond["unconditional"]["n"] == cond["conditional"]["n"] == 2
    assert cond["unconditional"]["note"] is not None
    # same problems, same resamples: identical figures in both views
    assert cond["unconditional"]["metrics"] == cond["conditional"]["metrics"]
    assert any("only run on baseline-correct" in c for c in summary["caveats"])
    assert "answered correctly without intervention" in summary["selection_rule"]
    assert "Conditions, both views" in format_tables(summary)


def test_no_records_or_no_conditions_do_not_crash() -> None:
    empty = summary_from_records([], manifest(), n_boot=100, seed=0)
    assert empty["n_problems"] == 0 and empty["conditions"] == []
    assert empty["baseline"]["accuracy"] is None and empty["baseline"]["reason"]
    json.dumps(empty, allow_nan=False)
    format_tables(empty)
    bare = summary_from_records([problem("p1", 1, T, [])], manifest(), n_boot=100, seed=0)
    assert bare["baseline"]["ci"] is None and bare["baseline"]["n"] == 1
    json.dumps(bare, allow_nan=False)


def test_unknown_strata_sort_last_and_get_a_caveat() -> None:
    record = prefix_problem("p1", 1, T, [F])
    unknown = type(record)(**{**record.__dict__, "id": "p2", "stratum": "unknown"})
    summary = summary_from_records([unknown, record], manifest(), n_boot=50, seed=0)
    assert summary["strata"] == ["1", "2", "3", "4", "5+", "unknown"]
    assert any("unknown" in c for c in summary["caveats"])


def test_tables_show_rates_with_intervals_and_caveats(summary: dict[str, Any]) -> None:
    text = format_tables(summary)
    assert "Baseline accuracy" in text
    assert "60.0% [" in text
    assert "unconditional view" in text and "conditional view" in text
    assert "Prefix marginal steps" in text
    assert "Caveats" in text
    assert "nan" not in text.lower()


def test_a_run_with_no_baseline_correct_problem_says_importance_cannot_be_seen() -> None:
    records = [prefix_problem("p1", 1, F, [F]), prefix_problem("p2", 2, F, [T])]
    summary = summary_from_records(records, manifest(), n_boot=50, seed=0)
    conditional = summary["conditions"][0]["overall"]["conditional"]
    assert conditional["n"] == 0
    assert conditional["metrics"]["importance"]["estimate"] is None
    assert any("importance (right->wrong) is 0 by definition" in c for c in summary["caveats"])
    text = format_tables(summary)
    assert "Conditional view: empty" in text


def test_configured_strata_without_problems_appear_empty_with_reasons() -> None:
    records = [prefix_problem("p1", 1, T, [F]), prefix_problem("p2", 1, T, [T])]
    summary = summary_from_records(records, manifest(), n_boot=50, seed=0)
    assert summary["strata"] == ["1", "2", "3", "4", "5+"]
    empty = summary["baseline"]["by_stratum"]["3"]
    assert empty == {
        "accuracy": None,
        "ci": None,
        "n": 0,
        "n_correct": 0,
        "reason": "no problems",
        "n_unfinished": 0,
        "n_unclean": 0,
    }
    view = summary["conditions"][0]["by_stratum"]["5+"]["unconditional"]
    assert view["n"] == 0 and view["mcnemar"]["p_value"] is None
    assert view["metrics"]["importance"]["estimate"] is None
    assert view["metrics"]["importance"]["reason"].startswith("no problems")
    assert any("3 (n=0)" in c for c in summary["caveats"])
    json.dumps(summary, allow_nan=False)
    format_tables(summary)


def test_a_condition_shared_by_two_schedules_counts_in_both_families() -> None:
    """The sweep runs and records `zero@block:8:{0}` once, as a member of `prefix` and
    `single`; the statistics give it figures in both families."""
    from tests.statistics.build import condition, manifest, problem
    from thoughtscope.statistics import summary_from_records
    from thoughtscope.statistics.conditions import (
        members_of,
        prefix_families,
        single_families,
    )

    def record(pid: str, ok: list[bool]) -> object:
        conds = [
            condition(
                "zero@block:8:{0}",
                ok[0],
                baseline_correct=True,
                positions=[0],
                schedules=("prefix", "single"),
            ),
            condition("zero@block:8:{0,1}", ok[1], baseline_correct=True, positions=[0, 1]),
            condition(
                "zero@block:8:{1}", ok[2], baseline_correct=True, positions=[1], schedule="single"
            ),
        ]
        return problem(pid, 2, True, conds)

    records = [record("a", [False, False, True]), record("b", [True, False, False])]
    summary = summary_from_records(records, manifest(), n_boot=0)  # type: ignore[arg-type]
    pairs = {(c["name"], c["schedule"]) for c in summary["conditions"]}
    assert ("zero@block:8:{0}", "prefix") in pairs and ("zero@block:8:{0}", "single") in pairs
    infos = members_of(records)  # type: ignore[arg-type]
    (single,) = single_families(infos)
    assert single.members == {0: "zero@block:8:{0}", 1: "zero@block:8:{1}"}
    (prefix,) = prefix_families(infos)
    assert prefix.members == {1: "zero@block:8:{0}", 2: "zero@block:8:{0,1}"}


def test_holm_counts_a_condition_shared_by_two_schedules_once() -> None:
    from tests.statistics.build import condition, manifest, problem
    from thoughtscope.statistics import holm_adjust, summary_from_records

    def record(pid: str, ok0: bool, ok1: bool) -> object:
        conds = [
            condition(
                "zero@block:8:{0}",
                ok0,
                baseline_correct=True,
                positions=[0],
                schedules=("prefix", "single"),
            ),
            condition(
                "zero@block:8:{1}", ok1, baseline_correct=True, positions=[1], schedule="single"
            ),
        ]
        return problem(pid, 2, True, conds)

    records = [record(str(i), i % 2 == 0, i % 3 == 0) for i in range(12)]
    summary = summary_from_records(records, manifest(), n_boot=0)  # type: ignore[arg-type]
    tests = {
        (c["name"], c["schedule"]): c["overall"]["unconditional"]["mcnemar"]
        for c in summary["conditions"]
    }
    shared = tests[("zero@block:8:{0}", "prefix")], tests[("zero@block:8:{0}", "single")]
    assert shared[0]["b"] == shared[1]["b"] and shared[0]["c"] == shared[1]["c"]
    assert shared[0]["p_value_holm"] == shared[1]["p_value_holm"]
    raw = [shared[0]["p_value"], tests[("zero@block:8:{1}", "single")]["p_value"]]
    assert shared[0]["p_value_holm"] == holm_adjust(raw)[0]


def test_baseline_answers_that_never_finished_or_hold_no_clean_number_are_counted() -> None:
    from dataclasses import replace

    from thoughtscope.statistics.schema import Summary

    records = [problem(f"p{i}", 2, True, []) for i in range(4)]
    flags = [(True, True), (False, False), (True, False), (False, False)]
    records = [
        replace(r, baseline=replace(r.baseline, finished=f, clean=c))
        for r, (f, c) in zip(records, flags, strict=True)
    ]
    summary = Summary.from_dict(summary_from_records(records, manifest(), n_boot=50, seed=0))
    assert (summary.baseline.n_unfinished, summary.baseline.n_unclean) == (2, 3)
    assert summary.baseline_by_stratum["2"].n_unfinished == 2

    older = summary_from_records([problem("old", 2, True, [])], manifest(), n_boot=50, seed=0)
    assert Summary.from_dict(older).baseline.n_unfinished is None
