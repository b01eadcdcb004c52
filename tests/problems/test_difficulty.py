"""Counting reasoning steps and assigning difficulty strata."""

from __future__ import annotations

import pytest

from thoughtscope.problems.difficulty import DEFAULT_STRATA, Strata, count_steps


def test_steps_are_the_number_of_calculator_annotations() -> None:
    solution = "He sprints 3*3=<<3*3=9>>9 times\nSo he runs 9*60=<<9*60=540>>540 meters\n#### 540"
    assert count_steps(solution) == (2, "annotations")


def test_a_solution_without_annotations_falls_back_to_arithmetic_lines() -> None:
    solution = (
        "Let x be the age of Carver's son.\n"
        "Since Carver's age (45) is 5 years less than twice his son's, then 45=(2*x)-5.\n"
        "Add 5 to each side of the equation and we get 50=2*x.\n"
        "Thus, the age of Carver's son is x=25 years old.\n"
        "#### 25"
    )
    assert count_steps(solution) == (3, "fallback:lines")


def test_the_fallback_counts_at_least_one_step() -> None:
    assert count_steps("He simply has them all.\n#### 4") == (1, "fallback:lines")


@pytest.mark.parametrize("solution", [None, "", "   "])
def test_no_solution_means_unknown_steps(solution: str | None) -> None:
    assert count_steps(solution) == (None, "unknown")


def test_default_strata_are_one_to_four_and_five_plus() -> None:
    assert DEFAULT_STRATA.labels == ["1", "2", "3", "4", "5+"]
    assert [DEFAULT_STRATA.label_for(s) for s in (1, 4, 5, 11)] == ["1", "4", "5+", "5+"]
    assert DEFAULT_STRATA.label_for(None) == "unknown"
    assert DEFAULT_STRATA.label_for(0) == "other"


def test_strata_accept_ranges_and_round_trip_to_text() -> None:
    strata = Strata.parse(" 1-2, 3 ,4-6")
    assert strata.labels == ["1-2", "3", "4-6"]
    assert [strata.label_for(s) for s in (2, 3, 6, 7)] == ["1-2", "3", "4-6", "other"]
    assert Strata.parse(str(strata)) == strata


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty item"),
        ("1,,2", "empty item"),
        ("1,x", "'x'"),
        ("3+,4", "must come last"),
        ("4-2", "ends before it starts"),
        ("1-3,2", "overlaps"),
        ("3,1", "overlaps or precedes"),
    ],
)
def test_bad_strata_are_refused_with_an_example(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        Strata.parse(text)
    assert "1,2,3,4,5+" in str(caught.value) or "increasing order" in str(caught.value)
