"""Reading predictions out of model answers and judging them."""

from __future__ import annotations

import math

import pytest

from thoughtscope.problems.numerals import parse_numeral
from thoughtscope.problems.scoring import (
    ORIGINAL_STUDY_TOLERANCE,
    extract_number,
    is_correct,
    score_answer,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is: 18", 18.0),  # CODI GPT-2 output
        ("The answer is: 18<|endoftext|>", 18.0),
        ("#### 18", 18.0),  # GSM8K layout
        ("She pays $1,250.50 in total.", 1250.5),
        ("The answer is: -3", -3.0),
        ("The temperature drops to -3 degrees", -3.0),
        ("It is 0.5 of the cake", 0.5),
        ("Only .75 of it is left", 0.75),
        ("So he made 18.", 18.0),  # a full stop is not a decimal point
        ("That is 1,000 apples", 1000.0),
        ("The answer is: 18 apples and 2 pears", 18.0),  # first number after the marker
        ("answer is 3-4", 3.0),  # a range: '-' after a digit is not a sign
        ("between 3-4 hours", 4.0),  # no marker: the last number, unsigned
        ("x = -3", -3.0),
        ("5 + 7 = 12 so 12 * 2 = 24", 24.0),  # several numbers: the last
        ("12 then #### 7 and 9", 7.0),  # '####' beats the last number
        ("#### 5 but the answer is 6", 6.0),  # 'answer is' beats '####'
        ("Answer: 42", 42.0),
        ("the answer is 7. Earlier it was 5", 7.0),
        ("The answer is: no idea, maybe 12", 12.0),  # first number after the marker
        ("The answer is: \u22125", -5.0),  # Unicode minus sign
        ("costs $-2? no, -$2", -2.0),
    ],
)
def test_extract_number_reads_real_looking_answers(text: str, expected: float) -> None:
    assert extract_number(text) == expected


@pytest.mark.parametrize("text", ["", "The answer is: unknown", "no digits here", "x2y"])
def test_extract_number_gives_none_without_a_number(text: str) -> None:
    assert extract_number(text) is None


def test_a_marker_without_a_number_falls_back_to_the_last_number() -> None:
    assert extract_number("I computed 12 and 15. The answer is: ?") == 15.0


def test_is_correct_allows_float_round_off_but_not_a_different_answer() -> None:
    assert is_correct(0.1 + 0.2, 0.3)
    assert is_correct(18.0, 18)
    assert is_correct(18.00005, 18)
    assert not is_correct(18.01, 18)
    assert not is_correct(17.0, 18)
    assert is_correct(1e9 + 1, 1e9)  # within the relative tolerance of 1e-6


def test_is_correct_is_never_true_without_a_finite_prediction() -> None:
    assert not is_correct(None, 18)
    assert not is_correct(math.nan, 18)
    assert not is_correct(math.inf, math.inf)


def test_the_original_studys_tolerance_can_be_reproduced() -> None:
    assert not is_correct(18.005, 18)
    assert is_correct(18.005, 18, tolerance=ORIGINAL_STUDY_TOLERANCE, rel_tolerance=0)
    assert not is_correct(18.02, 18, tolerance=ORIGINAL_STUDY_TOLERANCE, rel_tolerance=0)


def test_score_answer_gives_prediction_and_verdict() -> None:
    score = score_answer("The answer is: 18 apples", 18)
    assert (score.predicted, score.correct) == (18.0, True)
    miss = score_answer("I do not know", 18)
    assert (miss.predicted, miss.correct) == (None, False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("18", 18.0), (" -3 ", -3.0), ("1,250.50", 1250.5), ("$18", 18.0), ("0.5", 0.5)],
)
def test_parse_numeral_reads_a_whole_field(text: str, expected: float) -> None:
    assert parse_numeral(text) == expected


@pytest.mark.parametrize("text", ["", "eighteen", "1,2", "18 apples", "nan", "3-4", "1.2.3"])
def test_parse_numeral_refuses_anything_but_one_number(text: str) -> None:
    assert parse_numeral(text) is None
