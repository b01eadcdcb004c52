"""The training loop: deterministic data order, schedules by step, logs, checkpoints.

A run lives in one output folder::

    train_config.json   the TrainConfig (and model recipe, when given)
    train_log.jsonl     one line per ``log_every`` steps: step, phase, lr, losses, seconds
    checkpoint.pt       resumable state (weights, optimizer, step), every checkpoint_every
    model/              the final thoughtscope model folder (CodiModel.save_pretrained)

Everything that decides the result is a function of the step count and the seed (the
learning rate, the curriculum phase and the batch drawn), so a run resumed from its
checkpoint continues exactly as if it had not stopped, and the same command on the same
machine gives the same weights.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from thoughtscope.files import replacing, write_json
from thoughtscope.model.codi import CodiModel
from thoughtscope.problems.problem import Problem
from thoughtscope.training.config import TrainConfig
from thoughtscope.training.data import Example, collate, encode_problem
from thoughtscope.training.objective import LossWeights, codi_loss, codi_losses

log = logging.getLogger(__name__)

CONFIG_FILE = "train_config.json"
LOG_FILE = "train_log.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_DIR = "model"


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up over ``warmup * steps``, then cosine decay to zero."""
    warm = max(1, round(config.warmup * config.steps))
    if step < warm:
        return config.lr * (step + 1) / warm
    progress = (step - warm) / max(1, config.steps - warm)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def training_problems(config: TrainConfig) -> list[Problem]:
    """The pool of training problems ``config`` names.

    ``synthetic`` is the generator's train split with the config's seed, size, style and
    step range; anything else is a ``--data`` spec for
    :func:`thoughtscope.problems.load_problems` (a GSM8K-style file, ``hf:…``).
    """
    if config.data != "synthetic":
        from thoughtscope.problems.sources import load_problems

        return list(load_problems(config.data).problems)
    from thoughtscope.problems.synthetic import generate

    return generate(
        "train",
        config.data_seed,
        config.data_size,
        style=config.data_style,
        min_steps=config.min_steps,
        max_steps=config.max_steps,
    )


class BatchOrder:
    """Which examples make up the batch of each step: a pure function of the step.

    Each curriculum phase draws from the pool's problems with at most ``max_steps``
    steps, in epochs shuffled by a generator seeded with (seed, phase, epoch).
    """

    def __init__(self, examples: Sequence[Example], config: TrainConfig):
        self.examples = examples
        self.config = config
        self._eligible: dict[int, list[int]] = {}
        for index, phase in enumerate(config.phases):
            eligible = [i for i, e in enumerate(examples) if e.steps <= phase.max_steps]
            if len(eligible) < config.batch_size:
                raise ValueError(
                    f"curriculum phase {index} (max_steps={phase.max_steps}) has only "
                    f"{len(eligible)} training problems; need at least batch_size"
                )
            self._eligible[index] = eligible
        self._perm_cache: dict[tuple[int, int], list[int]] = {}

    def _epoch(self, phase: int, epoch: int) -> list[int]:
        key = (phase, epoch)
        if key not in self._perm_cache:
            self._perm_cache.clear()
            seed = (self.config.seed * 1_000_003 + phase * 10_007 + epoch) % (2**63)
            perm = torch.randperm(
                len(self._eligible[phase]), generator=torch.Generator().manual_seed(seed)
            )
            self._perm_cache[key] = [self._eligible[phase][i] for i in perm.tolist()]
        return self._perm_cache[key]

    def batch(self, step: int) -> list[Example]:
        """The examples of optimizer step ``step``."""
        phase, _ = self.config.phase_at(step)
        size = self.config.batch_size
        per_epoch = len(self._eligible[phase]) // size
        local = step - self.config.phase_start(phase)
        order = self._epoch(phase, local // per_epoch)
        start = (local % per_epoch) * size
        return [self.examples[i] for i in order[start : start + size]]


def _save_checkpoint(
    path: Path, model: CodiModel, optimizer: torch.optim.Optimizer, step: int
) -> None:
    with replacing(path) as temporary:
        torch.save(
            {
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state(),
            },
            temporary,
        )


def _make_optimizer(model: CodiModel, config: TrainConfig) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        trainable, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )


def train(
    model: CodiModel,
    config: TrainConfig,
    out: str | Path,
    *,
    problems: Sequence[Problem] | None = None,
    resume: bool = True,
    stop_at: int | None = None,
    recipe: dict[str, Any] | None = None,
    progress: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> CodiModel:
    """Trains ``model`` with the CODI objective and saves it to ``out/model``.

    Args:
        model: A CODI model; its LM may be PEFT-wrapped (only trainable parameters are
            optimized). Training runs on the model's device.
        config: The run's settings.
        out: Output folder (logs, checkpoints, final model).
        problems: Training problems; default: the pool ``config`` names.
        resume: Continue from ``out/checkpoint.pt`` when it exists.
        stop_at: Stop after this many steps (checkpointed, no final model): for tests
            and for splitting a run.
        recipe: Extra JSON-ready description saved beside the config (e.g. model sizes).
        progress: Show a progress bar.
        on_step: Called after each step with the step number and logged losses.

    Returns:
        The trained model (in eval mode).
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    saved = {"train": config.to_dict(), "recipe": recipe or {}}
    write_json(folder / CONFIG_FILE, saved, sort_keys=True)
    pool = list(problems) if problems is not None else training_problems(config)
    examples = [encode_problem(model, p, bare_steps=config.bare_steps) for p in pool]
    order = BatchOrder(examples, config)
    optimizer = _make_optimizer(model, config)
    weights = LossWeights(
        student=config.student_weight,
        distill=config.distill_weight,
        teacher=config.teacher_weight,
        question=config.question_weight,
    )
    checkpoint = folder / CHECKPOINT_FILE
    start = 0
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=model.device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start = int(state["step"])
        log.info("resuming %s at step %d", folder, start)
    elif (folder / LOG_FILE).exists():
        (folder / LOG_FILE).unlink()
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    model.train()
    device = model.device
    began = time.perf_counter()
    bar = tqdm(total=end, initial=start, disable=not progress, desc="training", unit="step")
    with (folder / LOG_FILE).open("a") as log_file:
        for step in range(start, end):
            _, phase = config.phase_at(step)
            lr = learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = collate(order.batch(step), model.config.pad_id).to(device)
            parts = codi_losses(model, batch, student=phase.student)
            loss, logged = codi_loss(parts, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], config.clip
            )
            optimizer.step()
            logged["grad_norm"] = float(grad_norm)
            if on_step is not None:
                on_step(step, logged)
            done = step + 1
            if done % config.log_every == 0 or done == end:
                record = {
                    "step": done,
                    "phase": config.phase_at(step)[0],
                    "lr": lr,
                    "seconds": round(time.perf_counter() - began, 2),
                    **{k: round(v, 6) for k, v in logged.items()},
                }
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                bar.set_postfix(loss=f"{logged['loss']:.3f}", refresh=False)
            if (config.checkpoint_every and done % config.checkpoint_every == 0) or done == end:
                _save_checkpoint(checkpoint, model, optimizer, done)
            bar.update(1)
    bar.close()
    model.eval()
    if end == config.steps:
        model.save_pretrained(folder / MODEL_DIR)
    return model
