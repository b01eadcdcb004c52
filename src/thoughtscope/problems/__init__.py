"""Problems: one record type for every source of math word problems, and answer scoring."""

from __future__ import annotations

from thoughtscope.problems.record import Problem
from thoughtscope.problems.synthetic import generate

__all__ = ["Problem", "generate"]
