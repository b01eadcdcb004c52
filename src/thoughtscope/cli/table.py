"""``thoughtscope table``: a run's results as one tidy CSV (and Parquet) table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thoughtscope.cli.app import app, fail
from thoughtscope.cli.options import check_output
from thoughtscope.results.table import TableInputError, write_table


@app.command("table")
def table_command(
    run: Annotated[
        Path,
        typer.Argument(
            help="A run folder (with results.jsonl) or a results.jsonl file.",
            show_default=False,
            metavar="RUN",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for results.csv / results.parquet (default: RUN)."),
    ] = None,
) -> None:
    """Write RUN/results.csv (and results.parquet when pyarrow is installed): one row per
    (problem, condition), the baseline included, with plain columns for pandas."""
    if not run.exists():
        fail(f"{run}: no such file or folder; give a run folder with results.jsonl")
    check_output(
        out if out is not None else (run if run.is_dir() else run.parent), "--out", folder=True
    )
    try:
        files = write_table(run, out)
    except TableInputError as error:
        fail(str(error))
    if files.duplicates:
        typer.echo(
            f"Note: {files.duplicates} lines repeat an earlier problem id and were left out "
            "(the first line of each id is kept).",
            err=True,
        )
    typer.echo(f"{files.n_rows} rows ({files.n_problems} problems) -> {files.csv}")
    if files.parquet is not None:
        typer.echo(f"Parquet -> {files.parquet}")
    else:
        typer.echo("(no Parquet file: pip install pyarrow for one)")
