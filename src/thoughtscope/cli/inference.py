"""``thoughtscope answer`` and ``thoughtscope thoughts``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from thoughtscope.analyses.answers import answer_problems
from thoughtscope.analyses.thoughts import extract_thoughts
from thoughtscope.cli.app import UsageError, app, streaming_to
from thoughtscope.cli.options import (
    BatchSizeOpt,
    DataOpt,
    LimitOpt,
    MaxNewTokensOpt,
    ModelChoice,
    ModelOpt,
    SkipBadOpt,
    SkipLongOpt,
    check_output,
    fitting_problems,
    model_options,
    read_problems,
)


@app.command("answer")
@model_options
def answer_command(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Answers as JSON lines.")],
    choice: ModelChoice,
    model: ModelOpt = "toy",
    batch_size: BatchSizeOpt = 32,
    max_new_tokens: MaxNewTokensOpt = 64,
    limit: LimitOpt = None,
    skip_bad: SkipBadOpt = False,
    skip_long: SkipLongOpt = False,
) -> None:
    """Answer every problem through the continuous thoughts and score the answers.

    Writes one JSON line per problem: id, question, expected, steps, output, predicted,
    correct, finished (stopped before --max-new-tokens), clean (one well-formed number;
    see thoughtscope.problems.scoring), n_tokens.
    """
    check_output(out, "--out")
    problems = read_problems(data, skip_bad=skip_bad, limit=limit)
    codi = choice.load()
    problems = fitting_problems(codi, problems, max_new_tokens=max_new_tokens, skip_long=skip_long)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_correct = 0
    streaming_to(out, resume="run the same command again to answer them all")
    with out.open("w") as handle:
        for row in answer_problems(
            codi, problems, batch_size=batch_size, max_new_tokens=max_new_tokens, progress=True
        ):
            handle.write(json.dumps(row) + "\n")
            n_correct += row["correct"]
    typer.echo(
        f"accuracy {n_correct}/{len(problems)} = {100 * n_correct / len(problems):.1f}%  -> {out}"
    )


@app.command("thoughts")
@model_options
def thoughts_command(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="safetensors file for thoughts and states.")],
    choice: ModelChoice,
    model: ModelOpt = "toy",
    layers: Annotated[
        str, typer.Option("--layers", help="Blocks to keep: all, or e.g. 4,8,14 (0-based).")
    ] = "all",
    top_k: Annotated[int, typer.Option("--top-k", help="Tokens per decoded state.", min=1)] = 5,
    decoded: Annotated[
        Path | None,
        typer.Option("--decoded", help="Also write top-k decoded tokens as JSON lines here."),
    ] = None,
    batch_size: BatchSizeOpt = 32,
    max_new_tokens: MaxNewTokensOpt = 64,
    limit: LimitOpt = None,
    skip_bad: SkipBadOpt = False,
    skip_long: SkipLongOpt = False,
) -> None:
    """Extract the continuous thoughts and every chosen block's hidden state at every
    latent position (bot, thoughts 0…N-1, eot); optionally decode them (logit lens)."""
    check_output(out, "--out")
    if decoded is not None:
        check_output(decoded, "--decoded")
    problems = read_problems(data, skip_bad=skip_bad, limit=limit)
    codi = choice.load()
    problems = fitting_problems(codi, problems, max_new_tokens=max_new_tokens, skip_long=skip_long)
    if layers == "all":
        chosen = None
    else:
        try:
            chosen = [int(x) for x in layers.split(",")]
        except ValueError:
            raise UsageError(
                f"cannot read {layers!r}; use all or e.g. 4,8,14", param_hint="--layers"
            ) from None
    try:
        dump = extract_thoughts(
            codi,
            problems,
            layers=chosen,
            top_k=top_k if decoded else 0,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            progress=True,
        )
    except ValueError as error:
        raise UsageError(str(error), param_hint="--layers") from None
    dump.save(out)
    typer.echo(f"thoughts {tuple(dump.thoughts.shape)}, hidden {tuple(dump.hidden.shape)} -> {out}")
    if decoded:
        decoded.parent.mkdir(parents=True, exist_ok=True)
        with decoded.open("w") as handle:
            for i, (problem_id, answer, states) in enumerate(
                zip(dump.ids, dump.answers, dump.decoded, strict=True)
            ):
                row = {
                    "id": problem_id,
                    "answer": answer,
                    "n_thoughts": dump.n_thoughts[i],
                    "thoughts_capped": dump.capped[i],
                    "states": [asdict(s) for s in states],
                }
                if dump.mixtures[i]:
                    row["mixtures"] = [asdict(m) for m in dump.mixtures[i]]
                handle.write(json.dumps(row) + "\n")
        typer.echo(f"decoded top-{top_k} tokens -> {decoded}")
