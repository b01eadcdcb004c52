"""Errors raised for bad problem data, and the record of rows skipped instead."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SKIP_HINT", "BadRow", "ProblemDataError"]

SKIP_HINT = "fix or remove that row, or pass --skip-bad to skip bad rows (they are listed)"
"""Said after a bad row; in Python, ``load_problems(spec, skip_bad=True)`` skips them."""


@dataclass(frozen=True)
class BadRow:
    """One row of a source that could not become a problem, and why.

    Attributes:
        where: The file (or dataset) and position, e.g. ``data.jsonl, line 7``.
        field: The offending field, or ``None`` when the row as a whole is bad.
        reason: What is wrong and what a valid value looks like.
    """

    where: str
    field: str | None
    reason: str

    def describe(self) -> str:
        """One line such as ``data.jsonl, line 7, field 'answer': 'ten' is not a number``."""
        field = f", field {self.field!r}" if self.field else ""
        return f"{self.where}{field}: {self.reason}"


class ProblemDataError(ValueError):
    """A problem source is unusable: bad spec, missing file, or a bad row.

    The message names the file and line (or the spec) and the field, and says what to
    do. For bad rows, :attr:`row` holds the details.
    """

    def __init__(self, message: str, *, row: BadRow | None = None) -> None:
        super().__init__(message)
        self.row = row

    @classmethod
    def for_row(cls, row: BadRow) -> ProblemDataError:
        """The error for one bad row, with the hint on how to fix or skip it."""
        return cls(f"{row.describe()}; {SKIP_HINT}", row=row)
