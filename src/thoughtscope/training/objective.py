"""The CODI objective: a teacher with explicit steps, a latent student, distillation.

Why it works (arXiv 2502.21074): the teacher reads ``question steps answer`` and learns
to reason in words; the student reads ``question <bot>``, then feeds its own last-layer
state back through a projection N times (the continuous thoughts), then ``<eot>`` and
the answer. Distillation pulls the student's hidden states at the position that predicts
the answer's first token towards the teacher's at the same point, in every layer, so
that the thoughts must produce what the written steps produced. The teacher is not
pushed towards the student (its states are detached).

Distillation divides *both* hidden states by the teacher's standard deviation before the
smooth-L1. The published code divides the loss afterwards, which is the same up to the
smooth-L1 threshold; for a model trained from scratch, whose states are tiny, the
published form leaves almost every difference inside the quadratic zone and the loss
vanishes. The standard deviation is taken per example and layer (over the hidden
dimension), so an example's loss does not depend on what else is in its batch.

All losses are returned per example; :func:`codi_loss` weights and averages them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from thoughtscope.engine import backend, latent
from thoughtscope.model.thought_model import ThoughtModel
from thoughtscope.training.data import IGNORE, Batch


@dataclass
class LossParts:
    """Per-example losses, each ``(b,)``; ``None`` where the pass did not run."""

    teacher: Tensor
    question: Tensor
    student: Tensor | None = None
    distill: Tensor | None = None


@dataclass(frozen=True)
class LossWeights:
    """Factors of the terms of the CODI loss."""

    student: float = 1.0
    distill: float = 1.0
    teacher: float = 1.0
    question: float = 0.0


def copy_cache(cache: backend.Cache) -> backend.Cache:
    """A new cache over the same key/value tensors (extending it leaves ``cache`` as is)."""
    return backend.shared(cache)


def _token_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy per row over labelled positions: ``(b, s, V), (b, s) -> (b,)``."""
    losses = F.cross_entropy(
        logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="none"
    ).view(labels.shape)
    counts = (labels != IGNORE).sum(dim=1).clamp(min=1)
    return losses.sum(dim=1) / counts


def _at(states: Tensor, index: Tensor) -> Tensor:
    """``states[b, index[b]]``: ``(b, s, d), (b,) -> (b, d)``."""
    return states[torch.arange(len(index), device=states.device), index]


def distillation(student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Smooth-L1 between student and (detached) teacher states, both divided by the
    teacher's per-example standard deviation, averaged over layers: ``[(b, d)] -> (b,)``."""
    per_layer = []
    for s, t in zip(student, teacher, strict=True):
        t = t.detach().float()
        std = t.std(dim=-1, keepdim=True).clamp(min=1e-6)
        per_layer.append(F.smooth_l1_loss(s.float() / std, t / std, reduction="none").mean(-1))
    return torch.stack(per_layer).mean(dim=0)


def codi_losses(model: ThoughtModel, batch: Batch, *, student: bool = True) -> LossParts:
    """Runs the teacher (and, with ``student``, the latent student) on ``batch``.

    The question is encoded once; its KV cache serves both passes, which gives the same
    gradient as running them separately.
    """
    q_mask = batch.question_mask
    prompt, q_hidden = latent.encode(model, batch.question_ids, q_mask)
    cache, q_len = prompt.cache, prompt.next_position
    q_logits = model.head(q_hidden)  # (b, q, V)
    # Question LM loss: position i predicts token i+1 (left padding is never a target).
    q_labels = batch.question_ids[:, 1:].masked_fill((q_mask[:, :-1] * q_mask[:, 1:]) == 0, IGNORE)
    question_loss = _token_ce(q_logits[:, :-1], q_labels)

    # Teacher: question [eos] steps [eos] answer [eos].
    t_width = batch.teacher_ids.shape[1]
    offsets = torch.arange(t_width, device=q_len.device)
    t_out = latent.forward(
        model,
        model.embed(batch.teacher_ids),
        torch.cat([q_mask, batch.teacher_mask], dim=1),
        q_len[:, None] + offsets[None, :],
        copy_cache(cache),
        hidden_states=student,
    )
    t_logits = torch.cat([q_logits[:, -1:], model.head(t_out.last_hidden_state[:, :-1])], 1)
    labels = batch.teacher_labels
    teacher_loss = _token_ce(t_logits, labels)
    parts = LossParts(teacher=teacher_loss, question=question_loss)
    if not student:
        return parts

    # Student: the engine's latent loop (start ids, N thoughts), then the closing ids
    # and the answer, teacher-forced: <eot> [eos] answer [eos].
    rows = latent.Rows(copy_cache(cache), q_mask, q_len, prompt.problems)
    latent.think(model, rows, model.num_thoughts)
    mask, position = rows.mask, rows.next_position
    s_width = batch.student_ids.shape[1]
    s_out = latent.forward(
        model,
        model.embed(batch.student_ids),
        torch.cat([mask, batch.student_mask], dim=1),
        position[:, None] + torch.arange(s_width, device=q_len.device)[None, :],
        rows.cache,
        hidden_states=True,
    )
    parts.student = _token_ce(model.head(s_out.last_hidden_state), batch.student_labels)
    layers = range(1, len(s_out.hidden_states))  # block outputs (0 is the embedding)
    parts.distill = distillation(
        [_at(s_out.hidden_states[i], batch.student_distill) for i in layers],
        [_at(t_out.hidden_states[i], batch.teacher_distill) for i in layers],
    )
    return parts


def codi_loss(parts: LossParts, weights: LossWeights) -> tuple[Tensor, dict[str, float]]:
    """The weighted batch loss and the mean of each term (for the log)."""
    total = weights.teacher * parts.teacher.mean()
    logged = {"teacher": parts.teacher.mean().item(), "question": parts.question.mean().item()}
    if weights.question:
        total = total + weights.question * parts.question.mean()
    if parts.student is not None and parts.distill is not None:
        total = total + weights.student * parts.student.mean()
        total = total + weights.distill * parts.distill.mean()
        logged["student"] = parts.student.mean().item()
        logged["distill"] = parts.distill.mean().item()
    logged["loss"] = total.item()
    return total, logged
