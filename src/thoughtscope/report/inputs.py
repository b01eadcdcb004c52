"""What a report reads: a run folder (or an original-layout scores file), its records,
manifest and ``summary.json``.

The report computes no statistics of its own. Every rate and interval comes from
``summary.json`` (:mod:`thoughtscope.statistics`); when that file is missing, or older
than the run's results, it is written first with :func:`write_run_statistics`. A file in
the original study's layout is re-analysed with :func:`write_original_file_statistics`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thoughtscope.results.records import ProblemRecord
from thoughtscope.results.shards import shard_files
from thoughtscope.statistics import (
    DEFAULT_N_BOOT,
    SCHEMA,
    StatisticsInputError,
    Summary,
    read_run,
    read_summary,
    write_original_file_statistics,
    write_run_statistics,
)
from thoughtscope.statistics.files import MANIFEST_FILE, RESULTS_FILE, SUMMARY_FILE, load_json
from thoughtscope.statistics.original import (
    OriginalLayoutError,
    parse_original,
    records_from_original,
)

__all__ = ["ReportInputError", "ReportInputs", "load_inputs"]


class ReportInputError(ValueError):
    """Input the report cannot use; the message names the file and what to do."""


@dataclass(frozen=True)
class ReportInputs:
    """Everything one report shows.

    Attributes:
        source: The run folder or original-layout file the report describes.
        out_dir: Where ``report.html`` and ``figures/`` go.
        manifest: The run's manifest (for an original file: what the statistics
            inferred about it).
        records: One record per problem, in file order.
        summary: ``summary.json`` in its typed form.
        schedules_of: Condition name → every schedule that asked for it (a condition
            such as ``{0}`` belongs to both ``prefix`` and ``single``).
    """

    source: Path
    out_dir: Path
    manifest: dict[str, Any]
    records: list[ProblemRecord]
    summary: Summary
    schedules_of: dict[str, list[str]]

    @property
    def is_original_file(self) -> bool:
        """Whether this is a re-analysis of a file in the original study's layout."""
        return self.summary.is_original_file


def _summary_is_current(run_dir: Path) -> bool:
    """Whether ``summary.json`` exists, has the current schema and postdates the run."""
    summary = run_dir / SUMMARY_FILE
    if not summary.is_file():
        return False
    inputs = [*shard_files(run_dir / RESULTS_FILE), run_dir / MANIFEST_FILE]
    newest = max(p.stat().st_mtime for p in inputs if p.is_file())
    if summary.stat().st_mtime < newest:
        return False
    try:
        data = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("schema") == SCHEMA


def _schedules_of(records: list[ProblemRecord], manifest: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}

    def add(name: str, schedule: str) -> None:
        known = out.setdefault(name, [])
        if schedule and schedule not in known:
            known.append(schedule)

    conditions = manifest.get("conditions")
    if isinstance(conditions, list):
        for entry in conditions:
            if isinstance(entry, dict) and isinstance(entry.get("schedules"), list):
                for schedule in entry["schedules"]:
                    add(str(entry.get("name", "")), str(schedule))
    for record in records:
        for c in record.conditions:
            for schedule in c.condition.schedules:
                add(c.name, schedule)
    return out


def load_inputs(
    source: Path, out_dir: Path | None = None, *, n_boot: int = DEFAULT_N_BOOT
) -> ReportInputs:
    """Reads a run folder or an original-layout file, writing its statistics if needed.

    Args:
        source: A run folder (``manifest.json`` + ``results.jsonl``) or a
            ``step_importance_scores.json`` / ``step_importance_validation.json`` file.
        out_dir: Where the report goes (default: the run folder, or the file's folder).
        n_boot: Bootstrap resamples, used only when the statistics must be (re)computed.

    Raises:
        ReportInputError: The path is missing or is not a readable run or file.
    """
    source = Path(source)
    if not source.exists():
        raise ReportInputError(
            f"{source}: no such file or folder; give a run folder (with manifest.json and "
            "results.jsonl) or a step_importance_scores.json file"
        )
    try:
        if source.is_dir():
            records, manifest = read_run(source)
            out = Path(out_dir) if out_dir is not None else source
            if out == source and _summary_is_current(source):
                summary_path = source / SUMMARY_FILE
            else:
                summary_path = write_run_statistics(source, out, n_boot=n_boot)
        else:
            try:
                results = parse_original(load_json(source), str(source))
            except OriginalLayoutError as error:
                raise ReportInputError(str(error)) from None
            records, manifest = records_from_original(results)
            out = Path(out_dir) if out_dir is not None else source.parent
            summary_path = write_original_file_statistics(source, out, n_boot=n_boot)
        summary = read_summary(summary_path)
    except StatisticsInputError as error:
        raise ReportInputError(str(error)) from None
    return ReportInputs(
        source=source,
        out_dir=out,
        manifest=manifest,
        records=records,
        summary=summary,
        schedules_of=_schedules_of(records, manifest),
    )
