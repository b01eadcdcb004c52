"""Attention to thoughts: which layers and heads read which continuous thought.

For the baseline run, per layer and head, the attention that each step's query puts on
each part of its row. Queries: the ``bot`` step (the last start id), each thought
position ``0…N-1`` (the step whose input is thought k), ``eot`` (the first closing id)
and ``answer:a`` (the step whose input is answer token a). Sources: ``question`` (every
prompt token, summed), ``bot`` (the start ids), ``thought:k`` (the key of the step whose
input is thought k), ``eot`` (the closing ids) and ``answer`` (the answer tokens up to
and including the query's own). Every non-padding key belongs to exactly one source, so
each existing query's masses sum to 1 (tested); a query sees nothing after it, so its
mass on a later source is 0.

**How it is read: replay.** First the engine runs the baseline (the same batched
:class:`~thoughtscope.engine.runner.Runner` as every analysis, with its usual attention
implementation), giving per problem its own thoughts (the vectors fed back) and answer
tokens. Then, with eager attention switched on for the call (the only implementation
that returns the weights) and a forward hook on each block's attention module, one
teacher-forced pass runs over exactly what the engine fed each row: prompt, start ids,
its thoughts, closing ids, its first answer tokens, left-padded into one batch. Causal
attention at a step depends only on the inputs up to it, so the replay's weights are
those of the run (a test checks its block outputs against the engine's recorded states
for CODI, Coconut and soft thinking). Because each row is laid out on its own, it works
for every family: rows with their own number of thoughts (soft thinking stops rows at
different steps; a row that thought 3 times has no ``thought:3`` and no query ``3``: NaN
there) and rows whose answers end at different tokens (a shorter answer has NaN for the
missing ``answer:a``). Left padding gets weight 0 (tested).

Records: ``RUN/attention.safetensors`` holds ``mass``: ``(problems, layers, heads,
queries, sources)`` float32 and, in its metadata, the problem ids, query and source
names; the settings go to the ``attention`` section of ``RUN/manifest.json``.
Statistics (:mod:`thoughtscope.statistics.attention`) give means with bootstrap
intervals.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor, nn
from tqdm.auto import tqdm

from thoughtscope.analyses.patching import fingerprint_model
from thoughtscope.analyses.sharded import locked_by_main
from thoughtscope.engine import backend
from thoughtscope.engine.distributed import SINGLE, Ranks
from thoughtscope.engine.latent import forward
from thoughtscope.engine.runner import BASELINE, Generation, Runner, RunOptions
from thoughtscope.files import save_tensors, write_json
from thoughtscope.model.thought_model import ThoughtModel
from thoughtscope.problems.errors import ProblemDataError
from thoughtscope.problems.problem import Problem
from thoughtscope.problems.sources import load_problems
from thoughtscope.results.store import MANIFEST_FILE

__all__ = [
    "ATTENTION_FILE",
    "AttentionResult",
    "Layout",
    "attention_modules",
    "eager_attention",
    "lay_out",
    "query_names",
    "record_attention",
    "replay",
    "run_attention",
    "source_names",
]

ATTENTION_FILE = "attention.safetensors"
BATCH_DIR = "attention-batches"
FORMAT = "thoughtscope-attention"


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


def query_names(num_thoughts: int, answer_tokens: int) -> list[str]:
    """``[bot, 0…N-1, eot, answer:0…]``."""
    return [
        "bot",
        *map(str, range(num_thoughts)),
        "eot",
        *(f"answer:{i}" for i in range(answer_tokens)),
    ]


def source_names(num_thoughts: int) -> list[str]:
    """``[question, bot, thought:0…N-1, eot, answer]``."""
    return ["question", "bot", *(f"thought:{k}" for k in range(num_thoughts)), "eot", "answer"]


@dataclass(frozen=True)
class Layout:
    """The baseline run's inputs as one left-padded sequence per problem.

    Attributes:
        embeds: ``(rows, length, d)`` input embeddings (zeros at padding).
        mask: ``(rows, length)`` 1 for real inputs, 0 for left padding.
        query_at: ``(rows, queries)`` column of each query step, -1 where the row has
            no such step (fewer thoughts, a shorter answer).
        source_of: ``(rows, length)`` index of the source each column belongs to, -1
            at padding.
        present: ``(rows, sources)`` whether the row has the source at all.
        positions: Per row, the column of each recorded position ``[bot, 0…n-1, eot]``
            (as the engine's ``Generation.hidden``).
    """

    embeds: Tensor
    mask: Tensor
    query_at: Tensor
    source_of: Tensor
    present: Tensor
    positions: list[list[int]]


def lay_out(
    model: ThoughtModel,
    questions: Sequence[str],
    generations: Sequence[Generation],
    answer_tokens: int,
) -> Layout:
    """Lays out what the engine fed each row (prompt, start ids, the row's thoughts,
    closing ids, its first ``answer_tokens`` answer tokens) for one replay pass."""
    family = model.family
    start, closing = family.start_ids(), family.closing_ids()
    n_thoughts = model.num_thoughts
    n_queries = len(query_names(n_thoughts, answer_tokens))
    n_sources = len(source_names(n_thoughts))
    eot_source, answer_source = 2 + n_thoughts, 3 + n_thoughts
    device, dtype = model.device, model.dtype
    rows: list[tuple[Tensor, list[int], list[int], list[int]]] = []
    for question, generation in zip(questions, generations, strict=True):
        prompt = model.question_ids(question)
        answers = generation.answer_ids[:answer_tokens]
        thoughts = generation.thoughts.to(device=device, dtype=dtype)
        n = thoughts.shape[0]
        before = model.embed(torch.tensor(prompt + start, device=device))
        after = model.embed(torch.tensor(closing + answers, device=device, dtype=torch.long))
        embeds = torch.cat([before, thoughts, after])
        labels = (
            [0] * len(prompt)
            + [1] * len(start)
            + [2 + k for k in range(n)]
            + [eot_source] * len(closing)
            + [answer_source] * len(answers)
        )
        first_thought = len(prompt) + len(start)
        closing_at = first_thought + n
        queries = [first_thought - 1, *(first_thought + k for k in range(n))]
        queries += [-1] * (n_thoughts - n) + [closing_at]
        queries += [closing_at + len(closing) + a for a in range(len(answers))]
        queries += [-1] * (n_queries - len(queries))
        rows.append((embeds, labels, queries, [first_thought - 1, *queries[1 : 1 + n], closing_at]))
    width = max(len(labels) for _, labels, _, _ in rows)
    d = model.d_model
    embeds = torch.zeros((len(rows), width, d), device=device, dtype=dtype)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    query_at = torch.full((len(rows), n_queries), -1, dtype=torch.long)
    source_of = torch.full((len(rows), width), -1, dtype=torch.long)
    present = torch.zeros((len(rows), n_sources), dtype=torch.bool)
    positions: list[list[int]] = []
    for r, (row_embeds, labels, queries, recorded) in enumerate(rows):
        pad = width - len(labels)
        embeds[r, pad:] = row_embeds
        mask[r, pad:] = 1
        source_of[r, pad:] = torch.tensor(labels)
        present[r, sorted(set(labels))] = True
        query_at[r] = torch.tensor([q + pad if q >= 0 else -1 for q in queries])
        positions.append([p + pad for p in recorded])
    return Layout(embeds, mask, query_at, source_of, present, positions)


def replay(model: ThoughtModel, layout: Layout, *, hidden_states: bool = False) -> Any:
    """One teacher-forced pass over ``layout`` (a fresh cache); the HF output."""
    position_ids = (layout.mask.cumsum(dim=1) - 1).clamp(min=0)
    return forward(
        model,
        layout.embeds,
        layout.mask,
        position_ids,
        backend.new_cache(),
        hidden_states=hidden_states,
    )


@torch.inference_mode()
def record_attention(
    model: ThoughtModel, questions: Sequence[str], *, answer_tokens: int = 3
) -> Tensor:
    """Attention mass of every query on every source, for ``questions`` run as one batch.

    Returns:
        ``(problems, layers, heads, queries, sources)`` with queries
        :func:`query_names` and sources :func:`source_names`; NaN where the problem
        has no such query or source (fewer thoughts, a shorter answer).
    """
    options = RunOptions(max_new_tokens=max(1, answer_tokens), batch_size=len(questions))
    generations = [row[0] for row in Runner(model).run(list(questions), [BASELINE], options)]
    layout = lay_out(model, questions, generations, answer_tokens)
    n_sources = layout.present.shape[1]
    device = layout.embeds.device
    # (rows, length, sources): which source each key column belongs to.
    owner = torch.nn.functional.one_hot(layout.source_of.clamp(min=0), n_sources).float()
    owner = (owner * (layout.source_of >= 0)[..., None]).to(device)
    query_at = layout.query_at.clamp(min=0).to(device)
    masses: list[Tensor] = []

    def grab(_module: Any, _inputs: Any, output: Any) -> None:
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is None:
            raise RuntimeError("the attention module returned no weights (not eager?)")
        weights = weights.float()  # (rows, heads, length, length)
        heads, keys = weights.shape[1], weights.shape[-1]
        index = query_at[:, None, :, None].expand(-1, heads, -1, keys)
        picked = weights.gather(2, index)  # (rows, heads, queries, keys)
        masses.append(torch.einsum("rhqk,rks->rhqs", picked, owner).cpu())

    handles = [m.register_forward_hook(grab) for m in attention_modules(model)]
    try:
        with eager_attention(model):
            replay(model, layout)
    finally:
        for handle in handles:
            handle.remove()
    out = torch.stack(masses, dim=1)  # (rows, layers, heads, queries, sources)
    missing = (layout.query_at < 0)[:, None, None, :, None] | ~layout.present[:, None, None, None]
    return out.masked_fill(missing, float("nan"))


@dataclass(frozen=True)
class AttentionResult:
    """What :func:`run_attention` wrote."""

    path: Path
    n_problems: int
    queries: list[str]
    sources: list[str]
    n_batches_reused: int = 0


IDENTITY_KEYS = ("data", "limit", "batch_size", "answer_tokens", "model_fingerprint")
"""Settings of the ``attention`` manifest section that must match to reuse its batches."""


def _write_manifest(run_dir: Path, section: dict[str, Any]) -> None:
    """Stores the settings as the ``attention`` section of ``RUN/manifest.json`` (a folder
    that holds another analysis keeps its manifest; a new one is created).

    Raises:
        ValueError: (``--out``) the folder holds attention batches of another run.
    """
    path = run_dir / MANIFEST_FILE
    manifest: dict[str, Any] = {"format": FORMAT, "format_version": 1}
    if path.is_file():
        manifest = json.loads(path.read_text(encoding="utf-8"))
        old = manifest.get("attention")
        if isinstance(old, dict) and (run_dir / BATCH_DIR).is_dir():
            differ = [k for k in IDENTITY_KEYS if old.get(k) != section.get(k)]
            if differ:
                raise ValueError(
                    f"--out {run_dir} holds attention batches of another run "
                    f"({', '.join(differ)} differ); repeat its options or choose another --out"
                )
    manifest["attention"] = section
    write_json(path, manifest)


def _cached_batch(path: Path, ids: list[str]) -> Tensor | None:
    """The masses of a batch written by an earlier call, if ``path`` holds exactly the
    problems ``ids`` (else ``None``: computed again)."""
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:
        if json.loads((handle.metadata() or {}).get("ids", "[]")) != ids:
            return None
        return handle.get_tensor("mass")


def run_attention(
    model: ThoughtModel,
    data: str,
    run_dir: str | Path,
    *,
    limit: int | None = None,
    batch_size: int = 64,
    answer_tokens: int = 3,
    model_spec: str = "",
    progress: bool = False,
    ranks: Ranks | None = None,
) -> AttentionResult:
    """Records the attention masses of the baseline run on ``data`` into
    ``RUN/attention.safetensors``. Problems run in batches of ``batch_size``; each
    batch is kept in ``RUN/attention-batches/`` as it finishes, so a call after a kill
    (same options) computes only the batches not there yet. Under ``torchrun`` each rank
    computes every ``world_size``-th batch and rank 0 merges; rank 0 locks the folder.

    Raises:
        ValueError: (``--data``) no problems; (``--out``) the folder holds attention
            batches of another run. The message names the option.
        OutputLockedError: Another run writes this folder.
    """
    ranks = ranks or SINGLE
    try:
        problems = load_problems(data).problems
    except ProblemDataError as error:
        raise ValueError(f"--data: {error}") from None
    problems = problems[:limit] if limit else problems
    if not problems:
        raise ValueError(f"--data {data}: no problems in it; give a source with problems")
    run_dir = Path(run_dir)
    section = {
        "data": data,
        "limit": limit,
        "batch_size": batch_size,
        "answer_tokens": answer_tokens,
        "model_fingerprint": fingerprint_model(model),
        "n_problems": len(problems),
        "model": {
            "spec": model_spec,
            "name": model.name,
            "family": type(model.family).__name__,
            "num_layers": model.num_layers,
            "num_thoughts": model.num_thoughts,
        },
        "reading": "baseline run through the engine, then one teacher-forced replay of "
        "each row's own inputs with eager attention; masses per query over question, "
        "bot, thought:k, eot, answer (sum 1); NaN where a row lacks the query or source",
    }
    prepare = functools.partial(_write_manifest, run_dir, section)
    with locked_by_main(run_dir / ATTENTION_FILE, ranks, "attention", prepare):
        return _run_attention_locked(
            model, problems, run_dir, batch_size, answer_tokens, progress, ranks
        )


def _run_attention_locked(
    model: ThoughtModel,
    problems: Sequence[Problem],
    run_dir: Path,
    batch_size: int,
    answer_tokens: int,
    progress: bool,
    ranks: Ranks,
) -> AttentionResult:
    folder = run_dir / BATCH_DIR
    reused = 0
    starts = list(enumerate(range(0, len(problems), batch_size)))

    def batch_of(number: int, start: int) -> tuple[Path, list[str]]:
        ids = [p.id for p in problems[start : start + batch_size]]
        return folder / f"batch-{number:05d}.safetensors", ids

    def compute() -> None:
        nonlocal reused
        mine = ranks.share(starts)
        for number, start in tqdm(mine, disable=not progress, desc="attention"):
            path, ids = batch_of(number, start)
            if _cached_batch(path, ids) is not None:
                reused += 1
                continue
            batch = problems[start : start + batch_size]
            mass = record_attention(model, [p.question for p in batch], answer_tokens=answer_tokens)
            folder.mkdir(exist_ok=True)
            save_tensors({"mass": mass.contiguous()}, path, metadata={"ids": json.dumps(ids)})

    ranks.together(compute)
    queries = query_names(model.num_thoughts, answer_tokens)
    sources = source_names(model.num_thoughts)
    path = run_dir / ATTENTION_FILE

    def merge() -> None:
        """Rank 0: every batch (each rank's, after together() waited for them) into one
        file."""
        if not ranks.is_main:
            return
        parts = []
        for number, start in starts:
            mass = _cached_batch(*batch_of(number, start))
            if mass is None:
                raise RuntimeError(f"{batch_of(number, start)[0]}: batch missing after the run")
            parts.append(mass)
        save_tensors(
            {"mass": torch.cat(parts).contiguous()},
            path,
            metadata={
                "ids": json.dumps([p.id for p in problems]),
                "queries": json.dumps(queries),
                "sources": json.dumps(sources),
            },
        )

    ranks.together(merge)
    return AttentionResult(path, len(problems), queries, sources, reused)
