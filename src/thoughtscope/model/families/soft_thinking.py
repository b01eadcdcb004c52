"""Soft thinking (arXiv 2505.15778): training-free latent reasoning on a plain reasoning LM.

At each thinking step the model's next-token distribution (after temperature, top-k,
top-p and min-p, then cut to the ``max_topk`` most likely tokens and renormalised) is
not sampled: the probability-weighted mix of those tokens' input embeddings is fed as
the next input, a *concept token*. Thinking stops when the most likely token is the
end-of-thinking marker, or (cold stop, when ``entropy_threshold > 0``) when the
entropy of the temperature-scaled distribution stayed below the threshold for
``entropy_steps`` steps in a row; either way the marker itself is fed next, and the
answer is decoded greedily. ``max_thoughts`` caps the thinking; rows that reach it are
flagged ``thoughts_capped``.

This follows the reference implementation (eric-ai-lab/Soft-Thinking, an SGLang fork):
entropy in nats on the unfiltered temperature-scaled probabilities; the filters in the
order top-k, top-p, min-p, top-n; the stop id the last id of the encoded marker. It
differs where a library of causal analyses must: thinking has its own cap, and the
answer is decoded greedily (reproducible) rather than sampled.

Layout: the question (through ``prompt_template``, optionally the tokenizer's chat
template) with the tokenizer's special tokens; then ``think_start``; then the concept
tokens; then the end marker; then the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from thoughtscope.model.families.base import StopCheck, register_family
from thoughtscope.model.thought_model import ThoughtModel, resolve_device, resolve_dtype

NAME = "soft-thinking"

MATH_TEMPLATE = (
    "Please reason step by step, and put your final answer within \\boxed{{}}.\n\n{question}"
)
"""The published math prompt (``{question}`` stands for the question)."""


@dataclass(frozen=True)
class SoftThinkingConfig:
    """Settings of a soft-thinking model (the LM itself is unchanged).

    Attributes:
        think_start: Text fed after the prompt to open thinking (its last token's
            state gives the first concept token). Stripped from the prompt's end when
            the chat template already wrote it.
        think_end: The end-of-thinking marker; its encoding's last id is the stop id,
            and the id fed to close thinking.
        temperature: Divides the logits before the softmax.
        top_k: Keep the k most likely tokens (0: all).
        top_p: Keep the smallest most-likely set with this much probability (1: all).
        min_p: Drop tokens below ``min_p`` times the top probability (0: none).
        max_topk: n, how many tokens a concept token mixes (1: greedy, one-hot).
        entropy_threshold: Cold stop: entropy (nats) below this counts as confident;
            0 turns cold stop off.
        entropy_steps: Cold stop after this many confident steps in a row.
        max_thoughts: The most concept tokens fed; then thinking is closed (capped).
        prompt_template: ``{question}`` stands for the question.
        chat_template: Wrap the prompt as a user turn with the tokenizer's chat template
            (with the generation prompt).
        answer_format: How the model writes a final answer (``{answer}`` stands for the
            number), to teacher-force the expected answer.
    """

    think_start: str = "<think>"
    think_end: str = "</think>"
    temperature: float = 0.6
    top_k: int = 30
    top_p: float = 0.95
    min_p: float = 0.001
    max_topk: int = 10
    entropy_threshold: float = 0.01
    entropy_steps: int = 256
    max_thoughts: int = 256
    prompt_template: str = "{question}"
    chat_template: bool = False
    answer_format: str = "\\boxed{{{answer}}}"

    def __post_init__(self) -> None:
        problems = []
        if not self.think_start or not self.think_end:
            problems.append("think_start and think_end must be non-empty")
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0 or self.max_topk < 1 or self.max_thoughts < 0:
            problems.append("top_k >= 0, max_topk >= 1 and max_thoughts >= 0 are needed")
        if not 0 < self.top_p <= 1 or not 0 <= self.min_p < 1:
            problems.append(
                f"top_p in (0, 1] and min_p in [0, 1) are needed, got {self.top_p}, {self.min_p}"
            )
        if self.entropy_threshold < 0 or self.entropy_steps < 1:
            problems.append("entropy_threshold >= 0 and entropy_steps >= 1 are needed")
        if "{question}" not in self.prompt_template:
            problems.append("prompt_template must contain {question}")
        if problems:
            raise ValueError("soft-thinking settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SoftThinkingConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"unknown soft-thinking settings {unknown}; known: {', '.join(sorted(names))}"
            )
        return cls(**data)

    def with_text(self, text: str) -> SoftThinkingConfig:
        """These settings changed by ``key=value,key=value`` (``preset=NAME`` first
        starts from a preset), as ``--thinking`` gives them."""
        config = self
        pairs = [p for p in text.split(",") if p.strip()] if text else []
        types = {f.name: f.type for f in fields(self)}
        changes: dict[str, Any] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep:
                raise ValueError(f"--thinking: {pair!r} is not key=value")
            if key == "preset":
                if value not in PRESETS:
                    raise ValueError(
                        f"--thinking: preset {value!r} is unknown; choose one of "
                        f"{', '.join(PRESETS)}"
                    )
                config = PRESETS[value]
                continue
            if key not in types:
                raise ValueError(
                    f"--thinking: {key!r} is not a setting; known: {', '.join(sorted(types))}"
                )
            kind = str(types[key])
            if kind == "bool":
                changes[key] = value.strip().lower() in ("1", "true", "yes", "on")
            elif kind == "int":
                changes[key] = int(value)
            elif kind == "float":
                changes[key] = float(value)
            else:  # "\\n" on a command line means a newline
                changes[key] = value.replace("\\n", "\n")
        return replace(config, **changes)


PRESETS: dict[str, SoftThinkingConfig] = {
    # scripts/st/qwq32b_st_math.sh of the reference implementation: QwQ-32B on math.
    # It has no thinking cap of its own (32768 tokens bound thinking and answer).
    "qwq-math": SoftThinkingConfig(
        think_start="<think>\n",
        think_end="</think>",
        temperature=0.6,
        top_k=30,
        top_p=0.95,
        min_p=0.001,
        max_topk=10,
        entropy_threshold=0.01,
        entropy_steps=256,
        max_thoughts=32768,
        prompt_template=MATH_TEMPLATE,
        chat_template=True,
    ),
    # The shipped toy CODI model's own LM as its teacher reads it: the teacher writes
    # "question <eos> steps <eos> answer <eos>", so <eos> opens and closes the thinking.
    # Not a published setting: a demonstration on the toy (see its model card).
    "toy-teacher": SoftThinkingConfig(
        think_start="<eos>",
        think_end="<eos>",
        temperature=1.0,
        top_k=5,
        top_p=0.95,
        min_p=0.0,
        max_topk=5,
        entropy_threshold=0.0,
        max_thoughts=64,
        answer_format="{answer}",
    ),
}
"""Settings by name (``--thinking preset=qwq-math``): ``qwq-math`` is the published
setting; ``toy-teacher`` reads the shipped toy's LM as a text reasoner."""


@dataclass(frozen=True)
class ConceptToken:
    """The mixture a soft-thinking step feeds, per row.

    Attributes:
        ids: ``(rows, n)`` token ids, most likely first.
        weights: ``(rows, n)`` their renormalised probabilities (0 past the kept ones).
        entropy: ``(rows,)`` entropy (nats) of the unfiltered temperature-scaled
            distribution.
    """

    ids: Tensor
    weights: Tensor
    entropy: Tensor


def concept_token(logits: Tensor, config: SoftThinkingConfig) -> ConceptToken:
    """The concept token of next-token ``logits`` ``(rows, vocab)``: softmax at the
    temperature, entropy, then top-k, top-p, min-p (each renormalising), then the
    ``max_topk`` most likely, renormalised."""
    probs = torch.softmax(logits.float() / config.temperature, dim=-1)
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum(dim=-1)
    if 0 < config.top_k < probs.shape[-1]:
        kth = probs.topk(config.top_k, dim=-1).values[:, -1:]
        probs = torch.where(probs >= kth, probs, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    if config.top_p < 1:
        ordered, order = probs.sort(dim=-1, descending=True)
        before = ordered.cumsum(dim=-1) - ordered  # mass of the more likely tokens
        ordered = torch.where(before < config.top_p, ordered, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, ordered)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    if config.min_p > 0:
        floor = config.min_p * probs.max(dim=-1, keepdim=True).values
        probs = torch.where(probs >= floor, probs, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    n = min(config.max_topk, probs.shape[-1])
    weights, ids = probs.topk(n, dim=-1)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return ConceptToken(ids, weights, entropy)


class SoftThinkingFamily:
    """The soft-thinking family: settings and the tokenizer's marker ids; no weights."""

    name = NAME
    first_token_may_end = True

    def __init__(self, config: SoftThinkingConfig, tokenizer: Any):
        self.config = config
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError("soft thinking needs a tokenizer with an eos token (eos_token_id)")
        self._eos = int(eos)
        pad = tokenizer.pad_token_id
        self._pad = self._eos if pad is None else int(pad)
        self._start = list(tokenizer(config.think_start, add_special_tokens=False)["input_ids"])
        end = list(tokenizer(config.think_end, add_special_tokens=False)["input_ids"])
        if not self._start or not end:
            raise ValueError(
                f"soft thinking: the markers {config.think_start!r}/{config.think_end!r} "
                "encode to no tokens; give markers the tokenizer knows (--thinking "
                "think_start=…,think_end=…)"
            )
        self.end_id = int(end[-1])  # the reference implementation compares the last id

    @property
    def submodules(self) -> Mapping[str, nn.Module]:
        """None: soft thinking trains nothing."""
        return {}

    @property
    def num_thoughts(self) -> int:
        """The cap on concept tokens (``max_thoughts``)."""
        return self.config.max_thoughts

    @property
    def pad_id(self) -> int:
        """The tokenizer's pad id, else its eos id (padding is never attended to)."""
        return self._pad

    @property
    def eos_id(self) -> int:
        """The tokenizer's eos id."""
        return self._eos

    @property
    def added_ids(self) -> frozenset[int]:
        """None: the markers are the tokenizer's own tokens."""
        return frozenset()

    def prompt_ids(self, tokenizer: Any, question: str) -> list[int]:
        """The question through the template (and chat template), without a trailing
        ``think_start`` the chat template already wrote."""
        text = self.config.prompt_template.format(question=question)
        if self.config.chat_template:
            ids = list(
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
                )
            )
            if ids[-len(self._start) :] == self._start:
                ids = ids[: -len(self._start)]
            return ids
        return list(tokenizer(text)["input_ids"])

    def start_ids(self) -> list[int]:
        """The ids of ``think_start``."""
        return list(self._start)

    def concept(self, model: ThoughtModel, state: Tensor) -> ConceptToken:
        """The concept token made from the normed last-layer state ``(rows, 1, d)``."""
        return concept_token(model.head(state[:, -1]), self.config)

    def next_thought(self, model: ThoughtModel, state: Tensor) -> Tensor:
        """The probability-weighted mix of the concept token's embeddings:
        ``(rows, 1, d) -> (rows, 1, d)``."""
        concept = self.concept(model, state)
        embeds = model.embed(concept.ids)  # (rows, n, d)
        mix = (concept.weights.to(embeds.dtype)[:, :, None] * embeds).sum(dim=1)
        return mix[:, None, :]

    def stopped(
        self, model: ThoughtModel, step: int, state: Tensor, memory: Tensor | None
    ) -> StopCheck:
        """Stop where the concept token's top id is the end marker, or after
        ``entropy_steps`` confident steps in a row (``memory``: that run's length)."""
        concept = self.concept(model, state)
        stop = concept.ids[:, 0] == self.end_id
        run = torch.zeros_like(stop, dtype=torch.long) if memory is None else memory
        if self.config.entropy_threshold > 0:
            run = torch.where(concept.entropy < self.config.entropy_threshold, run + 1, 0)
            stop = stop | (run >= self.config.entropy_steps)
        return StopCheck(stop, run)

    def closing_ids(self) -> list[int]:
        """The end marker's (last) id."""
        return [self.end_id]

    def banned_ids(self) -> list[int]:
        """None: the answer may use any id."""
        return []

    def answer_ids(self, tokenizer: Any, answer: float) -> list[int]:
        """``answer_format`` with the number (integers without ``.0``), then eos."""
        number = str(int(answer)) if float(answer).is_integer() else repr(float(answer))
        text = self.config.answer_format.format(answer=number)
        return [*tokenizer(text, add_special_tokens=False)["input_ids"], self._eos]

    def to_dict(self) -> dict[str, Any]:
        """The :class:`SoftThinkingConfig` as a dict."""
        return self.config.to_dict()

    def saved_weights(self) -> dict[str, Tensor]:
        """None beside the LM's."""
        return {}


def soft_thinking_around(
    lm: PreTrainedModel, tokenizer: Any, config: SoftThinkingConfig, *, name: str = ""
) -> ThoughtModel:
    """A soft-thinking model around an LM and its tokenizer."""
    return ThoughtModel(lm, tokenizer, SoftThinkingFamily(config, tokenizer), name=name)


def load_soft_thinking_lm(
    folder: str | Path,
    config: SoftThinkingConfig,
    *,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
) -> ThoughtModel:
    """Any HF causal LM folder (weights, config, tokenizer) as a soft-thinking model.

    Eager attention, so that masked-out positions (left padding, rows that stopped
    thinking) contribute exactly nothing.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(folder)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"--model {folder}: not an HF model folder (no config.json); soft thinking "
            "runs on a local causal LM folder"
        )
    lm = AutoModelForCausalLM.from_pretrained(
        str(path), local_files_only=True, attn_implementation="eager", dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = soft_thinking_around(lm, tokenizer, config, name=path.name)
    return model.to(device=resolve_device(device), dtype=resolve_dtype(dtype)).eval()


def load_soft_thinking(
    settings: dict[str, Any],
    weights: dict[str, Tensor],
    lm: PreTrainedModel,
    tokenizer: Any,
    name: str,
) -> ThoughtModel:
    """Rebuilds a saved soft-thinking model (the registry's loader)."""
    return soft_thinking_around(lm, tokenizer, SoftThinkingConfig.from_dict(settings), name=name)


register_family(NAME, load_soft_thinking)
