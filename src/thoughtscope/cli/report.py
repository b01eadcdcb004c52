"""``thoughtscope report``: a run's (or an original file's) self-contained HTML report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from thoughtscope.cli.app import UsageError, app, fail
from thoughtscope.cli.options import (
    BaseModelOpt,
    DeviceOpt,
    ModelChoice,
    PresetOpt,
    check_output,
)
from thoughtscope.model import CodiModel
from thoughtscope.report import FIGURES_DIR, ReportInputError, write_report
from thoughtscope.statistics import DEFAULT_N_BOOT


def _manifest(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _example_model(
    run: Path, model: str | None, base_model: str | None, preset: str | None, device: str
) -> CodiModel | None:
    """The run's model for decoding example thoughts, or ``None`` (with a note why)."""
    if not run.is_dir():
        return None
    manifest = _manifest(run)
    recorded = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    spec = model or (recorded or {}).get("spec")
    if not spec:
        typer.echo(
            "Note: the manifest does not say which model made this run; give --model to "
            "decode the example thoughts (skipped).",
            err=True,
        )
        return None
    recorded_dtype = manifest.get("dtype")
    dtype = recorded_dtype if isinstance(recorded_dtype, str) else "float32"
    choice = ModelChoice(
        model=str(spec), base_model=base_model, preset=preset, dtype=dtype, device=device
    )
    try:
        return choice.load()
    except UsageError as error:
        typer.echo(
            f"Note: cannot load the model {spec!r} ({error.message}); the report is written "
            "without decoded thoughts. Give --model (and --base-model for an official "
            "checkpoint), or --no-model.",
            err=True,
        )
        return None


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
    no_model: Annotated[
        bool,
        typer.Option("--no-model", help="Do not load the model: no decoded thoughts."),
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model for the decoded thoughts (default: the one the run's manifest names).",
        ),
    ] = None,
    base_model: BaseModelOpt = None,
    preset: PresetOpt = None,
    device: DeviceOpt = "cpu",
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
    codi = None
    if not no_model and examples > 0:
        codi = _example_model(run, model, base_model, preset, device)
    try:
        path = write_report(run, examples=examples, model=codi, out_dir=out, n_boot=n_boot)
    except ReportInputError as error:
        fail(str(error))
    typer.echo(f"Wrote {path}")
    typer.echo(f"Figures (PNG and SVG) in {path.parent / FIGURES_DIR}")
