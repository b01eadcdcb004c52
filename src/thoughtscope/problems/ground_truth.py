"""What each problem's reasoning should hold: its intermediate values, from its solution.

Both sources that know their steps write them the same way, as GSM8K calculator
annotations in the solution: the synthetic generator creates each step and writes it as
``<<7+5=12>>`` (:mod:`thoughtscope.problems.synthetic`), and GSM8K solutions annotate
each step as ``<<48/2=24>>``. :func:`ground_truth` reads them into a
:class:`GroundTruth`: the result of each step in order, its operands, the final answer
and the step count.

**Never guessed.** A problem is *unparseable* (:class:`Unparsed`, with the reason) when
its solution has no annotation, an annotation's result is not a number, its expression
holds anything but numbers, ``+ - * /``, brackets and spaces, or the expression does not
evaluate to the stated result (within 1% or 0.01: GSM8K rounds money, ``<<10/3=3.33>>``).
Such problems are listed by :func:`ground_truths` and left out of probing.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from thoughtscope.problems.numerals import numbers_in, parse_numeral
from thoughtscope.problems.problem import Problem

__all__ = ["GroundTruth", "Step", "Unparsed", "ground_truth", "ground_truths"]

_ANNOTATION = re.compile(r"<<([^<>]*)>>")
_EXPRESSION_CHARS = re.compile(r"^[\d\s.,+\-*/()x×÷]+$")
_OPERATORS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


@dataclass(frozen=True)
class Step:
    """One annotated step, e.g. ``<<48/2=24>>``.

    Attributes:
        expression: The left-hand side as written (``48/2``).
        operands: The numbers in the expression, in order (``(48.0, 2.0)``).
        result: The stated result (``24.0``).
    """

    expression: str
    operands: tuple[float, ...]
    result: float


@dataclass(frozen=True)
class GroundTruth:
    """The intermediate values of one problem.

    Attributes:
        problem_id: The problem's id.
        steps: The annotated steps in solution order.
        final_answer: The problem's expected answer.
    """

    problem_id: str
    steps: tuple[Step, ...]
    final_answer: float

    @property
    def step_count(self) -> int:
        """Number of annotated steps."""
        return len(self.steps)

    @property
    def results(self) -> tuple[float, ...]:
        """The result of each step, in order (``step_result:K`` is ``results[K-1]``)."""
        return tuple(s.result for s in self.steps)

    def value(self, target: str) -> float | None:
        """The value of a probe target: ``final_answer``, ``step_count`` or
        ``step_result:K`` (K from 1; ``None`` when the problem has fewer steps).

        Raises:
            ValueError: An unknown target name.
        """
        if target == "final_answer":
            return self.final_answer
        if target == "step_count":
            return float(self.step_count)
        if target.startswith("step_result:"):
            k = int(target.split(":", 1)[1])
            if k < 1:
                raise ValueError(f"step_result:K counts from 1, got {target}")
            return self.steps[k - 1].result if k <= len(self.steps) else None
        raise ValueError(
            f"unknown target {target!r}: use final_answer, step_count or step_result:K"
        )


@dataclass(frozen=True)
class Unparsed:
    """A problem whose steps could not be read, and why (it is left out, not guessed)."""

    problem_id: str
    reason: str


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    raise ValueError("not plain arithmetic")


def _parse_step(text: str) -> Step | str:
    """A :class:`Step`, or the reason ``text`` (inside ``<<…>>``) cannot be read."""
    if text.count("=") != 1:
        return f"<<{text}>> has no single '='"
    expression, stated = (part.strip() for part in text.split("="))
    result = parse_numeral(stated)
    if result is None:
        return f"<<{text}>>: result {stated!r} is not a number"
    if not expression or not _EXPRESSION_CHARS.match(expression):
        return f"<<{text}>>: expression {expression!r} is not plain arithmetic"
    cleaned = re.sub(r"(?<=\d),(?=\d{3})", "", expression).replace("x", "*")
    cleaned = cleaned.replace("×", "*").replace("÷", "/")
    try:
        value = _evaluate(ast.parse(cleaned, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError):
        return f"<<{text}>>: expression {expression!r} cannot be evaluated"
    if abs(value - result) > max(0.01, 0.01 * abs(result)):
        return f"<<{text}>>: {expression} is {value:g}, not {stated}"
    return Step(expression, tuple(numbers_in(expression.replace("x", " "))), result)


def ground_truth(problem: Problem) -> GroundTruth | Unparsed:
    """The problem's annotated steps, or :class:`Unparsed` with the first reason."""
    if not problem.solution:
        return Unparsed(problem.id, "no solution")
    found = _ANNOTATION.findall(problem.solution)
    if not found:
        return Unparsed(problem.id, "the solution has no <<…=…>> annotation")
    steps: list[Step] = []
    for text in found:
        step = _parse_step(text)
        if isinstance(step, str):
            return Unparsed(problem.id, step)
        steps.append(step)
    return GroundTruth(problem.id, tuple(steps), problem.answer)


def ground_truths(
    problems: Sequence[Problem],
) -> tuple[dict[str, GroundTruth], list[Unparsed]]:
    """Ground truth of every problem that has one (by id), and the list of those left out."""
    known: dict[str, GroundTruth] = {}
    left_out: list[Unparsed] = []
    for problem in problems:
        truth = ground_truth(problem)
        if isinstance(truth, Unparsed):
            left_out.append(truth)
        else:
            known[problem.id] = truth
    return known, left_out
