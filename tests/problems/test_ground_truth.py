"""Ground truth: each problem's step results, operands, final answer and step count."""

from __future__ import annotations

import re

import pytest

from tests.conftest import GSM8K_TEST
from thoughtscope.problems import Problem, generate, load_problems
from thoughtscope.problems.ground_truth import GroundTruth, Unparsed, ground_truth, ground_truths


def _problem(solution: str | None, answer: float = 24.0) -> Problem:
    return Problem("p", "q?", answer, None, "unknown", solution, "test")


def test_synthetic_chain_is_read_back_step_by_step() -> None:
    for problem in generate("test", 3, 60):
        truth = ground_truth(problem)
        assert isinstance(truth, GroundTruth)
        assert truth.step_count == problem.steps
        assert truth.final_answer == problem.answer == truth.results[-1]
        # The compact question a=7;b=a+5;... replays to the same values.
        value = float(problem.question.split(";")[0].split("=")[1])
        for step, part in zip(truth.steps, problem.question.split(";")[1:], strict=False):
            op, operand = re.match(r"^\w=\w([-+*])(\d+)$", part).groups()  # type: ignore[union-attr]
            assert step.operands == (value, float(operand))
            value = {"+": value + int(operand), "-": value - int(operand)}.get(
                op, value * int(operand)
            )
            assert step.result == value


def test_words_style_is_read_too() -> None:
    known, left_out = ground_truths(generate("test", 1, 30, style="words"))
    assert len(known) == 30 and left_out == []


def test_gsm8k_annotation_gives_operands_and_results() -> None:
    truth = ground_truth(
        _problem("Half is <<48/2=24>>24.\nThen <<24+1,000=1,024>>1024 and <<3 x 2=6>>6.\n#### 24")
    )
    assert isinstance(truth, GroundTruth)
    assert truth.results == (24.0, 1024.0, 6.0)
    assert truth.steps[0].operands == (48.0, 2.0)
    assert truth.steps[2].operands == (3.0, 2.0)
    assert truth.value("step_result:2") == 1024.0
    assert truth.value("step_result:4") is None
    assert truth.value("step_count") == 3.0
    assert truth.value("final_answer") == 24.0


@pytest.mark.parametrize(
    ("solution", "reason"),
    [
        (None, "no solution"),
        ("She has 24.\n#### 24", "no <<"),
        ("<<48/2=twenty>>", "not a number"),
        ("<<48/2=25>>", "is 24, not 25"),
        ("<<a*b=24>>", "not plain arithmetic"),
        ("<<48/0=24>>", "cannot be evaluated"),
    ],
)
def test_unreadable_annotations_are_listed_not_guessed(solution: str | None, reason: str) -> None:
    known, left_out = ground_truths([_problem(solution)])
    assert known == {}
    assert len(left_out) == 1 and isinstance(left_out[0], Unparsed)
    assert reason in left_out[0].reason


def test_rounded_money_is_accepted() -> None:
    truth = ground_truth(_problem("<<10/3=3.33>>", answer=3.33))
    assert isinstance(truth, GroundTruth) and truth.results == (3.33,)


@pytest.mark.skipif(not GSM8K_TEST.exists(), reason=f"GSM8K test set not found at {GSM8K_TEST}")
def test_gsm8k_test_set_is_mostly_parseable() -> None:
    problems = load_problems(str(GSM8K_TEST)).problems
    known, left_out = ground_truths(problems)
    assert len(known) + len(left_out) == len(problems)
    assert len(known) > 0.9 * len(problems)
    assert all(t.step_count >= 1 for t in known.values())
