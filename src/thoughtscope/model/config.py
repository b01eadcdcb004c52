"""CODI settings that are not part of the underlying language model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

FEEDBACKS = ("projection", "identity")
"""How a CODI thought is made from the last state: the projection, or the state itself."""


@dataclass(frozen=True)
class CodiConfig:
    """What turns a causal LM into a CODI model.

    Attributes:
        base_vocab_size: V, the vocabulary size before the CODI ids were appended.
        num_latent: N, how many continuous thoughts are fed back.
        remove_eos: When False, an ``<eos>`` goes before ``<bot>`` and after ``<eot>``.
        eos_id: The tokenizer's end-of-sequence id; decoding stops there.
        projection_width: Hidden width of the projection (``prj_dim``).
        projection_layer_norm: Whether the projection ends with a LayerNorm.
        answer_format: How the model writes its final answer; ``{answer}`` stands for the
            number. Used to teacher-force the expected answer (``gold_logprob``).
        normalise_question: Feed ``question.strip().replace('  ', ' ')``, as the
            published CODI evaluation does, instead of the question as given.
        special_ids: ``(pad, bot, eot)`` as the checkpoint defines them. Left out
            (``None``), the published layout ``(V, V+1, V+2)``.
        feedback: ``projection`` (the published projection) or ``identity``: the
            normed last-layer state itself is fed back (checkpoints without ``prj.``
            weights).
    """

    base_vocab_size: int
    num_latent: int = 6
    remove_eos: bool = True
    eos_id: int = 0
    projection_width: int = 2048
    projection_layer_norm: bool = True
    answer_format: str = "The answer is: {answer}"
    normalise_question: bool = True
    special_ids: tuple[int, int, int] | None = None
    feedback: str = "projection"

    def __post_init__(self) -> None:
        if self.feedback not in FEEDBACKS:
            raise ValueError(
                f"CODI feedback {self.feedback!r} is unknown; choose one of {', '.join(FEEDBACKS)}"
            )
        # The published layout appends pad, bot and eot after the base vocabulary.
        v = self.base_vocab_size
        ids = (v, v + 1, v + 2) if self.special_ids is None else self.special_ids
        object.__setattr__(self, "special_ids", tuple(int(i) for i in ids))

    @property
    def pad_id(self) -> int:
        """Padding id (never attended to: the engine always passes an attention mask)."""
        assert self.special_ids is not None
        return self.special_ids[0]

    @property
    def bot_id(self) -> int:
        """Begin-of-thought id."""
        assert self.special_ids is not None
        return self.special_ids[1]

    @property
    def eot_id(self) -> int:
        """End-of-thought id."""
        assert self.special_ids is not None
        return self.special_ids[2]

    @property
    def vocab_size(self) -> int:
        """Rows of the resized embedding matrix: the base vocabulary and the CODI ids."""
        assert self.special_ids is not None
        return max(self.base_vocab_size - 1, *self.special_ids) + 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodiConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a newer format)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown CODI config fields {unknown}; is thoughtscope too old?")
        return cls(**data)
