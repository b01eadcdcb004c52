"""``thoughtscope importance`` (the step-importance sweep) and ``thoughtscope demo``."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import Annotated, Any, get_type_hints

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
    parse_batch_size,
)
from thoughtscope.engine.distributed import RankFailedError
from thoughtscope.results.shards import shard_path

DEMO_DATA = "synthetic:test:seed=0:n=300"
"""The demo's problems: 300 synthetic test problems (the toy model's own style)."""

RESUME_HINT = "run the same command again to continue (finished problems are kept)"


def _statistics(run_dir: Path, *, tables: bool = True) -> Path:
    """Writes the run's statistics files and its tidy table (``results.csv``), prints the
    statistics tables (unless ``tables`` is false); returns summary.json."""
    from thoughtscope.results.table import write_table
    from thoughtscope.statistics import format_tables, write_run_statistics

    summary_path = write_run_statistics(run_dir)
    write_table(run_dir)  # results.csv (and .parquet) beside results.jsonl
    if tables:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        typer.echo(format_tables(summary))
    return summary_path


def _report(run_dir: Path) -> Path | None:
    """Writes the run's HTML report (``None`` when the report module is not installed)."""
    try:
        from thoughtscope.report import write_report
    except ImportError:
        return None
    return Path(write_report(run_dir))


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


def _config_parameters() -> list[inspect.Parameter]:
    """One command-line option per :class:`ImportanceConfig` field, from its metadata."""
    hints = get_type_hints(ImportanceConfig)
    parameters = []
    for item in fields(ImportanceConfig):
        # --batch-size takes "auto" or a number: read as text, converted by parse_batch_size.
        kind = str if item.name == "batch_size" else hints[item.name]
        default: Any = inspect.Parameter.empty if item.default is MISSING else item.default
        option = typer.Option(item.metadata["option"], help=item.metadata["help"])
        parameters.append(
            inspect.Parameter(
                item.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[kind, option],
            )
        )
    return parameters


def config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Gives a command one option per :class:`ImportanceConfig` field (declared once, in
    the config's field metadata) and hands it ``config: ImportanceConfig`` built from them."""
    signature = inspect.signature(command, eval_str=True)
    kept = [p for p in signature.parameters.values() if p.name != "config"]
    names = [item.name for item in fields(ImportanceConfig)]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in names}
        values["batch_size"] = parse_batch_size(str(values["batch_size"]))
        return command(**kwargs, config=ImportanceConfig(**values))

    parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept]
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters + _config_parameters()
    )
    return wrapper


@app.command("importance")
@model_options
@config_options
def importance_command(
    choice: ModelChoice,
    config: ImportanceConfig,
    out: Annotated[Path, typer.Option("--out", help="Run folder (created; resumed if present).")],
    model: ModelOpt = "toy",
    threads: ThreadsOpt = DEFAULT_THREADS,
    progress: ProgressOpt = True,
) -> None:
    """Ablate continuous thoughts at chosen sites and positions and record how answers
    change; results stream to OUT/results.jsonl, statistics go to OUT/summary.json."""
    if config.validate is not None and config.all_problems:
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
    report = _report(out)
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
        if label == "sweep":  # what the thoughts hold: probes, numeric lens, attention
            from thoughtscope.cli.probe import demo_held

            demo_held(codi, run_dir, progress=progress)
            from thoughtscope.cli.causal_demo import demo_causal  # patch, effects, steer

            demo_causal(codi, run_dir, progress=progress)
        report = _report(run_dir)
        if report is not None:
            typer.echo(f"report: {report} (open it in a browser)")
    _coconut_side_by_side(out, runs["sweep"], progress, codi_run=out / "sweep")
    typer.echo(f"Positions: {POSITIONS_NOTE}")


def _coconut_side_by_side(
    out: Path, config: ImportanceConfig, progress: bool, codi_run: Path
) -> None:
    """The same sweep on the shipped toy Coconut (when installed), with the ``per-stage``
    schedule and only the latent site, then one line comparing the two families and
    their side-by-side page, ``OUT/compare/compare.html``."""
    from thoughtscope.model import load_model, toy_model_path

    if not (toy_model_path("coconut") / "thoughtscope.json").is_file():
        return
    run_dir = out / "coconut-sweep"
    config = replace(config, sites="latent", schedules="prefix,single,per-stage")
    streaming_to(run_dir / "results.jsonl", resume=RESUME_HINT)
    try:
        result = run_importance(
            load_model("toy-coconut"), config, run_dir, model_spec="toy-coconut", progress=progress
        )
    except ImportanceInputError as error:
        fail(str(error))
    _statistics(run_dir, tables=False)
    report = _report(run_dir)
    typer.echo(
        f"== coconut-sweep (toy-coconut, same problems): {run_dir}: {_describe(result)}"
        + (f"; report: {report}" if report is not None else "")
    )
    typer.echo(family_line({"codi": codi_run, "coconut": run_dir}))
    from thoughtscope.report.compare import write_comparison

    compare = write_comparison({"codi": codi_run, "coconut": run_dir}, out / "compare")
    typer.echo(f"compare: {compare} (the two families side by side)")


def family_line(runs: dict[str, Path]) -> str:
    """One line comparing runs: per run, the latent accuracy, the accuracy with every
    thought zeroed and with thought 0 alone zeroed at the latent site, in % (read from
    each run's records)."""
    from thoughtscope.results.store import read_records

    parts = []
    for label, run_dir in runs.items():
        records = read_records(run_dir / "results.jsonl")
        zeroed = [
            (tuple(c.condition.positions), c.correct)
            for r in records
            for c in r.conditions
            if c.condition.ablation == "zero" and c.condition.site == "latent"
        ]

        def percent(positions: tuple[int, ...], zeroed: list[tuple[tuple[int, ...], bool]]) -> str:
            hits = [ok for where, ok in zeroed if where == positions]
            return f"{100 * sum(hits) / len(hits):.1f}" if hits else "-"

        base = 100 * sum(r.baseline.correct for r in records) / max(1, len(records))
        every = tuple(range(max((len(where) for where, _ in zeroed), default=0)))
        parts.append(f"{label} {base:.1f} / {percent(every, zeroed)} / {percent((0,), zeroed)}")
    return (
        "families side by side (% correct: thoughts intact / all zeroed / thought 0 zeroed, "
        "latent site): " + ", ".join(parts)
    )
