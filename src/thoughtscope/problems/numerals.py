"""Numbers as people write them in word problems and answers: ``-3``, ``0.5``, ``$1,250.50``.

One pattern serves both reading expected answers from data files (strictly: the whole
field must be one number) and finding predicted answers in model output (leniently: any
number inside text). Keeping it in one place means a dataset answer and a model answer
written the same way are always read the same way.
"""

from __future__ import annotations

import math
import re

__all__ = ["NUMBER", "first_number", "numbers_in", "parse_numeral"]

NUMBER = re.compile(
    r"""
    (?<![\w.])                        # not glued to a word (x2, 3rd-party) or after a point
    (?P<sign>[-\u2212])?              # ASCII hyphen-minus or the Unicode minus sign
    \$?
    (?:
        (?P<whole>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<fraction>\.\d+)?   # 1,250.50  18  0.5
      | (?P<bare_fraction>\.\d+)                                     # .75
    )
    """,
    re.VERBOSE,
)
"""An optionally signed number with optional ``$``, thousands separators and decimals.

A minus sign counts only when it does not follow a word character, so ``3-4`` reads as
``3`` and ``4`` (a range), while ``x=-3`` and ``is -3`` read as ``-3``. ``18.`` ending a
sentence reads as ``18``.
"""


def _value(match: re.Match[str]) -> float:
    digits = (match["whole"] or "").replace(",", "") + (
        match["fraction"] or match["bare_fraction"] or ""
    )
    value = float(digits)
    return -value if match["sign"] else value


def numbers_in(text: str) -> list[float]:
    """Every number in ``text``, in order of appearance."""
    return [_value(m) for m in NUMBER.finditer(text)]


def first_number(text: str, start: int = 0) -> float | None:
    """The first number in ``text`` at or after index ``start``, else ``None``."""
    match = NUMBER.search(text, start)
    return None if match is None else _value(match)


def parse_numeral(text: str) -> float | None:
    """The number that ``text`` consists of (surrounding spaces allowed), else ``None``.

    ``"18"``, ``"-3"``, ``"1,250.50"``, ``"$18"`` parse; ``"eighteen"``, ``"1,2"``,
    ``"18 apples"``, ``"nan"`` and ``""`` do not.
    """
    stripped = text.strip()
    match = NUMBER.fullmatch(stripped)
    if match is None:
        return None
    value = _value(match)
    return value if math.isfinite(value) else None
