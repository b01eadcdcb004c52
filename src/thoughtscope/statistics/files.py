"""Reading a run or an original-study file, and writing the statistics files.

A run folder holds ``manifest.json`` and ``results.jsonl``; :func:`write_run_statistics`
writes ``summary.json`` and, when the run has a zero prefix family at one site, the
original study's ``step_importance_scores.json`` and
``step_importance_summary_stats.json`` (plus ``step_importance_validation.json`` when the
manifest has ``validate``). :func:`write_original_file_statistics` re-analyses a file in
the original's layout. Files are written whole to a temporary name and then renamed, so
a reader never sees half a file; JSON never contains NaN (missing figures are ``null``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from thoughtscope.files import write_json
from thoughtscope.results.records import ProblemRecord
from thoughtscope.results.shards import read_run_records
from thoughtscope.results.store import ResultStoreError, read_manifest
from thoughtscope.statistics.bootstrap import DEFAULT_N_BOOT
from thoughtscope.statistics.conditions import members_of
from thoughtscope.statistics.original import (
    OriginalLayoutError,
    choose_original_family,
    original_files_caveat,
    original_layout_section,
    original_scores,
    original_statistics,
    original_validation,
    parse_original,
    records_from_original,
)
from thoughtscope.statistics.schema import Summary
from thoughtscope.statistics.summary import SCHEMA, summary_from_records

__all__ = [
    "MANIFEST_FILE",
    "ORIGINAL_SCORES_FILE",
    "ORIGINAL_STATS_FILE",
    "ORIGINAL_VALIDATION_FILE",
    "RESULTS_FILE",
    "SUMMARY_FILE",
    "StatisticsInputError",
    "load_json",
    "read_run",
    "read_summary",
    "write_original_file_statistics",
    "write_run_statistics",
]

SUMMARY_FILE = "summary.json"
MANIFEST_FILE = "manifest.json"
RESULTS_FILE = "results.jsonl"
ORIGINAL_SCORES_FILE = "step_importance_scores.json"
ORIGINAL_STATS_FILE = "step_importance_summary_stats.json"
ORIGINAL_VALIDATION_FILE = "step_importance_validation.json"


class StatisticsInputError(ValueError):
    """Input the statistics cannot use; the message names the file and what to do."""


def load_json(path: Path) -> Any:
    """The parsed JSON in ``path``.

    Raises:
        StatisticsInputError: The file is missing, unreadable or not valid JSON (the
            message gives the line and column).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StatisticsInputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise StatisticsInputError(f"{path}: cannot be read ({error})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise StatisticsInputError(
            f"{path}: not valid JSON at line {error.lineno}, column {error.colno} "
            f"({error.msg}); fix or regenerate the file"
        ) from None


def read_run(run_dir: Path) -> tuple[list[ProblemRecord], dict[str, Any]]:
    """The records and manifest of a run folder (a truncated last line is skipped).

    The records come from ``results.jsonl`` and every shard of it written by a sharded
    run (``results.rankRofW.jsonl``), each problem once: identical repeated rows are
    dropped with a warning naming the ids (see
    :func:`thoughtscope.results.shards.read_rows`).

    Raises:
        StatisticsInputError: No manifest or results file, an unreadable one, or
            different rows for one problem id (naming the files and ids).
    """
    hint = (
        "give a run folder written by 'thoughtscope importance' or a "
        "step_importance_scores.json file"
    )
    if not (run_dir / MANIFEST_FILE).is_file():
        raise StatisticsInputError(f"{run_dir}: no {MANIFEST_FILE}; {hint}")
    try:
        manifest = dict(read_manifest(run_dir))
        records = read_run_records(run_dir)
    except FileNotFoundError as error:
        raise StatisticsInputError(f"{error}; {hint}") from None
    except (ResultStoreError, OSError) as error:
        raise StatisticsInputError(str(error)) from None
    return records, manifest


def _clean(value: Any) -> Any:
    """``value`` with NaN/inf floats replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _write_json(path: Path, data: Any) -> None:
    write_json(path, data)


def _add_original_layout(summary: dict[str, Any], layout: dict[str, Any]) -> None:
    """Adds the original-layout adapter's entry (and its caveat, for runs)."""
    summary["original_layout"] = layout
    if layout["written"] and summary["source"] != "original-file":
        summary["caveats"].append(original_files_caveat(str(layout["family"]["site"])))


def write_run_statistics(
    run_dir: Path,
    out_dir: Path | None = None,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int | None = None,
) -> Path:
    """Writes a run's statistics files and returns the path of ``summary.json``.

    Args:
        run_dir: The run folder (``manifest.json``, ``results.jsonl``).
        out_dir: Where to write (default: ``run_dir``).
        n_boot: Bootstrap resamples per group.
        seed: Bootstrap seed (default: the manifest's ``seed``, else 0).

    Raises:
        StatisticsInputError: The folder is not a readable run.
    """
    run_dir = Path(run_dir)
    records, manifest = read_run(run_dir)
    if seed is None:
        manifest_seed = manifest.get("seed")
        seed = manifest_seed if isinstance(manifest_seed, int) else 0
    summary = summary_from_records(records, manifest, n_boot=n_boot, seed=seed)
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)

    written = [SUMMARY_FILE]
    choice = choose_original_family(members_of(records), manifest)
    if choice.family is not None:
        scores = original_scores(records, choice)
        _write_json(out / ORIGINAL_SCORES_FILE, scores)
        _write_json(out / ORIGINAL_STATS_FILE, original_statistics(scores))
        written += [ORIGINAL_SCORES_FILE, ORIGINAL_STATS_FILE]
        if isinstance(manifest.get("validate"), int) and not isinstance(
            manifest.get("validate"), bool
        ):
            _write_json(out / ORIGINAL_VALIDATION_FILE, original_validation(scores))
            written.append(ORIGINAL_VALIDATION_FILE)
    _add_original_layout(summary, original_layout_section(records, manifest))
    summary["files"] = written
    path = out / SUMMARY_FILE
    _write_json(path, Summary.from_dict(summary).to_dict())  # the typed contract covers it
    return path


def write_original_file_statistics(
    path: Path,
    out_dir: Path | None = None,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> Path:
    """Re-analyses an original-layout file; returns the path of ``summary.json``.

    Writes ``summary.json`` and ``step_importance_summary_stats.json`` (the original's
    own figures, recomputed exactly) into ``out_dir`` (default: the file's folder). An
    existing stats file there is compared with the recomputed figures
    (``summary["original_layout"]["check"]``) and never overwritten with different ones.

    Raises:
        StatisticsInputError: Missing file, invalid JSON, wrong layout, or an existing
            different stats file in the way.
    """
    path = Path(path)
    data = load_json(path)
    try:
        results = parse_original(data, str(path))
    except OriginalLayoutError as error:
        raise StatisticsInputError(str(error)) from None
    records, manifest = records_from_original(results)
    figures = original_statistics(results)
    summary = summary_from_records(records, manifest, n_boot=n_boot, seed=seed)
    _add_original_layout(summary, original_layout_section(records, manifest, figures))
    summary["source_file"] = str(path)
    out = Path(out_dir) if out_dir is not None else path.parent
    out.mkdir(parents=True, exist_ok=True)

    checks = []
    if isinstance(data, dict) and isinstance(data.get("statistics"), dict):
        checks.append(
            {
                "against": f"{path.name} 'statistics'",
                "matches": _clean(data["statistics"]) == figures,
            }
        )
    stats_path = out / ORIGINAL_STATS_FILE
    if stats_path.exists():
        existing = _clean(load_json(stats_path))
        if existing != figures:
            raise StatisticsInputError(
                f"{stats_path}: already exists and differs from the figures recomputed from "
                f"{path.name}; pass --out DIR to write elsewhere (the existing file is left "
                "untouched)"
            )
        checks.append({"against": str(stats_path), "matches": True})
    summary["original_layout"]["check"] = checks
    _write_json(stats_path, figures)
    summary["files"] = [SUMMARY_FILE, ORIGINAL_STATS_FILE]
    summary_path = out / SUMMARY_FILE
    _write_json(summary_path, Summary.from_dict(summary).to_dict())
    return summary_path


def read_summary(path: Path) -> Summary:
    """``summary.json`` read into its typed form.

    Raises:
        StatisticsInputError: Missing, invalid JSON, another schema, or malformed.
    """
    data = load_json(path)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise StatisticsInputError(
            f"{path}: not a {SCHEMA} summary; rerun `thoughtscope stats` on the run"
        )
    try:
        return Summary.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise StatisticsInputError(
            f"{path}: a malformed {SCHEMA} summary ({type(error).__name__}: {error}); "
            "rerun `thoughtscope stats` on the run"
        ) from None
