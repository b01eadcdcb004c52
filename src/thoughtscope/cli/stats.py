"""``thoughtscope stats``: recompute and print the statistics of a run or an old file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thoughtscope.cli.app import app, fail
from thoughtscope.cli.options import check_output
from thoughtscope.statistics import (
    DEFAULT_N_BOOT,
    StatisticsInputError,
    format_tables,
    write_original_file_statistics,
    write_run_statistics,
)
from thoughtscope.statistics.files import load_json


@app.command("stats")
def stats(
    run_or_file: Annotated[
        Path,
        typer.Argument(
            help="A run folder (manifest.json + results.jsonl) or a file in the original "
            "study's layout (step_importance_scores.json or step_importance_validation.json).",
            show_default=False,
            metavar="RUN_OR_FILE",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder to write summary.json and step_importance_summary_stats.json into "
            "(default: the run folder, or the original file's folder).",
        ),
    ] = None,
    n_boot: Annotated[
        int, typer.Option("--n-boot", help="Bootstrap resamples per group (0: no intervals).")
    ] = DEFAULT_N_BOOT,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Bootstrap seed (default: the run's seed, or 0 for a file)."),
    ] = None,
) -> None:
    """Recompute statistics (rates with 95% bootstrap CIs, McNemar tests, marginal prefix
    steps, early/late) and print them as tables."""
    if out is not None:
        check_output(out, "--out", folder=True)
    if n_boot < 0:
        fail(f"--n-boot must be 0 or more, got {n_boot}")
    if not run_or_file.exists():
        fail(
            f"{run_or_file}: no such file or folder; give a run folder (with manifest.json "
            "and results.jsonl) or a step_importance_scores.json file"
        )
    from thoughtscope.report.causal import is_causal_run

    if is_causal_run(run_or_file):  # patching, effects, steering: their own summary
        if out is not None:
            fail("--out: patching, effects and steering statistics are written into RUN", "--out")
        from thoughtscope.cli.causal import summarise

        summarise(run_or_file, n_boot=n_boot, report=False)
        return
    try:
        if run_or_file.is_dir():
            path = write_run_statistics(run_or_file, out, n_boot=n_boot, seed=seed)
        else:
            path = write_original_file_statistics(
                run_or_file, out, n_boot=n_boot, seed=0 if seed is None else seed
            )
    except StatisticsInputError as error:
        fail(str(error))
    summary = load_json(path)
    typer.echo(format_tables(summary), nl=False)
    for check in (summary.get("original_layout") or {}).get("check", []):
        verdict = "match" if check["matches"] else "DO NOT match"
        typer.echo(f"Recomputed original figures {verdict} {check['against']}.")
    typer.echo("")
    for name in summary.get("files", []):
        typer.echo(f"Wrote {path.parent / name}")
