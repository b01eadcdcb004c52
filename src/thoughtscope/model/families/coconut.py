"""Coconut (arXiv 2412.06769, facebookresearch/coconut): thoughts are the last state itself.

Layout (the published ``get_question_latent_dataset`` and ``Coconut.generate``): the
question plus ``"\\n"`` encoded with the tokenizer's own special tokens, then
``<|start-latent|>``; then k times the last layer's normed hidden state at the last
position is fed back unchanged as the next input embedding (no projection); then
``<|end-latent|>``, whose logits choose the first answer token. Answers are written
``### N``. The three ids come from the tokenizer (added to the base one in the order
start, end, latent; pad is eos); nothing is assumed.

Decoding follows the published ``generate``: greedy over the whole vocabulary (no id is
banned, so eos, the markers and ``<|latent|>`` may be chosen); the first answer token is
kept even when it is eos (:attr:`CoconutFamily.first_token_may_end` is False) and later
tokens stop at eos (not kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import Tensor, nn
from transformers import PreTrainedModel

from thoughtscope.model.families.base import StopCheck, register_family
from thoughtscope.model.thought_model import ThoughtModel

NAME = "coconut"
START_TOKEN = "<|start-latent|>"
END_TOKEN = "<|end-latent|>"
LATENT_TOKEN = "<|latent|>"
TOKENS = (START_TOKEN, END_TOKEN, LATENT_TOKEN)
"""The three tokens, in the order the published ``run.py`` adds them."""


@dataclass(frozen=True)
class CoconutConfig:
    """What turns a causal LM into a Coconut model.

    Attributes:
        num_latent: k, how many thoughts are fed back (published GSM8K eval: 6).
        c_thought: Thoughts per replaced reasoning step (GSM8K: 2); groups thoughts
            into stages (``per-stage`` schedule), k = ``c_thought`` × stages.
        eos_id: The tokenizer's end-of-sequence id (also the pad id, as published).
        start_id, end_id, latent_id: Ids of ``<|start-latent|>``, ``<|end-latent|>``
            and ``<|latent|>`` as the tokenizer gives them.
        answer_format: How answers are written; ``{answer}`` stands for the number.
    """

    num_latent: int
    eos_id: int
    start_id: int
    end_id: int
    latent_id: int
    c_thought: int = 1
    answer_format: str = "### {answer}"

    def __post_init__(self) -> None:
        if self.num_latent < 0:
            raise ValueError(f"num_latent must be 0 or more, got {self.num_latent}")
        if self.c_thought < 1:
            raise ValueError(f"c_thought must be 1 or more, got {self.c_thought}")

    @property
    def num_stages(self) -> int:
        """Stages the thoughts fall into (the last one may be short)."""
        return -(-self.num_latent // self.c_thought)

    @property
    def pad_id(self) -> int:
        """Pad is eos, as published (never attended to: the engine passes masks)."""
        return self.eos_id

    @property
    def remove_eos(self) -> bool:
        """No ``<eos>`` follows the question (the key CODI-minded records ask for)."""
        return True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoconutConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a newer format)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown Coconut config fields {unknown}; is thoughtscope too old?")
        return cls(**data)


def token_ids(tokenizer: Any) -> tuple[int, int, int]:
    """``(start, end, latent)`` ids of the three Coconut tokens in ``tokenizer``.

    Raises:
        ValueError: when the tokenizer lacks one of them.
    """
    ids = []
    for token in TOKENS:
        found = tokenizer.convert_tokens_to_ids(token)
        if found is None or found == tokenizer.unk_token_id or not isinstance(found, int):
            raise ValueError(
                f"the tokenizer has no {token!r}; a Coconut tokenizer is the base one with "
                f"{', '.join(TOKENS)} added in this order (see add_coconut_tokens)"
            )
        ids.append(found)
    return ids[0], ids[1], ids[2]


def add_coconut_tokens(tokenizer: Any) -> Any:
    """Adds the three tokens as the published ``run.py`` does (plain ``add_tokens``, in
    the order start, end, latent) and sets pad to eos; returns the tokenizer."""
    tokenizer.pad_token = tokenizer.eos_token
    for token in TOKENS:
        tokenizer.add_tokens(token)
    return tokenizer


class CoconutFamily:
    """The Coconut thought family: fixed k thoughts, each the last normed state."""

    name = NAME
    first_token_may_end = False
    """The published ``generate`` keeps the first answer token even when it is eos."""

    def __init__(self, config: CoconutConfig):
        self.config = config

    @property
    def submodules(self) -> Mapping[str, nn.Module]:
        """None: Coconut has no weights beside the LM."""
        return {}

    @property
    def num_thoughts(self) -> int:
        """k."""
        return self.config.num_latent

    @property
    def pad_id(self) -> int:
        """eos, as published."""
        return self.config.pad_id

    @property
    def eos_id(self) -> int:
        """The tokenizer's eos id."""
        return self.config.eos_id

    @property
    def added_ids(self) -> frozenset[int]:
        """None skipped: the published decode keeps the three tokens' text (they are not
        special tokens), so an answer that writes one shows it."""
        return frozenset()

    def prompt_ids(self, tokenizer: Any, question: str) -> list[int]:
        """``encode(question + "\\n", add_special_tokens=True)``: the raw question (not
        stripped), as published."""
        return list(tokenizer.encode(question + "\n", add_special_tokens=True))

    def start_ids(self) -> list[int]:
        """``[<|start-latent|>]``."""
        return [self.config.start_id]

    def next_thought(self, model: ThoughtModel, state: Tensor) -> Tensor:
        """The normed last-layer state itself: ``(rows, 1, d) -> (rows, 1, d)``."""
        return state

    def stopped(
        self, model: ThoughtModel, step: int, state: Tensor, memory: Tensor | None
    ) -> StopCheck | None:
        """Coconut thinks a fixed k thoughts."""
        return None

    def closing_ids(self) -> list[int]:
        """``[<|end-latent|>]``."""
        return [self.config.end_id]

    def banned_ids(self) -> list[int]:
        """None: the published greedy argmax runs over the full resized vocabulary."""
        return []

    def answer_ids(self, tokenizer: Any, answer: float) -> list[int]:
        """``### N`` (integers without ``.0``), then eos."""
        number = str(int(answer)) if float(answer).is_integer() else repr(float(answer))
        text = self.config.answer_format.format(answer=number)
        return [*tokenizer.encode(text, add_special_tokens=False), self.config.eos_id]

    def to_dict(self) -> dict[str, Any]:
        """The :class:`CoconutConfig` as a dict."""
        return self.config.to_dict()

    def saved_weights(self) -> dict[str, Tensor]:
        """None beside the LM."""
        return {}


class CoconutModel(ThoughtModel):
    """A ThoughtModel of the Coconut family (``model.config`` is its
    :class:`CoconutConfig`)."""

    family: CoconutFamily

    def __init__(
        self, lm: PreTrainedModel, tokenizer: Any, config: CoconutConfig, *, name: str = ""
    ):
        super().__init__(lm, tokenizer, CoconutFamily(config), name=name)

    @property
    def config(self) -> CoconutConfig:
        """The Coconut settings."""
        return self.family.config

    def with_lm(self, lm: PreTrainedModel) -> CoconutModel:
        """The same tokenizer and settings around another LM."""
        return CoconutModel(lm, self.tokenizer, self.config, name=self.name)


def coconut_around(
    lm: PreTrainedModel,
    tokenizer: Any,
    *,
    num_latent: int,
    c_thought: int = 1,
    name: str = "",
) -> CoconutModel:
    """A Coconut model around an LM whose tokenizer already holds the three tokens and
    whose embeddings have ``len(tokenizer)`` rows."""
    start, end, latent = token_ids(tokenizer)
    config = CoconutConfig(
        num_latent=num_latent,
        c_thought=c_thought,
        eos_id=int(tokenizer.eos_token_id),
        start_id=start,
        end_id=end,
        latent_id=latent,
    )
    return CoconutModel(lm, tokenizer, config, name=name)


def load_coconut(
    settings: dict[str, Any],
    weights: dict[str, Tensor],
    lm: PreTrainedModel,
    tokenizer: Any,
    name: str,
) -> CoconutModel:
    """Rebuilds a saved Coconut model (the registry's loader for ``coconut``)."""
    if weights:
        raise ValueError(
            f"a Coconut model has no weights beside the LM, found {sorted(weights)[:3]}"
        )
    config = CoconutConfig.from_dict(settings)
    if token_ids(tokenizer) != (config.start_id, config.end_id, config.latent_id):
        raise ValueError(
            f"the saved tokenizer's Coconut ids {token_ids(tokenizer)} differ from the saved "
            f"settings' {(config.start_id, config.end_id, config.latent_id)}"
        )
    return CoconutModel(lm, tokenizer, config, name=name)


register_family(NAME, load_coconut)
