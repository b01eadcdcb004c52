"""Running an analysis into a run folder, resumably, on one process or on every rank of a
``torchrun`` launch: what ``importance``, ``patch``, ``effects`` and ``steer`` share.

An analysis hands over its *units* of work (pairs for patching, problems for effects and
steering), the ids of the rows each unit yields, and a function computing a batch of
units. :func:`run_in_shards` then

1. checks the manifest: the folder's own run with the same configuration is resumed,
   another one refused (:func:`~thoughtscope.results.shards.check_manifest`; importance
   skips this early check and keeps its order: lock, rows, then the check);
2. locks ``RUN/results.jsonl`` (rank 0) and this rank's shard of it (each rank), so a
   second run into the folder is refused, and checks the manifest again under the lock
   (rank 0 first: it settles what the analysis leaves open, such as importance's
   automatic batch size, and writes a new run's manifest; then the others);
3. reads which row ids are done, from ``results.jsonl`` and every shard of any earlier
   launch (of any number of ranks);
4. cuts the units into batches of ``batch_size`` (the same batches on every rank, in a
   one-process run and in a resumed one), leaves out the units already done (and the
   batches left empty), and computes every ``world_size``-th batch on this rank into its
   own shard (``results.rankRofW.jsonl``), dropping rows already done;
5. waits for every rank; rank 0 merges the shards into ``results.jsonl`` in unit order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from tqdm.auto import tqdm

from thoughtscope.engine.distributed import SINGLE, Ranks
from thoughtscope.results.lock import OutputLock
from thoughtscope.results.shards import RowKind, RunFolderError, check_manifest
from thoughtscope.results.store import RESULTS_FILE

__all__ = ["RowsRun", "ShardedWork", "WorkDone", "locked_by_main", "run_in_shards"]

Row = TypeVar("Row")
Unit = TypeVar("Unit")


@dataclass(frozen=True)
class WorkDone:
    """What :func:`run_in_shards` did on this rank.

    Attributes:
        manifest: The manifest the run keeps (the folder's own when resumed).
        n_written: Rows this rank wrote in this call.
        n_skipped: Rows of the run that were already done (by any rank, any launch).
        n_units: Units of the run.
    """

    manifest: dict[str, Any]
    n_written: int
    n_skipped: int
    n_units: int


@dataclass(frozen=True)
class RowsRun:
    """What a per-problem run of rows (effects, steering) did on this rank: its problems,
    the rows written, the rows already there (resume) and the wall time."""

    run_dir: Path
    n_problems: int
    n_rows: int
    n_skipped: int
    seconds: float


@dataclass(frozen=True)
class ShardedWork(Generic[Unit, Row]):
    """One analysis run, as :func:`run_in_shards` needs it.

    Attributes:
        rows: How the run's rows are stored (their id is what resume skips by).
        manifest: The run's manifest; ``identity``: its keys that must match to resume.
        units: The work, in the order the merged file keeps.
        row_ids: The ids of the rows one unit yields.
        batch_size: Units per batch, or a function giving it once ``settle`` has run
            (importance derives it from the rows per forward pass it settles).
        run_batch: The rows of a batch of units (those already done are dropped after).
        input_error: Builds the analysis's own error from ``(option, message)``.
        prepare: Run once before the first batch, rank 0 first (it may write files the
            other ranks then read: the mean ablation's means, steering directions).
        after_batch: Called with each batch once its rows are written.
        desc, unit: Progress-bar labels.
        settle: Completes ``manifest`` under the lock, rank 0 first, just before it is
            checked (importance's automatic batch size: rank 0 measures it, a resumed run
            keeps the folder's, the other ranks take rank 0's).
        start: Called on every rank with the ids of the rows already done, before the
            batches are cut (importance counts the example thoughts still to record).
        check_first: Refuse a folder holding another run before locking it and reading
            its rows (step 1); without it the only check is the one under the lock.
        bar_from_done: The progress bar starts at the units already done, out of all.
    """

    rows: RowKind[Row]
    manifest: dict[str, Any]
    identity: Sequence[str]
    units: Sequence[Unit]
    row_ids: Callable[[Unit], Sequence[str]]
    batch_size: int | Callable[[], int]
    run_batch: Callable[[list[Unit]], Iterable[Row]]
    input_error: Callable[[str, str], Exception]
    prepare: Callable[[], None] | None = None
    after_batch: Callable[[list[Unit]], object] | None = None
    desc: str = "running"
    unit: str = "unit"
    settle: Callable[[], None] | None = None
    start: Callable[[set[str]], None] | None = None
    check_first: bool = True
    bar_from_done: bool = False


@contextmanager
def locked_by_main(
    output: Path, ranks: Ranks, purpose: str, prepare: Callable[[], None]
) -> Iterator[None]:
    """For an analysis whose ranks share one folder of batch caches (probes, attention):
    rank 0 locks ``output`` (a second run writing the folder is refused) and runs
    ``prepare`` (its manifest) before any rank goes on; a failure there stops every rank.
    The lock is released when the ``with`` block ends, however it ends."""
    locks: list[OutputLock] = []

    def start() -> None:
        output.parent.mkdir(parents=True, exist_ok=True)
        if ranks.is_main:
            locks.append(OutputLock(output, purpose=purpose).acquire())
            prepare()

    try:
        ranks.together(start)
        yield
    finally:
        for lock in locks:
            lock.release()


def run_in_shards(
    work: ShardedWork[Unit, Row],
    run_dir: str | Path,
    *,
    ranks: Ranks = SINGLE,
    progress: bool = False,
) -> WorkDone:
    """Runs (or resumes) ``work`` into ``run_dir`` on this rank; see the module text.

    Raises:
        The analysis's input error (``--out``): ``run_dir`` holds a different run.
        OutputLockedError: Another run writes into ``run_dir``.
        RankFailedError: Another rank failed (its own output says why).
    """
    run_dir = Path(run_dir)

    def check(write: bool = True) -> dict[str, Any]:
        try:
            return check_manifest(run_dir, work.manifest, work.identity, write=write)
        except RunFolderError as error:
            raise work.input_error(error.option, str(error)) from None

    def settle() -> dict[str, Any]:
        if work.settle is not None:
            work.settle()
        return check()

    # A folder holding another run (say, another analysis's rows) is refused before its
    # rows are read as this analysis's; the check that counts is the one under the lock.
    if work.check_first:
        ranks.together(lambda: check(write=False))
    with work.rows.output(run_dir / RESULTS_FILE, ranks) as output:
        manifest = ranks.main_first(settle)
        done = output.done
        if work.start is not None:
            work.start(done)
        wanted = [list(work.row_ids(u)) for u in work.units]
        todo = [any(i not in done for i in ids) for ids in wanted]
        n_skipped = sum(i in done for ids in wanted for i in ids)
        # Batches are cut from every unit, as an uninterrupted run cuts them, and then
        # lose their finished units: a resumed run computes every batch it did not finish
        # with the same neighbours as the uninterrupted run.
        size = work.batch_size() if callable(work.batch_size) else work.batch_size
        cut = [range(i, min(i + size, len(work.units))) for i in range(0, len(work.units), size)]
        batches = [[work.units[j] for j in part if todo[j]] for part in cut]
        batches = [batch for batch in batches if batch]
        if batches and work.prepare is not None:
            ranks.main_first(work.prepare)
        mine = ranks.share(batches)
        written = 0
        initial = todo.count(False) if work.bar_from_done else 0
        bar = tqdm(
            total=initial + sum(len(b) for b in mine),
            initial=initial,
            disable=not (progress and ranks.is_main),
            desc=work.desc,
            unit=work.unit,
        )
        for batch in mine:
            rows = [r for r in work.run_batch(batch) if work.rows.key(r) not in done]
            written += output.append(rows)  # this rank's shard, flushed and fsynced
            if work.after_batch is not None:
                work.after_batch(batch)
            bar.update(len(batch))
        bar.close()
        output.finish(order=[i for ids in wanted for i in ids])
    return WorkDone(manifest, written, n_skipped, len(work.units))
