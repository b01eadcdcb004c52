"""``thoughtscope probe``: what the thoughts hold (linear probes and the numeric lens)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from thoughtscope.analyses.probes import ProbeConfig, ProbeInputError, run_probes
from thoughtscope.cli.app import app, fail
from thoughtscope.cli.launch import DEFAULT_THREADS, ProgressOpt, ThreadsOpt, start_ranks
from thoughtscope.cli.options import (
    LimitOpt,
    ModelChoice,
    ModelOpt,
    RunFolderOpt,
    check_output,
    model_options,
    parse_batch_size,
)
from thoughtscope.engine.distributed import RankFailedError
from thoughtscope.results.store import ResultStoreError


@app.command("probe")
@model_options
def probe_command(
    choice: ModelChoice,
    data: Annotated[str, typer.Option("--data", help="Problems with <<a op b=c>> steps.")],
    out: RunFolderOpt,
    model: ModelOpt = "toy",
    sites: Annotated[
        str, typer.Option("--sites", help="latent, block:L, block:all, joined with +.")
    ] = "latent+block:all",
    targets: Annotated[
        str,
        typer.Option(
            "--targets", help="final_answer, step_count, step_result:K or step_result:all."
        ),
    ] = "final_answer,step_result:all,step_count",
    folds: Annotated[int, typer.Option("--folds", help="Folds, split by problem.")] = 5,
    max_classes: Annotated[
        int, typer.Option("--max-classes", help="More distinct values: regression.")
    ] = 40,
    c: Annotated[float, typer.Option("--c", help="Inverse L2 strength of the probes.")] = 1.0,
    tol: Annotated[
        float, typer.Option("--tol", help="Stopping tolerance of the logistic probes.")
    ] = 1e-3,
    min_problems: Annotated[
        int, typer.Option("--min-problems", help="Skip cells with fewer problems.")
    ] = 20,
    limit: LimitOpt = None,
    batch_size: Annotated[str, typer.Option("--batch-size", help="Rows, or auto.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Control-task and bootstrap seed.")] = 0,
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples.")] = 1000,
    lens_top_k: Annotated[
        int, typer.Option("--lens-top-k", help="Tokens searched for a numeral by the lens.")
    ] = 20,
    threads: ThreadsOpt = DEFAULT_THREADS,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            help="Worker processes fitting probe cells at once (same results for any "
            "number; one core each).",
        ),
    ] = 1,
    progress: ProgressOpt = True,
) -> None:
    """Linear probes (final answer, each step's result, step count) and a numeric logit
    lens at every site and position; writes OUT/probes.jsonl and OUT/lens.jsonl."""
    from thoughtscope.statistics.probes import write_lens_statistics, write_probe_statistics

    check_output(out, "--out", folder=True)
    config = ProbeConfig(
        data=data,
        sites=sites,
        targets=targets,
        folds=folds,
        max_classes=max_classes,
        c=c,
        tol=tol,
        min_problems=min_problems,
        limit=limit,
        batch_size=parse_batch_size(batch_size),
        seed=seed,
        n_boot=n_boot,
        lens_top_k=lens_top_k,
    )
    ranks, choice = start_ranks(choice, threads)
    try:
        loaded = choice.load()
        result = run_probes(
            loaded, config, out, model_spec=model, progress=progress, jobs=jobs, ranks=ranks
        )
    except ProbeInputError as error:
        fail(str(error))
    except (ResultStoreError, RankFailedError) as error:
        fail(str(error))
    finally:
        ranks.stop()
    if ranks.is_sharded and not ranks.is_main:
        typer.echo(
            f"rank {ranks.rank} of {ranks.world_size}: {result.n_fitted} probe cells fitted "
            f"in {result.seconds_probes:.1f} s; rank 0 writes the statistics and the report"
        )
        return
    probes = write_probe_statistics(out, n_boot=n_boot, seed=seed)
    lens = write_lens_statistics(out, n_boot=n_boot, seed=seed)
    resumed = (
        f", {result.n_batches_skipped} state batches reused" if result.n_batches_skipped else ""
    )
    typer.echo(
        f"{result.n_problems} problems ({result.n_left_out} left out: unreadable steps){resumed}; "
        f"states {result.seconds_states:.1f} s, {result.n_cells} probe cells "
        f"{result.seconds_probes:.1f} s"
    )
    rows = [json.loads(line) for line in probes.read_text(encoding="utf-8").splitlines()]
    best: dict[str, dict[str, object]] = {}
    for row in rows:
        if row["target"] not in best or row["selectivity"] > best[row["target"]]["selectivity"]:  # type: ignore[operator]
            best[row["target"]] = row
    for target, row in best.items():
        typer.echo(
            f"  {target}: most selective at {row['site']} position {row['position']}: "
            f"accuracy {row['accuracy']} {row['accuracy_ci']}, control "
            f"{row['control_accuracy']}, majority {row['majority']} (n={row['n']})"
        )
    typer.echo(f"probes: {probes}\nnumeric lens: {lens}")
    report = write_run_report(out)
    if report is not None:
        typer.echo(f"report: {report} (open it in a browser)")


def write_run_report(run_dir: Path) -> Path | None:
    """The folder's HTML report after a probe or attention run: the probes-and-attention
    page for a folder without importance results, else the full report (which has the
    section); ``None`` when the importance run cannot be reported yet."""
    from thoughtscope.report import ReportInputError, write_report
    from thoughtscope.report.probes import is_held_run, write_held_report

    if is_held_run(run_dir):
        return write_held_report(run_dir)
    try:
        return Path(write_report(run_dir))
    except ReportInputError:
        return None


def demo_held(model: object, run_dir: Path, *, progress: bool) -> None:
    """The demo's small probe and attention runs in ``run_dir`` (before its report):
    probes of the final answer, step 1's result and the step count at the latent site
    and the last block, and attention to thoughts."""
    from thoughtscope.analyses.attention import run_attention
    from thoughtscope.model.thought_model import ThoughtModel
    from thoughtscope.statistics.attention import write_attention_statistics
    from thoughtscope.statistics.probes import write_lens_statistics, write_probe_statistics

    assert isinstance(model, ThoughtModel)
    from thoughtscope.results.store import read_manifest

    data = read_manifest(run_dir)["data"]["spec"]
    last = model.num_layers - 1
    config = ProbeConfig(
        data=data,
        sites=f"latent+block:{last}",
        targets="final_answer,step_result:1,step_count",
        n_boot=500,
    )
    try:
        result = run_probes(model, config, run_dir, model_spec="toy", progress=progress)
    except ProbeInputError as error:
        fail(str(error))
    write_probe_statistics(run_dir, n_boot=500)
    write_lens_statistics(run_dir, n_boot=500)
    typer.echo(f"probes: {result.n_cells} cells in {result.seconds_probes:.1f} s")
    run_attention(model, data, run_dir)
    write_attention_statistics(run_dir, n_boot=500)
    typer.echo(f"attention: {run_dir / 'attention.jsonl'}")
