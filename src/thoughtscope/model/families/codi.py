"""CODI (arXiv 2502.21074): thoughts are a projection of the last hidden state.

Layout: the question's token ids (with the tokenizer's own special tokens, after the
published question normalisation) [+ ``<eos>`` unless ``remove_eos``], then ``<bot>``;
then N times the last layer's normed hidden state at the last position goes through
the projection and is fed back as the next input embedding; then ``<eot>`` [+ ``<eos>``];
then the answer, greedy, never choosing ``<eot>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn
from transformers import PreTrainedModel

from thoughtscope.model.config import CodiConfig
from thoughtscope.model.families.base import StopCheck, register_family
from thoughtscope.model.projection import Projection
from thoughtscope.model.thought_model import ThoughtModel

NAME = "codi"
PROJECTION_PREFIX = "prj."
"""Where the projection's weights live in saved and in published state dicts."""


def normalise_question(question: str) -> str:
    """The published CODI evaluation's question clean-up: strip the ends, then replace
    each pair of spaces with one (a single pass, as ``str.replace`` does)."""
    return question.strip().replace("  ", " ")


class CodiFamily:
    """The CODI thought family: settings (:class:`CodiConfig`) and the projection."""

    name = NAME
    first_token_may_end = True

    def __init__(self, config: CodiConfig, projection: Projection | nn.Identity):
        self.config = config
        self.projection = projection

    @property
    def submodules(self) -> Mapping[str, nn.Module]:
        """``{"projection": …}``."""
        return {"projection": self.projection}

    @property
    def num_thoughts(self) -> int:
        """N, the configured number of latents."""
        return self.config.num_latent

    @property
    def pad_id(self) -> int:
        """The checkpoint's pad id."""
        return self.config.pad_id

    @property
    def eos_id(self) -> int:
        """The tokenizer's end-of-sequence id."""
        return self.config.eos_id

    @property
    def added_ids(self) -> frozenset[int]:
        """Pad, ``<bot>``, ``<eot>`` and any other id past the base vocabulary."""
        past_base = range(self.config.base_vocab_size, self.config.vocab_size)
        assert self.config.special_ids is not None
        return frozenset([*past_base, *self.config.special_ids])

    def prompt_ids(self, tokenizer: Any, question: str) -> list[int]:
        """The (normalised) question with the tokenizer's own special tokens, then
        ``<eos>`` unless ``remove_eos``."""
        if self.config.normalise_question:
            question = normalise_question(question)
        ids = list(tokenizer(question)["input_ids"])
        if not self.config.remove_eos:
            ids.append(self.config.eos_id)
        return ids

    def start_ids(self) -> list[int]:
        """``[<bot>]``."""
        return [self.config.bot_id]

    def next_thought(self, model: ThoughtModel, state: Tensor) -> Tensor:
        """The projection of the normed last-layer state (the state itself under identity
        feedback): ``(rows, 1, d) -> (rows, 1, d)``."""
        return self.projection(state)  # type: ignore[no-any-return]

    def stopped(
        self, model: ThoughtModel, step: int, state: Tensor, memory: Tensor | None
    ) -> StopCheck | None:
        """CODI thinks a fixed N thoughts."""
        return None

    def closing_ids(self) -> list[int]:
        """``<eot>``, then ``<eos>`` unless ``remove_eos``."""
        if self.config.remove_eos:
            return [self.config.eot_id]
        return [self.config.eot_id, self.config.eos_id]

    def banned_ids(self) -> list[int]:
        """``<eot>``, never chosen, as in the published decoder."""
        return [self.config.eot_id]

    def answer_ids(self, tokenizer: Any, answer: float) -> list[int]:
        """``answer_format`` with the number (integers without ``.0``), then ``<eos>``."""
        number = str(int(answer)) if float(answer).is_integer() else repr(float(answer))
        text = self.config.answer_format.format(answer=number)
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        return [*ids, self.config.eos_id]

    def to_dict(self) -> dict[str, Any]:
        """The :class:`CodiConfig` as a dict."""
        return self.config.to_dict()

    def saved_weights(self) -> dict[str, Tensor]:
        """The projection, under ``prj.`` (as published checkpoints name it); none under
        identity feedback."""
        return {PROJECTION_PREFIX + k: v for k, v in self.projection.state_dict().items()}


class CodiModel(ThoughtModel):
    """A ThoughtModel of the CODI family, with typed access to its settings and
    projection (``model.config``, ``model.projection``)."""

    family: CodiFamily
    projection: Projection | nn.Identity  # registered by ThoughtModel from the family

    def __init__(
        self,
        lm: PreTrainedModel,
        projection: Projection | nn.Identity,
        tokenizer: Any,
        config: CodiConfig,
        *,
        name: str = "",
    ):
        super().__init__(lm, tokenizer, CodiFamily(config, projection), name=name)

    @property
    def config(self) -> CodiConfig:
        """The CODI settings."""
        return self.family.config

    def with_lm(self, lm: PreTrainedModel) -> CodiModel:
        """The same projection, tokenizer and settings around another LM."""
        return CodiModel(lm, self.projection, self.tokenizer, self.config, name=self.name)

    def merged(self) -> CodiModel:
        """This model with LoRA merged into the base weights (itself if already plain)."""
        model = super().merged()
        assert isinstance(model, CodiModel)
        return model


def load_codi(
    settings: dict[str, Any],
    weights: dict[str, Tensor],
    lm: PreTrainedModel,
    tokenizer: Any,
    name: str,
) -> CodiModel:
    """Rebuilds a saved CODI model (the registry's loader for ``codi``)."""
    config = CodiConfig.from_dict(settings)
    if config.feedback == "identity":
        return CodiModel(lm, nn.Identity(), tokenizer, config, name=name)
    embedding = lm.get_input_embeddings()
    assert isinstance(embedding, nn.Embedding)
    projection = Projection(
        int(embedding.embedding_dim),
        config.projection_width,
        layer_norm=config.projection_layer_norm,
    )
    n = len(PROJECTION_PREFIX)
    projection.load_state_dict({k[n:]: v for k, v in weights.items() if k[:n] == PROJECTION_PREFIX})
    return CodiModel(lm, projection, tokenizer, config, name=name)


register_family(NAME, load_codi)
