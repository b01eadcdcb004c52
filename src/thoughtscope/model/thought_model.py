"""A causal LM that reasons in continuous thoughts: the generic part of every family.

:class:`ThoughtModel` holds the HF language model (plain, or PEFT-wrapped when LoRA is
kept unmerged), its tokenizer and its thought family (:mod:`thoughtscope.model.families`),
and gives the engine access to the LM's parts: embeddings, decoder blocks, final norm,
unembedding, width, depth, device, dtype, context length. What is particular to a family
(prompt layout, special ids, how a thought is fed back) is asked of ``model.family``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from thoughtscope.files import save_tensors, write_json
from thoughtscope.model.architectures import Architecture, architecture_for

if TYPE_CHECKING:
    from thoughtscope.model.families.base import ThoughtFamily

CONFIG_FILE = "thoughtscope.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "thoughtscope-codi"  # the name of the folder format (kept from its first family)
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


class ThoughtModel(nn.Module):
    """An LM, its tokenizer and its thought family.

    The family's own modules (CODI's projection) are registered as this model's
    submodules under the names the family gives them, so ``.to()``, ``.parameters()``
    and ``state_dict()`` cover them.
    """

    def __init__(
        self, lm: PreTrainedModel, tokenizer: Any, family: ThoughtFamily, *, name: str = ""
    ):
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer
        self.family = family
        for module_name, module in family.submodules.items():
            self.add_module(module_name, module)
        self.name = name
        self.architecture: Architecture = architecture_for(self.base_lm)

    # ----------------------------------------------------------------- parts
    @property
    def base_lm(self) -> PreTrainedModel:
        """The underlying HF model, unwrapped from PEFT when LoRA is unmerged."""
        get_base = getattr(self.lm, "get_base_model", None)
        return get_base() if callable(get_base) else self.lm

    @property
    def decoder(self) -> nn.Module:
        """The transformer stack without the LM head (final norm included)."""
        return self.base_lm.base_model

    @property
    def head(self) -> nn.Module:
        """The output embedding: normed last-layer state ``(..., d) -> (..., vocab)``."""
        head = self.base_lm.get_output_embeddings()
        assert head is not None
        return head

    @property
    def blocks(self) -> nn.ModuleList:
        """The decoder blocks, in order; ``block:L`` is ``blocks[L]``'s output."""
        return self.architecture.blocks(self.base_lm)

    @property
    def final_norm(self) -> nn.Module:
        """The norm applied after the last block, before the unembedding."""
        return self.architecture.final_norm(self.base_lm)

    @property
    def num_layers(self) -> int:
        """Number of decoder blocks."""
        return len(self.blocks)

    @property
    def num_thoughts(self) -> int:
        """How many continuous thoughts the family feeds back (its N)."""
        return self.family.num_thoughts

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        embedding = self.base_lm.get_input_embeddings()
        assert isinstance(embedding, nn.Embedding)
        return int(embedding.embedding_dim)

    @property
    def vocab_size(self) -> int:
        """Rows of the embedding matrix (the family's added ids included)."""
        embedding = self.base_lm.get_input_embeddings()
        assert isinstance(embedding, nn.Embedding)
        return int(embedding.num_embeddings)

    @property
    def context_length(self) -> int | None:
        """The longest sequence the LM's positions allow, when its config says."""
        config = self.base_lm.config
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(config, key, None)
            if isinstance(value, int):
                return value
        return None

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
        ``(..., d) -> (..., vocab)``. Do not pass the last block's output through this
        twice: ``hidden_states[-1]`` of HF models is already normed.
        """
        return self.head(self.final_norm(hidden))

    # ------------------------------------------------------------ the family's text
    def question_ids(self, question: str) -> list[int]:
        """Token ids of the prompt before the thoughts, as the family lays it out."""
        return self.family.prompt_ids(self.tokenizer, question)

    def answer_ids(self, answer: float) -> list[int]:
        """Token ids of ``answer`` written as the model writes answers, then ``<eos>``."""
        return self.family.answer_ids(self.tokenizer, answer)

    def decode(self, ids: list[int]) -> str:
        """Answer text with special tokens skipped (the family's added ids included)."""
        added = self.family.added_ids
        keep = [i for i in ids if i not in added]
        return str(self.tokenizer.decode(keep, skip_special_tokens=True))

    # ---------------------------------------------------------------- storage
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        dtype: str | torch.dtype = "float32",
        device: str | torch.device = "cpu",
    ) -> Self:
        """Loads a thoughtscope model folder; called on a family's class (``CodiModel``,
        ``CoconutModel``), refuses a folder holding another family's model."""
        model = load_saved(path, dtype=dtype, device=device)
        if not isinstance(model, cls):
            raise ValueError(
                f"{path} holds a {model.family.name} model; this needs a {cls.__name__}"
            )
        return model

    def with_lm(self, lm: PreTrainedModel) -> ThoughtModel:
        """The same family and tokenizer around another LM."""
        return ThoughtModel(lm, self.tokenizer, self.family, name=self.name)

    def merged(self) -> ThoughtModel:
        """This model with LoRA merged into the base weights (itself if already plain)."""
        if not callable(getattr(self.lm, "merge_and_unload", None)):
            return self
        return self.with_lm(self.lm.merge_and_unload())  # type: ignore[operator]

    def save_pretrained(self, path: str | Path) -> Path:
        """Writes a self-describing folder: ``thoughtscope.json`` (the family's settings
        under its name), ``model.safetensors`` (LoRA merged) and the tokenizer files."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        plain = self.merged()
        lm = plain.base_lm
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "family": self.family.name,
            self.family.name: self.family.to_dict(),
            "lm_config": lm.config.to_dict(),
        }
        write_json(folder / CONFIG_FILE, meta, sort_keys=True)
        tensors = {f"lm.{k}": v for k, v in _untied_state(lm).items()}
        tensors.update(plain.family.saved_weights())
        save_tensors(
            {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()},
            folder / WEIGHTS_FILE,
            metadata={"format": FORMAT},
        )
        self.tokenizer.save_pretrained(str(folder))
        return folder


def load_saved(
    path: str | Path,
    *,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
) -> ThoughtModel:
    """Loads a folder written by :meth:`ThoughtModel.save_pretrained`, of any registered
    family (folders without a ``family`` key are CODI, the first format)."""
    folder = Path(path)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a thoughtscope model folder (no {CONFIG_FILE}). For an "
            "official CODI checkpoint, pass --base-model and --preset as well."
        )
    meta = json.loads(config_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{config_path}: not a thoughtscope model config")
    from thoughtscope.model.families import family_entry  # the registry, filled

    entry = family_entry(str(meta.get("family", "codi")))
    if entry.name not in meta:
        raise ValueError(f"{config_path}: no {entry.name!r} settings for its family")
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
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    family_weights = {k: v for k, v in state.items() if not k.startswith("lm.")}
    name = str(meta.get("name") or folder.name)
    model = entry.load(meta[entry.name], family_weights, lm, tokenizer, name)
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


def weights_fingerprint(model: ThoughtModel, settings: dict[str, Any]) -> str:
    """SHA-256 of ``settings`` (as sorted JSON) and every weight of ``model`` (names,
    dtypes, shapes, bytes): what a run folder's manifest records to refuse a resume with
    another model."""
    hasher = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        hasher.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        hasher.update(memoryview(flat.view(torch.uint8).numpy()))
    return hasher.hexdigest()
