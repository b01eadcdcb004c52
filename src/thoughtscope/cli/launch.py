"""What every model-running command does before touching the model: how many CPU
threads torch may use, and which rank of a ``torchrun`` launch this process is.

See ``docs/scaling.md`` for ``torchrun``, ``accelerate launch`` and Slurm.
"""

from __future__ import annotations

import signal
from dataclasses import replace
from typing import Annotated

import typer

from thoughtscope.cli.app import fail
from thoughtscope.cli.options import ModelChoice
from thoughtscope.engine.distributed import Ranks, collective_timeout

__all__ = ["DEFAULT_THREADS", "ProgressOpt", "ThreadsOpt", "set_threads", "start_ranks"]

DEFAULT_THREADS = 1
"""Torch CPU threads per process unless ``--threads`` says otherwise."""

ThreadsOpt = Annotated[
    int,
    typer.Option(
        "--threads",
        help="CPU threads torch uses in this process (in each rank under torchrun). "
        "Default 1: more threads help only a large model on an idle machine, while on a "
        "busy CPU they fight other processes (2 threads on a loaded 2-core machine made "
        "`answer` 100x slower than 1). Raise it to the free cores when you have them.",
    ),
]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar.")]


def set_threads(threads: int | None) -> None:
    """Sets torch's CPU threads (``None``: :data:`DEFAULT_THREADS`), before any torch
    work; refuses a number below 1."""
    if threads is None:
        threads = DEFAULT_THREADS
    if threads < 1:
        fail("--threads must be 1 or more", "--threads")
    import torch

    from thoughtscope.engine.batching import keep_freed_memory

    torch.set_num_threads(threads)
    keep_freed_memory()  # batches reuse freed memory (measured: docs/benchmarks.md)


def start_ranks(choice: ModelChoice, threads: int | None) -> tuple[Ranks, ModelChoice]:
    """Sets the threads, reads this process's rank from the launcher's environment,
    joins the process group (gloo on CPU, NCCL on CUDA) and returns the ranks with the
    model choice moved to this rank's device (``cuda:LOCAL_RANK``)."""
    set_threads(threads)
    try:
        ranks = Ranks.from_environment()
    except ValueError as error:
        fail(f"cannot tell this process's rank: {error}")
    if ranks.is_sharded:
        try:
            collective_timeout()  # a bad value stops every rank here, in one line
        except ValueError as error:
            fail(str(error))
    device = ranks.device(choice.device)
    if ranks.is_sharded and device.startswith("cuda"):
        import torch

        if torch.cuda.device_count() <= ranks.local_rank:
            fail(
                f"rank {ranks.rank} needs GPU {ranks.local_rank} but this machine has "
                f"{torch.cuda.device_count()}; start at most that many processes per node",
                "--device",
            )
    ranks.start(device)
    if ranks.is_sharded:
        # torchrun stops the other ranks with SIGTERM when one fails: exit through Python
        # so that locks are released (a lock left behind would still be taken over).
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return ranks, replace(choice, device=device)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
