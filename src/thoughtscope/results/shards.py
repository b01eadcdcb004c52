"""Outputs written by several processes at once: one shard per rank, read as one.

A run launched with ``torchrun`` (see :mod:`thoughtscope.engine.distributed`) writes
``results.jsonl`` as shards, one per rank, beside it in the same folder::

    results.jsonl              # a one-process run, or the merged result
    results.rank0of2.jsonl     # rank 0 of a 2-process launch
    results.rank1of2.jsonl

Readers take the union of every shard (:func:`read_rows`), so a run killed midway, or
resumed with a different number of ranks, is still read whole: what is done is known by
problem id, not by rank. A row whose id appears twice is dropped when the two lines are
identical (a warning names the ids) and refused when they differ (an error names the
files and ids): either way no problem is counted twice. When every rank has finished,
rank 0 merges the shards into ``results.jsonl`` in problem order and deletes them.

Each output is guarded by :class:`~thoughtscope.results.lock.OutputLock`: rank 0 locks
the output itself (so a second launch into the same folder is refused, whatever its
number of ranks) and every rank locks its own shard.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from thoughtscope.results.lock import LOCK_SUFFIX, OutputLock, clear_stale_lock
from thoughtscope.results.records import ProblemRecord
from thoughtscope.results.store import (
    MANIFEST_FILE,
    RESULTS_FILE,
    JsonLinesFile,
    ResultStore,
    ResultStoreError,
    read_manifest,
    write_manifest,
)

__all__ = [
    "RECORDS",
    "DuplicateRowsError",
    "RankGroup",
    "RowKind",
    "RunFolderError",
    "ShardedOutput",
    "StoredRow",
    "check_manifest",
    "merge_shards",
    "read_rows",
    "read_run_records",
    "read_run_rows",
    "record_file",
    "record_id",
    "row_id",
    "shard_files",
    "shard_path",
]

log = logging.getLogger(__name__)

Row = TypeVar("Row")
T = TypeVar("T")


class DuplicateRowsError(ResultStoreError):
    """The same id has different rows: the message names the files and the ids."""


class RankGroup(Protocol):
    """What a sharded output needs from the launch (see
    :class:`thoughtscope.engine.distributed.Ranks`)."""

    rank: int
    world_size: int

    def barrier(self) -> None: ...

    def together(self, step: Callable[[], T]) -> T: ...


def shard_path(path: str | Path, rank: int, world_size: int) -> Path:
    """The file rank ``rank`` of ``world_size`` writes for ``path`` (``path`` itself for
    one rank): ``results.jsonl`` -> ``results.rank1of4.jsonl``."""
    path = Path(path)
    if world_size <= 1:
        return path
    return path.with_name(f"{path.stem}.rank{rank}of{world_size}{path.suffix}")


def shard_files(path: str | Path) -> list[Path]:
    """``path`` (when it exists) and every shard of it in its folder, in a stable order."""
    path = Path(path)
    pattern = re.compile(rf"^{re.escape(path.stem)}\.rank(\d+)of(\d+){re.escape(path.suffix)}$")
    shards: list[tuple[int, int, Path]] = []
    if path.parent.is_dir():
        for candidate in path.parent.iterdir():
            match = pattern.match(candidate.name)
            if match and candidate.is_file():
                shards.append((int(match[2]), int(match[1]), candidate))
    found = [path] if path.is_file() else []
    return found + [p for _, _, p in sorted(shards)]


def record_file(path: Path) -> ResultStore:
    """The :class:`ResultStore` of one results file (or shard) by its path."""
    return ResultStore(path.parent, path.name)


def record_id(record: ProblemRecord) -> str:
    """A record's problem id (the key that makes rows unique)."""
    return record.id


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _shown(ids: Iterable[str], most: int = 10) -> str:
    ids = list(ids)
    head = ", ".join(ids[:most])
    return head + (f" and {len(ids) - most} more" if len(ids) > most else "")


def read_rows(
    path: str | Path,
    open_file: Callable[[Path], JsonLinesFile[Row]],
    key: Callable[[Row], str],
) -> list[Row]:
    """Every row of ``path`` and its shards, each id once, in file order.

    Identical repeats of an id are dropped with a warning naming the ids; different rows
    for one id are refused.

    Raises:
        DuplicateRowsError: Some id has two different rows (names the files and ids).
        ResultStoreError: A damaged line (names the file and line).
    """
    rows: dict[str, Row] = {}
    dumped: dict[str, str] = {}
    where: dict[str, Path] = {}
    repeated: list[str] = []
    conflicts: dict[str, set[Path]] = {}
    for file in shard_files(path):
        handle = open_file(file)
        for row in handle.read():
            ident = key(row)
            text = json.dumps(handle.dump(row), sort_keys=True)
            if ident not in rows:
                rows[ident], dumped[ident], where[ident] = row, text, file
            elif dumped[ident] == text:
                repeated.append(ident)
            else:
                conflicts.setdefault(ident, {where[ident]}).add(file)
    if conflicts:
        files = sorted({str(f) for fs in conflicts.values() for f in fs})
        raise DuplicateRowsError(
            f"{', '.join(files)}: {_count(len(conflicts), 'problem id')} with different rows "
            f"({_shown(conflicts)}), probably from two runs into one folder; keep one line "
            "per id (or run again into a new folder)"
        )
    if repeated:
        unique = list(dict.fromkeys(repeated))
        log.warning(
            "%s: %d repeated lines of identical rows dropped (ids %s); each problem is "
            "counted once",
            Path(path),
            len(repeated),
            _shown(unique),
        )
    return list(rows.values())


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def merge_shards(
    path: str | Path,
    open_file: Callable[[Path], JsonLinesFile[Row]],
    key: Callable[[Row], str],
    order: Sequence[str] = (),
) -> int:
    """Rewrites ``path`` as the union of itself and its shards (ids in ``order`` first,
    in that order, then any others) and deletes the shards; returns the rows written.

    Does nothing when there are no shards and no repeated id. The new file replaces the
    old one atomically, and the shards are deleted only after that, so a kill at any
    point loses nothing (at worst identical rows remain twice, which readers drop).
    """
    path = Path(path)
    # Shards of earlier launches (of any size) may have left locks when they were killed;
    # a lock a live process holds (this rank's own, too) is kept.
    for lock in path.parent.glob(f"{path.stem}.rank*of*{path.suffix}{LOCK_SUFFIX}"):
        clear_stale_lock(lock.with_name(lock.name.removesuffix(LOCK_SUFFIX)))
    files = shard_files(path)
    if not files:
        return 0
    rows = read_rows(path, open_file, key)
    if files == [path] and len(rows) == len(open_file(path).read()):
        return len(rows)
    rank = {ident: i for i, ident in enumerate(order)}
    indexed = sorted(enumerate(rows), key=lambda ir: (rank.get(key(ir[1]), len(rank)), ir[0]))
    tmp = path.with_name(f".{path.name}.merging")
    tmp.unlink(missing_ok=True)
    merged = open_file(tmp)
    merged.append(row for _, row in indexed)
    os.replace(tmp, path)
    _fsync_folder(path.parent)
    for file in files:
        if file != path:
            file.unlink(missing_ok=True)
    return len(rows)


class ShardedOutput(Generic[Row]):
    """This rank's side of an output written by every rank: locks, the ids already
    done (by every rank, in any earlier launch), the rank's own shard, the final merge.

    Example::

        path = run_dir / "results.jsonl"
        with ShardedOutput(path, ranks, record_file, record_id) as output:
            batches = [[p for p in b if p.id not in output.done] for b in batches_of(problems)]
            for batch in ranks.share([b for b in batches if b]):
                output.append(compute(batch))
            output.finish(order=[p.id for p in problems])

    Entering is a collective step (every rank enters, or every rank stops with an error).
    With ``start_over``, rank 0 deletes the output and its shards once it holds the lock.

    Raises (on entering):
        OutputLockedError: Another run writes this output or this shard.
        DuplicateRowsError: The output already holds different rows for one id.
    """

    def __init__(
        self,
        path: str | Path,
        ranks: RankGroup,
        open_file: Callable[[Path], JsonLinesFile[Row]],
        key: Callable[[Row], str],
        *,
        start_over: bool = False,
    ):
        self.path = Path(path)
        self.start_over = start_over
        self.ranks = ranks
        self.open_file = open_file
        self.key = key
        self.shard = shard_path(self.path, ranks.rank, ranks.world_size)
        self.file: JsonLinesFile[Row] = open_file(self.shard)
        self.done: set[str] = set()
        self._locks: list[OutputLock] = []

    def __enter__(self) -> ShardedOutput[Row]:
        try:
            self.ranks.together(self._lock_output)
            if self.shard != self.path:
                self.ranks.together(self._lock_shard)
            if self.start_over:
                self.ranks.together(self._delete_rows)
            rows = self.ranks.together(lambda: read_rows(self.path, self.open_file, self.key))
            self.done = {self.key(row) for row in rows}
            # Every rank has read what is done before any rank writes more, so every rank
            # derives the same split of what is left.
            self.ranks.barrier()
        except BaseException:
            self._release()
            raise
        return self

    def _lock_output(self) -> None:
        if self.ranks.rank == 0:
            self._locks.append(OutputLock(self.path, purpose="output").acquire())

    def _delete_rows(self) -> None:
        if self.ranks.rank == 0:
            for file in shard_files(self.path):
                file.unlink()

    def _lock_shard(self) -> None:
        self._locks.append(OutputLock(self.shard, purpose=f"shard {self.ranks.rank}").acquire())

    def append(self, rows: Iterable[Row]) -> int:
        """Appends to this rank's shard (flushed and fsynced); returns how many rows."""
        return self.file.append(rows)

    def finish(self, order: Sequence[str] = ()) -> None:
        """Waits for every rank; then rank 0 merges the shards into the output."""
        self.ranks.barrier()
        if self.ranks.rank == 0:
            merge_shards(self.path, self.open_file, self.key, order)

    def _release(self) -> None:
        for lock in reversed(self._locks):
            lock.release()
        self._locks.clear()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._release()


class StoredRow:
    """What a frozen-dataclass row type of a run folder shares: JSON through its fields,
    and an id made from its :attr:`key` (see :func:`row_id`)."""

    @property
    def key(self) -> tuple[Any, ...]:
        """What makes the row unique within a run."""
        raise NotImplementedError

    @property
    def row_id(self) -> str:
        """:attr:`key` as text: what resume and merging know a row by."""
        return row_id(*self.key)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


Stored = TypeVar("Stored", bound=StoredRow)


@dataclass(frozen=True)
class RowKind(Generic[Row]):
    """One kind of row a run folder stores (a patching row, an effects row, …): how a
    line's JSON becomes a row and back, and the id that makes a row unique within a run,
    by which resume skips it and merging keeps it once.

    Attributes:
        parse: JSON data -> row (raises ``ValueError``, ``KeyError`` or ``TypeError``).
        dump: Row -> JSON-ready data.
        key: Row -> its id.
        what: What a row is called in errors (``patching row``).
    """

    parse: Callable[[Any], Row]
    dump: Callable[[Row], Any]
    key: Callable[[Row], str]
    what: str

    @classmethod
    def of(cls, row_type: type[Stored], what: str) -> RowKind[Stored]:
        """The kind of a :class:`StoredRow` type."""
        return RowKind(row_type.from_dict, row_type.to_dict, lambda row: row.row_id, what)

    def open(self, path: Path) -> JsonLinesFile[Row]:
        """The append-only file (or shard) at ``path``."""
        return JsonLinesFile(path, self.parse, self.dump, what=self.what)

    def output(
        self, path: str | Path, ranks: RankGroup, *, start_over: bool = False
    ) -> ShardedOutput[Row]:
        """This rank's :class:`ShardedOutput` of ``path``."""
        return ShardedOutput(path, ranks, self.open, self.key, start_over=start_over)

    def read(self, run_dir: str | Path, file_name: str = RESULTS_FILE) -> list[Row]:
        """Every row of ``RUN/file_name`` and its shards, each id once; a cut-off last
        line (a killed write) is ignored.

        Raises:
            FileNotFoundError: Neither the file nor any shard of it is there.
            DuplicateRowsError: Two rows share an id but differ.
            ResultStoreError: A line other than a file's last is damaged.
        """
        return read_run_rows(Path(run_dir) / file_name, self.open, self.key)


@dataclass(frozen=True)
class _RecordKind(RowKind[ProblemRecord]):
    """Importance's result records, each file opened as its :class:`ResultStore`."""

    def open(self, path: Path) -> ResultStore:
        """The :class:`ResultStore` of the file (or shard) at ``path``."""
        return record_file(path)


RECORDS: RowKind[ProblemRecord] = _RecordKind(
    ProblemRecord.from_dict, ProblemRecord.to_dict, record_id, "result record"
)
"""The kind of ``importance``'s rows: one :class:`ProblemRecord` per problem, by its id."""


def row_id(*parts: object) -> str:
    """A row's id from the parts of its key (``("3<-7", "latent", [0])`` ->
    ``'["3<-7", "latent", [0]]'``): JSON, so tuples and lists of the same items agree."""
    return json.dumps([list(p) if isinstance(p, tuple) else p for p in parts])


def read_run_rows(
    path: str | Path,
    open_file: Callable[[Path], JsonLinesFile[Row]],
    key: Callable[[Row], str],
) -> list[Row]:
    """:func:`read_rows` of a file that must exist (itself or as shards).

    Raises:
        FileNotFoundError: Neither ``path`` nor any shard of it is there.
        DuplicateRowsError, ResultStoreError: As :func:`read_rows`.
    """
    path = Path(path)
    if not shard_files(path):
        raise FileNotFoundError(f"{path}: no results file here")
    return read_rows(path, open_file, key)


def read_run_records(run_dir: str | Path) -> list[ProblemRecord]:
    """Every record of a run folder: ``results.jsonl`` and all its shards, each problem
    once (see :func:`read_rows`).

    Raises:
        FileNotFoundError: Neither ``results.jsonl`` nor any shard of it is there.
        DuplicateRowsError, ResultStoreError: As :func:`read_rows`.
    """
    return read_run_rows(Path(run_dir) / RESULTS_FILE, record_file, record_id)


class RunFolderError(ResultStoreError):
    """The run folder holds another run (or rows without a manifest); the message names
    the folder, the differing settings and what to do.

    Attributes:
        option: The command-line option at fault (``--out``).
    """

    option = "--out"


def _dotted(data: dict[str, Any], key: str) -> Any:
    value: Any = data
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _difference(key: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """One differing identity key as a user reads it: a fingerprint by what it hashes."""
    if key in ("data.fingerprint", "model.fingerprint"):
        section = key.split(".")[0]
        before, after = _dotted(old, f"{section}.spec"), _dotted(new, f"{section}.spec")
        if before != after:
            return f"--{section} {json.dumps(before)} here, {json.dumps(after)} now"
        return f"--{section} {json.dumps(after)} now holds other contents than when the run began"
    return f"{key}: {json.dumps(_dotted(old, key))} here, {json.dumps(_dotted(new, key))} now"


def check_manifest(
    run_dir: str | Path, manifest: dict[str, Any], identity: Sequence[str], *, write: bool = True
) -> dict[str, Any]:
    """The manifest a run into ``run_dir`` keeps: the folder's own when it holds the same
    run (every key of ``identity``, dotted for nested keys, and ``format`` equal), else
    ``manifest``, written for a new run (unless ``write`` is false: a check only). One
    rule for every analysis.

    Raises:
        RunFolderError: The folder holds a run with a different configuration, or rows
            (``results.jsonl`` or a shard of it) without a manifest.
    """
    run_dir = Path(run_dir)
    if (run_dir / MANIFEST_FILE).is_file():
        old = read_manifest(run_dir)
        keys = ["format", *identity] if "format" in manifest else list(identity)
        differ = [k for k in keys if _dotted(old, k) != _dotted(manifest, k)]
        if differ:
            shown = "; ".join(_difference(k, old, manifest) for k in differ)
            raise RunFolderError(
                f"--out {run_dir} holds a run with a different configuration ({shown}). "
                "Repeat the original options to resume, or choose another --out folder."
            )
        return old
    if shard_files(run_dir / RESULTS_FILE):
        raise RunFolderError(
            f"--out {run_dir} has {RESULTS_FILE} but no {MANIFEST_FILE}, so it cannot be "
            "resumed safely; choose another --out folder"
        )
    if write:
        write_manifest(run_dir, manifest)
    return manifest
