"""CODI models: construction around an LM (from scratch or pretrained) and loading.

The CODI family itself (layout, feedback, special ids) is
:mod:`thoughtscope.model.families.codi`; the generic model is
:class:`thoughtscope.model.thought_model.ThoughtModel`.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel

from thoughtscope.model.config import CodiConfig
from thoughtscope.model.families.codi import CodiFamily, CodiModel
from thoughtscope.model.projection import Projection
from thoughtscope.model.thought_model import (
    CONFIG_FILE,
    DTYPES,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    resolve_device,
    resolve_dtype,
)

__all__ = [
    "CONFIG_FILE",
    "DTYPES",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "CodiFamily",
    "CodiModel",
    "codi_around",
    "new_codi_model",
    "resolve_device",
    "resolve_dtype",
]


def new_codi_model(
    lm_config: Any,
    tokenizer: Any,
    *,
    num_latent: int = 6,
    remove_eos: bool = True,
    projection_width: int | None = None,
    projection_layer_norm: bool = True,
    answer_format: str = "The answer is: {answer}",
    name: str = "",
) -> CodiModel:
    """A freshly initialised CODI model around an HF config (for training from scratch).

    The base vocabulary V is ``len(tokenizer)``; the LM gets V+3 embedding rows (pad,
    bot, eot) whatever ``lm_config.vocab_size`` says.
    """
    base_vocab = len(tokenizer)
    lm_config.vocab_size = base_vocab + 3
    lm_config.eos_token_id = int(tokenizer.eos_token_id)
    lm_config.bos_token_id = tokenizer.bos_token_id
    lm_config.pad_token_id = base_vocab
    lm = AutoModelForCausalLM.from_config(lm_config, attn_implementation="eager")
    return codi_around(
        lm,
        tokenizer,
        num_latent=num_latent,
        remove_eos=remove_eos,
        projection_width=projection_width,
        projection_layer_norm=projection_layer_norm,
        answer_format=answer_format,
        name=name,
    )


def codi_around(
    lm: PreTrainedModel,
    tokenizer: Any,
    *,
    num_latent: int = 6,
    remove_eos: bool = True,
    projection_width: int | None = None,
    projection_layer_norm: bool = True,
    answer_format: str = "The answer is: {answer}",
    name: str = "",
) -> CodiModel:
    """A CODI model around an LM: V = ``len(tokenizer)``, the embeddings resized to V+3
    rows when they are not already, and a freshly initialised projection."""
    base_vocab = len(tokenizer)
    embedding = lm.get_input_embeddings()
    assert isinstance(embedding, nn.Embedding)
    if embedding.num_embeddings != base_vocab + 3:
        lm.resize_token_embeddings(base_vocab + 3)
    d_model = int(embedding.embedding_dim)
    width = projection_width or d_model
    config = CodiConfig(
        base_vocab_size=base_vocab,
        num_latent=num_latent,
        remove_eos=remove_eos,
        eos_id=int(tokenizer.eos_token_id),
        projection_width=width,
        projection_layer_norm=projection_layer_norm,
        answer_format=answer_format,
    )
    projection = Projection(d_model, width, layer_norm=projection_layer_norm)
    return CodiModel(lm, projection, tokenizer, config, name=name)
