"""Where the engine's CPU time goes in the throughput benchmark's engine phase.

Runs the engine part of ``bench/throughput.py`` (the same model, problems and
conditions) several times and splits this process's CPU time by what was running:

* **phases** of the latent loop (:mod:`thoughtscope.engine.latent`): encoding the
  questions, the thought steps, the closing ids, decoding;
* inside them, the parts of each forward pass (attention, MLP, the LM head, the rest of
  the decoder: norms, rotary embeddings, masks), and the cache copies of forking and of
  retiring finished rows (``Rows.select``, ``fan_out``);
* what is left in a phase is its own Python and small tensor work (masks, positions,
  edit plans, argmax).

Each part's figure is its *own* time (its children's removed). Then torch's profiler
lists the most expensive operators. Usage::

    python bench/profile_engine.py --model toy --problems 100 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as `python bench/profile_engine.py`: the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.throughput import (
    build_model,
    counting_forward,
    matmul_rate_at,
    parse_layers,
    prefix_plan,
    recording_matmuls,
    run_engine,
)
from thoughtscope.engine import latent
from thoughtscope.engine.batching import keep_freed_memory
from thoughtscope.model.codi import resolve_device, resolve_dtype
from thoughtscope.problems import load_problems

PHASES = ("encode the questions", "thought steps", "closing ids", "decode the answer")


class Clock:
    """Own CPU time by label: a stack of running labels, time charged to the top one."""

    def __init__(self) -> None:
        self.own: dict[str, float] = defaultdict(float)
        self.stack: list[str] = []
        self.mark = time.process_time()

    def _switch(self) -> None:
        now = time.process_time()
        if self.stack:
            self.own[self.stack[-1]] += now - self.mark
        self.mark = now

    def push(self, label: str) -> None:
        self._switch()
        self.stack.append(label)

    def pop(self) -> None:
        self._switch()
        self.stack.pop()

    def wrap(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.push(label)
            try:
                return function(*args, **kwargs)
            finally:
                self.pop()

        return timed

    def phase(self) -> str:
        """The outermost latent-loop phase running now (``runner`` outside them)."""
        return next((x for x in self.stack if x in PHASES), "runner")

    def hook(self, module: torch.nn.Module, label: str) -> list[Any]:
        return [
            module.register_forward_pre_hook(lambda *_: self.push(f"{self.phase()}: {label}")),
            module.register_forward_hook(lambda *_: self.pop()),
        ]


def split_by_part(run: Callable[[], Any], model: Any, repeats: int) -> dict[str, float]:
    """Own CPU seconds per part, summed over ``repeats`` runs."""
    clock = Clock()
    patched = {
        "encode_prompts": "encode the questions",
        "think": "thought steps",
        "close": "closing ids",
        "decode": "decode the answer",
        "fan_out": "cache copies (fan out, fork, retire)",
    }
    saved: dict[str, Any] = {name: getattr(latent, name) for name in patched}
    select = latent.Rows.select
    for name, label in patched.items():
        setattr(latent, name, clock.wrap(label, saved[name]))
    latent.Rows.select = clock.wrap("cache copies (fan out, fork, retire)", select)  # type: ignore[method-assign]
    handles = [*clock.hook(model.decoder, "decoder: norms, rotary, masks, embedding")]
    handles += clock.hook(model.head, "LM head")
    for block in model.blocks:
        handles += clock.hook(block.self_attn, "attention (QKV/O projections, scores)")
        handles += clock.hook(block.mlp, "MLP")
    try:
        clock.push("runner (batching, results)")
        for _ in range(repeats):
            run()
        clock.pop()
    finally:
        for name in patched:
            setattr(latent, name, saved[name])
        latent.Rows.select = select  # type: ignore[method-assign]
        for handle in handles:
            handle.remove()
    return dict(clock.own)


def view_versus_packed(
    rows: int, filled: int, reserved: int, *, heads: int, head_dim: int, repeats: int = 20
) -> tuple[float, float]:
    """CPU milliseconds of one single-token attention (scores, softmax, weighted values)
    over keys and values ``(rows, heads, filled, head dim)``: as a view of the filled
    part of storage reserved ``reserved`` positions wide (rows not packed), and over
    the whole packed storage (what the engine's cache hands attention). Between calls a
    64 MiB buffer is touched, so the cache is read from memory as in a run."""
    storage = torch.randn(2, rows, heads, reserved, head_dim)
    query = torch.randn(rows, heads, 1, head_dim)
    flush = torch.ones(16 * 2**20)

    def attend(keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(torch.matmul(query, keys.transpose(2, 3)), dim=-1)
        return torch.matmul(weights, values)

    def timed(width: int) -> float:
        keys, values = storage[0, :, :, :width], storage[1, :, :, :width]
        attend(keys, values)
        total = 0.0
        for _ in range(repeats):
            flush.add_(1.0)
            started = time.process_time()
            attend(keys, values)
            total += time.process_time() - started
        return 1e3 * total / repeats

    return timed(filled), timed(reserved)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="toy")
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--layers", default="middle")
    parser.add_argument("--schedule", default="prefix")
    parser.add_argument("--batch-size", default="auto")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ops", type=int, default=15, help="operators to list")
    parser.add_argument("--keep-freed-memory", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.keep_freed_memory:
        keep_freed_memory()
    device, dtype = resolve_device("cpu"), resolve_dtype("float32")
    model = build_model(args.model, device, dtype)
    problems = load_problems(f"synthetic:test:seed=0:n={args.problems}").problems
    layers = parse_layers(args.layers, model.num_layers)
    plan = prefix_plan(layers, model.config.num_latent, problems, args.schedule)
    batch: int | str = args.batch_size if args.batch_size == "auto" else int(args.batch_size)

    def run() -> Any:
        return run_engine(model, problems, plan, args.max_new_tokens, batch)

    run()  # warm up
    started = time.process_time()
    for _ in range(args.repeats):
        run()
    plain = (time.process_time() - started) / args.repeats
    parts = split_by_part(run, model, args.repeats)
    total = sum(parts.values())
    print(
        f"engine phase, {args.problems} problems x {len(plan.names)} conditions: "
        f"{plain:.3f} CPU s per run unprofiled, {total / args.repeats:.3f} s with the clocks "
        f"(mean of {args.repeats})"
    )
    for label, seconds in sorted(parts.items(), key=lambda item: -item[1]):
        print(f"  {label:62s} {seconds / args.repeats:7.3f} s  {100 * seconds / total:5.1f}%")
    # Attention in the single-token steps reads every row's keys and values: bound by
    # memory traffic, not arithmetic. The floor that sets, at this machine's read rate.
    with counting_forward(model) as counts, recording_matmuls(model) as shapes:
        run()
    big = torch.ones(64 * 2**20)  # 256 MiB, far beyond the caches
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        big.sum()
        best = min(best, time.process_time() - started)
    bandwidth = big.numel() * 4 / best
    own = matmul_rate_at(shapes, device, dtype)
    linear = sum(2 * m * k * n * calls for (m, k, n), calls in shapes.items())
    print(
        f"counted work {counts['flops'] / 1e9:.2f} GFLOP; the linear layers' and head's "
        f"products as run (left padding included) {linear / 1e9:.2f} GFLOP: "
        f"{linear / own:.3f} s at their own shapes' rate "
        f"({own / 1e9:.1f} GFLOP/s, each shape timed alone)"
    )
    print(
        f"attention reads {counts['kv_bytes'] / 1e9:.2f} GB of keys and values; at this "
        f"machine's single-thread read rate ({bandwidth / 1e9:.1f} GB/s, summing 256 MiB) "
        f"that takes at least {counts['kv_bytes'] / bandwidth:.3f} s"
    )
    # The largest single-token step: attention over a view of the filled part, or over
    # the whole reserved width (packed), as the engine's cache now hands it over.
    widest = max(counts["steps"], key=lambda step: step[0] * step[2])
    config = model.base_lm.config
    heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    head_dim = model.d_model // int(config.num_attention_heads)
    as_view, packed = view_versus_packed(*widest[:3], heads=heads, head_dim=head_dim)
    print(
        f"one single-token attention at the run's largest step ({widest[0]} rows, "
        f"{widest[1]} filled of {widest[2]} reserved positions, one layer): over a view "
        f"of the filled part {as_view:.2f} ms, over the packed reserved width "
        f"{packed:.2f} ms (CPU time, cache read from memory)"
    )
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        run()
    print(
        profiler.key_averages().table(
            sort_by="self_cpu_time_total", row_limit=args.ops, max_name_column_width=30
        )
    )


if __name__ == "__main__":
    main()
