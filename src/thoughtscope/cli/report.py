"""``thoughtscope report``: a run's (or an original file's) self-contained HTML report.

It reads the run folder only (decoded example thoughts included, recorded by the sweep);
it never loads a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thoughtscope.cli.app import app, fail
from thoughtscope.cli.options import check_output
from thoughtscope.report import FIGURES_DIR, ReportInputError, write_report
from thoughtscope.statistics import DEFAULT_N_BOOT


@app.command("report")
def report_command(
    run: Annotated[
        Path,
        typer.Argument(
            help="A run folder (manifest.json + results.jsonl) or a file in the original "
            "study's layout (step_importance_scores.json).",
            show_default=False,
            metavar="RUN",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for report.html and figures/ (default: the run folder, or the "
            "original file's folder).",
        ),
    ] = None,
    examples: Annotated[
        int, typer.Option("--examples", help="Example problems to show (0: none).", min=0)
    ] = 3,
    n_boot: Annotated[
        int,
        typer.Option(
            "--n-boot",
            help="Bootstrap resamples, if summary.json must be (re)computed.",
            min=0,
        ),
    ] = DEFAULT_N_BOOT,
) -> None:
    """Write RUN/report.html (self-contained: figures embedded, no external files) and
    every figure as PNG and SVG in RUN/figures/."""
    if not run.exists():
        fail(
            f"{run}: no such file or folder; give a run folder (with manifest.json and "
            "results.jsonl) or a step_importance_scores.json file"
        )
    if out is not None:
        check_output(out, "--out", folder=True)
    from thoughtscope.report.causal import is_causal_run, write_causal_report

    if is_causal_run(run):  # patching, effects and steering runs have their own page
        if out is not None:
            fail("--out: patching, effects and steering reports are written into RUN", "--out")
        typer.echo(f"Wrote {write_causal_report(run, n_boot=n_boot)}")
        return
    from thoughtscope.report.probes import is_held_run, write_held_report

    if is_held_run(run):  # probes, numeric lens or attention without importance results
        path = write_held_report(run, out_dir=out, n_boot=n_boot)
        typer.echo(f"Wrote {path}")
        return
    try:
        path = write_report(run, examples=examples, out_dir=out, n_boot=n_boot)
    except ReportInputError as error:
        fail(str(error))
    typer.echo(f"Wrote {path}")
    typer.echo(f"Figures (PNG and SVG) in {path.parent / FIGURES_DIR}")
