"""Loading checkpoints in the published CODI layout (``zhenyi4/codi``).

A published checkpoint is one state dict (``model.safetensors`` or
``pytorch_model.bin``) holding the PEFT-wrapped LM under ``codi.`` (LoRA weights as
``…lora_A.default.weight`` / ``…lora_B.default.weight``, base weights as
``…base_layer.weight``) and the projection under ``prj.`` (``prj.1``, ``prj.3``,
optional ``prj.ln``). The base LM's config and tokenizer come from a separate folder
(the tokenizer from the checkpoint folder instead when it holds one).

Community variants are read too: thought markers named in the tokenizer
(``--bot-token``/``--eot-token``, or ``bot_token``/``eot_token`` in the checkpoint's own
``config.json``) instead of the published ids V+1, V+2; and no ``prj.`` weights at all,
meaning the state itself is fed back (identity feedback, said when loading).

What the state dict determines is read from it: LoRA rank and target modules, the
projection's width and whether it has a LayerNorm, and the vocabulary size (embedding
rows R = V + 3). The rest (LoRA alpha, number of latents, ``remove_eos``) comes from a
preset or from explicit options.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor
from transformers import AutoModelForCausalLM, AutoTokenizer

from thoughtscope.model.architectures import architecture_for
from thoughtscope.model.codi import CodiModel, resolve_device, resolve_dtype
from thoughtscope.model.config import CodiConfig
from thoughtscope.model.loading import OfficialOptions
from thoughtscope.model.projection import Projection

log = logging.getLogger(__name__)

LM_PREFIX = "codi."
PRJ_PREFIX = "prj."
PEFT_PREFIX = "base_model.model."
_LORA_A = re.compile(r"^(?P<module>.+)\.lora_A\.default\.weight$")


@dataclass(frozen=True)
class Preset:
    """Published settings of an official CODI checkpoint family."""

    lora_alpha: int
    num_latent: int
    remove_eos: bool
    answer_format: str = "The answer is: {answer}"


PRESETS: dict[str, Preset] = {
    "codi-gpt2": Preset(lora_alpha=32, num_latent=6, remove_eos=True),
    "codi-llama3.2-1b": Preset(lora_alpha=32, num_latent=6, remove_eos=True),
}


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not fit the base model."""


def read_torch_tensors(
    path: Path, error: type[ValueError], *, pickle_advice: str, damaged_advice: str
) -> dict[str, Tensor]:
    """The state dict in a torch file, read with ``torch.load(weights_only=True)``:
    tensors only, never a pickled object (a pickle can run code on this machine).

    Raises:
        error: The file holds pickled objects (``pickle_advice`` says what to do), cannot
            be read (``damaged_advice``), or is not a dict of tensors.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise error(
            f"{path} holds pickled Python objects, not only tensors; thoughtscope never "
            f"unpickles them (a pickle can run code on this machine). {pickle_advice}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as problem:
        reason = str(problem).splitlines()[0] if str(problem) else type(problem).__name__
        raise error(f"{path}: cannot be read ({reason}); {damaged_advice}") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise error(f"{path} does not hold a state dict of tensors")
    return state


def read_state_dict(folder: Path) -> tuple[dict[str, Tensor], Path]:
    """Reads ``model.safetensors`` or ``pytorch_model.bin`` (tensors only, no pickle code)."""
    safetensors_path = folder / "model.safetensors"
    if safetensors_path.is_file():
        return load_file(str(safetensors_path)), safetensors_path
    bin_path = folder / "pytorch_model.bin"
    if bin_path.is_file():
        state = read_torch_tensors(
            bin_path,
            CheckpointMismatchError,
            pickle_advice="Use the checkpoint's model.safetensors if it is published, or "
            "convert this file to model.safetensors where you trust it "
            "(safetensors.torch.save_file) and put that in the folder",
            damaged_advice="the file is damaged or incomplete (an interrupted download?): "
            "download it again",
        )
        return state, bin_path
    raise FileNotFoundError(
        f"{folder} holds neither model.safetensors nor pytorch_model.bin; point --model at "
        "the folder of an official CODI checkpoint"
    )


@dataclass(frozen=True)
class CheckpointShape:
    """What the state dict says about the model it was saved from."""

    lora_rank: int
    lora_targets: tuple[str, ...]
    projection_width: int
    """0 when the checkpoint has no projection (identity feedback)."""
    projection_d_model: int
    projection_layer_norm: bool
    vocab_rows: int | None

    @property
    def has_projection(self) -> bool:
        """Whether the checkpoint holds ``prj.`` weights."""
        return self.projection_width > 0


def inspect_state_dict(
    state: dict[str, Tensor], embedding_key: str, source: Path
) -> CheckpointShape:
    """Reads LoRA rank and targets, projection shape and embedding rows from the keys."""
    lm_keys = [k for k in state if k.startswith(LM_PREFIX)]
    has_projection = any(k.startswith(PRJ_PREFIX) for k in state)
    if not lm_keys or (has_projection and f"{PRJ_PREFIX}1.weight" not in state):
        sample = ", ".join(sorted(state)[:5])
        raise CheckpointMismatchError(
            f"{source} is not in the published CODI layout: expected keys under "
            f"'{LM_PREFIX}' (and '{PRJ_PREFIX}1.weight' when it has a projection), found "
            f"e.g. {sample}"
        )
    ranks: set[int] = set()
    targets: set[str] = set()
    for key in lm_keys:
        match = _LORA_A.match(key)
        if match:
            ranks.add(int(state[key].shape[0]))
            targets.add(match.group("module").rsplit(".", 1)[-1])
    if not ranks:
        raise CheckpointMismatchError(f"{source} holds no LoRA weights (…lora_A.default.weight)")
    if len(ranks) > 1:
        raise CheckpointMismatchError(f"{source} mixes LoRA ranks {sorted(ranks)}")
    prj_in = state.get(f"{PRJ_PREFIX}1.weight")
    embedding = state.get(LM_PREFIX + PEFT_PREFIX + embedding_key)
    return CheckpointShape(
        lora_rank=ranks.pop(),
        lora_targets=tuple(sorted(targets)),
        projection_width=0 if prj_in is None else int(prj_in.shape[0]),
        projection_d_model=0 if prj_in is None else int(prj_in.shape[1]),
        projection_layer_norm=f"{PRJ_PREFIX}ln.weight" in state,
        vocab_rows=None if embedding is None else int(embedding.shape[0]),
    )


def _settings(options: OfficialOptions) -> Preset:
    base = None
    if options.preset is not None:
        if options.preset not in PRESETS:
            raise ValueError(
                f"--preset {options.preset!r} is unknown; choose one of {', '.join(PRESETS)}"
            )
        base = PRESETS[options.preset]

    def pick(given: Any, name: str) -> Any:
        return given if given is not None else (getattr(base, name) if base else None)

    alpha = pick(options.lora_alpha, "lora_alpha")
    n_latent = pick(options.num_latent, "num_latent")
    remove_eos = pick(options.remove_eos, "remove_eos")
    if alpha is None or n_latent is None or remove_eos is None:
        raise ValueError(
            "an official CODI checkpoint needs --preset (one of "
            f"{', '.join(PRESETS)}) or all of --lora-alpha, --num-latent and "
            "--remove-eos/--keep-eos"
        )
    return Preset(lora_alpha=int(alpha), num_latent=int(n_latent), remove_eos=bool(remove_eos))


CHECKPOINT_CONFIG = "config.json"
"""A checkpoint's own settings file; its ``bot_token``/``eot_token`` name the markers."""


def _marker_names(folder: Path, options: OfficialOptions) -> tuple[str, str] | None:
    """The names of the thought markers: the options, else the checkpoint's
    ``config.json``, else ``None`` (the published layout)."""
    bot, eot, where = options.bot_token, options.eot_token, "--bot-token/--eot-token"
    path = folder / CHECKPOINT_CONFIG
    if bot is None and eot is None and path.is_file():
        try:
            own = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not readable JSON ({error}); fix or remove it") from None
        if isinstance(own, dict):
            bot, eot, where = own.get("bot_token"), own.get("eot_token"), str(path)
    if bot is None and eot is None:
        return None
    if bot is None or eot is None:
        raise ValueError(
            f"{where}: name both thought markers (bot and eot), or neither for the published layout"
        )
    return str(bot), str(eot)


def marker_id(tokenizer: Any, name: str, option: str) -> int:
    """The id of the token called ``name``; refuses a name the tokenizer does not have,
    listing the added and special tokens it does have."""
    vocab = tokenizer.get_vocab()
    if name in vocab:
        return int(vocab[name])
    added = sorted(
        set(getattr(tokenizer, "get_added_vocab", dict)()) | set(tokenizer.all_special_tokens)
    )
    shown = ", ".join(added[:20]) + (f" and {len(added) - 20} more" if len(added) > 20 else "")
    raise ValueError(
        f"{option} {name!r} is not a token of the tokenizer (added and special tokens: "
        f"{shown or 'none'}); give one of those names, or leave the option out for the "
        "published layout"
    )


def _is_hub_id(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", text) is not None


def _load_base(base_model: str | None, allow_hub: bool) -> tuple[Any, Any]:
    if not base_model:
        raise ValueError(
            "an official CODI checkpoint holds no base model: pass --base-model with the "
            "local folder of the base LM (e.g. a saved gpt2 or Llama-3.2-1B-Instruct)"
        )
    path = Path(base_model)
    if path.is_dir():
        kwargs = {"local_files_only": True}
        source = str(path)
    elif allow_hub and _is_hub_id(base_model):
        log.warning("downloading base model %s from the hub (asked for)", base_model)
        kwargs = {}
        source = base_model
    else:
        raise FileNotFoundError(
            f"--base-model {base_model}: no such folder. thoughtscope works offline; give the "
            "local folder of the base LM, or add --allow-download to fetch a hub id"
        )
    lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    return lm, tokenizer


def _check_keys(
    expected: dict[str, Tensor],
    given: dict[str, Tensor],
    *,
    ignorable: tuple[str, ...],
    optional: set[str],
    source: Path,
) -> None:
    """Refuses unexpected keys, shape mismatches and missing keys that are not optional."""
    unexpected = [k for k in given if k not in expected and not k.endswith(ignorable)]
    mismatched = [
        f"{k} {tuple(given[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in given
        if k in expected and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    missing = [k for k in expected if k not in given and k not in optional]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys, first: {unexpected[:3]}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches, first: {mismatched[:3]}")
    if missing:
        problems.append(f"{len(missing)} missing keys, first: {missing[:3]}")
    if problems:
        raise CheckpointMismatchError(
            f"{source} does not fit the base model: " + "; ".join(problems) + ". Check that "
            "--base-model is the model this checkpoint was trained from."
        )


def load_official(
    folder: Path,
    options: OfficialOptions,
    *,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
) -> CodiModel:
    """Loads an official CODI checkpoint folder onto its base model.

    Raises:
        CheckpointMismatchError: keys or shapes that do not fit, naming the first ones.
        ValueError / FileNotFoundError: missing settings or files, naming the option.
    """
    from peft import LoraConfig, get_peft_model

    settings = _settings(options)
    state, source = read_state_dict(folder)
    markers = _marker_names(folder, options)
    lm, tokenizer = _load_base(options.base_model, options.allow_hub)
    if (folder / "tokenizer_config.json").is_file():
        # A checkpoint that added its own tokens ships the tokenizer that knows them.
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    architecture = architecture_for(lm)
    embedding_key = next(
        name for name, param in lm.named_parameters() if param is lm.get_input_embeddings().weight
    )
    shape = inspect_state_dict(state, embedding_key, source)
    special_ids: tuple[int, int, int] | None = None
    if markers is not None:
        bot_id = marker_id(tokenizer, markers[0], "--bot-token")
        eot_id = marker_id(tokenizer, markers[1], "--eot-token")
        pad = tokenizer.pad_token_id
        pad_id = int(tokenizer.eos_token_id if pad is None else pad)
        special_ids = (pad_id, bot_id, eot_id)
        # Named markers live inside the tokenizer's vocabulary: nothing is appended.
        vocab_rows = shape.vocab_rows or len(tokenizer)
        base_vocab = vocab_rows
        if max(special_ids) >= vocab_rows:
            raise CheckpointMismatchError(
                f"{source}: the markers {markers[0]!r}={bot_id}, {markers[1]!r}={eot_id} lie "
                f"past its {vocab_rows} embedding rows; is this the checkpoint's tokenizer?"
            )
    else:
        # Without the embedding in the checkpoint, the key check below names it as
        # missing: its <bot>/<eot> rows exist nowhere else.
        vocab_rows = shape.vocab_rows or lm.config.vocab_size + 3
        base_vocab = vocab_rows - 3
    if markers is None and base_vocab != lm.config.vocab_size:
        log.warning(
            "checkpoint vocabulary V=%d differs from the base model's %d; using V from the "
            "checkpoint (pad=V, bot=V+1, eot=V+2)",
            base_vocab,
            lm.config.vocab_size,
        )
    lm.resize_token_embeddings(vocab_rows, mean_resizing=False)
    lora = LoraConfig(
        r=shape.lora_rank,
        lora_alpha=settings.lora_alpha,
        target_modules=list(shape.lora_targets),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        peft_lm = get_peft_model(lm, lora)
    except ValueError as error:  # peft: no module matches the targets
        raise CheckpointMismatchError(
            f"{source} does not fit the base model: its LoRA targets {list(shape.lora_targets)} "
            f"are not modules of the base model (model type {lm.config.model_type!r}). Check "
            "that --base-model is the model this checkpoint was trained from."
        ) from error
    expected = peft_lm.state_dict()
    given = {k[len(LM_PREFIX) :]: v for k, v in state.items() if k.startswith(LM_PREFIX)}
    tied = (
        {k for k in expected if k.endswith("lm_head.weight")}
        if lm.config.tie_word_embeddings
        else set()
    )
    # Base weights may be absent (they come from --base-model); LoRA weights and the
    # resized input embedding may not.
    optional = {k for k in expected if "lora_" not in k and not k.endswith(embedding_key)} | tied
    ignorable = architecture.ignorable_keys
    _check_keys(expected, given, ignorable=ignorable, optional=optional, source=source)
    peft_lm.load_state_dict({k: v for k, v in given.items() if k in expected}, strict=False)
    lm.tie_weights()  # peft wraps lm in place; tie the head to the loaded embedding

    projection: Projection | torch.nn.Identity = torch.nn.Identity()
    if shape.has_projection:
        projection = Projection(
            shape.projection_d_model,
            shape.projection_width,
            layer_norm=shape.projection_layer_norm,
        )
        prj_state = {k[len(PRJ_PREFIX) :]: v for k, v in state.items() if k.startswith(PRJ_PREFIX)}
        _check_keys(projection.state_dict(), prj_state, ignorable=(), optional=set(), source=source)
        projection.load_state_dict(prj_state)
    else:
        log.warning(
            "%s holds no projection (no %s keys): each thought is the last layer's normed "
            "state itself (identity feedback)",
            source,
            PRJ_PREFIX,
        )
    if markers is not None:
        log.warning(
            "%s: thought markers %s=%d, %s=%d read from the tokenizer by name",
            folder.name,
            markers[0],
            special_ids[1] if special_ids else -1,
            markers[1],
            special_ids[2] if special_ids else -1,
        )
    config = CodiConfig(
        base_vocab_size=base_vocab,
        num_latent=settings.num_latent,
        remove_eos=settings.remove_eos,
        eos_id=int(tokenizer.eos_token_id),  # type: ignore[attr-defined]
        projection_width=shape.projection_width,
        projection_layer_norm=shape.projection_layer_norm,
        answer_format=settings.answer_format,
        normalise_question=options.normalise_question,
        special_ids=special_ids,
        feedback="projection" if shape.has_projection else "identity",
    )
    model = CodiModel(peft_lm, projection, tokenizer, config, name=folder.name)  # type: ignore[arg-type]
    if options.merge_lora:
        model = model.merged()
    return model.to(device=resolve_device(device), dtype=resolve_dtype(dtype)).eval()
