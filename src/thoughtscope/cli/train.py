"""``thoughtscope train`` and ``thoughtscope train-toy``."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from thoughtscope.cli.app import UsageError, app
from thoughtscope.cli.launch import DEFAULT_THREADS, ThreadsOpt, set_threads
from thoughtscope.cli.options import check_output, positive_batch_size

SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed of the run (init and data).")]
EvalNOpt = Annotated[
    int, typer.Option("--eval-n", help="Held-out synthetic test problems to evaluate.", min=1)
]
EvalSeedOpt = Annotated[int, typer.Option("--eval-seed", help="Seed of the test problems.")]


def _load_config(path: Path | None) -> Any:
    from thoughtscope.training.config import TrainConfig

    if path is None:
        return TrainConfig()
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UsageError(f"--config {path}: cannot read it as JSON ({error})") from None
    data = data.get("train", data)  # accept a train_config.json of an earlier run
    try:
        return TrainConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise UsageError(f"--config {path}: {error}") from None


@app.command("train")
def train_command(
    out: Annotated[Path, typer.Option("--out", help="Run folder: logs, checkpoint, model/.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Start from a thoughtscope model folder (`toy` for the shipped toy), or "
            "`new-toy` for a fresh toy-sized model.",
        ),
    ] = None,
    base_model: Annotated[
        str | None,
        typer.Option("--base-model", help="Start from a pretrained HF causal LM folder."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="JSON of TrainConfig fields (or a train_config.json)."),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option("--data", help="Training problems: `synthetic` or any --data spec."),
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Optimizer steps.", min=1)] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", help="Problems per optimizer step.", callback=positive_batch_size
        ),
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    seed: SeedOpt = None,
    lora_rank: Annotated[
        int, typer.Option("--lora-rank", help="Train LoRA adapters of this rank (0: all).")
    ] = 0,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha")] = 32,
    num_latent: Annotated[int, typer.Option("--num-latent", help="For --base-model.")] = 6,
    remove_eos: Annotated[
        bool, typer.Option("--remove-eos/--keep-eos", help="For --base-model.")
    ] = True,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "cpu",
    resume: Annotated[
        bool, typer.Option("--resume/--restart", help="Continue from OUT/checkpoint.pt.")
    ] = True,
    threads: ThreadsOpt = DEFAULT_THREADS,
) -> None:
    """Train a CODI model (teacher, latent student, distillation) and save OUT/model."""
    set_threads(threads)
    check_output(out, "--out", folder=True)
    import torch

    from thoughtscope.model import CodiModel, load_model
    from thoughtscope.training.models import codi_from_pretrained
    from thoughtscope.training.toy import new_toy_model
    from thoughtscope.training.trainer import train

    settings = _load_config(config)
    overrides = {
        "data": data,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
    }
    try:
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as error:
        raise UsageError(str(error)) from None
    if (model is None) == (base_model is None):
        raise UsageError("give exactly one of --model (folder, toy, new-toy) or --base-model")
    torch.manual_seed(settings.seed)
    codi: CodiModel
    if base_model is not None:
        codi = codi_from_pretrained(
            base_model,
            num_latent=num_latent,
            remove_eos=remove_eos,
            lora_rank=lora_rank,
            lora_alpha=lora_alpha,
            device=device,
        )
    elif model == "new-toy":
        codi = new_toy_model(seed=settings.seed).to(device)
    else:
        try:
            loaded = load_model(str(model), device=device)
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(f"--model {model}: {error}") from None
        if not isinstance(loaded, CodiModel):
            raise UsageError(
                f"--model {model} holds a {loaded.family.name} model; `train` trains CODI "
                "(a Coconut toy: `thoughtscope train-toy --family coconut`)"
            )
        codi = loaded
    began = time.perf_counter()
    train(codi, settings, out, resume=resume)
    typer.echo(
        f"trained {settings.steps} steps in {time.perf_counter() - began:.0f} s -> {out / 'model'}"
    )


@app.command("train-toy")
def train_toy_command(
    out: Annotated[
        Path | None, typer.Option("--out", help="Run folder; the model lands in OUT/model.")
    ] = None,
    seed: SeedOpt = None,
    eval_only: Annotated[
        str | None,
        typer.Option(
            "--eval-only",
            help="Do not train: evaluate this model (`toy` or a folder) and print the table.",
        ),
    ] = None,
    evaluate_after: Annotated[
        bool, typer.Option("--eval/--no-eval", help="Evaluate the model after training.")
    ] = True,
    eval_n: EvalNOpt = 1000,
    eval_seed: EvalSeedOpt = 0,
    teacher: Annotated[
        bool, typer.Option("--teacher/--no-teacher", help="Also evaluate the explicit-CoT path.")
    ] = True,
    family: Annotated[
        str,
        typer.Option(
            "--family",
            help="codi (the shipped `toy`) or coconut (the shipped `toy-coconut`, trained "
            "by the published multi-stage curriculum).",
        ),
    ] = "codi",
) -> None:
    """Reproduce a shipped toy model (CODI or Coconut) from scratch (CPU, under an hour),
    or evaluate a model on held-out synthetic problems by number of steps."""
    from thoughtscope.model import load_model
    from thoughtscope.training.toy import TOY_SEED, train_toy

    if family not in ("codi", "coconut"):
        raise UsageError(f"--family {family!r}: choose codi or coconut", param_hint="--family")

    if eval_only is not None:
        try:
            model = load_model(eval_only)
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(f"--eval-only {eval_only}: {error}") from None
        _print_evaluation(model, eval_n, eval_seed, teacher)
        return
    if out is None:
        raise UsageError("--out DIR is required to train (or pass --eval-only MODEL)")
    check_output(out, "--out", folder=True)
    began = time.perf_counter()
    if family == "coconut":
        from thoughtscope.training.coconut import train_toy_coconut

        coconut = train_toy_coconut(out, seed=TOY_SEED if seed is None else seed)
        typer.echo(f"trained in {time.perf_counter() - began:.0f} s -> {out / 'model'}")
        if evaluate_after:
            _print_evaluation(coconut, eval_n, eval_seed, teacher=False)
        return
    model = train_toy(out, seed=TOY_SEED if seed is None else seed)
    typer.echo(f"trained in {time.perf_counter() - began:.0f} s -> {out / 'model'}")
    if evaluate_after:
        _print_evaluation(model, eval_n, eval_seed, teacher)


def _print_evaluation(model: Any, n: int, seed: int, teacher: bool) -> None:
    from thoughtscope.problems.synthetic import generate
    from thoughtscope.training.evaluate import evaluate

    problems = generate("test", seed, n, style="compact")
    typer.echo(f"data: synthetic:test:seed={seed}:n={n}:style=compact (greedy, % correct)")
    report = evaluate(model, problems, teacher=teacher, progress=True)
    typer.echo(report.table())
