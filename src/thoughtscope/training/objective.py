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

import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import DynamicCache

from thoughtscope.model.codi import CodiModel
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


class _Decoder:
    """Calls the model's transformer stack (final norm included) with a KV cache."""

    def __init__(self, model: CodiModel):
        self.stack: nn.Module = model.base_lm.base_model
        self.head: nn.Module = model.base_lm.get_output_embeddings()
        parameters = inspect.signature(self.stack.forward).parameters
        self.cache_arg = "cache" if "cache" in parameters else "past_key_values"

    def __call__(
        self,
        embeds: Tensor,
        mask: Tensor,
        position_ids: Tensor,
        cache: DynamicCache,
        *,
        hidden_states: bool = False,
    ) -> Any:
        return self.stack(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=position_ids,
            use_cache=True,
            output_hidden_states=hidden_states,
            **{self.cache_arg: cache},
        )


def copy_cache(cache: DynamicCache) -> DynamicCache:
    """A new cache over the same key/value tensors (extending it leaves ``cache`` as is)."""
    out = DynamicCache()
    for layer_idx, layer in enumerate(cache.layers):
        out.update(layer.keys, layer.values, layer_idx)  # type: ignore[union-attr,arg-type]
    return out


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


def codi_losses(model: CodiModel, batch: Batch, *, student: bool = True) -> LossParts:
    """Runs the teacher (and, with ``student``, the latent student) on ``batch``.

    The question is encoded once; its KV cache serves both passes, which gives the same
    gradient as running them separately.
    """
    decoder = _Decoder(model)
    config = model.config
    q_mask = batch.question_mask
    q_len = q_mask.sum(dim=1)
    cache = DynamicCache()
    q_out = decoder(
        model.embed(batch.question_ids), q_mask, (q_mask.cumsum(1) - 1).clamp(min=0), cache
    )
    q_logits = decoder.head(q_out.last_hidden_state)  # (b, q, V)
    # Question LM loss: position i predicts token i+1 (left padding is never a target).
    q_labels = batch.question_ids[:, 1:].masked_fill((q_mask[:, :-1] * q_mask[:, 1:]) == 0, IGNORE)
    question_loss = _token_ce(q_logits[:, :-1], q_labels)

    # Teacher: question [eos] steps [eos] answer [eos].
    t_width = batch.teacher_ids.shape[1]
    offsets = torch.arange(t_width, device=q_len.device)
    t_out = decoder(
        model.embed(batch.teacher_ids),
        torch.cat([q_mask, batch.teacher_mask], dim=1),
        q_len[:, None] + offsets[None, :],
        copy_cache(cache),
        hidden_states=student,
    )
    t_logits = torch.cat([q_logits[:, -1:], decoder.head(t_out.last_hidden_state[:, :-1])], 1)
    labels = batch.teacher_labels
    teacher_loss = _token_ce(t_logits, labels)
    parts = LossParts(teacher=teacher_loss, question=question_loss)
    if not student:
        return parts

    # Student: <bot>, N thoughts through the projection, then <eot> [eos] answer [eos].
    s_cache = copy_cache(cache)
    mask = q_mask
    position = q_len
    n_rows = len(batch)
    inputs = model.embed(torch.full((n_rows, 1), config.bot_id, device=q_len.device))
    for step in range(config.num_latent + 1):
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = decoder(inputs, mask, position[:, None], s_cache)
        position = position + 1
        if step < config.num_latent:
            inputs = model.projection(out.last_hidden_state[:, -1:])
    s_width = batch.student_ids.shape[1]
    s_out = decoder(
        model.embed(batch.student_ids),
        torch.cat([mask, batch.student_mask], dim=1),
        position[:, None] + torch.arange(s_width, device=q_len.device)[None, :],
        s_cache,
        hidden_states=True,
    )
    parts.student = _token_ce(decoder.head(s_out.last_hidden_state), batch.student_labels)
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
