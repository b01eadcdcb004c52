"""Options shared by every command that loads a model or reads problems."""

from __future__ import annotations

import functools
import inspect
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from thoughtscope.cli.app import UsageError, fail
from thoughtscope.model import OfficialOptions, ThoughtModel, load_model
from thoughtscope.model.codi import resolve_device, resolve_dtype
from thoughtscope.model.families import family_names
from thoughtscope.problems import Problem, ProblemDataError, load_problems

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="`toy` or `toy-coconut` (shipped), a thoughtscope model folder, an official "
        "CODI checkpoint folder (with --base-model and --preset), or a published Coconut "
        "checkpoint file (with --family coconut --base-model).",
    ),
]
BaseModelOpt = Annotated[
    str | None,
    typer.Option("--base-model", help="Local folder of the base LM of an official checkpoint."),
]
PresetOpt = Annotated[
    str | None,
    typer.Option("--preset", help="codi-gpt2 or codi-llama3.2-1b (published settings)."),
]


def known_family(value: str | None) -> str | None:
    if value is not None and value not in family_names():
        raise UsageError(
            f"--family {value!r} is unknown; choose one of {', '.join(family_names())}",
            param_hint="--family",
        )
    return value


FamilyOpt = Annotated[
    str | None,
    typer.Option(
        "--family",
        help="Thought family of --model (codi, coconut, …); default: read from a "
        "thoughtscope model folder, else codi.",
        callback=known_family,
    ),
]
LoraAlphaOpt = Annotated[int | None, typer.Option("--lora-alpha", help="Overrides the preset.")]
NumLatentOpt = Annotated[int | None, typer.Option("--num-latent", help="Overrides the preset.")]
RemoveEosOpt = Annotated[
    bool | None,
    typer.Option("--remove-eos/--keep-eos", help="Overrides the preset.", show_default=False),
]
UnmergedOpt = Annotated[
    bool, typer.Option("--unmerged-lora", help="Keep LoRA unmerged (slower; for checks).")
]
AllowDownloadOpt = Annotated[
    bool,
    typer.Option("--allow-download", help="Let --base-model be a hub id (downloads it)."),
]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32, bfloat16 or float16.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")]
DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        help="Problems: synthetic[:SPLIT][:seed=S][:n=N]..., a GSM8K .jsonl, a .json/.csv "
        "file, or hf:openai/gsm8k (see `thoughtscope data --help`).",
    ),
]
SkipBadOpt = Annotated[
    bool, typer.Option("--skip-bad", help="Skip malformed rows (reported) instead of stopping.")
]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="Use the first N problems.", min=1)]


def positive_batch_size(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise UsageError(f"--batch-size must be 1 or more, got {value}", param_hint="--batch-size")
    return value


BATCH_SIZE_HELP = "Rows (problem x condition) per forward pass."
BatchSizeOpt = Annotated[
    int, typer.Option("--batch-size", help=BATCH_SIZE_HELP, callback=positive_batch_size)
]
"""``--batch-size`` of every command, with one message for a bad value."""
MaxNewTokensOpt = Annotated[
    int, typer.Option("--max-new-tokens", help="Longest answer to decode.", min=1)
]
SkipLongOpt = Annotated[
    bool,
    typer.Option(
        "--skip-long",
        help="Leave out (and list) problems longer than the model's context, instead of stopping.",
    ),
]


@dataclass(frozen=True)
class ModelChoice:
    """Everything that says which model to load and how."""

    model: str
    family: str | None = None
    base_model: str | None = None
    preset: str | None = None
    lora_alpha: int | None = None
    num_latent: int | None = None
    remove_eos: bool | None = None
    unmerged_lora: bool = False
    allow_download: bool = False
    dtype: str = "float32"
    device: str = "cpu"

    def load(self) -> ThoughtModel:
        """Loads the model, turning loading errors into one-line usage errors."""
        official = OfficialOptions(
            base_model=self.base_model,
            preset=self.preset,
            lora_alpha=self.lora_alpha,
            num_latent=self.num_latent,
            remove_eos=self.remove_eos,
            merge_lora=not self.unmerged_lora,
            allow_hub=self.allow_download,
            family=self.family,
        )
        try:
            return load_model(self.model, official=official, dtype=self.dtype, device=self.device)
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(str(error), param_hint="--model") from None

    def check(self) -> None:
        """Refuses a bad ``--device`` or ``--dtype`` before any data or model is read."""
        try:
            resolve_dtype(self.dtype)
        except ValueError as error:
            raise UsageError(str(error), param_hint="--dtype") from None
        try:
            resolve_device(self.device)
        except ValueError as error:
            raise UsageError(str(error), param_hint="--device") from None
        except RuntimeError:  # torch cannot parse it
            raise UsageError(
                f"{self.device!r} is not a device; use cpu, cuda, cuda:N, mps or auto",
                param_hint="--device",
            ) from None


def read_problems(spec: str, *, skip_bad: bool = False, limit: int | None = None) -> list[Problem]:
    """Loads ``--data``, reporting skipped rows; refuses an empty result."""
    try:
        loaded = load_problems(spec, skip_bad=skip_bad)
    except (ProblemDataError, FileNotFoundError, ValueError) as error:
        raise UsageError(str(error), param_hint="--data") from None
    if loaded.skipped:
        typer.echo(f"skipped {len(loaded.skipped)} bad rows of {spec}", err=True)
        for bad in loaded.skipped[:5]:
            typer.echo(f"  {bad}", err=True)
    problems = loaded.problems[:limit] if limit else loaded.problems
    if not problems:
        raise UsageError(f"{spec} holds no problems", param_hint="--data")
    return problems


def fitting_problems(
    codi: ThoughtModel, problems: Sequence[Problem], *, max_new_tokens: int, skip_long: bool
) -> list[Problem]:
    """``problems`` that fit in the model's context; the others stop the command with
    their ids and lengths, or with ``--skip-long`` are left out and listed on stderr."""
    from thoughtscope.analyses.inputs import check_prompt_lengths

    check = check_prompt_lengths(codi, problems, max_new_tokens=max_new_tokens)
    if not check.too_long:
        return list(problems)
    long = check.too_long
    shown = ", ".join(p.describe() for p in long[:3]) + (
        f" and {len(long) - 3} more" if len(long) > 3 else ""
    )
    needs = (
        f"the model reads at most {check.limit} positions and each run needs "
        f"{check.after_question} beyond the question (thoughts, closing ids, --max-new-tokens)"
    )
    if not skip_long:
        fail(
            f"{len(long)} of {len(problems)} problems are too long: {shown}; {needs}. "
            "Pass --skip-long to leave them out (they are listed), or a smaller "
            "--max-new-tokens",
            "--data",
        )
    typer.echo(
        f"skipped {len(long)} of {len(problems)} problems too long for the model ({needs}):",
        err=True,
    )
    for prompt in long:
        typer.echo(f"  {prompt.describe()}", err=True)
    kept = check.fitting(problems)
    if not kept:
        fail(f"all {len(problems)} problems are too long for the model; {needs}", "--data")
    return kept


def check_output(path: Path, option: str, *, folder: bool = False) -> None:
    """Refuses an output that cannot be written (under a file, in a folder without write
    permission, a folder where a file is wanted or the reverse), before any model work.

    Creates nothing: the command makes the folders when it writes.
    """
    if str(path) == "-":
        return
    target = Path(path).absolute()
    if target.exists():
        if folder and not target.is_dir():
            fail(f"{path} is a file; give a folder (it is created if missing)", option)
        if not folder and target.is_dir():
            fail(f"{path} is a folder; give a file path", option)
    nearest = target if folder else target.parent
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir():
        fail(f"{path} lies under {nearest}, which is a file, not a folder", option)
    try:
        with tempfile.TemporaryFile(dir=nearest):
            pass
        if target.is_file():
            with target.open("ab"):
                pass
    except OSError as error:
        fail(
            f"cannot write {path} ({error.strerror or error} in {nearest}); choose a place "
            "you can write to",
            option,
        )


_LOADING_OPTIONS: dict[str, tuple[Any, Any]] = {
    "family": (FamilyOpt, None),
    "base_model": (BaseModelOpt, None),
    "preset": (PresetOpt, None),
    "lora_alpha": (LoraAlphaOpt, None),
    "num_latent": (NumLatentOpt, None),
    "remove_eos": (RemoveEosOpt, None),
    "unmerged_lora": (UnmergedOpt, False),
    "allow_download": (AllowDownloadOpt, False),
    "dtype": (DtypeOpt, "float32"),
    "device": (DeviceOpt, "cpu"),
}
assert set(_LOADING_OPTIONS) == {f.name for f in fields(ModelChoice)} - {"model"}


def model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Gives a command the options that say how to load ``--model``.

    The command declares ``model`` (its own ``--model``, with its own default) and
    ``choice: ModelChoice``; the wrapper adds ``--family``, ``--base-model``, ``--preset``,
    ``--lora-alpha``, ``--num-latent``, ``--remove-eos/--keep-eos``, ``--unmerged-lora``,
    ``--allow-download``, ``--dtype`` and ``--device`` to the command line and hands the
    command one :class:`ModelChoice` built from them, after checking ``--device`` and
    ``--dtype`` (so a typo stops the command before anything is read).
    """
    signature = inspect.signature(command, eval_str=True)
    kept = [p for p in signature.parameters.values() if p.name != "choice"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=option)
        for name, (option, default) in _LOADING_OPTIONS.items()
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        loading = {name: kwargs.pop(name) for name in _LOADING_OPTIONS}
        choice = ModelChoice(model=kwargs["model"], **loading)
        choice.check()
        return command(**kwargs, choice=choice)

    parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept] + added
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return wrapper
