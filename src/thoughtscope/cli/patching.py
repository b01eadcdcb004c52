"""``thoughtscope patch``: counterfactual activation patching between pairs of problems."""

from __future__ import annotations

from typing import Annotated

import typer

from thoughtscope.analyses.patching import PatchConfig, run_patching
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
from thoughtscope.results.store import read_manifest


@app.command("patch")
@model_options
def patch_command(
    choice: ModelChoice,
    data: DataOpt,
    out: RunFolderOpt,
    pairs: Annotated[
        str,
        typer.Option(
            "--pairs",
            help="counterfactual (each problem and its twin with one number changed), "
            "same-value[:K] / different-value[:K] (step K's result equal or not), random, "
            "self, or a .jsonl/.json/.csv file of target,source ids.",
        ),
    ] = "counterfactual",
    sites: Annotated[
        str,
        typer.Option("--sites", help="latent, block:L, block:L1,L2, block:all, joined with +."),
    ] = "latent",
    positions: Annotated[
        str,
        typer.Option(
            "--positions",
            help="Comma-separated: single (each position alone), all, prefix, suffix, or "
            "sets like {0,2}. Position 0 is the first continuous thought.",
        ),
    ] = "single,all",
    limit: LimitOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the pair rules.")] = 0,
    strata: Annotated[
        str, typer.Option("--strata", help="Difficulty strata by step count.")
    ] = "1,2,3,4,5+",
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            help="Pairs per batch: one forward pass holds the batch's targets and sources "
            "x (patches + sites + 1) rows (memory grows with it).",
        ),
    ] = 32,
    max_new_tokens: MaxNewTokensOpt = 16,
    model: ModelOpt = "toy",
    threads: ThreadsOpt = DEFAULT_THREADS,
    progress: ProgressOpt = True,
) -> None:
    """Patch a source problem's states into a target at chosen sites and positions and
    record whether the answer stays, becomes the source's, or changes otherwise; rows go
    to OUT/results.jsonl, statistics to OUT/patching_summary.json."""
    config = PatchConfig(
        data=data,
        pairs=pairs,
        sites=sites,
        positions=positions,
        limit=limit,
        seed=seed,
        strata=strata,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )
    result, ranks = run_into(
        out, choice, threads, run_patching, config, model_spec=model, progress=progress
    )
    if not tell_rows(ranks, result, f"{result.n_pairs} pairs"):
        return
    # The check of the whole run: every batch of every rank (and of earlier launches).
    checks = read_manifest(out)["checks"]
    rows, identical = checks["self_patch_rows"], checks["self_patch_identical"]
    same_answer = checks["self_patch_same_answer"]
    typer.echo(f"self-patch check: {identical} of {rows} rows identical to the baseline")
    if same_answer != rows:
        typer.echo(
            f"Warning: self-patching changed the answer on {rows - same_answer} rows; the "
            "patched states are not the model's own (see manifest.json, checks).",
            err=True,
        )
    elif identical != rows:
        typer.echo(
            f"Note: {rows - identical} self-patched rows gave the same answer but "
            "teacher-forced log-probabilities that differ by up to "
            f"{checks['self_patch_max_logprob_difference']:.1e} (rounding by batch position; "
            "see manifest.json, checks).",
            err=True,
        )
    summarise(out)
