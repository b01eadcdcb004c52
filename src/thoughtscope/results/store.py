"""The result store: a run folder holding ``manifest.json`` and ``results.jsonl``.

``results.jsonl`` is append-only, one :class:`~thoughtscope.results.records.ProblemRecord` per
line. Every :meth:`ResultStore.append` writes whole lines, then flushes and fsyncs, so a
killed run loses at most the batch being written. Only the *last* line can be cut short
by such a kill; :func:`read_records` drops it (and :meth:`ResultStore.append` trims it
before writing again). A bad line anywhere else means the file was damaged or edited, and
is an error naming the file and line.

``manifest.json`` holds the run's full configuration (see
:mod:`thoughtscope.analyses.importance`), written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

from thoughtscope.files import write_json
from thoughtscope.results.records import ProblemRecord

__all__ = [
    "MANIFEST_FILE",
    "RESULTS_FILE",
    "JsonLinesFile",
    "ResultStore",
    "ResultStoreError",
    "json_rows",
    "read_manifest",
    "read_records",
    "write_manifest",
]

RESULTS_FILE = "results.jsonl"
MANIFEST_FILE = "manifest.json"

log = logging.getLogger(__name__)

Row = TypeVar("Row")


class ResultStoreError(ValueError):
    """A run folder's files cannot be read: the message names the file and line."""


def _parse_lines(
    path: Path, parse: Callable[[Any], Row], what: str = "result record"
) -> tuple[list[Row], int]:
    """Rows of ``path`` (each line's JSON through ``parse``) and the byte length of its
    intact part (before a cut-off last line)."""
    data = path.read_bytes()
    records: list[Row] = []
    lines = data.split(b"\n")
    # A file written by the store ends in "\n", so the final element is b"" unless the
    # last write was cut short.
    offset = 0
    for number, raw in enumerate(lines, start=1):
        is_last = number == len(lines)
        if not raw.strip():
            offset += len(raw) + (0 if is_last else 1)
            continue
        try:
            record = parse(json.loads(raw))
        except (ValueError, KeyError, TypeError) as error:
            unterminated = is_last  # no newline after it: the write never finished
            if unterminated:
                log.warning("%s: line %d was cut short (a killed write); ignoring it", path, number)
                return records, offset
            raise ResultStoreError(
                f"{path}, line {number}: not a valid {what} ({error}). The file "
                "was damaged or edited; move the run folder aside and run again, or "
                "delete that line to keep the rest."
            ) from None
        if is_last:
            # Complete JSON but no newline: the write may have been cut exactly there.
            # Keep it; append() adds the missing newline.
            records.append(record)
            offset += len(raw)
            continue
        records.append(record)
        offset += len(raw) + 1
    return records, offset


def read_records(path: str | Path) -> list[ProblemRecord]:
    """Every record in a ``results.jsonl`` file (or a run folder holding one).

    A truncated last line (from a killed write) is ignored with a warning.

    Raises:
        FileNotFoundError: There is no such file.
        ResultStoreError: A line other than the last is not a valid record.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results file here")
    return _parse_lines(path, ProblemRecord.from_dict)[0]


def write_manifest(run_dir: str | Path, manifest: dict[str, Any]) -> Path:
    """Writes ``RUN/manifest.json`` atomically; returns its path."""
    return write_json(Path(run_dir) / MANIFEST_FILE, manifest, sort_keys=True)


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """``RUN/manifest.json`` as a dict.

    Raises:
        FileNotFoundError: The folder has no manifest.
        ResultStoreError: The manifest is not valid JSON.
    """
    path = Path(run_dir) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no run manifest here")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ResultStoreError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ResultStoreError(f"{path}: expected a JSON object")
    return data


def _json_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError("expected a JSON object")
    return data


class JsonLinesFile(Generic[Row]):
    """Append-only JSON lines, one row per line, each append flushed and fsynced.

    ``parse`` turns a line's JSON into a row (raising ``ValueError``, ``KeyError`` or
    ``TypeError`` for a bad one); ``dump`` turns a row back into JSON-ready data.
    """

    def __init__(
        self,
        path: str | Path,
        parse: Callable[[Any], Row],
        dump: Callable[[Row], Any],
        *,
        what: str = "row",
    ):
        self.path = Path(path)
        self.parse = parse
        self.dump = dump
        self.what = what
        self._repaired = False

    def read(self) -> list[Row]:
        """Every finished row (empty when the file does not exist yet); a cut-off last
        line is ignored with a warning."""
        if not self.path.is_file():
            return []
        return _parse_lines(self.path, self.parse, self.what)[0]

    def _repair_tail(self) -> None:
        """Cuts a truncated last line off and ends the file with a newline, so the next
        append starts on a line of its own."""
        if self._repaired or not self.path.is_file():
            self._repaired = True
            return
        _, intact = _parse_lines(self.path, self.parse, self.what)
        size = self.path.stat().st_size
        with open(self.path, "r+b") as handle:
            if intact < size:
                log.warning("%s: dropping a cut-off last line before appending", self.path)
                handle.truncate(intact)
            if intact > 0:
                handle.seek(intact - 1)
                if handle.read(1) != b"\n":
                    handle.seek(intact)
                    handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._repaired = True

    def append(self, rows: Iterable[Row]) -> int:
        """Writes one line per row, then flushes and fsyncs; returns how many."""
        lines = [json.dumps(self.dump(r), ensure_ascii=False) + "\n" for r in rows]
        if not lines:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
        return len(lines)


def json_rows(path: str | Path, *, what: str = "row") -> JsonLinesFile[dict[str, Any]]:
    """A :class:`JsonLinesFile` of plain JSON objects (e.g. ``thoughtscope answer``'s)."""
    return JsonLinesFile(path, _json_object, dict, what=what)


class ResultStore(JsonLinesFile[ProblemRecord]):
    """Append-only access to one run folder's ``results.jsonl`` (or one shard of it).

    Example::

        store = ResultStore(run_dir)
        todo = [p for p in problems if p.id not in store.done_ids()]
        store.append(records)  # flushed and fsynced before it returns
    """

    def __init__(self, run_dir: str | Path, file_name: str = RESULTS_FILE):
        self.run_dir = Path(run_dir)
        super().__init__(
            self.run_dir / file_name,
            ProblemRecord.from_dict,
            ProblemRecord.to_dict,
            what="result record",
        )

    def done_ids(self) -> set[str]:
        """Ids of the problems already written to this file."""
        return {record.id for record in self.read()}

    def write_manifest(self, manifest: dict[str, Any]) -> Path:
        """See :func:`write_manifest`."""
        return write_manifest(self.run_dir, manifest)

    def read_manifest(self) -> dict[str, Any]:
        """See :func:`read_manifest`."""
        return read_manifest(self.run_dir)
