"""Recorded activations that some ablations replace with: means and patching donors.

Both come from baseline runs with ``record_hidden``: the runner returns, per problem,
``hidden (N+2, layers+1, d)`` at positions ``[bot, 0, …, N-1, eot]``, where index 0 of
the layer axis is the step's *input* embedding (at position ``k`` that is thought ``k``
itself, i.e. the ``latent`` site) and index ``L+1`` is block ``L``'s output. So every
``(site, position)`` is one ``[position + 1, site index]`` slot of that tensor.

Means are computed once per run over a reference set of problems and cached in the run
folder (``RUN/means.safetensors``), so a resumed run uses exactly the same vectors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from thoughtscope.engine.runner import BASELINE, Runner, RunOptions
from thoughtscope.engine.sites import BOT, Position, Site
from thoughtscope.model.thought_model import ThoughtModel
from thoughtscope.tensorfile import save_tensors

__all__ = [
    "MEANS_FILE",
    "DonorActivations",
    "MeanActivations",
    "compute_means",
    "load_or_compute_means",
    "position_index",
    "site_index",
]

MEANS_FILE = "means.safetensors"


def site_index(site: Site) -> int:
    """Index of ``site`` on the layer axis of recorded hidden states (latent: 0, block L:
    L+1)."""
    return 0 if site.layer is None else site.layer + 1


def position_index(position: Position) -> int:
    """Index of ``position`` on the position axis of recorded hidden states (bot: 0,
    thought k: k+1)."""
    return 0 if position == BOT else position + 1


@dataclass(frozen=True)
class MeanActivations:
    """Mean baseline activations over a reference set of problems.

    Attributes:
        hidden: ``(N+2, layers+1, d)`` float32, laid out like the runner's ``hidden``.
        reference_ids: Ids of the problems averaged over, in order.
    """

    hidden: Tensor
    reference_ids: tuple[str, ...]

    @property
    def num_latent(self) -> int:
        """N, the number of thought positions."""
        return int(self.hidden.shape[0]) - 2

    def at(self, site: Site, position: Position) -> Tensor:
        """``(d,)`` the mean at this site and position."""
        return self.hidden[position_index(position), site_index(site)]

    def pooled(self, site: Site) -> Tensor:
        """``(d,)`` the mean at this site over the thought positions ``0…N-1``."""
        return self.hidden[1 : self.num_latent + 1, site_index(site)].mean(dim=0)

    @property
    def digest(self) -> str:
        """SHA-256 of the reference ids (identifies the reference set)."""
        return _ids_digest(self.reference_ids)


@dataclass(frozen=True)
class DonorActivations:
    """For each problem of a runner call, its patching donor's baseline activations.

    Attributes:
        hidden: ``(problems, N+2, layers+1, d)``; row ``p`` holds the activations of the
            donor of the runner's problem ``p``.
    """

    hidden: Tensor

    def at(self, site: Site, position: Position, problems: Tensor) -> Tensor:
        """``(rows, d)`` the donors' activations for the given problem indices."""
        return self.hidden[problems.cpu(), position_index(position), site_index(site)]


def _ids_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(ids)).encode("utf-8")).hexdigest()


def compute_means(
    model: ThoughtModel,
    questions: Sequence[str],
    ids: Sequence[str],
    *,
    batch_size: int = 32,
    max_new_tokens: int = 1,
) -> MeanActivations:
    """Mean baseline activations of ``questions`` at every site and position.

    Only the latent steps matter, so decoding stops after ``max_new_tokens`` (the
    recorded activations do not depend on it).
    """
    if not questions:
        raise ValueError("the mean reference set is empty")
    runner = Runner(model)
    total: Tensor | None = None
    for start in range(0, len(questions), batch_size):
        chunk = list(questions[start : start + batch_size])
        options = RunOptions(
            max_new_tokens=max_new_tokens, batch_size=batch_size, record_hidden=True
        )
        results = runner.run(chunk, [BASELINE], options)
        stacked = torch.stack([row[0].hidden for row in results if row[0].hidden is not None])
        part = stacked.double().sum(dim=0)
        total = part if total is None else total + part
    assert total is not None
    return MeanActivations((total / len(questions)).float(), tuple(ids))


def load_or_compute_means(
    run_dir: Path,
    model: ThoughtModel,
    questions: Sequence[str],
    ids: Sequence[str],
    *,
    batch_size: int = 32,
) -> MeanActivations:
    """The run's cached means (``RUN/means.safetensors``), computed and cached first if
    absent or made from a different reference set."""
    path = Path(run_dir) / MEANS_FILE
    digest = _ids_digest(ids)
    if path.is_file():
        tensors = load_file(str(path))
        metadata = _read_metadata(path)
        if metadata.get("reference_digest") == digest:
            return MeanActivations(tensors["hidden"], tuple(ids))
    means = compute_means(model, questions, ids, batch_size=batch_size)
    tmp = path.with_suffix(".tmp")
    save_tensors(
        {"hidden": means.hidden.contiguous()},
        str(tmp),
        metadata={"reference_digest": digest, "reference_ids": json.dumps(list(ids))},
    )
    tmp.replace(path)
    return means


def _read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})
