"""Coconut models: construction (from scratch or around a pretrained LM) and loading the
checkpoints the published ``run.py`` writes.

A published checkpoint is ``torch.save(model.state_dict())`` of the ``Coconut`` wrapper:
one file named ``checkpoint_<epoch>`` (no extension) holding the LM under
``base_causallm.`` plus the alias ``embedding.weight`` (the input embedding again); the
tokenizer is not saved, so it is rebuilt from the base one with the three tokens added in
the published order. The family itself is :mod:`thoughtscope.model.families.coconut`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from thoughtscope.model.families.coconut import (
    CoconutModel,
    add_coconut_tokens,
    coconut_around,
)
from thoughtscope.model.official import read_torch_tensors
from thoughtscope.model.thought_model import resolve_device, resolve_dtype

LM_PREFIX = "base_causallm."
EMBEDDING_ALIAS = "embedding.weight"
DEFAULT_NUM_LATENT = 6
"""k of the published GSM8K evaluation (c_thought 2 × 3 stages)."""


class CoconutCheckpointError(ValueError):
    """The file is not a Coconut state dict, or does not fit the base model."""


def new_coconut_model(
    lm_config: Any,
    tokenizer: Any,
    *,
    num_latent: int = 6,
    c_thought: int = 1,
    name: str = "",
) -> CoconutModel:
    """A freshly initialised Coconut model around an HF config (training from scratch).

    The three tokens are added to ``tokenizer``; the LM gets ``len(tokenizer)`` rows.
    """
    add_coconut_tokens(tokenizer)
    lm_config.vocab_size = len(tokenizer)
    lm_config.eos_token_id = int(tokenizer.eos_token_id)
    lm_config.bos_token_id = tokenizer.bos_token_id
    lm_config.pad_token_id = int(tokenizer.eos_token_id)
    lm = AutoModelForCausalLM.from_config(lm_config, attn_implementation="eager")
    return coconut_around(lm, tokenizer, num_latent=num_latent, c_thought=c_thought, name=name)


def read_checkpoint(path: Path) -> dict[str, Tensor]:
    """The state dict in ``path``, read with ``torch.load(weights_only=True)``: tensors
    only, never a pickled object (a pickle can run code on this machine)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"--model {path}: no such file; give a checkpoint_<epoch> file written by the "
            "published Coconut run.py"
        )
    return read_torch_tensors(
        path,
        CoconutCheckpointError,
        pickle_advice="Save the state dict itself (torch.save(model.state_dict(), path)) "
        "where you trust the file",
        damaged_advice="the file is damaged, incomplete, or not a checkpoint",
    )


def lm_state(state: dict[str, Tensor], lm: nn.Module, source: Path) -> dict[str, Tensor]:
    """The LM's state dict from a published Coconut one: ``base_causallm.`` stripped, the
    aliases (``embedding.weight``, a tied ``lm_head``) checked against their source and
    dropped; unexpected keys, missing keys and shape mismatches refused, naming the first
    offenders."""
    expected = lm.state_dict()
    embed_key = _embedding_key(lm)
    tied = _tied_to_embedding(lm, embed_key)
    found: dict[str, Tensor] = {}
    unexpected: list[str] = []
    for key, tensor in state.items():
        if key == EMBEDDING_ALIAS:
            continue
        if key.startswith(LM_PREFIX) and key[len(LM_PREFIX) :] in expected:
            found[key[len(LM_PREFIX) :]] = tensor
        else:
            unexpected.append(key)
    mismatched = [
        f"{LM_PREFIX}{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        for k, v in found.items()
        if tuple(v.shape) != tuple(expected[k].shape)
    ]
    missing = [LM_PREFIX + k for k in expected if k not in found and k not in tied]
    if embed_key not in found and EMBEDDING_ALIAS in state:
        missing = [k for k in missing if k != LM_PREFIX + embed_key]
        found[embed_key] = state[EMBEDDING_ALIAS]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys, first: {unexpected[:3]}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches, first: {mismatched[:3]}")
    if missing:
        problems.append(f"{len(missing)} missing keys, first: {missing[:3]}")
    if problems:
        raise CoconutCheckpointError(
            f"{source} does not fit the base model: " + "; ".join(problems) + ". Check that "
            "--base-model is the model this checkpoint was trained from (a stage-0 CoT "
            "checkpoint, without base_causallm. keys, is not a Coconut model)"
        )
    source_embedding = found.get(embed_key)
    for alias in [EMBEDDING_ALIAS, *(LM_PREFIX + k for k in tied)]:
        given = state.get(alias)
        if (
            given is not None
            and source_embedding is not None
            and (given.shape != source_embedding.shape or not torch.equal(given, source_embedding))
        ):
            raise CoconutCheckpointError(
                f"{source}: {alias} differs from {LM_PREFIX}{embed_key}; in a Coconut "
                "checkpoint it is the same tensor (is the file edited or mixed?)"
            )
    return {k: v for k, v in found.items() if k not in tied}


def _embedding_key(lm: nn.Module) -> str:
    embedding = lm.get_input_embeddings()  # type: ignore[operator]
    for name, module in lm.named_modules():
        if module is embedding:
            return f"{name}.weight"
    raise ValueError("the base model's input embedding is not among its modules")


def _tied_to_embedding(lm: nn.Module, embed_key: str) -> set[str]:
    """State-dict names that share storage with the input embedding (a tied head)."""
    tensors = lm.state_dict(keep_vars=True)
    pointer = tensors[embed_key].data_ptr()
    return {k for k, v in tensors.items() if k != embed_key and v.data_ptr() == pointer}


def load_published_coconut(
    checkpoint: str | Path,
    base_model: str | Path,
    *,
    num_latent: int | None = None,
    c_thought: int = 1,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
) -> CoconutModel:
    """Loads a ``checkpoint_<epoch>`` file of the published ``run.py``, offline.

    Args:
        checkpoint: The state-dict file.
        base_model: Local folder of the base LM (its config and tokenizer; the weights
            come from the checkpoint).
        num_latent: k thoughts (default 6, the published GSM8K evaluation).
        c_thought: Thoughts per stage (for the ``per-stage`` schedule).
    """
    path = Path(checkpoint)
    if path.is_dir():
        raise FileNotFoundError(
            f"--model {path} is a folder without thoughtscope.json; for a published Coconut "
            "checkpoint give the checkpoint_<epoch> file itself"
        )
    if not base_model:
        raise ValueError(
            "a published Coconut checkpoint holds neither config nor tokenizer: pass "
            "--base-model with the local folder of the base LM (e.g. a saved gpt2)"
        )
    base = Path(base_model)
    if not base.is_dir():
        raise FileNotFoundError(
            f"--base-model {base_model}: no such folder. thoughtscope works offline; give "
            "the local folder of the base LM"
        )
    state = read_checkpoint(path)
    tokenizer = add_coconut_tokens(AutoTokenizer.from_pretrained(str(base), local_files_only=True))
    lm: PreTrainedModel = AutoModelForCausalLM.from_pretrained(
        str(base), local_files_only=True, dtype=torch.float32, attn_implementation="eager"
    )
    lm.resize_token_embeddings(len(tokenizer))
    lm.load_state_dict(lm_state(state, lm, path), strict=False)
    lm.tie_weights()
    model = coconut_around(
        lm,
        tokenizer,
        num_latent=DEFAULT_NUM_LATENT if num_latent is None else num_latent,
        c_thought=c_thought,
        name=path.name,
    )
    return model.to(device=resolve_device(device), dtype=resolve_dtype(dtype)).eval()
