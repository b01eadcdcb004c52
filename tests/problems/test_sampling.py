"""Stratified sampling, filters and the shortfall report."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from thoughtscope.problems.difficulty import Strata
from thoughtscope.problems.problem import Problem
from thoughtscope.problems.sampling import sample_stratified


def make_problems(steps: Sequence[int | None]) -> list[Problem]:
    return [
        Problem(f"p{i:03d}", f"q{i}", float(i), s, "given", None, "test")
        for i, s in enumerate(steps)
    ]


# 10 one-step, 10 two-step, 3 three-step, 6 five-step problems, interleaved.
POOL = make_problems([1, 2] * 10 + [3] * 3 + [5] * 6)


def test_without_a_sample_every_problem_is_kept_and_counted() -> None:
    chosen = sample_stratified(POOL)
    assert chosen.problems == POOL
    counts = {c.label: (c.available, c.requested, c.taken) for c in chosen.report.strata}
    assert counts == {
        "1": (10, None, 10),
        "2": (10, None, 10),
        "3": (3, None, 3),
        "4": (0, None, 0),
        "5+": (6, None, 6),
    }
    assert chosen.report.shortfall == 0


def test_n_per_stratum_takes_small_strata_whole_and_reports_the_shortfall() -> None:
    chosen = sample_stratified(POOL, 4, seed=1)
    taken = {c.label: c.taken for c in chosen.report.strata}
    assert taken == {"1": 4, "2": 4, "3": 3, "4": 0, "5+": 4}
    short = {c.label: c.shortfall for c in chosen.report.short_strata()}
    assert short == {"3": 1, "4": 4}
    assert chosen.report.shortfall == 5
    assert len(chosen.problems) == 15


def test_n_in_total_is_spread_evenly_over_the_strata_that_have_problems() -> None:
    chosen = sample_stratified(POOL, 14, per_stratum=False, seed=3)
    requested = {c.label: c.requested for c in chosen.report.strata}
    # 4 non-empty strata: 14 = 4+4+3+3, the first ones get the remainder; "4" gets none.
    assert requested == {"1": 4, "2": 4, "3": 3, "4": 0, "5+": 3}
    assert chosen.report.taken == 14


def test_a_shortfall_in_total_mode_is_reported_not_made_up_elsewhere() -> None:
    chosen = sample_stratified(POOL, 20, per_stratum=False)
    by_label = {c.label: c for c in chosen.report.strata}
    assert by_label["3"].requested == 5
    assert by_label["3"].taken == 3
    assert by_label["3"].shortfall == 2
    assert chosen.report.taken == 18


def test_the_sample_keeps_the_source_order() -> None:
    chosen = sample_stratified(POOL, 3, seed=5)
    ids = [p.id for p in chosen.problems]
    assert ids == sorted(ids)


def test_the_same_seed_gives_the_same_sample_and_another_seed_another() -> None:
    first = sample_stratified(POOL, 3, seed=5).problems
    assert sample_stratified(POOL, 3, seed=5).problems == first
    assert any(sample_stratified(POOL, 3, seed=s).problems != first for s in range(6, 10))


def test_a_strata_sample_does_not_change_when_another_stratum_grows() -> None:
    grown = POOL + [Problem(f"x{i}", "q", 1.0, 5, "given", None, "t") for i in range(40)]
    ones = [p for p in sample_stratified(POOL, 3, seed=2).problems if p.steps == 1]
    ones_grown = [p for p in sample_stratified(grown, 3, seed=2).problems if p.steps == 1]
    assert ones == ones_grown


def test_steps_filter_drops_out_of_range_and_unknown_steps() -> None:
    pool = make_problems([1, 2, 3, None, 4, 5])
    chosen = sample_stratified(pool, min_steps=2, max_steps=4)
    assert [p.steps for p in chosen.problems] == [2, 3, 4]
    assert chosen.report.dropped_by_steps == 3


def test_limit_keeps_the_first_problems_before_sampling() -> None:
    chosen = sample_stratified(POOL, limit=5)
    assert chosen.problems == POOL[:5]
    assert chosen.report.dropped_by_limit == len(POOL) - 5


def test_unknown_and_other_steps_form_their_own_strata() -> None:
    pool = make_problems([None, None, 1, 9])
    chosen = sample_stratified(pool, 1, strata=Strata.parse("1,2"))
    labels = [c.label for c in chosen.report.strata]
    assert labels == ["1", "2", "other", "unknown"]
    assert {p.steps for p in chosen.problems} == {None, 1, 9}


def test_report_to_dict_includes_shortfalls() -> None:
    report = sample_stratified(POOL, 4).report.to_dict()
    assert report["shortfall"] == 5
    assert report["strata"][2] == {
        "label": "3",
        "available": 3,
        "requested": 4,
        "taken": 3,
        "shortfall": 1,
    }


@pytest.mark.parametrize(
    "kwargs",
    [{"n": -1}, {"limit": -2}, {"min_steps": 4, "max_steps": 2}],
)
def test_invalid_selection_arguments_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        sample_stratified(POOL, **kwargs)  # type: ignore[arg-type]
