"""The published Coconut curriculum (facebookresearch/coconut ``run.py``/``dataset.py``).

Stage 0 is chain-of-thought fine-tuning: ``question\\n`` + one step per line +
``### answer <eos>``, no markers. Stage ``s`` (1 ≤ s ≤ ``max_latent_stage``) replaces the
first ``s`` steps by ``<|start-latent|>`` + ``s × c_thought`` thoughts + ``<|end-latent|>``
(the count does not shrink for shorter problems, as published with
``pad_latent_to_max``); the stage after ``max_latent_stage`` drops every step and uses
``max_latent_stage × c_thought`` thoughts. The loss is the cross-entropy on the text after
``<|end-latent|>`` (the remaining steps, ``### N`` and eos), averaged over its tokens.

The thoughts run through the engine's own step functions (:func:`latent.encode`,
:func:`latent.think`, :func:`latent.forward`) with gradients on, so training and
inference share one loop: every thought is the last normed state of the previous
position, and gradients flow back through all of them.

Optimiser: the published code recreates AdamW at the start of **every epoch**
(``reset_optimizer: True`` sits inside the epoch loop of ``run.py``, not only at stage
changes); ``reset="epoch"`` does that, ``reset="stage"`` resets at stage changes (the
toy recipe). Everything is a function of the step count and the seed, so a run resumed
from ``checkpoint.pt`` continues exactly as if it had not stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from thoughtscope.engine import latent
from thoughtscope.files import write_json
from thoughtscope.model.families.coconut import CoconutModel
from thoughtscope.problems.problem import Problem
from thoughtscope.training.data import IGNORE, steps_text

CONFIG_FILE = "train_config.json"
LOG_FILE = "train_log.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_DIR = "model"


@dataclass(frozen=True)
class CoconutTrainConfig:
    """One Coconut curriculum run, counted in optimizer steps.

    Attributes:
        stage_steps: Steps of stage 0 (CoT), 1, …, ``max_latent_stage`` and the last
            stage (all steps latent), in order: ``max_latent_stage + 2`` numbers.
        c_thought: Thoughts per replaced step.
        max_latent_stage: Stages that replace steps one by one.
        batch_size, lr, betas, weight_decay: AdamW settings (torch defaults otherwise).
        clip: Gradient-norm clip (0: none, as published).
        warmup: Linear warm-up steps after each optimiser reset (0: none, as published).
        cosine_last: Cosine decay of the learning rate over the last stage.
        reset: ``epoch`` (published), ``stage`` or ``never``.
        epoch_steps: Steps per epoch for ``reset="epoch"`` (0: the pool size // batch).
        seed: Batch order and initialisation.
        data_seed, data_size, min_steps, max_steps, data_style: The synthetic pool.
        checkpoint_every, log_every, threads: Bookkeeping.
    """

    stage_steps: tuple[int, ...]
    c_thought: int = 2
    max_latent_stage: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    clip: float = 0.0
    warmup: int = 0
    cosine_last: bool = False
    reset: str = "stage"
    epoch_steps: int = 0
    seed: int = 0
    data_seed: int = 0
    data_size: int = 40_000
    min_steps: int = 1
    max_steps: int = 6
    data_style: str = "compact"
    checkpoint_every: int = 250
    log_every: int = 10
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.stage_steps) != self.max_latent_stage + 2:
            raise ValueError(
                f"stage_steps has {len(self.stage_steps)} entries; give "
                f"max_latent_stage + 2 = {self.max_latent_stage + 2} (stage 0 … the last)"
            )
        if self.reset not in ("epoch", "stage", "never"):
            raise ValueError(f"reset={self.reset!r}: choose epoch, stage or never")

    @property
    def steps(self) -> int:
        """Total optimizer steps."""
        return sum(self.stage_steps)

    @property
    def num_latent(self) -> int:
        """k at inference: ``max_latent_stage × c_thought``."""
        return self.max_latent_stage * self.c_thought

    def stage_at(self, step: int) -> tuple[int, int]:
        """``(stage, first step of that stage)`` of optimizer step ``step``."""
        begin = 0
        for stage, length in enumerate(self.stage_steps):
            if step < begin + length:
                return stage, begin
            begin += length
        return len(self.stage_steps) - 1, begin - self.stage_steps[-1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def published_preset(pool_size: int, *, cot_epochs: int = 6) -> CoconutTrainConfig:
    """The published GSM8K settings (``gsm_cot.yaml`` then ``gsm_coconut.yaml``) in steps:
    batch 128 (32 × 4 GPUs), AdamW lr 1e-4, weight decay 0.01, no clipping, no warm-up,
    constant rate, AdamW recreated every epoch; c_thought 2, max_latent_stage 3, 3 epochs
    per stage, 25 epochs in all (stage ≥ 4 from epoch 12); ``cot_epochs`` of CoT first
    (the maintainers recommend about 6)."""
    epoch = max(1, pool_size // 128)
    return CoconutTrainConfig(
        stage_steps=(cot_epochs * epoch, 3 * epoch, 3 * epoch, 3 * epoch, 13 * epoch),
        c_thought=2,
        max_latent_stage=3,
        batch_size=128,
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.01,
        clip=0.0,
        reset="epoch",
        epoch_steps=epoch,
        data_size=pool_size,
    )


CPU_PRESET = CoconutTrainConfig(
    stage_steps=(300, 200, 200, 200, 600),
    batch_size=16,
    lr=1e-3,
    betas=(0.9, 0.95),
    clip=1.0,
    warmup=20,
    cosine_last=True,
    reset="stage",
    data_size=8_000,
)
"""A CPU-sized run of the same curriculum (minutes, on the toy-sized model)."""


@dataclass(frozen=True)
class CoconutExample:
    """One problem as ids: the question (``q + "\\n"``), each step (``step + "\\n"``),
    and ``### N <eos>``."""

    question: list[int]
    steps: list[list[int]]
    answer: list[int]


def encode_example(model: CoconutModel, problem: Problem) -> CoconutExample:
    """The published tokenisation of one problem (steps are its ``<<…>>`` annotations,
    brackets dropped, one per line)."""
    tok = model.tokenizer
    text = steps_text(problem, bare=True)
    steps = [tok.encode(s + "\n", add_special_tokens=False) for s in text.split()]
    return CoconutExample(
        model.question_ids(problem.question), steps, model.answer_ids(problem.answer)
    )


def stage_layout(config: CoconutTrainConfig, stage: int) -> tuple[int, int | None]:
    """``(skipped steps, thoughts)`` at ``stage``; thoughts ``None`` for stage 0 (no
    markers)."""
    if stage == 0:
        return 0, None
    if stage > config.max_latent_stage:
        return 10_000, config.max_latent_stage * config.c_thought
    return stage, stage * config.c_thought


def coconut_loss(
    model: CoconutModel, examples: Sequence[CoconutExample], skip: int, thoughts: int | None
) -> Tensor:
    """Mean cross-entropy of the text after the thoughts, over a batch of one layout."""
    device = model.device
    family = model.family
    ids, mask = latent.pad_left([e.question for e in examples], family.pad_id, device)
    rows, hidden = latent.encode(model, ids, mask)
    rests = [[t for s in e.steps[skip:] for t in s] + e.answer for e in examples]
    if thoughts is None:
        continuations = rests
        first = model.head(hidden[:, -1:])  # predicts each continuation's first token
    else:
        latent.think(model, rows, thoughts)
        continuations = [[*family.closing_ids(), *r] for r in rests]
        first = None
    width = max(len(c) for c in continuations)
    cont = torch.full((len(examples), width), family.pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, seq in enumerate(continuations):
        cont[row, : len(seq)] = torch.tensor(seq)
        labels[row, : len(seq)] = torch.tensor(seq)
    cont, labels = cont.to(device), labels.to(device)
    step_mask, position_ids = rows.step_inputs(width)
    out = latent.forward(model, model.embed(cont), step_mask, position_ids, rows.cache)
    logits = model.head(out.last_hidden_state)
    if first is None:  # the closing id is input, not target
        logits, labels = logits[:, :-1], labels[:, 1:]
    else:
        logits = torch.cat([first, logits[:, :-1]], dim=1)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))


def _batch(
    config: CoconutTrainConfig, pool: Sequence[CoconutExample], step: int
) -> list[CoconutExample]:
    stage, begin = config.stage_at(step)
    per_epoch = max(1, len(pool) // config.batch_size)
    local = step - begin
    epoch = local // per_epoch
    seed = (config.seed * 1_000_003 + stage * 10_007 + epoch) % (2**63)
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
    start = (local % per_epoch) * config.batch_size
    return [pool[i] for i in order[start : start + config.batch_size].tolist()]


def _reset_point(config: CoconutTrainConfig, step: int) -> int:
    """The step at which the optimiser in use at ``step`` was (re)created."""
    _, begin = config.stage_at(step)
    if config.reset == "never":
        return 0
    if config.reset == "stage":
        return begin
    every = config.epoch_steps or 1
    return step - step % every


def learning_rate(config: CoconutTrainConfig, step: int) -> float:
    """Warm-up after each reset, cosine decay over the last stage when asked."""
    rate = config.lr
    since = step - _reset_point(config, step)
    if config.warmup and since < config.warmup:
        rate *= (since + 1) / config.warmup
    stage, begin = config.stage_at(step)
    if config.cosine_last and stage == len(config.stage_steps) - 1:
        progress = (step - begin) / max(1, config.stage_steps[-1])
        rate *= 0.5 * (1.0 + math.cos(math.pi * progress))
    return rate


def _optimizer(model: CoconutModel, config: CoconutTrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )


def train_coconut(
    model: CoconutModel,
    config: CoconutTrainConfig,
    out: str | Path,
    *,
    problems: Sequence[Problem] | None = None,
    resume: bool = True,
    stop_at: int | None = None,
    recipe: dict[str, Any] | None = None,
    progress: bool = True,
) -> CoconutModel:
    """Runs the curriculum and saves the model to ``out/model`` (a thoughtscope folder).

    ``stop_at`` stops after that many steps (checkpointed, no final model); a later call
    with ``resume`` continues exactly where it stopped.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    saved = {"family": "coconut", "train": config.to_dict(), "recipe": recipe or {}}
    write_json(folder / CONFIG_FILE, saved, sort_keys=True)
    if problems is None:
        from thoughtscope.problems.synthetic import generate

        problems = generate(
            "train",
            config.data_seed,
            config.data_size,
            style=config.data_style,
            min_steps=config.min_steps,
            max_steps=config.max_steps,
        )
    pool = [encode_example(model, p) for p in problems]
    if len(pool) < config.batch_size:
        raise ValueError(f"{len(pool)} training problems; need at least batch_size")
    optimizer = _optimizer(model, config)
    checkpoint = folder / CHECKPOINT_FILE
    start = 0
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=model.device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start = int(state["step"])
    elif (folder / LOG_FILE).exists():
        (folder / LOG_FILE).unlink()
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    model.train()
    began = time.perf_counter()
    bar = tqdm(total=end, initial=start, disable=not progress, desc="coconut", unit="step")
    with (folder / LOG_FILE).open("a") as log_file:
        for step in range(start, end):
            if step > 0 and _reset_point(config, step) == step:
                optimizer = _optimizer(model, config)  # as published: state forgotten
            lr = learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            stage, _ = config.stage_at(step)
            skip, thoughts = stage_layout(config, stage)
            loss = coconut_loss(model, _batch(config, pool, step), skip, thoughts)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            done = step + 1
            if done % config.log_every == 0 or done == end:
                record = {
                    "step": done,
                    "stage": stage,
                    "lr": lr,
                    "loss": round(loss.item(), 6),
                    "seconds": round(time.perf_counter() - began, 2),
                }
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                bar.set_postfix(loss=f"{loss.item():.3f}", stage=stage, refresh=False)
            if (config.checkpoint_every and done % config.checkpoint_every == 0) or done == end:
                tmp = checkpoint.with_suffix(".tmp")
                torch.save(
                    {
                        "step": done,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "rng": torch.get_rng_state(),
                    },
                    tmp,
                )
                tmp.replace(checkpoint)
            bar.update(1)
    bar.close()
    model.eval()
    if end == config.steps:
        model.save_pretrained(folder / MODEL_DIR)
    return model


# ------------------------------------------------------------------------------ the toy
TOY_COCONUT_TRAINING = CoconutTrainConfig(
    stage_steps=(250, 200, 200, 200, 900),
    c_thought=2,
    max_latent_stage=3,
    batch_size=32,
    lr=1e-3,
    betas=(0.9, 0.95),
    weight_decay=0.01,
    clip=1.0,
    warmup=20,
    cosine_last=True,
    reset="stage",
    seed=0,
    data_size=40_000,
)
"""The shipped toy Coconut's recipe (the notes' recipe B, counted in steps)."""


def new_toy_coconut(seed: int = 0, *, num_latent: int = 6, c_thought: int = 2) -> CoconutModel:
    """A freshly initialised toy Coconut: the CODI toy's Llama shape over bytes."""
    from transformers import LlamaConfig

    from thoughtscope.model.coconut import new_coconut_model
    from thoughtscope.model.tokenizer import byte_level_tokenizer
    from thoughtscope.training.toy import TOY_ARCHITECTURE as arch

    torch.manual_seed(seed)
    lm_config = LlamaConfig(
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.layers,
        num_attention_heads=arch.heads,
        num_key_value_heads=arch.heads,
        max_position_embeddings=arch.max_positions,
        tie_word_embeddings=True,
    )
    return new_coconut_model(
        lm_config,
        byte_level_tokenizer(),
        num_latent=num_latent,
        c_thought=c_thought,
        name="toy-coconut",
    )


def train_toy_coconut(
    out: str | Path,
    *,
    seed: int = 0,
    config: CoconutTrainConfig = TOY_COCONUT_TRAINING,
    resume: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
) -> CoconutModel:
    """Trains the toy Coconut from scratch into ``out`` (final model in ``out/model``)."""
    config = replace(config, seed=seed)
    model = new_toy_coconut(seed, num_latent=config.num_latent, c_thought=config.c_thought)
    return train_coconut(
        model,
        config,
        out,
        resume=resume,
        progress=progress,
        stop_at=stop_at,
        recipe={"toy": "coconut", "architecture": "the CODI toy's Llama (d 128, 4 blocks)"},
    )
