"""``thoughtscope attention``: which layers and heads read which continuous thought."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from thoughtscope.analyses.attention import run_attention
from thoughtscope.cli.app import app, fail
from thoughtscope.cli.launch import DEFAULT_THREADS, ProgressOpt, ThreadsOpt, start_ranks
from thoughtscope.cli.options import (
    LimitOpt,
    ModelChoice,
    ModelOpt,
    RunFolderOpt,
    check_output,
    model_options,
)
from thoughtscope.cli.probe import write_run_report
from thoughtscope.engine.distributed import RankFailedError
from thoughtscope.results.store import ResultStoreError


@app.command("attention")
@model_options
def attention_command(
    choice: ModelChoice,
    data: Annotated[str, typer.Option("--data", help="Problems (any --data source).")],
    out: RunFolderOpt,
    model: ModelOpt = "toy",
    limit: LimitOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Problems per batch.")] = 64,
    answer_tokens: Annotated[
        int, typer.Option("--answer-tokens", help="Answer tokens whose attention is read.")
    ] = 3,
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples.")] = 1000,
    threads: ThreadsOpt = DEFAULT_THREADS,
    progress: ProgressOpt = True,
) -> None:
    """Attention of each thought step and answer token on the question, <bot> and each
    thought, per layer and head (baseline run, eager attention); writes
    OUT/attention.safetensors and OUT/attention.jsonl (means with 95% intervals)."""
    from thoughtscope.statistics.attention import write_attention_statistics

    check_output(out, "--out", folder=True)
    if batch_size < 1:
        fail(f"--batch-size must be 1 or more, got {batch_size}")
    if answer_tokens < 0:
        fail(f"--answer-tokens must be 0 or more, got {answer_tokens}")
    ranks, choice = start_ranks(choice, threads)
    try:
        loaded = choice.load()
        result = run_attention(
            loaded,
            data,
            out,
            limit=limit,
            batch_size=batch_size,
            answer_tokens=answer_tokens,
            model_spec=model,
            progress=progress,
            ranks=ranks,
        )
    except (ValueError, ResultStoreError, RankFailedError) as error:
        fail(str(error))
    finally:
        ranks.stop()
    if ranks.is_sharded and not ranks.is_main:
        typer.echo(f"rank {ranks.rank} of {ranks.world_size}: done; rank 0 writes the statistics")
        return
    path = write_attention_statistics(out, n_boot=n_boot)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    thoughts = [
        r for r in rows if r["source"].startswith("thought:") and r["query"] != r["source"][8:]
    ]
    reused = f" ({result.n_batches_reused} batches reused)" if result.n_batches_reused else ""
    typer.echo(f"{result.n_problems} problems{reused}; attention masses: {result.path}")
    for row in sorted(thoughts, key=lambda r: -r["mean"])[:5]:
        typer.echo(
            f"  layer {row['layer']} head {row['head']}: {row['query']} reads "
            f"{row['source']} with mass {row['mean']:.3f} {row['ci']}"
        )
    typer.echo(f"statistics: {path}")
    report = write_run_report(out)
    if report is not None:
        typer.echo(f"report: {report} (open it in a browser)")
