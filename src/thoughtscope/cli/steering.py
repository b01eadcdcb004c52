"""``thoughtscope steer``: add or project out a direction, over a range of multiples."""

from __future__ import annotations

from typing import Annotated

import typer

from thoughtscope.analyses.steering import SteerConfig, run_steering
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


@app.command("steer")
@model_options
def steer_command(
    choice: ModelChoice,
    data: DataOpt,
    out: RunFolderOpt,
    target_value: Annotated[
        float, typer.Option("--target-value", help="The value steered towards (hits count it).")
    ],
    direction: Annotated[
        str,
        typer.Option(
            "--direction",
            help="mean-diff (states of problems whose --group value equals --target-value "
            "minus the others'), probe (a linear probe's direction telling those two groups "
            "apart, scaled to their mean difference along it) or a .safetensors file with "
            "'direction' and/or '<site>@<position>' vectors.",
        ),
    ] = "mean-diff",
    group: Annotated[
        str, typer.Option("--group", help="What mean-diff and probe group by: answer or step:K.")
    ] = "answer",
    reference: Annotated[
        str | None,
        typer.Option("--reference", help="Problems for mean-diff (default: --data)."),
    ] = None,
    sites: Annotated[
        str, typer.Option("--sites", help="latent, block:L, … joined with +.")
    ] = "latent",
    positions: Annotated[
        str, typer.Option("--positions", help="single, all, prefix, or sets like {0,2}.")
    ] = "all",
    modes: Annotated[str, typer.Option("--mode", help="add, project, or add,project.")] = "add",
    alphas: Annotated[
        str, typer.Option("--alphas", help="Comma-separated multiples (0 always runs).")
    ] = "0.5,1,2,4",
    limit: LimitOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Problems per batch.")] = 16,
    max_new_tokens: MaxNewTokensOpt = 16,
    model: ModelOpt = "toy",
    threads: ThreadsOpt = DEFAULT_THREADS,
    progress: ProgressOpt = True,
) -> None:
    """Steer the thoughts: add alpha times a direction (or project it out) at chosen sites
    and positions and trace answer changes and target-value hits over alpha."""
    config = SteerConfig(
        data=data,
        target_value=target_value,
        direction=direction,
        group=group,
        reference=reference,
        sites=sites,
        positions=positions,
        modes=modes,
        alphas=alphas,
        limit=limit,
        seed=seed,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )
    result, ranks = run_into(
        out, choice, threads, run_steering, config, model_spec=model, progress=progress
    )
    if tell_rows(ranks, result, f"{result.n_problems} problems"):
        summarise(out)
