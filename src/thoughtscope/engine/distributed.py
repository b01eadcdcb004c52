"""Which rank this process is when launched by ``torchrun`` (or ``accelerate launch``,
or Slurm + ``torchrun``), and the few collective steps a sharded run needs.

thoughtscope does not schedule anything itself: the launcher starts one process per
rank and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and the
rendezvous variables. Each rank then takes a deterministic share of the work, writes its
own shard, and meets the others at barriers (``torch.distributed``: gloo on CPU, NCCL on
CUDA). Without those variables a process is rank 0 of 1 and every step here is a no-op.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

import torch

__all__ = ["SINGLE", "TIMEOUT_VARIABLE", "RankFailedError", "Ranks", "collective_timeout"]

log = logging.getLogger(__name__)

T = TypeVar("T")


TIMEOUT_VARIABLE = "THOUGHTSCOPE_DIST_TIMEOUT_MINUTES"
DEFAULT_TIMEOUT_MINUTES = 180


def collective_timeout() -> timedelta:
    """How long a rank waits at a collective step for the others: ``$THOUGHTSCOPE_DIST_
    TIMEOUT_MINUTES``, else 180 minutes.

    Why not torch's defaults (10 minutes for NCCL, 30 for gloo): rank 0 computes what
    the others then read (the ``mean`` ablation's reference means, ``steer``'s
    directions) while they wait in a collective step, and on a large model over a large
    reference set that takes longer, after which the waiting ranks would abort. A rank
    that crashes does not make the others wait this long: a failed step reaches every
    rank at once (:meth:`Ranks.together`), and torchrun stops the remaining ranks when
    one exits with an error."""
    value = os.environ.get(TIMEOUT_VARIABLE, "")
    if value == "":
        return timedelta(minutes=DEFAULT_TIMEOUT_MINUTES)
    try:
        minutes = float(value)
    except ValueError:
        minutes = -1.0
    if not minutes > 0:
        raise ValueError(
            f"environment variable {TIMEOUT_VARIABLE}={value!r} must be a number of minutes above 0"
        )
    return timedelta(minutes=minutes)


class RankFailedError(RuntimeError):
    """Another rank failed a step all ranks take together (its own output says why)."""


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not a whole number") from None


@dataclass
class Ranks:
    """This process's place among the ranks of one launch.

    Attributes:
        rank: 0 … ``world_size`` - 1 (``RANK``).
        world_size: Processes in the launch (``WORLD_SIZE``).
        local_rank: Index on this machine (``LOCAL_RANK``): picks the GPU.
        local_world_size: Processes on this machine (``LOCAL_WORLD_SIZE``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    _started: bool = field(default=False, init=False, repr=False, compare=False)

    @classmethod
    def from_environment(cls) -> Ranks:
        """The ranks a launcher set in the environment (rank 0 of 1 without one)."""
        world = _env_int("WORLD_SIZE", 1)
        rank = _env_int("RANK", 0)
        local_rank = _env_int("LOCAL_RANK", rank)
        local_world = _env_int("LOCAL_WORLD_SIZE", world)
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"RANK={rank} and WORLD_SIZE={world} do not fit together")
        return cls(rank, world, local_rank, max(1, local_world))

    @property
    def is_sharded(self) -> bool:
        """Whether there is more than one rank."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes shared files and the statistics."""
        return self.rank == 0

    # ------------------------------------------------------------------ lifecycle
    def device(self, requested: str) -> str:
        """The device of this rank: ``cuda`` (or ``auto`` with CUDA) becomes
        ``cuda:LOCAL_RANK`` when sharded; anything else is kept."""
        if not self.is_sharded:
            return requested
        if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
            return f"cuda:{self.local_rank}"
        return requested

    def start(self, device: str) -> None:
        """Joins the launch's process group (gloo for CPU, NCCL for CUDA), whose
        collective steps wait :func:`collective_timeout` for the other ranks; no-op for
        one rank or when already started."""
        if not self.is_sharded or self._started:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if device.startswith("cuda") else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(torch.device(device))
            dist.init_process_group(
                backend=backend,
                rank=self.rank,
                world_size=self.world_size,
                timeout=collective_timeout(),
            )
        self._started = True

    def stop(self) -> None:
        """Leaves the process group (no-op when not started)."""
        if not self._started:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        self._started = False

    # ----------------------------------------------------------------- collectives
    def _check_started(self) -> None:
        if self.is_sharded and not self._started:
            raise RuntimeError("Ranks.start() must be called before a collective step")

    def barrier(self) -> None:
        """Waits until every rank gets here (no-op for one rank)."""
        if not self.is_sharded:
            return
        self._check_started()
        import torch.distributed as dist

        dist.barrier()

    def all_ok(self, ok: bool) -> bool:
        """Whether every rank passed ``ok=True`` (a collective step: every rank calls it)."""
        if not self.is_sharded:
            return ok
        self._check_started()
        import torch.distributed as dist

        flag = torch.tensor([1 if ok else 0], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def together(self, step: Callable[[], T]) -> T:
        """Runs ``step`` on every rank; if it fails on any rank, it fails on all (the
        failing rank re-raises its own error, the others :class:`RankFailedError`), so no
        rank waits forever at a later barrier."""
        result: T | None = None
        error: BaseException | None = None
        try:
            result = step()
        except Exception as caught:
            error = caught
        if not self.all_ok(error is None):
            if error is not None:
                raise error
            raise RankFailedError(
                f"rank {self.rank}: another rank failed (its output says why); stopping"
            )
        if error is not None:  # only possible for one rank (all_ok returned False)
            raise error
        return result  # type: ignore[return-value]

    def main_first(self, step: Callable[[], T]) -> T:
        """Runs ``step`` on rank 0, then (after a barrier) on the others: for shared
        files that rank 0 creates and the others then read (the run manifest, the
        ``mean`` ablation's reference means). A failure on rank 0 stops every rank."""
        result: T | None = None
        if self.is_main:
            result = self.together(step)
        else:
            self.together(lambda: None)
        if not self.is_main:
            result = self.together(step)
        else:
            self.together(lambda: None)
        return result  # type: ignore[return-value]

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's items: every ``world_size``-th, starting at ``rank`` (the same
        split on every rank for the same ``items``)."""
        return list(items[self.rank :: self.world_size])


SINGLE = Ranks()
"""One process, no launcher."""
