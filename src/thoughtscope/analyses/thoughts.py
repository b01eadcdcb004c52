"""Extracting continuous thoughts and per-layer hidden states, and decoding them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from thoughtscope.engine.lens import DecodedState, decode_states, recorded_positions
from thoughtscope.engine.runner import Runner, RunOptions
from thoughtscope.engine.sites import position_name
from thoughtscope.files import save_tensors
from thoughtscope.model.thought_model import ThoughtModel
from thoughtscope.problems import Problem


@dataclass
class ThoughtDump:
    """Thoughts and hidden states of many problems.

    Attributes:
        ids: Problem ids, in order.
        thoughts: ``(problems, N, d)`` the vectors fed back.
        hidden: ``(problems, N + 2, len(layers), d)`` block outputs at positions
            ``[bot, 0…N-1, eot]`` for the chosen blocks.
        layers: Block indices of ``hidden``'s third axis (``block:L``).
        answers: Decoded answers.
        decoded: Per problem, the top-k tokens of every state (when asked).
    """

    ids: list[str]
    thoughts: Tensor
    hidden: Tensor
    layers: list[int]
    answers: list[str]
    decoded: list[list[DecodedState]] = field(default_factory=list)

    def save(self, path: str | Path) -> Path:
        """Writes a safetensors file; ids, layers and positions go into its metadata."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        n_latent = self.thoughts.shape[1]
        metadata = {
            "ids": json.dumps(self.ids),
            "layers": json.dumps(self.layers),
            "positions": json.dumps([position_name(p) for p in recorded_positions(n_latent)]),
            "answers": json.dumps(self.answers),
            "layout": "thoughts: (problem, thought, d); hidden: (problem, position, layer, d), "
            "layer i is block:layers[i] (HF hidden_states[layers[i]+1])",
        }
        save_tensors(
            {"thoughts": self.thoughts.contiguous(), "hidden": self.hidden.contiguous()},
            str(target),
            metadata=metadata,
        )
        return target


def extract_thoughts(
    model: ThoughtModel,
    problems: Sequence[Problem],
    *,
    layers: Sequence[int] | None = None,
    top_k: int = 0,
    batch_size: int = 32,
    max_new_tokens: int = 64,
    progress: bool = False,
) -> ThoughtDump:
    """Runs the baseline with recording on; keeps the chosen blocks (``None``: all)."""
    chosen = list(range(model.num_layers)) if layers is None else list(layers)
    for layer in chosen:
        if not 0 <= layer < model.num_layers:
            raise ValueError(
                f"--layers: block {layer} does not exist (blocks 0…{model.num_layers - 1})"
            )
    runner = Runner(model)
    options = RunOptions(max_new_tokens=max_new_tokens, batch_size=batch_size, record_hidden=True)
    thoughts: list[Tensor | None] = [None] * len(problems)
    hidden: list[Tensor | None] = [None] * len(problems)
    answers: list[str] = [""] * len(problems)
    decoded: list[list[DecodedState]] = [[] for _ in problems] if top_k else []
    index = torch.tensor([layer + 1 for layer in chosen], dtype=torch.long)
    questions = [p.question for p in problems]
    with tqdm(total=len(problems), disable=not progress, desc="thoughts", unit="problem") as bar:
        for i, (generation,) in runner.stream(questions, options=options):
            assert generation.hidden is not None
            thoughts[i] = generation.thoughts
            hidden[i] = generation.hidden[:, index]
            answers[i] = generation.text
            if top_k:
                decoded[i] = decode_states(model, generation.hidden, layers=chosen, top_k=top_k)
            bar.update(1)
    return ThoughtDump(
        ids=[p.id for p in problems],
        thoughts=torch.stack([t for t in thoughts if t is not None]),
        hidden=torch.stack([h for h in hidden if h is not None]),
        layers=chosen,
        answers=answers,
        decoded=decoded,
    )
