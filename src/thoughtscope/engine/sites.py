"""How thoughtscope names the places it reads and edits: sites and positions.

This module is the single definition used by the runner, the interventions, the result
files and the docs.

**Positions.** Latent reasoning runs one single-token step per position:

* ``bot``: the step whose input is the ``<bot>`` token. The last layer's hidden state
  here, passed through the projection, becomes thought 0.
* ``0 … N-1``: continuous thought ``k`` is the ``k``-th vector fed back as an input
  embedding; position ``k`` is the step whose *input* is thought ``k``. The last layer's
  hidden state at position ``k`` produces thought ``k+1`` (at ``N-1`` it is discarded;
  ``<eot>`` follows).
* ``eot``: the step whose input is ``<eot>`` (recorded, never edited).

The original study's "position 0" was the ``bot`` step; here it is the first thought.

**Sites.** ``latent`` is the fed-back vector itself (editing it at position ``k``
replaces thought ``k`` before it enters the model). ``block:L`` is the output of decoder
block ``L``, 0-based, i.e. HF ``hidden_states[L + 1]`` (``hidden_states[0]`` is the
embedding output). Edits at ``block:L`` apply to the residual stream at that step, so
the KV cache and every later thought see them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from thoughtscope.positions import BOT, EOT, Position, position_name

__all__ = [
    "BOT",
    "EOT",
    "LATENT",
    "Position",
    "Site",
    "block",
    "parse_sites",
    "position_name",
]


@dataclass(frozen=True, order=True)
class Site:
    """Where an activation lives: the fed-back thought, or a decoder block's output."""

    kind: Literal["latent", "block"]
    layer: int | None = None

    def __post_init__(self) -> None:
        if self.kind == "latent" and self.layer is not None:
            raise ValueError("the latent site has no layer")
        if self.kind == "block" and (self.layer is None or self.layer < 0):
            raise ValueError(f"block sites need a layer >= 0, got {self.layer}")

    def __str__(self) -> str:
        return "latent" if self.kind == "latent" else f"block:{self.layer}"

    @property
    def short(self) -> str:
        """Compact tag used in condition names: ``latent`` or ``L8``."""
        return "latent" if self.kind == "latent" else f"L{self.layer}"


LATENT = Site("latent")


def block(layer: int) -> Site:
    """The output of decoder block ``layer`` (0-based)."""
    return Site("block", layer)


_BLOCK_RE = re.compile(r"^block:(all|\d+(?:,\d+)*)$")


def parse_sites(text: str, num_layers: int) -> list[Site]:
    """Parses ``latent``, ``block:8``, ``block:4,8,14``, ``block:all`` or several of them
    joined with ``+`` (``latent+block:all``).

    Raises:
        ValueError: naming the offending part, the model's layer range and the grammar.
    """
    sites: list[Site] = []
    for part in text.split("+"):
        part = part.strip()
        if part == "latent":
            sites.append(LATENT)
            continue
        match = _BLOCK_RE.match(part)
        if not match:
            raise ValueError(
                f"--sites: cannot read {part!r}; use latent, block:L, block:L1,L2 or "
                "block:all, joined with + (e.g. latent+block:all)"
            )
        spec = match.group(1)
        layers = range(num_layers) if spec == "all" else [int(x) for x in spec.split(",")]
        for layer in layers:
            if not 0 <= layer < num_layers:
                raise ValueError(
                    f"--sites: block {layer} does not exist; this model has blocks "
                    f"0…{num_layers - 1} (block:L is HF hidden_states[L+1])"
                )
            sites.append(block(layer))
    return list(dict.fromkeys(sites))
