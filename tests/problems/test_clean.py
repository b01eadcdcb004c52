"""`is_clean`: whether an answer text commits to one well-formed number."""

from __future__ import annotations

import pytest

from thoughtscope.problems import extract_number, is_clean


@pytest.mark.parametrize(
    "text",
    [
        "18",
        "The answer is: 18",
        "The answer is 18 apples and 2 pears",  # the marker says which number counts
        "#### 1,250.50",
        "-3",
        "0",
        "0.5",
        "$1,250",
        "1" + "0" * 20,  # one significant digit
    ],
)
def test_clean_answers(text: str) -> None:
    assert is_clean(text)
    assert extract_number(text) is not None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0000000000", "leading zeros: a degenerate loop, read as 0.0"),
        ("007", "leading zeros"),
        ("The answer is: 0012", "leading zeros after the marker"),
        ("3 4 5 6", "several numbers and no marker"),
        ("1234567890123456", "16 significant digits: not exact as a float"),
        ("no idea", "no number"),
        ("", "empty"),
    ],
)
def test_unclean_answers(text: str, why: str) -> None:
    assert not is_clean(text), why


def test_an_unclean_answer_can_still_score_as_a_number() -> None:
    # What the toy model answers GSM8K with: scored as 0.0, flagged as not clean.
    assert extract_number("0" * 64) == 0.0
    assert not is_clean("0" * 64)
