"""CODI settings that are not part of the underlying language model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class CodiConfig:
    """What turns a causal LM into a CODI model.

    Attributes:
        base_vocab_size: V, the vocabulary size before the three CODI ids were appended.
        num_latent: N, how many continuous thoughts are fed back.
        remove_eos: When False, an ``<eos>`` goes before ``<bot>`` and after ``<eot>``.
        eos_id: The tokenizer's end-of-sequence id; decoding stops there.
        projection_width: Hidden width of the projection (``prj_dim``).
        projection_layer_norm: Whether the projection ends with a LayerNorm.
        answer_format: How the model writes its final answer; ``{answer}`` stands for the
            number. Used to teacher-force the expected answer (``gold_logprob``).
    """

    base_vocab_size: int
    num_latent: int = 6
    remove_eos: bool = True
    eos_id: int = 0
    projection_width: int = 2048
    projection_layer_norm: bool = True
    answer_format: str = "The answer is: {answer}"

    @property
    def pad_id(self) -> int:
        """Padding id, V (never attended to: we always pass an attention mask)."""
        return self.base_vocab_size

    @property
    def bot_id(self) -> int:
        """Begin-of-thought id, V+1."""
        return self.base_vocab_size + 1

    @property
    def eot_id(self) -> int:
        """End-of-thought id, V+2."""
        return self.base_vocab_size + 2

    @property
    def vocab_size(self) -> int:
        """Rows of the resized embedding matrix, V+3."""
        return self.base_vocab_size + 3

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
