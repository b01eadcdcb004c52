"""How many reasoning steps a problem takes, and the difficulty strata built on that.

A problem's steps are the number of ``<<a op b=c>>`` calculator annotations in its
reference solution (GSM8K's own marking of each computation). 18 of GSM8K's 1,319 test
solutions have no annotations (mostly algebra written out in prose); for those, the
fallback counts the non-empty solution lines before ``####`` that contain a digit and an
arithmetic sign (``= + - * / × ÷``), at least 1, and records ``fallback:lines``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

__all__ = ["DEFAULT_STRATA", "Strata", "Stratum", "count_steps"]

_ANNOTATION = re.compile(r"<<[^<>]*>>")
_ARITHMETIC_SIGN = re.compile(r"[=+\-*/×÷]")
_DIGIT = re.compile(r"\d")


def count_steps(solution: str | None) -> tuple[int | None, str]:
    """``(steps, steps_source)`` for a GSM8K-style solution.

    Returns ``(n, "annotations")`` when the solution has ``n >= 1`` annotations,
    ``(n, "fallback:lines")`` from the line rule in the module docstring otherwise, and
    ``(None, "unknown")`` when there is no solution text.
    """
    if solution is None or not solution.strip():
        return None, "unknown"
    annotations = len(_ANNOTATION.findall(solution))
    if annotations:
        return annotations, "annotations"
    reasoning = solution.split("####", 1)[0]
    lines = [
        line
        for line in reasoning.splitlines()
        if _DIGIT.search(line) and _ARITHMETIC_SIGN.search(line)
    ]
    return max(1, len(lines)), "fallback:lines"


@dataclass(frozen=True)
class Stratum:
    """A band of step counts: ``low..high`` inclusive, ``high=None`` for open-ended."""

    low: int
    high: int | None

    @property
    def label(self) -> str:
        """``3``, ``3-4`` or ``5+``."""
        if self.high is None:
            return f"{self.low}+"
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"

    def contains(self, steps: int) -> bool:
        """Whether ``steps`` falls in this band."""
        return steps >= self.low and (self.high is None or steps <= self.high)


@dataclass(frozen=True)
class Strata:
    """Ordered, non-overlapping difficulty bands, e.g. ``1, 2, 3, 4, 5+``.

    Problems whose steps are unknown are labelled ``unknown``; problems with known steps
    outside every band (say 7 steps with strata ``1,2,3``) are labelled ``other``.
    """

    bands: tuple[Stratum, ...]

    UNKNOWN: ClassVar[str] = "unknown"
    OTHER: ClassVar[str] = "other"

    @classmethod
    def parse(cls, text: str) -> Strata:
        """Strata from ``"1,2,3,4,5+"``; items are ``N``, ``LOW-HIGH`` or (last) ``N+``.

        Raises:
            ValueError: The text is malformed, overlapping or out of order; the message
                quotes the bad item and shows a valid example.
        """
        example = "write them like 1,2,3,4,5+ or 1-2,3-4,5+"
        items = [item.strip() for item in text.split(",")]
        if not text.strip() or any(not item for item in items):
            raise ValueError(f"strata {text!r} has an empty item; {example}")
        bands: list[Stratum] = []
        for position, item in enumerate(items):
            match = re.fullmatch(r"(\d+)(?:(\+)|-(\d+))?", item)
            if match is None:
                raise ValueError(
                    f"stratum {item!r} in {text!r} is not N, LOW-HIGH or N+; {example}"
                )
            low = int(match[1])
            high = None if match[2] else int(match[3] or low)
            if match[2] and position != len(items) - 1:
                raise ValueError(f"open stratum {item!r} must come last in {text!r}; {example}")
            if high is not None and high < low:
                raise ValueError(f"stratum {item!r} ends before it starts; {example}")
            previous = bands[-1] if bands else None
            if previous is not None and previous.high is not None and low <= previous.high:
                raise ValueError(
                    f"stratum {item!r} overlaps or precedes {previous.label!r} in {text!r}; "
                    f"list strata in increasing order without overlap"
                )
            bands.append(Stratum(low, high))
        return cls(tuple(bands))

    @property
    def labels(self) -> list[str]:
        """The band labels in order, e.g. ``["1", "2", "3", "4", "5+"]``."""
        return [band.label for band in self.bands]

    def label_for(self, steps: int | None) -> str:
        """The label of the band holding ``steps``; ``unknown`` for ``None``, else ``other``."""
        if steps is None:
            return self.UNKNOWN
        for band in self.bands:
            if band.contains(steps):
                return band.label
        return self.OTHER

    def __str__(self) -> str:
        return ",".join(self.labels)


DEFAULT_STRATA = Strata.parse("1,2,3,4,5+")
"""The study's bands: 1, 2, 3, 4 and 5 or more steps."""
