"""``thoughtscope effects``: how editing one thought changes every later thought."""

from __future__ import annotations

from typing import Annotated

import typer

from thoughtscope.analyses.effects import EffectsConfig, run_effects
from thoughtscope.cli.app import app
from thoughtscope.cli.causal import run_into, summarise, tell_rows
from thoughtscope.cli.launch import DEFAULT_THREADS, ProgressOpt, ThreadsOpt
from thoughtscope.cli.options import (
    DataOpt,
    LimitOpt,
    MaxNewTokensOpt,
    ModelChoice,
    ModelOpt,
    RunFolderOpt,
    model_options,
)


@app.command("effects")
@model_options
def effects_command(
    choice: ModelChoice,
    data: DataOpt,
    out: RunFolderOpt,
    sites: Annotated[
        str,
        typer.Option("--sites", help="latent, block:L, block:L1,L2, block:all, joined with +."),
    ] = "latent",
    ablations: Annotated[
        str,
        typer.Option(
            "--ablation",
            help="Comma-separated edits of thought i: zero, mean, mean-pooled, noise, patch "
            "(the state of a donor problem).",
        ),
    ] = "zero",
    limit: LimitOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Noise, mean and donor seed.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Problems per batch.")] = 16,
    max_new_tokens: MaxNewTokensOpt = 16,
    model: ModelOpt = "toy",
    threads: ThreadsOpt = DEFAULT_THREADS,
    progress: ProgressOpt = True,
) -> None:
    """Edit each thought i in turn and measure the change of every later thought j
    (cosine distance, relative L2, KL of its logit lens) and of the answer; rows go to
    OUT/results.jsonl, the graph with intervals to OUT/effects_summary.json and a figure
    to OUT/report.html."""
    config = EffectsConfig(
        data=data,
        sites=sites,
        ablations=ablations,
        limit=limit,
        seed=seed,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )
    result, ranks = run_into(
        out, choice, threads, run_effects, config, model_spec=model, progress=progress
    )
    if tell_rows(ranks, result, f"{result.n_problems} problems"):
        summarise(out)
