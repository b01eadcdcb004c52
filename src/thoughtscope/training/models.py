"""Starting points for training: a pretrained causal LM turned into a CODI model.

From-scratch models come from :func:`thoughtscope.model.new_codi_model` (the toy recipe
in :mod:`thoughtscope.training.toy`). A pretrained LM (GPT-2, Llama-1B…) gets the three
CODI ids appended to its vocabulary, a fresh projection and, optionally, LoRA adapters on
the modules the published CODI code adapts; the training loop is the same.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from thoughtscope.model.architectures import architecture_for
from thoughtscope.model.codi import CodiModel, codi_around, resolve_device, resolve_dtype


def codi_from_pretrained(
    base_model: str,
    *,
    num_latent: int = 6,
    remove_eos: bool = True,
    projection_width: int | None = None,
    answer_format: str = "The answer is: {answer}",
    lora_rank: int = 0,
    lora_alpha: int = 32,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    local_files_only: bool = True,
) -> CodiModel:
    """A CODI model around a pretrained LM, ready to train.

    Args:
        base_model: Folder (or, without ``local_files_only``, hub id) of an HF causal LM.
        num_latent: Number of continuous thoughts.
        remove_eos: Whether to drop the ``<eos>`` before ``<bot>`` and after ``<eot>``.
        projection_width: Hidden width of the projection (default: the LM's width).
        answer_format: How answers are written, e.g. ``The answer is: {answer}``.
        lora_rank: With a rank > 0, the LM is frozen and PEFT LoRA adapters are trained
            (the embeddings stay trainable so the new ids learn); 0 trains every weight.
        lora_alpha: LoRA scaling numerator.
        dtype: Weight dtype.
        device: Where the model lives (``auto`` picks CUDA when available).
        local_files_only: Never download.
    """
    tokenizer = AutoTokenizer.from_pretrained(base_model, local_files_only=local_files_only)
    lm: Any = AutoModelForCausalLM.from_pretrained(
        base_model, local_files_only=local_files_only, attn_implementation="eager"
    )
    model = codi_around(
        lm,
        tokenizer,
        num_latent=num_latent,
        remove_eos=remove_eos,
        projection_width=projection_width,
        answer_format=answer_format,
        name=base_model,
    )
    if lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        targets = list(architecture_for(lm).lora_targets)
        model.lm = get_peft_model(  # type: ignore[assignment]
            lm,
            LoraConfig(
                r=lora_rank,
                lora_alpha=lora_alpha,
                target_modules=targets,
                lora_dropout=0.0,
                task_type="CAUSAL_LM",
            ),
        )
        for parameter in lm.get_input_embeddings().parameters():
            parameter.requires_grad_(True)
    return model.to(device=resolve_device(device), dtype=resolve_dtype(dtype))
