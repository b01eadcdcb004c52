"""The CODI model object: a causal LM, its projection, its special ids and its tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from thoughtscope.model.architectures import Family, family_for
from thoughtscope.model.config import CodiConfig
from thoughtscope.model.projection import Projection
from thoughtscope.tensorfile import save_tensors

CONFIG_FILE = "thoughtscope.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` means CUDA when available, else CPU; anything else is passed to torch."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available here; use cpu or auto")
    return resolved


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Maps ``float32`` / ``bfloat16`` / ``float16`` (or a torch dtype) to a torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}") from None


class CodiModel(nn.Module):
    """A causal LM that reasons in continuous thoughts (CODI, arXiv 2502.21074).

    Holds the LM (plain, or PEFT-wrapped when LoRA is kept unmerged), the projection that
    maps a last-layer hidden state to the next thought, the tokenizer and the
    :class:`CodiConfig` (special ids on a base vocabulary of V: pad = V, bot = V+1,
    eot = V+2; number of latents; ``remove_eos``).

    The runner (:mod:`thoughtscope.engine.runner`) drives it; this class only gives access to
    the parts: embeddings, decoder blocks, final norm and unembedding.
    """

    def __init__(
        self,
        lm: PreTrainedModel,
        projection: Projection,
        tokenizer: Any,
        config: CodiConfig,
        *,
        name: str = "",
    ):
        super().__init__()
        self.lm = lm
        self.projection = projection
        self.tokenizer = tokenizer
        self.config = config
        self.name = name
        self.family: Family = family_for(self.base_lm)

    # ----------------------------------------------------------------- parts
    @property
    def base_lm(self) -> PreTrainedModel:
        """The underlying HF model, unwrapped from PEFT when LoRA is unmerged."""
        get_base = getattr(self.lm, "get_base_model", None)
        return get_base() if callable(get_base) else self.lm

    @property
    def blocks(self) -> nn.ModuleList:
        """The decoder blocks, in order; ``block:L`` is ``blocks[L]``'s output."""
        return self.family.blocks(self.base_lm)

    @property
    def final_norm(self) -> nn.Module:
        """The norm applied after the last block, before the unembedding."""
        return self.family.final_norm(self.base_lm)

    @property
    def num_layers(self) -> int:
        """Number of decoder blocks."""
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        embedding = self.base_lm.get_input_embeddings()
        assert isinstance(embedding, nn.Embedding)
        return int(embedding.embedding_dim)

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the weights."""
        return next(self.parameters()).dtype

    def embed(self, ids: Tensor) -> Tensor:
        """Input embeddings of token ids: ``(...,) -> (..., d)``."""
        return self.base_lm.get_input_embeddings()(ids)

    def unembed(self, hidden: Tensor) -> Tensor:
        """Logits over the full vocabulary from a residual-stream vector.

        Applies the final norm and the output embedding, as the logit lens does:
        ``(..., d) -> (..., V+3)``. Do not pass the last block's output through this
        twice: ``hidden_states[-1]`` of HF models is already normed.
        """
        head = self.base_lm.get_output_embeddings()
        return head(self.final_norm(hidden))

    def question_ids(self, question: str) -> list[int]:
        """Token ids of the prompt before ``<bot>``: the question with the tokenizer's own
        special tokens, then ``<eos>`` unless ``remove_eos``."""
        ids = list(self.tokenizer(question)["input_ids"])
        if not self.config.remove_eos:
            ids.append(self.config.eos_id)
        return ids

    def answer_ids(self, answer: float) -> list[int]:
        """Token ids of ``answer`` written as the model writes answers, then ``<eos>``."""
        number = str(int(answer)) if float(answer).is_integer() else repr(float(answer))
        text = self.config.answer_format.format(answer=number)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return [*ids, self.config.eos_id]

    def decode(self, ids: list[int]) -> str:
        """Answer text with special tokens skipped (CODI ids included)."""
        keep = [i for i in ids if i < self.config.base_vocab_size]
        return str(self.tokenizer.decode(keep, skip_special_tokens=True))

    # ---------------------------------------------------------------- storage
    def merged(self) -> CodiModel:
        """This model with LoRA merged into the base weights (itself if already plain)."""
        if not callable(getattr(self.lm, "merge_and_unload", None)):
            return self
        lm = self.lm.merge_and_unload()  # type: ignore[operator]
        return CodiModel(lm, self.projection, self.tokenizer, self.config, name=self.name)

    def save_pretrained(self, path: str | Path) -> Path:
        """Writes a self-describing folder: ``thoughtscope.json``, ``model.safetensors``
        (LoRA merged) and the tokenizer files."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        plain = self.merged()
        lm = plain.base_lm
        meta = {
            "format": "thoughtscope-codi",
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "codi": self.config.to_dict(),
            "lm_config": lm.config.to_dict(),
        }
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        tensors = {f"lm.{k}": v for k, v in _untied_state(lm).items()}
        tensors.update({f"prj.{k}": v for k, v in plain.projection.state_dict().items()})
        save_tensors(
            {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()},
            str(folder / WEIGHTS_FILE),
            metadata={"format": "thoughtscope-codi"},
        )
        self.tokenizer.save_pretrained(str(folder))
        return folder

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        dtype: str | torch.dtype = "float32",
        device: str | torch.device = "cpu",
    ) -> CodiModel:
        """Loads a folder written by :meth:`save_pretrained`."""
        folder = Path(path)
        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{folder} is not a thoughtscope model folder (no {CONFIG_FILE}). For an "
                "official CODI checkpoint, pass --base-model and --preset as well."
            )
        meta = json.loads(config_path.read_text())
        if meta.get("format") != "thoughtscope-codi":
            raise ValueError(f"{config_path}: not a thoughtscope model config")
        codi = CodiConfig.from_dict(meta["codi"])
        lm_config = dict(meta["lm_config"])
        lm_config.pop("transformers_version", None)
        hf_config = AutoConfig.for_model(**lm_config)
        lm = AutoModelForCausalLM.from_config(hf_config, attn_implementation="eager")
        state = load_file(str(folder / WEIGHTS_FILE))
        lm_state = {k[3:]: v for k, v in state.items() if k.startswith("lm.")}
        missing, unexpected = lm.load_state_dict(lm_state, strict=False)
        tied = _tied_names(lm)
        missing = [k for k in missing if k not in tied]
        if missing or unexpected:
            raise ValueError(
                f"{folder / WEIGHTS_FILE} does not fit its config: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
        lm.tie_weights()
        d_model = int(lm.get_input_embeddings().weight.shape[1])
        projection = Projection(
            d_model, codi.projection_width, layer_norm=codi.projection_layer_norm
        )
        projection.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("prj.")})
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = cls(lm, projection, tokenizer, codi, name=str(meta.get("name") or folder.name))
        return model.to(device=resolve_device(device), dtype=resolve_dtype(dtype)).eval()


def _tied_names(lm: nn.Module) -> set[str]:
    """State-dict names that share storage with an earlier name (tied weights)."""
    seen: dict[int, str] = {}
    tied: set[str] = set()
    for name, tensor in lm.state_dict(keep_vars=True).items():
        key = tensor.data_ptr()
        if key in seen:
            tied.add(name)
        else:
            seen[key] = name
    return tied


def _untied_state(lm: nn.Module) -> dict[str, Tensor]:
    """The state dict without the second copy of tied weights (safetensors refuses them)."""
    tied = _tied_names(lm)
    return {k: v for k, v in lm.state_dict().items() if k not in tied}


def new_codi_model(
    lm_config: Any,
    tokenizer: Any,
    *,
    num_latent: int = 6,
    remove_eos: bool = True,
    projection_width: int | None = None,
    projection_layer_norm: bool = True,
    answer_format: str = "The answer is: {answer}",
    name: str = "",
) -> CodiModel:
    """A freshly initialised CODI model around an HF config (for training from scratch).

    The base vocabulary V is ``len(tokenizer)``; the LM gets V+3 embedding rows (pad,
    bot, eot) whatever ``lm_config.vocab_size`` says.
    """
    base_vocab = len(tokenizer)
    lm_config.vocab_size = base_vocab + 3
    lm_config.eos_token_id = int(tokenizer.eos_token_id)
    lm_config.bos_token_id = tokenizer.bos_token_id
    lm_config.pad_token_id = base_vocab
    lm = AutoModelForCausalLM.from_config(lm_config, attn_implementation="eager")
    return codi_around(
        lm,
        tokenizer,
        num_latent=num_latent,
        remove_eos=remove_eos,
        projection_width=projection_width,
        projection_layer_norm=projection_layer_norm,
        answer_format=answer_format,
        name=name,
    )


def codi_around(
    lm: PreTrainedModel,
    tokenizer: Any,
    *,
    num_latent: int = 6,
    remove_eos: bool = True,
    projection_width: int | None = None,
    projection_layer_norm: bool = True,
    answer_format: str = "The answer is: {answer}",
    name: str = "",
) -> CodiModel:
    """A CODI model around an LM: V = ``len(tokenizer)``, the embeddings resized to V+3
    rows when they are not already, and a freshly initialised projection."""
    base_vocab = len(tokenizer)
    embedding = lm.get_input_embeddings()
    assert isinstance(embedding, nn.Embedding)
    if embedding.num_embeddings != base_vocab + 3:
        lm.resize_token_embeddings(base_vocab + 3)
    d_model = int(embedding.embedding_dim)
    width = projection_width or d_model
    config = CodiConfig(
        base_vocab_size=base_vocab,
        num_latent=num_latent,
        remove_eos=remove_eos,
        eos_id=int(tokenizer.eos_token_id),
        projection_width=width,
        projection_layer_norm=projection_layer_norm,
        answer_format=answer_format,
    )
    projection = Projection(d_model, width, layer_norm=projection_layer_norm)
    return CodiModel(lm, projection, tokenizer, config, name=name)
