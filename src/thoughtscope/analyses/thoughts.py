"""Extracting continuous thoughts and per-layer hidden states, and decoding them.

For a family whose thoughts are mixtures of token embeddings (soft thinking), a
thought's own decoding is its mixture: the top-n token ids and weights it was made of,
recomputed from the recorded state that produced it. Problems may think for different
numbers of steps; the dump pads them (``n_thoughts`` says how many are real).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from thoughtscope.engine.lens import DecodedState, decode_states, recorded_positions
from thoughtscope.engine.runner import Runner, RunOptions
from thoughtscope.engine.sites import position_name
from thoughtscope.files import save_tensors
from thoughtscope.model.families.soft_thinking import SoftThinkingFamily, concept_token
from thoughtscope.model.thought_model import ThoughtModel
from thoughtscope.problems import Problem


@dataclass(frozen=True)
class Mixture:
    """What one soft thought was made of.

    Attributes:
        position: The thought's index, as a position name.
        tokens: Token strings, most weighted first.
        ids: Their ids.
        weights: Their renormalised probabilities (summing to 1).
    """

    position: str
    tokens: list[str]
    ids: list[int]
    weights: list[float]


@dataclass
class ThoughtDump:
    """Thoughts and hidden states of many problems.

    Attributes:
        ids: Problem ids, in order.
        thoughts: ``(problems, N, d)`` the vectors fed back (zeros past a problem's
            own count).
        hidden: ``(problems, N + 2, len(layers), d)`` block outputs at positions
            ``[bot, 0…N-1, eot]`` for the chosen blocks (zeros at thoughts a problem
            did not reach).
        layers: Block indices of ``hidden``'s third axis (``block:L``).
        answers: Decoded answers.
        decoded: Per problem, the top-k tokens of every state (when asked).
        n_thoughts: Per problem, how many thoughts it fed (all N for a fixed count).
        capped: Per problem, whether thinking was closed at the family's cap.
        mixtures: Per problem, each soft thought's tokens and weights (empty lists for
            families whose thoughts are not mixtures).
    """

    ids: list[str]
    thoughts: Tensor
    hidden: Tensor
    layers: list[int]
    answers: list[str]
    decoded: list[list[DecodedState]] = field(default_factory=list)
    n_thoughts: list[int] = field(default_factory=list)
    capped: list[bool] = field(default_factory=list)
    mixtures: list[list[Mixture]] = field(default_factory=list)

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
            "n_thoughts": json.dumps(self.n_thoughts),
            "thoughts_capped": json.dumps(self.capped),
            "mixtures": json.dumps([[asdict(m) for m in row] for row in self.mixtures]),
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
    capped = [False] * len(problems)
    mixtures: list[list[Mixture]] = [[] for _ in problems]
    decoded: list[list[DecodedState]] = [[] for _ in problems] if top_k else []
    index = torch.tensor([layer + 1 for layer in chosen], dtype=torch.long)
    questions = [p.question for p in problems]
    with tqdm(total=len(problems), disable=not progress, desc="thoughts", unit="problem") as bar:
        for i, (generation,) in runner.stream(questions, options=options):
            assert generation.hidden is not None
            thoughts[i] = generation.thoughts
            hidden[i] = generation.hidden[:, index]
            answers[i] = generation.text
            capped[i] = generation.thoughts_capped
            mixtures[i] = thought_mixtures(model, generation.hidden)
            if top_k:
                decoded[i] = decode_states(model, generation.hidden, layers=chosen, top_k=top_k)
            bar.update(1)
    kept_thoughts = [t for t in thoughts if t is not None]
    kept_hidden = [h for h in hidden if h is not None]
    counts = [int(t.shape[0]) for t in kept_thoughts]
    width = max(counts, default=0)
    padded_thoughts = torch.zeros(len(kept_thoughts), width, model.d_model)
    padded_hidden = torch.zeros(len(kept_hidden), width + 2, len(chosen), model.d_model)
    for row, (t, h) in enumerate(zip(kept_thoughts, kept_hidden, strict=True)):
        n = int(t.shape[0])
        padded_thoughts[row, :n] = t
        padded_hidden[row, : n + 1] = h[: n + 1]  # bot and the row's own thoughts
        padded_hidden[row, -1] = h[-1]  # eot
    return ThoughtDump(
        ids=[p.id for p in problems],
        thoughts=padded_thoughts,
        hidden=padded_hidden,
        layers=chosen,
        answers=answers,
        decoded=decoded,
        n_thoughts=counts,
        capped=capped,
        mixtures=mixtures,
    )


def thought_mixtures(model: ThoughtModel, hidden: Tensor) -> list[Mixture]:
    """Each soft thought's mixture, from the recorded states ``(positions, layers + 1,
    d)`` (``Generation.hidden``): thought k was made from the last block's output at
    the step before it (``bot`` for thought 0). Empty for other families."""
    family = model.family
    if not isinstance(family, SoftThinkingFamily):
        return []
    n_thoughts = hidden.shape[0] - 2
    with torch.inference_mode():
        states = hidden[:n_thoughts, -1].to(device=model.device, dtype=model.dtype)
        concept = concept_token(model.unembed(states), family.config)
    out = []
    for k in range(n_thoughts):
        kept = concept.weights[k] > 0
        ids = concept.ids[k][kept].tolist()
        out.append(
            Mixture(
                position=position_name(k),
                tokens=[model.tokenizer.decode([i]) for i in ids],
                ids=ids,
                weights=[round(float(w), 6) for w in concept.weights[k][kept]],
            )
        )
    return out
