"""Reading the predicted number out of a model's answer text and judging it.

Extraction follows the order the original study used, so its accuracy figures can be
reproduced, with a more careful number pattern (:mod:`thoughtscope.problems.numerals`):

1. the first number after the last ``answer is`` / ``answer:`` (CODI GPT-2 models end
   with ``The answer is: 18``), so ``The answer is: 18 apples and 2 pears`` gives 18;
2. else the first number after the last ``####`` (GSM8K's own layout);
3. else the last number in the text;
4. else ``None``.

Comparison is :func:`math.isclose` with an absolute tolerance of ``1e-4`` or a relative
one of ``1e-6``, whichever is looser: tight enough that no two distinct GSM8K answers
(integers or cents) are confused, loose enough to absorb float round-off such as
``0.1 + 0.2``. The original study accepted any prediction within ``0.01``; pass
``tolerance=ORIGINAL_STUDY_TOLERANCE, rel_tolerance=0`` to reproduce it (it used a strict
``<``, this uses ``<=``; they differ only for a prediction exactly 0.01 away).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from thoughtscope.problems.numerals import first_number, numbers_in

__all__ = [
    "DEFAULT_REL_TOLERANCE",
    "DEFAULT_TOLERANCE",
    "ORIGINAL_STUDY_TOLERANCE",
    "AnswerScore",
    "extract_number",
    "is_correct",
    "score_answer",
]

DEFAULT_TOLERANCE = 1e-4
"""Absolute tolerance of :func:`is_correct`."""

DEFAULT_REL_TOLERANCE = 1e-6
"""Relative tolerance of :func:`is_correct`."""

ORIGINAL_STUDY_TOLERANCE = 0.01
"""The original study's absolute tolerance (with no relative tolerance)."""

_ANSWER_MARKER = re.compile(r"answer\s+is\s*:?|answer\s*:", re.IGNORECASE)
_GSM8K_MARKER = re.compile(r"####")


def _first_number_after_last(marker: re.Pattern[str], text: str) -> float | None:
    matches = list(marker.finditer(text))
    return first_number(text, matches[-1].end()) if matches else None


def extract_number(text: str) -> float | None:
    """The number a model's answer text commits to, or ``None`` if it has none.

    See the module docstring for the order of rules. Thousands separators, ``$``,
    negatives and decimals are understood: ``"$1,250.50"`` → ``1250.5``; ``"18."`` → 18;
    ``"answer is 3-4"`` → 3 (the first number after the marker).
    """
    for marker in (_ANSWER_MARKER, _GSM8K_MARKER):
        value = _first_number_after_last(marker, text)
        if value is not None:
            return value
    found = numbers_in(text)
    return found[-1] if found else None


def is_correct(
    predicted: float | None,
    expected: float,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    rel_tolerance: float = DEFAULT_REL_TOLERANCE,
) -> bool:
    """Whether ``predicted`` equals ``expected`` within the tolerances; never for ``None``.

    Args:
        predicted: The extracted prediction (``None``, NaN or infinity is never correct).
        expected: The reference answer.
        tolerance: Absolute tolerance (default ``1e-4``).
        rel_tolerance: Relative tolerance (default ``1e-6``); a prediction is correct if
            it is within either tolerance.
    """
    if predicted is None or not math.isfinite(predicted):
        return False
    return math.isclose(predicted, expected, rel_tol=rel_tolerance, abs_tol=tolerance)


@dataclass(frozen=True)
class AnswerScore:
    """The number read from an answer text and whether it is correct."""

    predicted: float | None
    correct: bool


def score_answer(
    text: str,
    expected: float,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    rel_tolerance: float = DEFAULT_REL_TOLERANCE,
) -> AnswerScore:
    """The extracted prediction of ``text`` and its correctness against ``expected``."""
    predicted = extract_number(text)
    return AnswerScore(
        predicted,
        is_correct(predicted, expected, tolerance=tolerance, rel_tolerance=rel_tolerance),
    )
