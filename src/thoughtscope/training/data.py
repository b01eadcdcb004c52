"""Turning problems into CODI training sequences, and padded batches of them.

For each problem the model sees (``[eos]`` only when the model's ``remove_eos`` is
off; the answer is written in the model's ``answer_format``, e.g. ``58`` or
``The answer is: 58``)::

    question  = question ids (tokenizer's own special tokens) [eos]
    teacher   = question  steps [eos] answer [eos]
    student   = question  <bot> thought_0 … thought_{N-1} <eot> [eos] answer [eos]

The student's layout is exactly what :class:`thoughtscope.engine.runner.Runner` feeds at
inference. The question is shared: it is encoded once and both continuations extend
its KV cache. Questions are left-padded (so ``<bot>`` and every thought sit in one
column); continuations are right-padded. Every pass gets an explicit attention mask and
position ids, so padding never changes a row's result.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from thoughtscope.model.codi import CodiModel
from thoughtscope.problems.problem import Problem

IGNORE = -100
"""Label of positions that carry no loss."""

_ANNOTATION = re.compile(r"<<([^<>]*)>>")


def steps_text(problem: Problem, *, bare: bool) -> str:
    """The solution's ``<<a op b=c>>`` annotations joined by spaces (brackets dropped
    when ``bare``); the solution's own text when it has no annotations."""
    solution = problem.solution or ""
    found = _ANNOTATION.findall(solution)
    if not found:
        return solution.split("####")[0].strip()
    return " ".join(found if bare else (f"<<{a}>>" for a in found))


@dataclass(frozen=True)
class Example:
    """One problem as token ids.

    Attributes:
        question: Question ids, ``[eos]`` included when the model keeps it.
        teacher: ``steps [eos] answer [eos]``.
        teacher_answer: Index in ``teacher`` where the answer begins.
        student: ``<eot> [eos] answer [eos]``.
        student_answer: Index in ``student`` where the answer begins.
        steps: Reasoning steps of the problem (0 when unknown).
    """

    question: list[int]
    teacher: list[int]
    teacher_answer: int
    student: list[int]
    student_answer: int
    steps: int


def encode_problem(model: CodiModel, problem: Problem, *, bare_steps: bool) -> Example:
    """The token ids of one problem's teacher and student sequences (the answer written
    in the model's own ``answer_format``)."""
    tok, config = model.tokenizer, model.config
    eos = config.eos_id
    answer = model.answer_ids(problem.answer)  # ends with <eos>
    steps = list(tok(steps_text(problem, bare=bare_steps), add_special_tokens=False)["input_ids"])
    teacher = [*steps, eos, *answer]
    after_eot = model.family.closing_ids()
    return Example(
        question=model.question_ids(problem.question),
        teacher=teacher,
        teacher_answer=len(steps) + 1,
        student=[*after_eot, *answer],
        student_answer=len(after_eot),
        steps=problem.steps or 0,
    )


@dataclass
class Batch:
    """Padded tensors of a list of :class:`Example`.

    Attributes:
        question_ids: ``(b, q)`` left-padded with pad.
        question_mask: ``(b, q)`` 1 for real tokens.
        teacher_ids: ``(b, t)`` right-padded.
        teacher_mask: ``(b, t)``.
        teacher_labels: ``(b, t)`` the token each position of ``[last question token,
            teacher[:-1]]`` must predict (``IGNORE`` at padding).
        teacher_distill: ``(b,)`` index in ``teacher_ids`` of the token whose output
            predicts the answer's first token.
        student_ids: ``(b, s)`` right-padded ``<eot> [eos] answer [eos]``.
        student_mask: ``(b, s)``.
        student_labels: ``(b, s)`` target of each position (answer and final eos only).
        student_distill: ``(b,)`` index in ``student_ids`` of the token whose output
            predicts the answer's first token.
        steps: ``(b,)`` reasoning steps.
    """

    question_ids: Tensor
    question_mask: Tensor
    teacher_ids: Tensor
    teacher_mask: Tensor
    teacher_labels: Tensor
    teacher_distill: Tensor
    student_ids: Tensor
    student_mask: Tensor
    student_labels: Tensor
    student_distill: Tensor
    steps: Tensor

    def to(self, device: torch.device | str) -> Batch:
        """This batch with every tensor on ``device``."""
        return Batch(**{k: v.to(device) for k, v in vars(self).items()})

    def __len__(self) -> int:
        return int(self.question_ids.shape[0])


def collate(examples: Sequence[Example], pad_id: int) -> Batch:
    """Pads examples into a :class:`Batch` (questions left, continuations right)."""
    n = len(examples)
    q_width = max(len(e.question) for e in examples)
    t_width = max(len(e.teacher) for e in examples)
    s_width = max(len(e.student) for e in examples)
    question_ids = torch.full((n, q_width), pad_id, dtype=torch.long)
    question_mask = torch.zeros((n, q_width), dtype=torch.long)
    teacher_ids = torch.full((n, t_width), pad_id, dtype=torch.long)
    teacher_mask = torch.zeros((n, t_width), dtype=torch.long)
    teacher_labels = torch.full((n, t_width), IGNORE, dtype=torch.long)
    student_ids = torch.full((n, s_width), pad_id, dtype=torch.long)
    student_mask = torch.zeros((n, s_width), dtype=torch.long)
    student_labels = torch.full((n, s_width), IGNORE, dtype=torch.long)
    for row, e in enumerate(examples):
        question_ids[row, q_width - len(e.question) :] = torch.tensor(e.question)
        question_mask[row, q_width - len(e.question) :] = 1
        teacher_ids[row, : len(e.teacher)] = torch.tensor(e.teacher)
        teacher_mask[row, : len(e.teacher)] = 1
        teacher_labels[row, : len(e.teacher)] = torch.tensor(e.teacher)
        student_ids[row, : len(e.student)] = torch.tensor(e.student)
        student_mask[row, : len(e.student)] = 1
        # Position i predicts token i+1; only the answer and its final eos are targets.
        for i in range(e.student_answer - 1, len(e.student) - 1):
            student_labels[row, i] = e.student[i + 1]
    return Batch(
        question_ids=question_ids,
        question_mask=question_mask,
        teacher_ids=teacher_ids,
        teacher_mask=teacher_mask,
        teacher_labels=teacher_labels,
        teacher_distill=torch.tensor([e.teacher_answer - 1 for e in examples]),
        student_ids=student_ids,
        student_mask=student_mask,
        student_labels=student_labels,
        student_distill=torch.tensor([e.student_answer - 1 for e in examples]),
        steps=torch.tensor([e.steps for e in examples]),
    )
