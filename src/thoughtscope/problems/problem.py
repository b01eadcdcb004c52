"""The one record type every problem source produces."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """A math word problem with its expected numeric answer.

    Attributes:
        id: Stable identifier, unique within a source (e.g. ``gsm8k-test-0042``).
        question: The question text exactly as the model will see it.
        answer: The expected final answer as a number.
        steps: Number of reasoning steps, or ``None`` when unknown.
        steps_source: Where ``steps`` came from: ``annotations`` (count of ``<<…>>``),
            ``given`` (taken from the source), ``fallback:<rule>`` or ``unknown``.
        solution: Reference solution text, when the source has one.
        source: Where the problem came from (file path, generator spec, dataset id).
    """

    id: str
    question: str
    answer: float
    steps: int | None
    steps_source: str
    solution: str | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; integral answers are written as integers."""
        out = asdict(self)
        if float(self.answer).is_integer():
            out["answer"] = int(self.answer)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Problem:
        """Inverse of :meth:`to_dict`."""
        return cls(
            id=str(data["id"]),
            question=str(data["question"]),
            answer=float(data["answer"]),
            steps=None if data.get("steps") is None else int(data["steps"]),
            steps_source=str(data.get("steps_source", "unknown")),
            solution=data.get("solution"),
            source=str(data.get("source", "")),
        )


def fingerprint_problems(problems: Sequence[Problem]) -> str:
    """SHA-256 of the problems (every field, in order): what a run folder's manifest
    records to refuse a resume on other data."""
    text = json.dumps([p.to_dict() for p in problems], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
