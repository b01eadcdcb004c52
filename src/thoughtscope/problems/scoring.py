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

A score says *what* was read; two flags say whether the read can be trusted:

- **finished**: decoding stopped at ``<eos>`` before ``max_new_tokens`` (the engine
  reports it); an unfinished output was cut off, and its number may be cut off too.
- **clean** (:func:`is_clean`): the text commits to one well-formed number. Precisely,
  the numeral the score was read from (the same rule order as above) (a) has no
  superfluous leading zero (``0``, ``0.5``, ``1,250`` are fine; ``007`` and ``0000…``
  are not), (b) has at most 15 significant digits (more cannot be a float exactly, so
  ``is_correct`` would compare a rounded value), and (c) was read after an answer marker
  (``answer is``, ``answer:``, ``####``) or is the only number in the text. Outputs such
  as ``0000000000`` (a small model's degenerate loop), ``3 4 5 6`` or no number at all
  are not clean, whatever :func:`extract_number` makes of them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from thoughtscope.problems.numerals import NUMBER, first_number, numbers_in

__all__ = [
    "DEFAULT_REL_TOLERANCE",
    "DEFAULT_TOLERANCE",
    "ORIGINAL_STUDY_TOLERANCE",
    "AnswerScore",
    "extract_number",
    "is_clean",
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


MAX_CLEAN_DIGITS = 15
"""Significant digits a clean numeral may have (a float holds 15 exactly)."""


def _read_numeral(text: str) -> tuple[re.Match[str] | None, bool]:
    """The numeral :func:`extract_number` reads and whether an answer marker led to it."""
    for marker in (_ANSWER_MARKER, _GSM8K_MARKER):
        matches = list(marker.finditer(text))
        if matches:
            found = NUMBER.search(text, matches[-1].end())
            if found is not None:
                return found, True
    every = list(NUMBER.finditer(text))
    return (every[-1] if every else None), False


def is_clean(text: str) -> bool:
    """Whether ``text`` commits to one well-formed number (see the module docstring).

    ``"The answer is: 18"``, ``"18"``, ``"#### 1,250.50"`` are clean; ``"0000000000"``,
    ``"007"``, ``"3 4 5"``, ``"no idea"`` and ``""`` are not.
    """
    match, after_marker = _read_numeral(text)
    if match is None:
        return False
    whole = (match["whole"] or "").replace(",", "")
    if len(whole) > 1 and whole.startswith("0"):
        return False
    fraction = (match["fraction"] or match["bare_fraction"] or ".")[1:]
    if len((whole + fraction).strip("0")) > MAX_CLEAN_DIGITS:
        return False
    return after_marker or len(numbers_in(text)) == 1


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
