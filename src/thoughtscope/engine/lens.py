"""Decoding continuous thoughts into vocabulary tokens (the "logit lens").

For a recorded hidden state at some position and layer, apply the model's final norm
and unembedding and read the top-k tokens with their probabilities. As in the official
CODI probe, this shows what each thought "says" in token space; it is a reading aid,
not a causal claim. Layer index 0 is the step's input embedding, which at thought
positions is the thought itself (the ``latent`` site); index ``L + 1`` is the output of
block ``L`` (``block:L``). The last block's output is normed once, here, exactly as the
model does before its head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from thoughtscope.engine.sites import BOT, EOT, position_name
from thoughtscope.model.thought_model import ThoughtModel


@dataclass(frozen=True)
class DecodedState:
    """Top-k tokens of one hidden state.

    Attributes:
        position: ``bot``, a thought index, or ``eot``.
        site: ``latent`` (the step's input; the thought itself at thought positions;
            ``input`` at bot/eot) or ``block:L``.
        tokens: Decoded token strings, most probable first.
        ids: Their token ids.
        probs: Their probabilities under the softmax over the full vocabulary.
    """

    position: str
    site: str
    tokens: list[str]
    ids: list[int]
    probs: list[float]


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's printable stand-in for each byte (GPT-2's convention: printable
    Latin-1 bytes stand for themselves, the others for chars from U+0100 on, in order)."""
    kept = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    out = {chr(b): b for b in kept}
    extra = 0
    for b in range(256):
        if b not in kept:
            out[chr(0x100 + extra)] = b
            extra += 1
    return out


def readable_token(tokenizer: Any, token_id: int) -> str:
    """A token as a reader should see it: its text, or its byte pieces (``<0xE2>``)
    when alone it decodes to the replacement glyph (part of a multi-byte character)."""
    text = str(tokenizer.decode([token_id]))
    if "\ufffd" not in text:
        return text
    pieces = tokenizer.convert_ids_to_tokens([token_id])
    piece = str(pieces[0]) if pieces else ""
    if piece.startswith("<0x") and piece.endswith(">"):  # SentencePiece byte fallback
        return piece
    byte_of = _byte_level_alphabet()
    if piece and all(char in byte_of for char in piece):  # byte-level BPE pieces
        return "".join(f"<0x{byte_of[char]:02X}>" for char in piece)
    return "".join(f"<0x{b:02X}>" for b in piece.encode("utf-8")) or text


def recorded_positions(num_latent: int) -> list[int]:
    """Positions of ``Generation.hidden``'s first axis: bot, 0…N-1, eot."""
    return [BOT, *range(num_latent), EOT]


def decode_states(
    model: ThoughtModel,
    hidden: Tensor,
    *,
    layers: Sequence[int] | None = None,
    top_k: int = 5,
) -> list[DecodedState]:
    """Top-k tokens for every recorded position and the chosen layers.

    Args:
        model: The model whose norm and unembedding decode the states.
        hidden: ``(positions, layers + 1, d)`` as in ``Generation.hidden``.
        layers: Block indices to decode (``None``: all); the input (index 0) is always
            decoded.
        top_k: Tokens per state.
    """
    n_positions, n_layers_plus_one, _ = hidden.shape
    positions = recorded_positions(n_positions - 2)
    chosen = list(range(n_layers_plus_one - 1)) if layers is None else list(layers)
    indices = [0, *(layer + 1 for layer in chosen)]
    with torch.inference_mode():
        states = hidden[:, indices].to(device=model.device, dtype=model.dtype)
        probs = model.unembed(states).float().softmax(dim=-1)
        top = probs.topk(top_k, dim=-1)
    out: list[DecodedState] = []
    for p, position in enumerate(positions):
        for j, index in enumerate(indices):
            if index == 0:
                site = "latent" if position >= 0 else "input"
            else:
                site = f"block:{index - 1}"
            ids = top.indices[p, j].tolist()
            out.append(
                DecodedState(
                    position=position_name(position),
                    site=site,
                    tokens=[readable_token(model.tokenizer, i) for i in ids],
                    ids=ids,
                    probs=[round(float(x), 6) for x in top.values[p, j]],
                )
            )
    return out
