"""One writer per output: a lock file beside what a run writes.

Two runs appending to one ``results.jsonl`` at once each skip only what *they* finished,
so both compute and write the rest: rows are doubled and every statistic counts some
problems twice. A :class:`OutputLock` makes the second run stop before it computes
anything, with one line naming the holder.

How it works: ``PATH.lock`` holds the holder's pid, host and start time (JSON), and the
holder keeps an exclusive ``flock`` on it. The kernel drops a ``flock`` when its process
dies, however it dies, so a lock whose ``flock`` can be taken but whose file still names a
holder was left by a process that did not exit cleanly (killed, power loss): it is stale,
and it is taken over with a warning that names the dead holder. A clean exit (also on an
exception or Ctrl-C) deletes the file.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from thoughtscope.results.store import ResultStoreError

__all__ = ["LOCK_SUFFIX", "OutputLock", "OutputLockedError", "clear_stale_lock", "lock_path"]

LOCK_SUFFIX = ".lock"

log = logging.getLogger(__name__)


class OutputLockedError(ResultStoreError):
    """Another live process writes the same output; the message names its pid and host."""


def lock_path(path: str | Path) -> Path:
    """The lock file of an output: ``results.jsonl`` -> ``results.jsonl.lock``."""
    path = Path(path)
    return path.with_name(path.name + LOCK_SUFFIX)


def clear_stale_lock(path: str | Path) -> bool:
    """Deletes the lock file of ``path`` when no live process holds it (left by a killed
    run whose output is gone, e.g. a merged shard); returns whether it was deleted."""
    file = lock_path(path)
    try:
        fd = os.open(file, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        same = file.exists() and os.stat(file).st_ino == os.fstat(fd).st_ino
        if same:
            file.unlink()
        return same
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class OutputLock:
    """An exclusive lock on one output file (``PATH.lock``), held until :meth:`release`.

    Use it as a context manager::

        with OutputLock(run_dir / "results.jsonl"):
            ...  # append rows

    Raises (on :meth:`acquire`):
        OutputLockedError: A live process holds the lock (the message names its pid, host
            and the lock file, and what to do).
    """

    def __init__(self, path: str | Path, *, purpose: str = ""):
        self.target = Path(path)
        self.path = lock_path(self.target)
        self.purpose = purpose
        self._fd: int | None = None
        self.took_over: dict[str, Any] | None = None
        """The holder named by a stale lock this lock replaced (``None``: none)."""

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> OutputLock:
        """Takes the lock (taking over a stale one, with a warning); returns ``self``."""
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._read(fd)
                os.close(fd)
                raise OutputLockedError(self._busy_message(holder)) from None
            # The file may have been deleted by its holder's release between our open and
            # our flock: then we hold a lock on a file nobody else can find. Start over.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = self._read(fd)
        if previous:
            self.took_over = previous
            log.warning("%s", self._stale_message(previous))
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "purpose": self.purpose,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Deletes the lock file and drops the lock (no-op when not held)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()

    # ------------------------------------------------------------------ messages
    @staticmethod
    def _read(fd: int) -> dict[str, Any]:
        size = os.fstat(fd).st_size
        raw = os.pread(fd, max(size, 1), 0) if size else b""
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return {"pid": "?", "host": "?"}
        return data if isinstance(data, dict) else {}

    def _busy_message(self, holder: dict[str, Any]) -> str:
        pid, host = holder.get("pid", "?"), holder.get("host", "?")
        since = f" since {holder['started']}" if holder.get("started") else ""
        return (
            f"{self.target} is being written by another run (pid {pid} on host {host}{since}; "
            f"lock {self.path}); wait for it to finish, stop it, or choose another --out"
        )

    def _stale_message(self, holder: dict[str, Any]) -> str:
        pid, host = holder.get("pid", "?"), holder.get("host", "?")
        if host == socket.gethostname():
            why = (
                "no longer running"
                if not isinstance(pid, int) or not _pid_alive(pid)
                else "its lock was released, so that pid now belongs to another process"
            )
            detail = f"pid {pid} on this host ({why})"
        else:
            detail = (
                f"pid {pid} on host {host}, whose lock was free (if that run is still going, "
                "stop one: this file system may not share locks between hosts)"
            )
        return (
            f"{self.path}: taking over a stale lock left by {detail}; rows it finished are "
            "kept and its unfinished work is redone"
        )
