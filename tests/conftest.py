"""Shared fixtures: tiny real models (GPT-2 and Llama) built in the test, never mocks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

from thoughtscope.model import CodiModel, Projection, byte_level_tokenizer, new_codi_model

FAMILIES = ("gpt2", "llama")


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread: the test models are tiny, and on a small shared machine a second
    OpenMP thread mostly waits (runs were several times slower with two)."""
    torch.set_num_threads(1)


# The GSM8K test set lies beside the checkout (../shared), never inside it; tests that need
# it skip with a reason when it is absent. THOUGHTSCOPE_GSM8K points elsewhere.
GSM8K_TEST = Path(
    os.environ.get(
        "THOUGHTSCOPE_GSM8K",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl",
    )
)


def tiny_lm_config(family: str, vocab_size: int) -> GPT2Config | LlamaConfig:
    """A 2-block model small enough for a unit test."""
    if family == "gpt2":
        return GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=512)
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )


def tiny_codi(family: str, *, remove_eos: bool = True, seed: int = 0) -> CodiModel:
    """A random CODI model (plain LM, no LoRA) of the given family."""
    torch.manual_seed(seed)
    tokenizer = byte_level_tokenizer(bos=family == "llama")
    config = tiny_lm_config(family, len(tokenizer))
    model = new_codi_model(config, tokenizer, num_latent=6, remove_eos=remove_eos, name=family)
    return model.eval()


def write_official_checkpoint(
    root: Path, family: str, *, fmt: str = "safetensors", seed: int = 0
) -> tuple[Path, Path]:
    """Builds a base LM and wraps it the published way; returns (checkpoint, base) folders.

    Published recipe: resize embeddings to V+3, PEFT LoRA on the family's targets, a
    projection with LayerNorm; one state dict with ``codi.`` and ``prj.`` prefixes. LoRA B
    is made non-zero so that merging matters.
    """
    torch.manual_seed(seed)
    tokenizer = byte_level_tokenizer(bos=family == "llama")
    base_dir, ckpt_dir = root / f"{family}-base", root / f"{family}-codi"
    lm = AutoModelForCausalLM.from_config(tiny_lm_config(family, len(tokenizer)))
    lm.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    lm.resize_token_embeddings(len(tokenizer) + 3, mean_resizing=False)
    targets = ["c_attn", "c_proj", "c_fc"] if family == "gpt2" else ["q_proj", "v_proj", "up_proj"]
    peft_lm = get_peft_model(
        lm, LoraConfig(r=4, lora_alpha=32, target_modules=targets, lora_dropout=0.0)
    )
    with torch.no_grad():
        for name, param in peft_lm.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    projection = Projection(32, 48, layer_norm=True)
    state = {f"codi.{k}": v for k, v in peft_lm.state_dict().items()}
    state.update({f"prj.{k}": v for k, v in projection.state_dict().items()})
    ckpt_dir.mkdir(parents=True)
    if fmt == "safetensors":
        # safetensors refuses shared tensors: drop the tied head as the published files do.
        unique: dict[int, str] = {}
        kept = {}
        for key, value in state.items():
            if value.data_ptr() in unique:
                continue
            unique[value.data_ptr()] = key
            kept[key] = value.contiguous()
        save_file(kept, str(ckpt_dir / "model.safetensors"))
    else:
        torch.save(state, ckpt_dir / "pytorch_model.bin")
    return ckpt_dir, base_dir


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    """Runs a test once per supported architecture."""
    return str(request.param)


@pytest.fixture
def questions() -> list[str]:
    """Sixteen questions of very different lengths."""
    base = [
        "1+1?",
        "a=3;b=a*2;b=?",
        "Tom has 3 apples and buys 4 more. How many apples does he have?",
        "x",
        "A farmer has 12 cows, sells 5, buys twice as many as he sold, then loses 2. "
        "How many cows remain on the farm at the end of the long year?",
        "a=9;b=a-3;c=b*2;d=c+1;e=d-4;e=?",
        "What is 7 times 8?",
        "Sum 2, 3 and 4.",
    ]
    return base + [q[::-1] + " ok" for q in base]


# ------------------------------------------------------------------------------ Coconut
def tiny_coconut(family: str, *, num_latent: int = 6, c_thought: int = 2, seed: int = 0) -> Any:
    """A random Coconut model (byte tokenizer + the three tokens) of the given family."""
    from thoughtscope.model.coconut import new_coconut_model

    torch.manual_seed(seed)
    tokenizer = byte_level_tokenizer(bos=family == "llama")
    config = tiny_lm_config(family, len(tokenizer) + 3)
    model = new_coconut_model(
        config, tokenizer, num_latent=num_latent, c_thought=c_thought, name=family
    )
    return model.eval()


def write_coconut_checkpoint(root: Path, family: str, *, seed: int = 0) -> tuple[Path, Path]:
    """Writes a base LM folder and a checkpoint as the published run.py saves one:
    ``torch.save(Coconut(...).state_dict())``, keys ``base_causallm.*`` plus the alias
    ``embedding.weight``, no tokenizer. Returns (checkpoint file, base folder)."""
    from thoughtscope.model.families.coconut import add_coconut_tokens

    torch.manual_seed(seed)
    tokenizer = byte_level_tokenizer(bos=family == "llama")
    base_dir = root / f"{family}-base"
    lm = AutoModelForCausalLM.from_config(tiny_lm_config(family, len(tokenizer)))
    lm.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    add_coconut_tokens(tokenizer)
    lm.resize_token_embeddings(len(tokenizer))
    with torch.no_grad():  # the published HEAD copies the "<<" row; any distinct rows do
        for offset in range(1, 4):
            lm.get_input_embeddings().weight[-offset].normal_(0, 0.5)
    wrapper = torch.nn.Module()
    wrapper.base_causallm = lm
    wrapper.embedding = lm.get_input_embeddings()
    checkpoint = root / f"{family}-coconut" / "checkpoint_16"
    checkpoint.parent.mkdir(parents=True)
    torch.save(wrapper.state_dict(), checkpoint)
    return checkpoint, base_dir


@torch.no_grad()
def published_coconut_generate(
    lm: Any, prompt: list[int], latent_id: int, eos_id: int, max_new_tokens: int
) -> list[int]:
    """A plain transcription of the published ``Coconut.forward`` + ``generate`` (batch 1,
    no cache, eval mode): each ``<|latent|>`` embedding becomes the last layer's (normed)
    state at the position before it, computed over the prefix; the first answer token is
    the argmax at ``<|end-latent|>``, kept even if eos; each later token is a full
    recompute, stopping (not kept) at eos; no id is masked. Returns the new ids."""
    wte = lm.get_input_embeddings()
    embeds = wte(torch.tensor(prompt))[None]
    for p in [i for i, t in enumerate(prompt) if t == latent_id]:
        hidden = lm(inputs_embeds=embeds[:, :p], output_hidden_states=True).hidden_states[-1]
        embeds = torch.cat([embeds[:, :p], hidden[:, p - 1 : p], embeds[:, p + 1 :]], dim=1)
    new = [int(lm(inputs_embeds=embeds).logits[0, -1].argmax())]
    embeds = torch.cat([embeds, wte(torch.tensor([[new[0]]]))], dim=1)
    for _ in range(max_new_tokens - 1):
        token = int(lm(inputs_embeds=embeds).logits[0, -1].argmax())
        if token == eos_id:
            break
        new.append(token)
        embeds = torch.cat([embeds, wte(torch.tensor([[token]]))], dim=1)
    return new
