"""``thoughtscope importance`` (the step-importance sweep) and ``thoughtscope demo``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from thoughtscope.analyses.importance import (
    POSITIONS_NOTE,
    ImportanceConfig,
    ImportanceInputError,
    SweepResult,
    run_importance,
)
from thoughtscope.cli.app import app, fail, streaming_to
from thoughtscope.cli.launch import (
    DEFAULT_THREADS,
    ProgressOpt,
    ThreadsOpt,
    set_threads,
    start_ranks,
)
from thoughtscope.cli.options import (
    BatchSizeOpt,
    ModelChoice,
    ModelOpt,
    check_output,
    model_options,
)
from thoughtscope.engine.distributed import RankFailedError
from thoughtscope.model.codi import CodiModel
from thoughtscope.results.shards import shard_path

DEMO_DATA = "synthetic:test:seed=0:n=300"
"""The demo's problems: 300 synthetic test problems (the toy model's own style)."""

RESUME_HINT = "run the same command again to continue (finished problems are kept)"


def _statistics(run_dir: Path, *, tables: bool = True) -> Path:
    """Writes the run's statistics files, prints their tables (unless ``tables`` is
    false); returns summary.json."""
    from thoughtscope.statistics import format_tables, write_run_statistics

    summary_path = write_run_statistics(run_dir)
    if tables:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        typer.echo(format_tables(summary))
    return summary_path


def _report(run_dir: Path, model: CodiModel | None = None) -> Path | None:
    """Writes the run's HTML report (``None`` when the report module is not installed)."""
    try:
        from thoughtscope.report import write_report
    except ImportError:
        return None
    return Path(write_report(run_dir, model=model))


def _describe(result: SweepResult) -> str:
    resumed = f", {result.n_skipped} already done" if result.n_skipped else ""
    return (
        f"{result.n_written} problems written{resumed} ({result.n_problems} selected, "
        f"{result.n_conditions} conditions each) in {result.seconds:.1f} s"
    )


def _warn_shortfall(run_dir: Path) -> None:
    """Says when a stratified sample could not get all it asked of some strata."""
    from thoughtscope.results.store import read_manifest

    sampling = read_manifest(run_dir).get("data", {}).get("sampling", {})
    short = [s for s in sampling.get("strata", []) if s.get("shortfall")]
    if short:
        parts = ", ".join(f"{s['label']}: {s['taken']} of {s['requested']}" for s in short)
        typer.echo(
            f"Note: {sampling['taken']} problems sampled, {sampling['shortfall']} fewer than "
            f"requested; short strata (taken of requested): {parts}.",
            err=True,
        )


def _listing(folder: Path) -> list[str]:
    return [f"  {path}" for path in sorted(folder.iterdir()) if path.is_file()]


@app.command("importance")
@model_options
def importance_command(
    choice: ModelChoice,
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Problems: synthetic[:SPLIT][:seed=S][:n=N]..., a GSM8K .jsonl, a .json/.csv "
            "file, or hf:openai/gsm8k (see `thoughtscope data --help`).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder (created; resumed if present).")],
    model: ModelOpt = "toy",
    validate: Annotated[
        int | None,
        typer.Option(
            "--validate", help="A stratified validation sample of N problems (N in total)."
        ),
    ] = None,
    all_problems: Annotated[
        bool, typer.Option("--all", help="Every problem (the default without --validate).")
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Use only the first N problems of --data.")
    ] = None,
    sites: Annotated[
        str,
        typer.Option(
            "--sites",
            help="latent, block:8, block:4,8,14, block:all, or several joined with + "
            "(block:L is the output of decoder block L, 0-based).",
        ),
    ] = "latent+block:all",
    schedule: Annotated[
        str,
        typer.Option(
            "--schedule",
            help="Comma-separated: prefix, suffix, single, keep-one, all, early-exit, or "
            "position sets like {0,2,4} / positions:0,2.",
        ),
    ] = "prefix,single",
    ablation: Annotated[
        str,
        typer.Option("--ablation", help="Comma-separated: zero, mean, mean-pooled, noise, patch."),
    ] = "zero",
    only_baseline_correct: Annotated[
        bool,
        typer.Option(
            "--only-baseline-correct",
            help="Run conditions only on problems the baseline answers correctly (the "
            "others are still recorded, so baseline accuracy stays honest).",
        ),
    ] = False,
    batch_size: BatchSizeOpt = 128,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="Longest answer to decode.")
    ] = 32,
    seed: Annotated[int, typer.Option("--seed", help="Sampling, noise and reference seed.")] = 0,
    strata: Annotated[
        str, typer.Option("--strata", help="Difficulty strata by step count.")
    ] = "1,2,3,4,5+",
    mean_reference: Annotated[
        int,
        typer.Option("--mean-reference", help="Problems averaged over for --ablation mean."),
    ] = 100,
    threads: ThreadsOpt = DEFAULT_THREADS,
    progress: ProgressOpt = True,
) -> None:
    """Ablate continuous thoughts at chosen sites and positions and record how answers
    change; results stream to OUT/results.jsonl, statistics go to OUT/summary.json."""
    config = ImportanceConfig(
        data=data,
        sites=sites,
        schedules=schedule,
        ablations=ablation,
        validate=validate,
        all_problems=all_problems,
        limit=limit,
        only_baseline_correct=only_baseline_correct,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        seed=seed,
        strata=strata,
        mean_reference=mean_reference,
    )
    if validate is not None and all_problems:
        fail("--validate and --all exclude each other; give one of them")
    check_output(out, "--out", folder=True)
    ranks, choice = start_ranks(choice, threads)
    codi = choice.load()
    streaming_to(
        shard_path(out / "results.jsonl", ranks.rank, ranks.world_size), resume=RESUME_HINT
    )
    try:
        result = run_importance(
            codi, config, out, model_spec=model, progress=progress and ranks.is_main, ranks=ranks
        )
    except (ImportanceInputError, RankFailedError) as error:
        fail(str(error))
    finally:
        ranks.stop()
    shard = f"rank {ranks.rank} of {ranks.world_size}: " if ranks.is_sharded else ""
    typer.echo(shard + _describe(result))
    if not ranks.is_main:  # rank 0 merged the shards and reports for every rank
        return
    _warn_shortfall(out)
    if result.baseline_mismatches:
        typer.echo(
            f"Warning: on {result.baseline_mismatches} problems the empty intervention did "
            "not reproduce the baseline answer (numerical differences between batches).",
            err=True,
        )
    _statistics(out)
    report = _report(out, codi)
    if report is not None:
        typer.echo(f"report: {report} (open it in a browser)")
    typer.echo(f"Positions: {POSITIONS_NOTE}")
    typer.echo(f"Run folder {out}:")
    typer.echo("\n".join(_listing(out)))


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's runs.")] = Path(
        "thoughtscope-demo"
    ),
    batch_size: BatchSizeOpt = 256,
    threads: ThreadsOpt = DEFAULT_THREADS,
    progress: ProgressOpt = True,
) -> None:
    """The main job on the shipped toy model: a stratified validation of 100 synthetic
    test problems and a sweep of 300, prefix and single schedules at every site, zero
    ablation, then statistics; a few minutes on a CPU."""
    from thoughtscope.model import load_model

    set_threads(threads)
    check_output(out, "--out", folder=True)
    try:
        codi = load_model("toy")
    except FileNotFoundError as error:
        typer.echo(f"Error: the demo needs the toy model: {error}", err=True)
        raise typer.Exit(code=1) from None
    base = ImportanceConfig(
        data=DEMO_DATA,
        sites="latent+block:all",
        schedules="prefix,single",
        ablations="zero",
        batch_size=batch_size,
        max_new_tokens=12,
    )
    runs = {
        "validation": replace(base, validate=100),
        "sweep": replace(base, all_problems=True),
    }
    # The tables run to hundreds of lines: the demo says where they are instead.
    for label, config in runs.items():
        run_dir = out / label
        typer.echo(f"== {label}: {run_dir}")
        streaming_to(run_dir / "results.jsonl", resume=RESUME_HINT)
        try:
            result = run_importance(codi, config, run_dir, model_spec="toy", progress=progress)
        except ImportanceInputError as error:
            fail(str(error))
        typer.echo(_describe(result))
        summary = _statistics(run_dir, tables=False)
        typer.echo(f"statistics: {summary} (print them with `thoughtscope stats {run_dir}`)")
        report = _report(run_dir, codi)
        if report is not None:
            typer.echo(f"report: {report} (open it in a browser)")
    typer.echo(f"Positions: {POSITIONS_NOTE}")
