"""A run's results as one tidy table: a row per (problem, condition), plain columns.

``results.jsonl`` holds one nested record per problem (its baseline and a list of
conditions). Most analyses want the long form instead, which ``pandas.read_csv`` reads
and pivots without ``json_normalize``::

    table = pandas.read_csv("RUN/results.csv")
    table.pivot(index="id", columns="condition", values="correct")

Rows
    Each problem gives one row with ``condition == "baseline"`` and one row per distinct
    condition name. A condition listed under several schedules (a prefix and a single
    schedule both hold ``{0}``) is one row whose ``schedules`` column names them all
    (``prefix;single``), so ``(id, condition)`` is a key: a pivot never sees it twice.
    A problem id that appears on more than one line keeps its first line only; the
    count of dropped lines is returned (:attr:`TableFiles.duplicates`).

Columns
    ``id, stratum, steps, steps_source, expected, condition, schedules, site, layers,
    positions, n_positions, ablation, num_latent, output, predicted, correct, changed,
    gold_logprob, kl, baseline_predicted, baseline_correct, baseline_gold_logprob``, then
    any other plain (text, number, true/false) field of a baseline or condition outcome,
    in first-seen order (``finished`` and ``clean``, where a run records them). Lists
    (``layers``, ``positions``, ``schedules``) are joined with ``;``. Baseline rows leave
    the condition-only columns empty; ``changed`` is false there.

The table reads the records as JSON lines and needs only their documented fields (``id``,
``baseline.{output,predicted,correct,...}``, ``conditions[].{name,schedule,site,layers,
positions,ablation,output,predicted,correct,changed,gold_logprob,kl,...}``, optionally
``conditions[].schedules``), so it also reads runs written by earlier versions.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thoughtscope.files import replacing
from thoughtscope.results.shards import DuplicateRowsError, read_run_records, shard_files
from thoughtscope.results.store import RESULTS_FILE, ResultStoreError

__all__ = [
    "BASELINE",
    "COLUMNS",
    "TABLE_CSV",
    "TABLE_PARQUET",
    "TableFiles",
    "TableInputError",
    "table_rows",
    "write_table",
]

log = logging.getLogger(__name__)


TABLE_CSV = "results.csv"
TABLE_PARQUET = "results.parquet"
BASELINE = "baseline"
"""The ``condition`` value of a problem's row without intervention."""

COLUMNS = (
    "id",
    "stratum",
    "steps",
    "steps_source",
    "expected",
    "condition",
    "schedules",
    "site",
    "layers",
    "positions",
    "n_positions",
    "ablation",
    "num_latent",
    "output",
    "predicted",
    "correct",
    "changed",
    "gold_logprob",
    "kl",
    "baseline_predicted",
    "baseline_correct",
    "baseline_gold_logprob",
)
"""The fixed columns, in order; other plain outcome fields follow them."""

_PROBLEM_FIELDS = ("id", "stratum", "steps", "steps_source", "expected")
_CONDITION_FIELDS = ("site", "ablation", "num_latent")
_HANDLED = {"name", "schedule", "schedules", "layers", "positions", "question"}


class TableInputError(ValueError):
    """The run's results cannot be read into a table; the message names file and line."""


@dataclass(frozen=True)
class TableFiles:
    """What :func:`write_table` wrote.

    Attributes:
        csv: The CSV file.
        parquet: The Parquet file, or ``None`` when pyarrow is not installed.
        n_rows: Table rows (problems x (conditions + 1)).
        n_problems: Distinct problems.
        duplicates: Lines dropped because their problem id came earlier in the file.
    """

    csv: Path
    parquet: Path | None
    n_rows: int
    n_problems: int
    duplicates: int


def _joined(values: Any) -> Any:
    if isinstance(values, list):
        return ";".join(str(v) for v in values)
    return values


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _condition_row(condition: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"condition": condition.get("name")}
    schedules = condition.get("schedules")
    if not isinstance(schedules, list):
        schedule = condition.get("schedule")
        schedules = [schedule] if schedule not in (None, "") else []
    row["schedules"] = schedules
    for name in _CONDITION_FIELDS:
        row[name] = condition.get(name)
    layers = condition.get("layers") or []
    positions = condition.get("positions") or []
    row["layers"] = layers
    row["positions"] = positions
    row["n_positions"] = len(positions)
    for name, value in condition.items():
        if name not in row and name not in _HANDLED and _plain(value):
            row[name] = value
    return row


def _rows_of(problem: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The baseline row and one row per distinct condition of one record."""
    common = {name: problem.get(name) for name in _PROBLEM_FIELDS}
    baseline = problem.get("baseline") or {}
    common["baseline_predicted"] = baseline.get("predicted")
    common["baseline_correct"] = baseline.get("correct")
    common["baseline_gold_logprob"] = baseline.get("gold_logprob")

    first = {"condition": BASELINE, "changed": False}
    first.update({k: v for k, v in baseline.items() if _plain(v) and k not in _HANDLED})
    yield {**common, **first}

    merged: dict[str, dict[str, Any]] = {}
    for condition in problem.get("conditions") or []:
        row = _condition_row(condition)
        name = str(row["condition"])
        if name in merged:  # the same condition under another schedule: one row
            known = merged[name]["schedules"]
            known.extend(s for s in row["schedules"] if s not in known)
            continue
        merged[name] = {**common, **row}
    yield from merged.values()


def table_rows(records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Tidy rows of result records (dicts as in ``results.jsonl``), each with every
    column of :data:`COLUMNS` (``None`` where it does not apply), and how many records
    were dropped as repeats of an earlier id."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    duplicates = 0
    for record in records:
        problem_id = str(record.get("id"))
        if problem_id in seen:
            duplicates += 1
            continue
        seen.add(problem_id)
        rows.extend(_rows_of(record))
    tidy = []
    for row in rows:
        full = {name: row.get(name) for name in COLUMNS}
        full.update((name, value) for name, value in row.items() if name not in full)
        for name in ("schedules", "layers", "positions"):
            full[name] = _joined(full[name])
        tidy.append(full)
    return tidy, duplicates


def _read_records(path: Path) -> list[dict[str, Any]]:
    if path.name == RESULTS_FILE and any(p != path for p in shard_files(path)):
        # A sharded run not yet merged (a rank was killed): read every shard, each id once.
        try:
            return [r.to_dict() for r in read_run_records(path.parent)]
        except (ResultStoreError, DuplicateRowsError) as error:
            raise TableInputError(str(error)) from None
    if not path.is_file():
        raise TableInputError(
            f"{path}: no such file; give a run folder written by `thoughtscope importance`"
        )
    records: list[dict[str, Any]] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):  # no newline after it: a write cut short
                log.warning("%s: line %d was cut short; leaving it out", path, number)
                continue
            raise TableInputError(
                f"{path}, line {number}: not valid JSON ({error.msg}); the file was damaged "
                "or edited: delete that line (or move the run aside and run again)"
            ) from None
        if not isinstance(record, dict) or "id" not in record or "baseline" not in record:
            raise TableInputError(
                f"{path}, line {number}: not a result record (it needs 'id' and 'baseline')"
            )
        records.append(record)
    return records


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    extra: dict[str, None] = {}
    for row in rows:
        for name in row:
            if name not in COLUMNS:
                extra.setdefault(name, None)
    return [*COLUMNS, *extra]


def write_table(run_dir: str | Path, out_dir: str | Path | None = None) -> TableFiles:
    """Writes ``results.csv`` (and ``results.parquet`` when pyarrow is installed) for the
    run in ``run_dir`` into ``out_dir`` (default: the run folder).

    Raises:
        TableInputError: No ``results.jsonl`` there, or a damaged line (named).
    """
    run = Path(run_dir)
    source = run / RESULTS_FILE if run.is_dir() else run
    records = _read_records(source)
    rows, duplicates = table_rows(records)
    columns = _columns(rows)
    target = Path(out_dir) if out_dir is not None else source.parent
    target.mkdir(parents=True, exist_ok=True)
    csv_path = target / TABLE_CSV
    with replacing(csv_path) as temporary, temporary.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    parquet_path = _write_parquet(rows, columns, target / TABLE_PARQUET)
    n_problems = len(records) - duplicates
    return TableFiles(csv_path, parquet_path, len(rows), n_problems, duplicates)


def _write_parquet(rows: list[dict[str, Any]], columns: list[str], path: Path) -> Path | None:
    try:
        import pyarrow as pa  # type: ignore[import-not-found,import-untyped,unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None
    data = {name: [row.get(name) for row in rows] for name in columns}
    # Numbers read from answers may be whole in one row and fractional in another.
    for name in ("expected", "predicted", "baseline_predicted", "gold_logprob", "kl"):
        data[name] = [None if v is None else float(v) for v in data[name]]
    with replacing(path) as temporary:
        pq.write_table(pa.table(data), temporary)
    return path
