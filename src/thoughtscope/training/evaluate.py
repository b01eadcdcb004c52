"""Accuracy of a CODI model by number of reasoning steps: latent student, ablations,
explicit-CoT teacher.

The latent path and its ablations go through :class:`thoughtscope.engine.runner.Runner`, the
same decoding the analyses use. The teacher path (the plain LM writing its steps, then
``<eos>``, the answer and ``<eos>``) has no thoughts: it is the engine's prompt encoding
and greedy decoding (:mod:`thoughtscope.engine.latent`) without the thought steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from thoughtscope.engine import latent
from thoughtscope.engine.runner import BASELINE, Condition, EditContext, Runner, RunOptions
from thoughtscope.engine.sites import LATENT, Site, block
from thoughtscope.model.codi import CodiModel
from thoughtscope.model.thought_model import ThoughtModel
from thoughtscope.problems.problem import Problem
from thoughtscope.problems.scoring import extract_number, is_correct


@dataclass
class StepAccuracy:
    """Correct answers out of problems, per number of reasoning steps (0: unknown)."""

    correct: dict[int, int] = field(default_factory=dict)
    total: dict[int, int] = field(default_factory=dict)

    def add(self, steps: int, ok: bool) -> None:
        """Counts one problem."""
        self.total[steps] = self.total.get(steps, 0) + 1
        self.correct[steps] = self.correct.get(steps, 0) + int(ok)

    def percent(self, steps: int | None = None) -> float:
        """Accuracy in % for ``steps`` (``None``: all problems)."""
        if steps is None:
            n, k = sum(self.total.values()), sum(self.correct.values())
        else:
            n, k = self.total.get(steps, 0), self.correct.get(steps, 0)
        return 100.0 * k / n if n else float("nan")

    def percent_of(self, steps: Sequence[int]) -> float:
        """Accuracy in % over problems with any of ``steps``."""
        n = sum(self.total.get(s, 0) for s in steps)
        k = sum(self.correct.get(s, 0) for s in steps)
        return 100.0 * k / n if n else float("nan")


def _zero(hidden: Tensor, context: EditContext) -> Tensor:
    return torch.zeros_like(hidden)


def zero_all_thoughts(site: Site, num_latent: int) -> Condition:
    """Zeroes every continuous thought (positions ``0 … N-1``) at ``site``."""
    positions = range(num_latent)
    return Condition(f"zero@{site.short}:all", {(site, k): _zero for k in positions})


def middle_blocks(num_layers: int) -> list[int]:
    """The middle decoder block, or both middle blocks when the count is even."""
    half = num_layers // 2
    return [half - 1, half] if num_layers % 2 == 0 and num_layers > 1 else [half]


def standard_conditions(model: ThoughtModel) -> list[Condition]:
    """Baseline, then all thoughts zeroed at the latent site and at each middle block."""
    n = model.num_thoughts
    blocks = [zero_all_thoughts(block(layer), n) for layer in middle_blocks(model.num_layers)]
    return [BASELINE, zero_all_thoughts(LATENT, n), *blocks]


def latent_accuracy(
    model: ThoughtModel,
    problems: Sequence[Problem],
    conditions: Sequence[Condition],
    *,
    batch_size: int = 256,
    max_new_tokens: int = 16,
    progress: bool = False,
) -> dict[str, StepAccuracy]:
    """Accuracy of the latent path under each condition, by steps."""
    runner = Runner(model)
    results = runner.run(
        [p.question for p in problems],
        conditions,
        RunOptions(max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress),
    )
    out = {c.name: StepAccuracy() for c in conditions}
    for problem, row in zip(problems, results, strict=True):
        for generation in row:
            ok = is_correct(extract_number(generation.text), problem.answer)
            out[generation.condition].add(problem.steps or 0, ok)
    return out


@torch.inference_mode()
def teacher_generate(
    model: CodiModel,
    questions: Sequence[str],
    *,
    max_new_tokens: int = 96,
    batch_size: int = 128,
    progress: bool = False,
) -> list[str]:
    """Greedy explicit-CoT continuations of ``question [eos]`` by the plain LM.

    Stops each row at its second ``<eos>`` (after the steps and after the answer).
    Returns the decoded text with ``<eos>`` written as ``\\n`` (steps, newline, answer).
    """
    config = model.config
    # The plain LM may choose no id the family added (pad, <bot>, <eot>).
    banned = sorted(model.family.added_ids)
    texts: list[str] = []
    bar = tqdm(total=len(questions), disable=not progress, desc="teacher", unit="problem")
    for begin in range(0, len(questions), batch_size):
        chunk = [model.question_ids(q) for q in questions[begin : begin + batch_size]]
        rows, hidden = latent.encode(model, *latent.pad_left(chunk, config.pad_id, model.device))
        decoded = latent.decode(
            model,
            rows,
            model.head(hidden[:, -1]),
            max_new_tokens,
            banned=banned,
            eos_count=2,  # after the steps, then after the answer
        )
        for row_ids in decoded.ids:
            parts = [model.decode(part) for part in _split(row_ids, config.eos_id)]
            texts.append("\n".join(parts))
        bar.update(len(chunk))
    bar.close()
    return texts


def _split(ids: list[int], separator: int) -> list[list[int]]:
    parts: list[list[int]] = [[]]
    for token in ids:
        if token == separator:
            parts.append([])
        else:
            parts[-1].append(token)
    return [p for p in parts if p] or [[]]


def teacher_answer(text: str) -> float | None:
    """The number the teacher commits to: read from the text after its steps."""
    lines = text.split("\n")
    return extract_number(lines[1] if len(lines) > 1 else lines[0])


def teacher_accuracy(
    model: CodiModel,
    problems: Sequence[Problem],
    *,
    batch_size: int = 128,
    max_new_tokens: int = 96,
    progress: bool = False,
) -> StepAccuracy:
    """Accuracy of the explicit-CoT teacher path, by steps."""
    texts = teacher_generate(
        model,
        [p.question for p in problems],
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        progress=progress,
    )
    accuracy = StepAccuracy()
    for problem, text in zip(problems, texts, strict=True):
        accuracy.add(problem.steps or 0, is_correct(teacher_answer(text), problem.answer))
    return accuracy


@dataclass
class EvaluationReport:
    """Accuracy by steps of every path of one model on one problem set."""

    rows: dict[str, StepAccuracy]
    steps: list[int]

    def table(self) -> str:
        """A Markdown table: one row per path, one column per step count, then all."""
        header = "| path | " + " | ".join(str(s) for s in self.steps) + " | all |"
        rule = "|---|" + "---|" * (len(self.steps) + 1)
        lines = [header, rule]
        for name, acc in self.rows.items():
            cells = [f"{acc.percent(s):.1f}" for s in self.steps] + [f"{acc.percent():.1f}"]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        counts = next(iter(self.rows.values())).total if self.rows else {}
        lines.append(
            "| problems | "
            + " | ".join(str(counts.get(s, 0)) for s in self.steps)
            + f" | {sum(counts.values())} |"
        )
        return "\n".join(lines)


def evaluate(
    model: ThoughtModel,
    problems: Sequence[Problem],
    *,
    teacher: bool = True,
    batch_size: int = 256,
    progress: bool = False,
) -> EvaluationReport:
    """Student (latent) accuracy, the standard ablations and (optionally) the teacher."""
    conditions = standard_conditions(model)
    latent = latent_accuracy(model, problems, conditions, batch_size=batch_size, progress=progress)
    rows = {"student (latent)": latent[BASELINE.name]}
    for condition in conditions[1:]:
        rows[f"student, {condition.name}"] = latent[condition.name]
    if teacher and isinstance(model, CodiModel):
        rows["teacher (explicit CoT)"] = teacher_accuracy(model, problems, progress=progress)
    steps = sorted({p.steps or 0 for p in problems})
    return EvaluationReport(rows=rows, steps=steps)
