"""Options shared by every command that loads a model or reads problems."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Annotated, Any

import typer

from thoughtscope.cli.app import UsageError
from thoughtscope.model import CodiModel, OfficialOptions, load_model
from thoughtscope.problems import Problem, ProblemDataError, load_problems

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="`toy` (shipped), a thoughtscope model folder, or an official CODI checkpoint "
        "folder (with --base-model and --preset).",
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
BatchSizeOpt = Annotated[
    int, typer.Option("--batch-size", help="Rows (problem x condition) per forward pass.", min=1)
]
MaxNewTokensOpt = Annotated[
    int, typer.Option("--max-new-tokens", help="Longest answer to decode.", min=1)
]


@dataclass(frozen=True)
class ModelChoice:
    """Everything that says which model to load and how."""

    model: str
    base_model: str | None = None
    preset: str | None = None
    lora_alpha: int | None = None
    num_latent: int | None = None
    remove_eos: bool | None = None
    unmerged_lora: bool = False
    allow_download: bool = False
    dtype: str = "float32"
    device: str = "cpu"

    def load(self) -> CodiModel:
        """Loads the model, turning loading errors into one-line usage errors."""
        official = OfficialOptions(
            base_model=self.base_model,
            preset=self.preset,
            lora_alpha=self.lora_alpha,
            num_latent=self.num_latent,
            remove_eos=self.remove_eos,
            merge_lora=not self.unmerged_lora,
            allow_hub=self.allow_download,
        )
        try:
            return load_model(self.model, official=official, dtype=self.dtype, device=self.device)
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(str(error), param_hint="--model") from None


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


_LOADING_OPTIONS: dict[str, tuple[Any, Any]] = {
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
    ``choice: ModelChoice``; the wrapper adds ``--base-model``, ``--preset``,
    ``--lora-alpha``, ``--num-latent``, ``--remove-eos/--keep-eos``, ``--unmerged-lora``,
    ``--allow-download``, ``--dtype`` and ``--device`` to the command line and hands the
    command one :class:`ModelChoice` built from them.
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
        return command(**kwargs, choice=ModelChoice(model=kwargs["model"], **loading))

    parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept] + added
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return wrapper
