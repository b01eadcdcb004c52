"""One entry point that turns a ``--model`` value into a model of any thought family."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError

from thoughtscope.model.codi import CONFIG_FILE, WEIGHTS_FILE
from thoughtscope.model.thought_model import ThoughtModel, load_saved

TOY = "toy"
TOY_COCONUT = "toy-coconut"
OFFICIAL_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
"""Weight files of an official checkpoint folder, in the order they are looked for."""


def toy_model_path(family: str = "codi") -> Path:
    """Folder of the toy model of ``family`` shipped inside the package."""
    folder = "model" if family == "codi" else f"{family}-model"
    return Path(str(resources.files("thoughtscope") / "toy" / folder))


@dataclass(frozen=True)
class OfficialOptions:
    """Settings for an official CODI checkpoint that its state dict does not hold.

    ``None`` fields come from the preset (see :data:`thoughtscope.model.official.PRESETS`).
    ``normalise_question`` (default on) feeds ``question.strip().replace('  ', ' ')``, as
    the published CODI evaluation does; off, the question goes in exactly as given.
    ``bot_token``/``eot_token`` name the thought markers in the tokenizer (community
    checkpoints that added e.g. ``<|bocot|>``/``<|eocot|>``); left out, the checkpoint's
    own ``config.json`` may name them, else the published layout (V+1, V+2) applies.
    """

    base_model: str | None = None
    preset: str | None = None
    lora_alpha: int | None = None
    num_latent: int | None = None
    remove_eos: bool | None = None
    merge_lora: bool = True
    allow_hub: bool = False
    normalise_question: bool = True
    bot_token: str | None = None
    eot_token: str | None = None
    family: str | None = None
    """The thought family (``--family``): ``None`` reads it from a thoughtscope model
    folder, else CODI. ``coconut`` with a file is a published Coconut checkpoint."""


def load_model(
    spec: str | Path,
    *,
    official: OfficialOptions | None = None,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
) -> ThoughtModel:
    """Loads ``toy`` / ``toy-coconut``, a thoughtscope model folder (any family), an
    official CODI checkpoint folder, or a published Coconut checkpoint file
    (``official.family == "coconut"``).

    An official checkpoint also needs ``official.base_model``: a local folder (for CODI,
    a hub id when ``official.allow_hub`` is set).
    """
    official = official or OfficialOptions()
    family = official.family
    toys = {TOY: "codi", TOY_COCONUT: "coconut"}
    if str(spec) in toys:
        family_of_toy = toys[str(spec)]
        folder = toy_model_path() if family_of_toy == "codi" else toy_model_path(family_of_toy)
        if not (folder / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"the {spec} model is not in this installation ({folder}); reinstall "
                "thoughtscope or rebuild it with `thoughtscope train-toy --out DIR`"
            )
    else:
        folder = Path(spec)
    if family == "coconut" and folder.is_file():
        from thoughtscope.model.coconut import load_published_coconut

        return load_published_coconut(
            folder,
            official.base_model or "",
            num_latent=official.num_latent,
            dtype=dtype,
            device=device,
        )
    if not folder.is_dir():
        raise FileNotFoundError(
            f"--model {spec}: no such folder. Give `toy`, `toy-coconut`, a thoughtscope "
            "model folder, an official CODI checkpoint folder with --base-model, or a "
            "published Coconut checkpoint file with --family coconut --base-model."
        )
    thoughtscope_folder = (folder / CONFIG_FILE).is_file()
    if not thoughtscope_folder and family not in (None, "codi"):
        raise FileNotFoundError(
            f"--model {spec}: a folder without {CONFIG_FILE}; a published {family} "
            "checkpoint is a file (e.g. checkpoint_16): give the file itself"
        )
    if not thoughtscope_folder and not any((folder / name).is_file() for name in OFFICIAL_WEIGHTS):
        raise FileNotFoundError(
            f"--model {spec}: the folder holds no model weights (no {CONFIG_FILE} with "
            f"{WEIGHTS_FILE}, and no {' or '.join(OFFICIAL_WEIGHTS)}); point --model at a "
            "thoughtscope model folder or an official CODI checkpoint folder"
        )
    try:
        if thoughtscope_folder:
            model = load_saved(folder, dtype=dtype, device=device)
            if family is not None and model.family.name != family:
                raise ValueError(
                    f"--family {family}: {folder} holds a {model.family.name} model; leave "
                    "--family out to read it from the folder"
                )
            return model
        from thoughtscope.model.official import load_official

        return load_official(folder, official, dtype=dtype, device=device)
    except SafetensorError as error:
        # The Rust reader does not name the file; the only safetensors file read is this one.
        reason = str(error).splitlines()[0] if str(error) else "unreadable"
        raise ValueError(
            f"{folder / WEIGHTS_FILE}: cannot be read ({reason}); the file is damaged or "
            "incomplete (an interrupted download or copy?): download or save it again"
        ) from error
