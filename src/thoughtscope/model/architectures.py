"""Architectures: where a causal LM keeps its embeddings, decoder blocks and final norm.

Each architecture is registered once; adding one is one new :class:`Architecture` and a
call to :func:`register_architecture`. (How a model *thinks* is a different question,
answered by its thought family: :mod:`thoughtscope.model.families`.) Unknown
``model_type`` values fall back to a structural search and fail with a clear error when
the decoder blocks cannot be found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from torch import nn


@dataclass(frozen=True)
class Architecture:
    """How to reach the parts of one HF causal-LM architecture.

    Attributes:
        name: Registry key, e.g. ``gpt2``, ``llama``.
        model_types: HF ``config.model_type`` values that belong to this architecture.
        blocks: Returns the ``nn.ModuleList`` of decoder blocks of a (non-PEFT) LM.
        final_norm: Returns the norm applied after the last block.
        lora_targets: Default LoRA target modules (those the published CODI code uses).
        ignorable_keys: Suffixes of state-dict keys that old checkpoints may hold but
            current models do not (non-persistent buffers in older transformers).
    """

    name: str
    model_types: tuple[str, ...]
    blocks: Callable[[nn.Module], nn.ModuleList]
    final_norm: Callable[[nn.Module], nn.Module]
    lora_targets: tuple[str, ...]
    ignorable_keys: tuple[str, ...] = ()


_ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(architecture: Architecture) -> Architecture:
    """Adds ``architecture`` to the registry (later registrations win)."""
    _ARCHITECTURES[architecture.name] = architecture
    return architecture


def _attr_path(*path: str) -> Callable[[nn.Module], nn.Module]:
    def get(lm: nn.Module) -> nn.Module:
        module: nn.Module = lm
        for name in path:
            module = getattr(module, name)
        return module

    return get


register_architecture(
    Architecture(
        name="gpt2",
        model_types=("gpt2",),
        blocks=_attr_path("transformer", "h"),  # type: ignore[arg-type]
        final_norm=_attr_path("transformer", "ln_f"),
        lora_targets=("c_attn", "c_proj", "c_fc"),
        ignorable_keys=(".attn.bias", ".attn.masked_bias"),
    )
)
register_architecture(
    Architecture(
        name="llama",
        model_types=("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3"),
        blocks=_attr_path("model", "layers"),  # type: ignore[arg-type]
        final_norm=_attr_path("model", "norm"),
        lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"),
        ignorable_keys=(".rotary_emb.inv_freq",),
    )
)


def _search(lm: nn.Module, names: tuple[str, ...], kind: type) -> nn.Module | None:
    """Finds the first submodule of ``lm`` whose attribute name is in ``names``."""
    for path, module in lm.named_modules():
        if path.rsplit(".", 1)[-1] in names and isinstance(module, kind):
            return cast(nn.Module, module)
    return None


def architecture_for(lm: nn.Module) -> Architecture:
    """The registered architecture of ``lm``, or a structural fallback for unknown model types.

    Raises:
        ValueError: when the decoder blocks or the final norm cannot be located.
    """
    model_type = getattr(getattr(lm, "config", None), "model_type", None)
    for architecture in _ARCHITECTURES.values():
        if model_type in architecture.model_types:
            return architecture
    blocks = _search(lm, ("layers", "h", "blocks"), nn.ModuleList)
    norm = _search(lm, ("norm", "ln_f", "final_layernorm", "final_layer_norm"), nn.Module)
    if blocks is None or norm is None:
        known = ", ".join(sorted(t for f in _ARCHITECTURES.values() for t in f.model_types))
        raise ValueError(
            f"thoughtscope cannot find the decoder blocks and final norm of model type "
            f"{model_type!r}. Known types: {known}. Register an Architecture for it in "
            f"thoughtscope.model.architectures."
        )
    found_blocks, found_norm = cast(nn.ModuleList, blocks), norm
    return Architecture(
        name=str(model_type),
        model_types=(str(model_type),),
        blocks=lambda _lm: found_blocks,
        final_norm=lambda _lm: found_norm,
        lora_targets=(),
    )
