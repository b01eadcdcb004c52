"""One entry point that turns a ``--model`` value into a :class:`CodiModel`."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError

from thoughtscope.model.codi import CONFIG_FILE, WEIGHTS_FILE, CodiModel

TOY = "toy"
OFFICIAL_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
"""Weight files of an official checkpoint folder, in the order they are looked for."""


def toy_model_path() -> Path:
    """Folder of the toy CODI model shipped inside the package."""
    return Path(str(resources.files("thoughtscope") / "toy" / "model"))


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


def load_model(
    spec: str | Path,
    *,
    official: OfficialOptions | None = None,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
) -> CodiModel:
    """Loads ``toy``, a thoughtscope model folder, or an official CODI checkpoint folder.

    An official checkpoint (a folder with ``model.safetensors`` or ``pytorch_model.bin``
    in the published layout) also needs ``official.base_model``: a local folder, or a
    hub id when ``official.allow_hub`` is set.
    """
    if str(spec) == TOY:
        folder = toy_model_path()
        if not (folder / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"the toy model is not in this installation ({folder}); reinstall "
                "thoughtscope or rebuild it with `thoughtscope train-toy --out DIR`"
            )
    else:
        folder = Path(spec)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"--model {spec}: no such folder. Give `toy`, a thoughtscope model folder, or "
            "an official CODI checkpoint folder with --base-model."
        )
    thoughtscope_folder = (folder / CONFIG_FILE).is_file()
    if not thoughtscope_folder and not any((folder / name).is_file() for name in OFFICIAL_WEIGHTS):
        raise FileNotFoundError(
            f"--model {spec}: the folder holds no model weights (no {CONFIG_FILE} with "
            f"{WEIGHTS_FILE}, and no {' or '.join(OFFICIAL_WEIGHTS)}); point --model at a "
            "thoughtscope model folder or an official CODI checkpoint folder"
        )
    try:
        if thoughtscope_folder:
            return CodiModel.from_pretrained(folder, dtype=dtype, device=device)
        from thoughtscope.model.official import load_official

        return load_official(folder, official or OfficialOptions(), dtype=dtype, device=device)
    except SafetensorError as error:
        # The Rust reader does not name the file; the only safetensors file read is this one.
        reason = str(error).splitlines()[0] if str(error) else "unreadable"
        raise ValueError(
            f"{folder / WEIGHTS_FILE}: cannot be read ({reason}); the file is damaged or "
            "incomplete (an interrupted download or copy?): download or save it again"
        ) from error
