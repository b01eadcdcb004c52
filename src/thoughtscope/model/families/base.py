"""The seam between the engine and a continuous-thought family.

A *thought family* (CODI, Coconut, soft thinking, …) is the part of a latent-reasoning
model that the engine must not know about: how a question is laid out before the
thoughts, which ids open and close the thoughts, how the next thought's input embedding
is made from the last step's state, how many thoughts there are, which ids decoding may
never choose, how an answer is written, and the family's special-token ids. Everything
else (left padding, masks, positions, the KV cache, per-row edits, recording, teacher
forcing, greedy decoding) is the engine's, the same for every family.

Adding a family is one new module that implements :class:`ThoughtFamily` and one call
to :func:`register_family` (see :mod:`thoughtscope.model.families.codi`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from torch import Tensor, nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from thoughtscope.model.thought_model import ThoughtModel


class ThoughtFamily(Protocol):
    """What one continuous-thought family defines; the engine asks it and nothing else.

    The special ids come from the checkpoint's config or tokenizer when it has them;
    the engine never computes them.
    """

    name: str
    """Registry key, e.g. ``codi``; also the key of the family's settings in a saved
    model's ``thoughtscope.json``."""

    first_token_may_end: bool
    """Whether an ``<eos>`` chosen as the first answer token ends the answer (CODI).
    False where the published decoder keeps it and goes on (Coconut's ``generate``)."""

    @property
    def submodules(self) -> Mapping[str, nn.Module]:
        """The family's trainable parts (CODI: ``{"projection": …}``), registered on the
        model so that they move, train and save with it."""
        ...

    @property
    def num_thoughts(self) -> int:
        """How many continuous thoughts follow the start marker (the model's N)."""
        ...

    @property
    def pad_id(self) -> int:
        """Id written where left padding goes (never attended to)."""
        ...

    @property
    def eos_id(self) -> int:
        """Decoding stops at this id."""
        ...

    @property
    def added_ids(self) -> frozenset[int]:
        """Ids the family added to the vocabulary; decoded text skips them."""
        ...

    def prompt_ids(self, tokenizer: Any, question: str) -> list[int]:
        """Token ids of the prompt before the start marker (the question as the family
        lays it out)."""
        ...

    def start_ids(self) -> list[int]:
        """Ids fed after the prompt, before the first thought (CODI: ``<bot>``). The
        last of them produces thought 0."""
        ...

    def next_thought(self, model: ThoughtModel, state: Tensor) -> Tensor:
        """The next thought's input embedding from the last step's normed last-layer
        state at the last position: ``(rows, 1, d) -> (rows, 1, d)``.

        ``model`` gives access to the embeddings and the LM head, for families whose
        feedback is a mix of token embeddings rather than a function of ``state``.
        """
        ...

    def stopped(
        self, model: ThoughtModel, step: int, state: Tensor, memory: Tensor | None
    ) -> StopCheck | None:
        """Per-row stopping rule: after ``step`` thoughts were fed (0 after the start
        ids), which rows stop thinking now, from the last-layer ``state`` ``(rows, 1, d)``
        and the rule's own per-row ``memory`` from the previous call (``None`` at the
        first call). A row that stops gets the closing ids next, not another thought.

        ``None`` means a fixed count of :attr:`num_thoughts` for every row (CODI,
        Coconut); otherwise :attr:`num_thoughts` is the cap, and rows that reach it
        without stopping are flagged ``capped``.
        """
        ...

    def closing_ids(self) -> list[int]:
        """Ids fed after the last thought; the last of them predicts the first answer
        token (CODI: ``<eot>`` [+ ``<eos>``])."""
        ...

    def banned_ids(self) -> list[int]:
        """Ids greedy decoding may never choose (CODI: ``<eot>``)."""
        ...

    def answer_ids(self, tokenizer: Any, answer: float) -> list[int]:
        """Token ids of ``answer`` written as the model writes answers, then
        ``<eos>`` (to teacher-force the expected answer)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The family's settings, JSON-ready (saved with the model, recorded in runs)."""
        ...

    def saved_weights(self) -> dict[str, Tensor]:
        """The family's own weights (beside the LM's), as named in a saved model."""
        ...


@dataclass(frozen=True)
class StopCheck:
    """A per-row stopping decision (:meth:`ThoughtFamily.stopped`).

    Attributes:
        stop: ``(rows,)`` bool, the rows that stop thinking now.
        memory: ``(rows, ...)`` what the rule carries to its next call (e.g. how many
            steps in a row were confident); the engine keeps it aligned with the rows.
    """

    stop: Tensor
    memory: Tensor


FamilyLoader = Callable[
    [dict[str, Any], dict[str, Tensor], "PreTrainedModel", Any, str], "ThoughtModel"
]
"""Builds a model of one family from its saved settings, its saved weights (named as
:meth:`ThoughtFamily.saved_weights` names them), the LM, the tokenizer and a name."""


@dataclass(frozen=True)
class FamilyEntry:
    """One registered thought family: its name and how to rebuild a saved model."""

    name: str
    load: FamilyLoader


_FAMILIES: dict[str, FamilyEntry] = {}


def register_family(name: str, load: FamilyLoader) -> FamilyEntry:
    """Adds a family to the registry (later registrations win)."""
    entry = FamilyEntry(name, load)
    _FAMILIES[name] = entry
    return entry


def family_entry(name: str) -> FamilyEntry:
    """The registered family called ``name``.

    Raises:
        ValueError: naming the known families.
    """
    try:
        return _FAMILIES[name]
    except KeyError:
        known = ", ".join(sorted(_FAMILIES)) or "none"
        raise ValueError(
            f"thought family {name!r} is unknown (known: {known}); a newer thoughtscope "
            "may be needed for this model folder"
        ) from None


def family_names() -> Sequence[str]:
    """The registered family names."""
    return sorted(_FAMILIES)
