"""Problems: one record type for every source of math word problems, and answer scoring.

- :func:`load_problems` reads any ``--data`` spec (synthetic generator, GSM8K JSONL,
  the Hugging Face Hub, the original study's JSON, plain JSONL/CSV) into :class:`Problem`.
- :func:`generate` is the deterministic synthetic generator behind ``synthetic:…``.
- :class:`Strata` and :func:`sample_stratified` choose problems by difficulty.
- :func:`extract_number` and :func:`is_correct` score model answers; :func:`is_clean`
  says whether an answer text commits to one well-formed number.
"""

from __future__ import annotations

from thoughtscope.problems.difficulty import DEFAULT_STRATA, Strata, count_steps
from thoughtscope.problems.errors import BadRow, ProblemDataError
from thoughtscope.problems.problem import Problem
from thoughtscope.problems.sampling import Sample, SampleReport, StratumCount, sample_stratified
from thoughtscope.problems.scoring import (
    ORIGINAL_STUDY_TOLERANCE,
    AnswerScore,
    extract_number,
    is_clean,
    is_correct,
    score_answer,
)
from thoughtscope.problems.sources import LoadResult, load_problems
from thoughtscope.problems.synthetic import generate

__all__ = [
    "DEFAULT_STRATA",
    "ORIGINAL_STUDY_TOLERANCE",
    "AnswerScore",
    "BadRow",
    "LoadResult",
    "Problem",
    "ProblemDataError",
    "Sample",
    "SampleReport",
    "Strata",
    "StratumCount",
    "count_steps",
    "extract_number",
    "generate",
    "is_clean",
    "is_correct",
    "load_problems",
    "sample_stratified",
    "score_answer",
]
