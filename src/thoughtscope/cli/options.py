"""Options shared by every command that loads a model or reads problems."""

from __future__ import annotations

import functools
import inspect
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal

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
        help="Thought family of --model: codi, coconut (a published checkpoint file, with "
        "--base-model) or soft-thinking (any HF causal LM folder; settings in --thinking). "
        "Default: read from a thoughtscope model folder, else codi.",
        callback=known_family,
    ),
]
LoraAlphaOpt = Annotated[int | None, typer.Option("--lora-alpha", help="Overrides the preset.")]
NumLatentOpt = Annotated[int | None, typer.Option("--num-latent", help="Overrides the preset.")]
RemoveEosOpt = Annotated[
    bool | None,
    typer.Option("--remove-eos/--keep-eos", help="Overrides the preset.", show_default=False),
]
NormaliseOpt = Annotated[
    bool | None,
    typer.Option(
        "--normalise-question/--raw-question",
        help="CODI: feed question.strip().replace('  ', ' ') as the published evaluation "
        "does (the default), or the question as written.",
        show_default=False,
    ),
]
BotTokenOpt = Annotated[
    str | None,
    typer.Option("--bot-token", help="Name of the begin-of-thought token (CODI variants)."),
]
EotTokenOpt = Annotated[
    str | None,
    typer.Option("--eot-token", help="Name of the end-of-thought token (CODI variants)."),
]
ThinkingOpt = Annotated[
    str,
    typer.Option(
        "--thinking",
        help="Soft-thinking settings as key=value,... (preset=qwq-math, think_start, "
        "think_end, temperature, top_k, top_p, min_p, max_topk, entropy_threshold, "
        "entropy_steps, max_thoughts, prompt_template, chat_template, answer_format).",
    ),
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


def _at_least_one(option: str, or_left_out: bool = False) -> Callable[[int | None], int | None]:
    """A callback refusing a value below 1 with one message, the same in every command
    (and the same as the analyses' own configuration checks)."""

    def check(value: int | None) -> int | None:
        if value is not None and value < 1:
            message = f"{option} must be 1 or more" + (" (or left out)" if or_left_out else "")
            raise UsageError(message, param_hint=option)
        return value

    return check


LimitOpt = Annotated[
    int | None,
    typer.Option(
        "--limit", help="Use the first N problems.", callback=_at_least_one("--limit", True)
    ),
]
"""``--limit`` of every command that takes one."""
RunFolderOpt = Annotated[
    Path, typer.Option("--out", help="Run folder (created; resumed if present).")
]
"""``--out`` of every analysis that writes a resumable run folder."""


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
    int,
    typer.Option(
        "--max-new-tokens",
        help="Longest answer to decode.",
        callback=_at_least_one("--max-new-tokens"),
    ),
]
"""``--max-new-tokens`` of every command that decodes answers."""
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
    normalise_question: bool | None = None
    bot_token: str | None = None
    eot_token: str | None = None
    thinking: str = ""
    unmerged_lora: bool = False
    allow_download: bool = False
    dtype: str = "float32"
    device: str = "cpu"

    def load(self) -> ThoughtModel:
        """Loads the model, turning loading errors into one-line usage errors."""
        from thoughtscope.model.families.soft_thinking import NAME as SOFT_THINKING

        if self.family == SOFT_THINKING or self.thinking:
            return self._with_question_rule(self._load_family())
        official = OfficialOptions(
            base_model=self.base_model,
            preset=self.preset,
            lora_alpha=self.lora_alpha,
            num_latent=self.num_latent,
            remove_eos=self.remove_eos,
            merge_lora=not self.unmerged_lora,
            allow_hub=self.allow_download,
            bot_token=self.bot_token,
            eot_token=self.eot_token,
            family=self.family,
        )
        if self.normalise_question is not None:
            official = replace(official, normalise_question=self.normalise_question)
        try:
            model = load_model(self.model, official=official, dtype=self.dtype, device=self.device)
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(str(error), param_hint="--model") from None
        return self._with_question_rule(model)

    def _with_question_rule(self, model: ThoughtModel) -> ThoughtModel:
        """Applies ``--normalise-question/--raw-question`` to a loaded CODI model."""
        if self.normalise_question is None:
            return model
        from thoughtscope.model.families.codi import CodiFamily

        if not isinstance(model.family, CodiFamily):
            raise UsageError(
                f"--normalise-question/--raw-question is a CODI setting; this model's family "
                f"is {model.family.name}",
                param_hint="--raw-question",
            )
        model.family.config = replace(
            model.family.config, normalise_question=self.normalise_question
        )
        return model

    def _load_family(self) -> ThoughtModel:
        """``--family soft-thinking`` on a plain HF folder (or a saved soft thinker,
        with ``--thinking`` changing its settings)."""
        from thoughtscope.model.families.soft_thinking import (
            NAME,
            SoftThinkingConfig,
            load_soft_thinking_lm,
            soft_thinking_around,
        )
        from thoughtscope.model.loading import TOY, toy_model_path
        from thoughtscope.model.thought_model import CONFIG_FILE, load_saved

        if self.family not in (None, NAME):
            raise UsageError(
                f"--family {self.family!r} is unknown here; choose {NAME} (CODI checkpoints "
                "need no --family)",
                param_hint="--family",
            )
        folder = toy_model_path() if self.model == TOY else Path(self.model)
        try:
            if (folder / CONFIG_FILE).is_file():
                saved = load_saved(folder, dtype=self.dtype, device=self.device)
                if saved.family.name == NAME:
                    settings = SoftThinkingConfig.from_dict(saved.family.to_dict())
                else:
                    # Another family's LM (e.g. CODI's, which also reasons in text as
                    # its own teacher) read as a plain reasoning LM.
                    settings = SoftThinkingConfig()
                config = settings.with_text(self.thinking)
                return soft_thinking_around(saved.lm, saved.tokenizer, config, name=saved.name)
            config = SoftThinkingConfig().with_text(self.thinking)
            return load_soft_thinking_lm(folder, config, dtype=self.dtype, device=self.device)
        except ValueError as error:
            hint = "--thinking" if "--thinking" in str(error) else "--model"
            raise UsageError(str(error), param_hint=hint) from None
        except FileNotFoundError as error:
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
    if not skip_long:
        fail(
            f"{check.explain(len(problems))}. Pass --skip-long to leave them out (they are "
            "listed), or a smaller --max-new-tokens",
            "--data",
        )
    typer.echo(f"skipped: {check.explain(len(problems))}", err=True)
    for prompt in check.too_long:
        typer.echo(f"  {prompt.describe()}", err=True)
    kept = check.fitting(problems)
    if not kept:
        fail(
            f"all {len(problems)} problems are too long for the model "
            f"(it reads at most {check.limit} positions)",
            "--data",
        )
    return kept


def parse_batch_size(text: str) -> int | Literal["auto"]:
    """``--batch-size``: ``auto`` or a whole number of 1 or more."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        fail(f"--batch-size must be auto or a whole number, got {text}")
    if value < 1:
        fail(f"--batch-size must be 1 or more, got {value}")
    return value


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
    "normalise_question": (NormaliseOpt, None),
    "bot_token": (BotTokenOpt, None),
    "eot_token": (EotTokenOpt, None),
    "thinking": (ThinkingOpt, ""),
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
