"""Attention to thoughts: which layers and heads read which continuous thought.

For the baseline run, per layer and head, the attention that each step's query puts on
the question, ``<bot>`` and each thought. Queries: the ``bot`` step, each thought
position ``0…N-1`` (whose input is thought k), ``eot``, and the steps whose inputs are
the first answer tokens (``answer:0``, …; kept while no row of the batch has finished).
Sources: ``question`` (every prompt token, summed), ``bot`` and
``thought:k`` (the key of the step whose input is thought k). A query sees only sources
before it; the rest of its row (later positions, the closing ids) is not reported, so a
row's reported masses can sum to less than 1.

It runs through the same batched engine (:class:`~thoughtscope.engine.runner.Runner`)
with the model switched to eager attention for the call (the only implementation that
returns the weights) and a forward hook on each block's attention module; nothing in
the engine changes. Left padding is masked by the engine's attention mask, so padded
keys get weight 0 (tested), and every query row sums to 1 over all keys (tested).

Records: ``RUN/attention.safetensors`` holds ``mass``: ``(problems, layers, heads,
queries, sources)`` float32 and the problem ids; statistics
(:mod:`thoughtscope.statistics.attention`) give means with bootstrap intervals.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from thoughtscope.engine.runner import BASELINE, Runner, RunOptions
from thoughtscope.files import save_tensors
from thoughtscope.model.thought_model import ThoughtModel
from thoughtscope.problems.errors import ProblemDataError
from thoughtscope.problems.sources import load_problems

__all__ = [
    "ATTENTION_FILE",
    "AttentionCapture",
    "AttentionResult",
    "attention_modules",
    "eager_attention",
    "record_attention",
    "run_attention",
]

ATTENTION_FILE = "attention.safetensors"


def attention_modules(model: ThoughtModel) -> list[nn.Module]:
    """Each decoder block's self-attention module (the child whose class name ends in
    ``Attention``), in block order.

    Raises:
        ValueError: A block has no such child (an architecture this does not know).
    """
    found: list[nn.Module] = []
    for index, block in enumerate(model.blocks):
        children = [m for m in block.children() if type(m).__name__.endswith("Attention")]
        if not children:
            raise ValueError(f"block {index} ({type(block).__name__}) has no attention module")
        found.append(children[0])
    return found


@contextmanager
def eager_attention(model: ThoughtModel) -> Iterator[None]:
    """Runs the model with eager attention inside the block, restoring it after."""
    config = model.base_lm.config
    before = getattr(config, "_attn_implementation", None)
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = before


@dataclass
class AttentionCapture:
    """Per forward call, per layer, the attention weights ``(rows, heads, q, keys)``."""

    calls: list[list[Tensor]]

    @contextmanager
    def installed(self, model: ThoughtModel) -> Iterator[AttentionCapture]:
        """Hooks every block's attention module while the block runs."""
        modules = attention_modules(model)
        n_layers = len(modules)
        current: list[Tensor] = []

        def hook(layer: int) -> Any:
            def grab(_module: Any, _inputs: Any, output: Any) -> None:
                nonlocal current
                weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
                if weights is None:
                    raise RuntimeError("the attention module returned no weights (not eager?)")
                if layer == 0:
                    current = []
                current.append(weights.detach().float().cpu())
                if layer == n_layers - 1:
                    self.calls.append(current)

            return grab

        handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()


def _queries(num_thoughts: int, answer_tokens: int) -> list[str]:
    return [
        "bot",
        *map(str, range(num_thoughts)),
        "eot",
        *(f"answer:{i}" for i in range(answer_tokens)),
    ]


def _sources(num_thoughts: int) -> list[str]:
    return ["question", "bot", *(f"thought:{k}" for k in range(num_thoughts))]


@torch.inference_mode()
def record_attention(
    model: ThoughtModel, questions: Sequence[str], *, answer_tokens: int = 3
) -> Tensor:
    """Attention mass of every query on every source, for ``questions`` run as one batch.

    Returns:
        ``(problems, layers, heads, queries, sources)`` with queries
        ``[bot, 0…N-1, eot, answer:0…]`` and sources ``[question, bot, thought:0…]``;
        NaN where a query does not exist (an answer shorter than ``answer_tokens``).
    """
    n = len(questions)
    n_thoughts = model.num_thoughts
    n_start = len(model.family.start_ids())
    capture = AttentionCapture([])
    runner = Runner(model)
    options = RunOptions(max_new_tokens=answer_tokens, batch_size=n)
    with eager_attention(model), capture.installed(model):
        runner.run(list(questions), [BASELINE], options)
    # The runner orders a batch by question length; row r is problem order[r].
    order = sorted(range(n), key=lambda i: len(questions[i]))
    lengths = [len(model.question_ids(questions[i])) for i in order]
    width = max(lengths)
    calls = capture.calls
    # Calls: the prompt, the start ids (one call), each thought, the closing ids (one
    # call), then one per decoded token after the first.
    prompt_call, start_call = calls[0], calls[1]
    thought_calls = calls[2 : 2 + n_thoughts]
    closing_call = calls[2 + n_thoughts]
    answer_calls = calls[3 + n_thoughts :]
    del prompt_call
    n_layers = len(start_call)
    n_heads = start_call[0].shape[1]
    queries = _queries(n_thoughts, answer_tokens)
    sources = _sources(n_thoughts)
    out = torch.full((n, n_layers, n_heads, len(queries), len(sources)), float("nan"))
    bot_key = width + n_start - 1  # the last start id (<bot>)
    thought_key = [width + n_start + k for k in range(n_thoughts)]

    def masses(weights: Tensor, q: int) -> Tensor:
        """``(rows, heads, keys)`` of query ``q`` → ``(rows, heads, sources)``."""
        w = weights[:, :, q]
        parts = []
        question = torch.zeros(w.shape[:2])
        for r, length in enumerate(lengths):
            question[r] = w[r, :, width - length : width].sum(-1)
        parts.append(question)
        parts.append(w[:, :, bot_key] if bot_key < w.shape[-1] else torch.zeros(w.shape[:2]))
        for key in thought_key:
            parts.append(w[:, :, key] if key < w.shape[-1] else torch.zeros(w.shape[:2]))
        return torch.stack(parts, dim=-1)

    # (query index, call, query row within the call); answer token a is the input of
    # decode call a, kept only while no row has been retired (rows still in order).
    steps: list[tuple[int, list[Tensor], int]] = [(0, start_call, n_start - 1)]
    steps += [(1 + k, call, 0) for k, call in enumerate(thought_calls)]
    steps.append((1 + n_thoughts, closing_call, 0))
    for a, call in enumerate(answer_calls[:answer_tokens]):
        if call[0].shape[0] == n:
            steps.append((2 + n_thoughts + a, call, 0))
    for q_index, call, q in steps:
        for layer, weights in enumerate(call):
            out[order, layer, :, q_index] = masses(weights, q)
    return out


@dataclass(frozen=True)
class AttentionResult:
    """What :func:`run_attention` wrote."""

    path: Path
    n_problems: int
    queries: list[str]
    sources: list[str]


def run_attention(
    model: ThoughtModel,
    data: str,
    run_dir: str | Path,
    *,
    limit: int | None = None,
    batch_size: int = 64,
    answer_tokens: int = 3,
) -> AttentionResult:
    """Records the attention masses of the baseline run on ``data`` into
    ``RUN/attention.safetensors`` (problems in batches of ``batch_size``).

    Raises:
        ValueError: (``--data``) no problems; the message names the option.
    """
    try:
        problems = load_problems(data).problems
    except ProblemDataError as error:
        raise ValueError(f"--data: {error}") from None
    problems = problems[:limit] if limit else problems
    if not problems:
        raise ValueError(f"--data {data}: no problems in it; give a source with problems")
    parts = []
    for start in range(0, len(problems), batch_size):
        batch = problems[start : start + batch_size]
        parts.append(
            record_attention(model, [p.question for p in batch], answer_tokens=answer_tokens)
        )
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    queries = _queries(model.num_thoughts, answer_tokens)
    sources = _sources(model.num_thoughts)
    path = save_tensors(
        {"mass": torch.cat(parts).contiguous()},
        run_dir / ATTENTION_FILE,
        metadata={
            "ids": json.dumps([p.id for p in problems]),
            "queries": json.dumps(queries),
            "sources": json.dumps(sources),
        },
    )
    return AttentionResult(path, len(problems), queries, sources)
