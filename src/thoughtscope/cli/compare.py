"""``thoughtscope compare``: runs of several thought families side by side (one page).

It reads each run folder's ``summary.json`` and ``manifest.json`` only; it never loads a
model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thoughtscope.cli.app import app, fail
from thoughtscope.cli.options import check_output


@app.command("compare")
def compare_command(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Two or more run folders, each with summary.json (`thoughtscope stats RUN`).",
            show_default=False,
            metavar="RUN_A RUN_B [RUN_C ...]",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for compare.html and figures/.")
    ] = Path("thoughtscope-compare"),
) -> None:
    """Write OUT/compare.html (self-contained) comparing the runs: families, baseline
    accuracy, importance along each shared schedule (zero ablation, latent site) and the
    prefix schedule's marginal steps; figures as PNG and SVG in OUT/figures/."""
    from thoughtscope.report.compare import CompareInputError, write_comparison

    check_output(out, "--out", folder=True)
    labels: dict[str, Path] = {}
    for run in runs:
        label = run.resolve().name or str(run)
        while label in labels:
            label += "'"
        labels[label] = run
    try:
        path = write_comparison(labels, out)
    except CompareInputError as error:
        fail(str(error))
    typer.echo(f"Wrote {path}")
