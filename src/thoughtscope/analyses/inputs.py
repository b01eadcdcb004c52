"""Which prompts fit in the model's context, checked before anything runs.

A CODI run feeds, per problem, the question's tokens, ``<bot>``, one position per
continuous thought, the closing ids (``<eot>``, and ``<eos>`` unless ``remove_eos``) and
then up to ``max_new_tokens - 1`` answer tokens (the first answer token comes from the
closing step's logits). A model with learned position embeddings (GPT-2) cannot go past
its ``n_positions``; one with rotary embeddings (Llama) can, but then runs outside what it
was trained on. Either way the answer means nothing, so such prompts are refused (or,
asked for, skipped and listed) before the first forward pass: a 100,000-character
question is rejected after tokenising it, never after allocating a cache for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from thoughtscope.model.thought_model import ThoughtModel
from thoughtscope.problems import Problem

__all__ = ["LengthCheck", "LongPrompt", "check_prompt_lengths", "context_limit"]


def context_limit(model: ThoughtModel) -> int | None:
    """The most positions the model's LM was built for, or ``None`` if its config says not."""
    return model.context_length


def positions_after_question(model: ThoughtModel, max_new_tokens: int) -> int:
    """Positions a run uses besides the question's own tokens: the start ids (CODI:
    ``<bot>``), the thoughts, the closing ids and ``max_new_tokens - 1`` fed-back answer
    tokens."""
    family = model.family
    fed = len(family.start_ids()) + family.num_thoughts + len(family.closing_ids())
    return fed + max(max_new_tokens - 1, 0)


@dataclass(frozen=True)
class LongPrompt:
    """A problem whose run needs more positions than the model has."""

    id: str
    question_tokens: int
    positions: int  # question tokens + positions_after_question

    def describe(self) -> str:
        return f"{self.id} ({self.question_tokens} question tokens, {self.positions} positions)"


@dataclass(frozen=True)
class LengthCheck:
    """The outcome of :func:`check_prompt_lengths`.

    Attributes:
        limit: The model's context (``None``: unknown, nothing is refused).
        after_question: Positions each run needs beyond its question.
        too_long: The problems that do not fit, in input order.
    """

    limit: int | None
    after_question: int
    too_long: list[LongPrompt]

    def fitting(self, problems: Sequence[Problem]) -> list[Problem]:
        """``problems`` without the ones that do not fit, in order."""
        dropped = {p.id for p in self.too_long}
        return [p for p in problems if p.id not in dropped]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready, for a run's manifest: the limit and every skipped problem."""
        return {
            "limit": self.limit,
            "after_question": self.after_question,
            "too_long": [
                {"id": p.id, "question_tokens": p.question_tokens, "positions": p.positions}
                for p in self.too_long
            ],
        }


def check_prompt_lengths(
    model: ThoughtModel, problems: Sequence[Problem], *, max_new_tokens: int
) -> LengthCheck:
    """Which of ``problems`` need more positions than ``model`` has (tokenises only)."""
    limit = context_limit(model)
    after = positions_after_question(model, max_new_tokens)
    too_long: list[LongPrompt] = []
    if limit is not None:
        for problem in problems:
            n_question = len(model.question_ids(problem.question))
            if n_question + after > limit:
                too_long.append(LongPrompt(problem.id, n_question, n_question + after))
    return LengthCheck(limit, after, too_long)
