"""What the ``patch``, ``effects`` and ``steer`` commands share: running into a locked,
resumable run folder, and writing the statistics and the report afterwards."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from thoughtscope.analyses.patching import PatchInputError
from thoughtscope.cli.app import fail, streaming_to

RESUME_HINT = "run the same command again to continue (finished rows are kept)"

T = TypeVar("T")


def run_into(out: Path, run: Callable[[], T]) -> T:
    """Runs an analysis writing ``out/results.jsonl``; an interruption says how to resume,
    a bad configuration stops with one line naming its option."""
    streaming_to(out / "results.jsonl", resume=RESUME_HINT)
    try:
        return run()
    except PatchInputError as error:
        fail(str(error), error.option)


def summarise(
    out: Path,
    write_summary: Callable[[Path], Path],
    format_summary: Callable[[dict[str, Any]], str],
) -> None:
    """Writes the run's statistics and report, printing the tables and both paths."""
    from thoughtscope.report.causal import write_causal_report

    summary = write_summary(out)
    typer.echo(format_summary(json.loads(summary.read_text(encoding="utf-8"))))
    typer.echo(f"statistics: {summary}")
    typer.echo(f"report: {write_causal_report(out)} (open it in a browser)")
