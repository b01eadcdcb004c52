"""Append-only JSON-lines files of typed rows (patching, effects, steering runs).

Appends are whole lines, flushed and fsynced. Only the last line can be cut short by a
killed write: reading ignores it (with a warning) and the next append trims it first. A
bad line anywhere else is an error naming the file and line.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from thoughtscope.results.store import ResultStoreError

__all__ = ["append_rows", "read_rows"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def _intact(path: Path, parse: Callable[[dict[str, Any]], T], kind: str) -> tuple[list[T], int]:
    """The rows of ``path`` and the byte length of its intact part."""
    data = path.read_bytes()
    rows: list[T] = []
    offset = 0
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        last = number == len(lines)
        if raw.strip():
            try:
                rows.append(parse(json.loads(raw)))
            except (ValueError, KeyError, TypeError) as error:
                if last:
                    log.warning("%s: line %d was cut short; ignoring it", path, number)
                    return rows, offset
                raise ResultStoreError(
                    f"{path}, line {number}: not a {kind} ({error}); the file was damaged or "
                    "edited: move the run folder aside, or delete that line"
                ) from None
        offset += len(raw) + (0 if last else 1)
    return rows, offset


def read_rows(path: Path, parse: Callable[[dict[str, Any]], T], kind: str) -> list[T]:
    """Every row of a JSON-lines file, each read by ``parse``.

    Raises:
        FileNotFoundError: No such file.
        ResultStoreError: A line other than the last is damaged.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results file here")
    return _intact(path, parse, kind)[0]


def append_rows(path: Path, rows: Sequence[dict[str, Any]]) -> int:
    """Appends JSON-ready rows (flushed and fsynced), first trimming a cut-off last
    line; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        _, intact = _intact(path, lambda row: row, "row")
        if intact < path.stat().st_size:
            with path.open("r+b") as handle:
                handle.truncate(intact)
        if intact and not path.read_bytes().endswith(b"\n"):
            with path.open("ab") as handle:
                handle.write(b"\n")
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        handle.flush()
        os.fsync(handle.fileno())
    return len(rows)
