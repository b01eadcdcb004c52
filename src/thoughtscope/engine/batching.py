"""How many rows (problem × condition) the runner puts in one forward pass.

Why batch at all: a single-token step of a small model costs about the same for one row
as for a hundred (the time goes to launching the same few hundred kernels and to Python
in the model's ``forward``), so throughput grows with the batch until the hardware is
busy or memory runs out. What grows per row is mostly the KV cache: every layer keeps a
key and a value vector per head for every position of the row's sequence (question,
``<bot>``, thoughts, ``<eot>``, answer).

The policy (``batch_size="auto"``, the default):

* **memory budget**: on CUDA, a share of the memory free right now
  (``torch.cuda.mem_get_info``); on CPU, a share of the available RAM;
* **bytes per row**: KV-cache bytes per position × positions the row will hold, plus the
  logits and the per-step activations, plus the row's share of encoding its question
  (attention scores and MLP activations over the whole question, shared by that
  problem's conditions);
* **rows** = budget // bytes per row, at least 1, at most a cap: on CPU throughput stops
  growing after a few hundred rows (measured in ``docs/benchmarks.md``), so larger
  batches would only hold more memory.

An integer ``batch_size`` overrides the policy. Memory stays bounded whatever the size
of the dataset: the runner encodes, runs and releases one batch at a time
(:meth:`thoughtscope.engine.runner.Runner.stream` hands results over batch by batch).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from dataclasses import dataclass
from typing import Any, Literal

import torch

from thoughtscope.model.thought_model import ThoughtModel

__all__ = [
    "AUTO",
    "CPU_MAX_ROWS",
    "CUDA_MAX_ROWS",
    "BatchSize",
    "RowFootprint",
    "auto_batch_size",
    "check_batch_size",
    "keep_freed_memory",
    "memory_budget",
    "row_footprint",
    "rows_that_fit",
]

AUTO: Literal["auto"] = "auto"
"""Let the runner choose the batch size."""

BatchSize = int | Literal["auto"] | None
"""Rows per forward pass; ``"auto"`` or ``None`` chooses it to fit memory."""

CPU_MAX_ROWS = 512
"""CPU cap: beyond a few hundred rows a CPU is busy and larger batches only hold memory."""
CUDA_MAX_ROWS = 4096
"""GPU cap: keeps a batch's Python-side bookkeeping and latency reasonable."""
CUDA_FREE_SHARE = 0.7
"""Share of the free GPU memory a batch may plan to use (the allocator fragments)."""
CPU_AVAILABLE_SHARE = 0.25
"""Share of the available RAM a batch may plan to use (the machine is shared)."""


@dataclass(frozen=True)
class RowFootprint:
    """Estimated bytes one row holds at its peak, by cause.

    Attributes:
        kv_cache: Keys and values of every layer at every position of the row.
        step: Logits and activations of one single-token step.
        prompt: The row's share of encoding its question (scores and MLP activations
            over the question's positions, split over the problem's conditions).
    """

    kv_cache: int
    step: int
    prompt: int

    @property
    def total(self) -> int:
        """Bytes in all."""
        return self.kv_cache + self.step + self.prompt


def _text_config(model: ThoughtModel) -> Any:
    config = model.base_lm.config
    get_text = getattr(config, "get_text_config", None)
    return get_text() if callable(get_text) else config


def row_footprint(
    model: ThoughtModel,
    *,
    prompt_length: int,
    new_tokens: int,
    conditions: int = 1,
) -> RowFootprint:
    """The bytes one row of ``model`` needs for a question of ``prompt_length`` tokens
    answered in at most ``new_tokens`` tokens, when ``conditions`` rows share the question.
    """
    config = _text_config(model)
    itemsize = torch.empty((), dtype=model.dtype).element_size()
    d_model = model.d_model
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or d_model // heads)
    intermediate = int(
        getattr(config, "intermediate_size", None)
        or getattr(config, "n_inner", None)
        or 4 * d_model
    )
    vocab = model.vocab_size
    family = model.family
    positions = (
        prompt_length
        + len(family.start_ids())
        + family.num_thoughts
        + len(family.closing_ids())
        + new_tokens
    )
    kv_cache = 2 * model.num_layers * kv_heads * head_dim * itemsize * positions
    # Logits in the model's dtype, a float32 copy (masking, log-softmax) and the argmax;
    # activations of one step: residual, attention and MLP intermediates.
    step = vocab * (itemsize + 8) + (8 * d_model + 3 * intermediate) * itemsize
    # Encoding the question: eager attention scores (heads × L × L, float32 softmax) and
    # the MLP over L positions, for one layer at a time; shared by the conditions.
    prompt = heads * prompt_length * prompt_length * 4 + 3 * prompt_length * intermediate * itemsize
    return RowFootprint(kv_cache, step, prompt // max(1, conditions))


def _available_ram() -> int:
    """Available RAM in bytes (``/proc/meminfo``; psutil when installed; else 4 GiB)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - depends on the platform
        return 4 * 2**30


def memory_budget(device: torch.device) -> int:
    """Bytes a batch may plan to use on ``device`` now."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * CUDA_FREE_SHARE)
    return int(_available_ram() * CPU_AVAILABLE_SHARE)


def rows_that_fit(budget: int, per_row: int, cap: int) -> int:
    """``budget // per_row`` clamped to ``1 … cap``."""
    return max(1, min(cap, budget // max(1, per_row)))


def auto_batch_size(
    model: ThoughtModel,
    *,
    prompt_length: int,
    new_tokens: int,
    conditions: int = 1,
    budget: int | None = None,
) -> int:
    """Rows per forward pass that fit ``budget`` bytes (default: :func:`memory_budget`)."""
    device = model.device
    footprint = row_footprint(
        model, prompt_length=prompt_length, new_tokens=new_tokens, conditions=conditions
    )
    cap = CUDA_MAX_ROWS if device.type == "cuda" else CPU_MAX_ROWS
    return rows_that_fit(memory_budget(device) if budget is None else budget, footprint.total, cap)


def check_batch_size(batch_size: BatchSize) -> None:
    """Raises ``ValueError`` unless ``batch_size`` is ``"auto"``, ``None`` or an int >= 1."""
    if batch_size is None or batch_size == AUTO:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch size must be 'auto' or a whole number >= 1, got {batch_size!r}")


KEEP_FREED_BYTES = 1 << 30
"""Blocks up to this size stay with the process when freed (:func:`keep_freed_memory`)."""


def keep_freed_memory() -> bool:
    """Lets this process reuse the memory it frees instead of handing it back to the
    operating system (Linux with glibc; elsewhere nothing happens). Returns whether it
    applied.

    Why: each batch allocates tens of megabytes at a time (KV-cache storage, activations
    of hundreds of rows). glibc serves such blocks with ``mmap`` and returns them to the
    system when freed, so the next batch's blocks arrive as fresh pages that the kernel
    zeroes one fault at a time: measured on the toy benchmark, 0.07–0.09 of 0.52 CPU
    seconds went to that (``docs/benchmarks.md``). Raising glibc's mmap and trim
    thresholds keeps freed blocks for reuse. The process then keeps its peak memory
    until it exits, which is why this is for whoever owns the process (the CLI, the
    benchmark), never done on import.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, KEEP_FREED_BYTES)) and bool(
        mallopt(m_trim_threshold, KEEP_FREED_BYTES)
    )
