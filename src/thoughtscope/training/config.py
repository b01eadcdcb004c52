"""Settings of one CODI training run, as one JSON-ready dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Phase:
    """One stretch of the curriculum.

    Attributes:
        until: Fraction of ``TrainConfig.steps`` at which this phase ends (0 < until <= 1).
        student: Whether the latent student pass and distillation run (else teacher only).
        max_steps: Only problems with at most this many reasoning steps are drawn.
    """

    until: float
    student: bool = True
    max_steps: int = 6

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (schedules count optimizer steps).

    Attributes:
        steps: Number of optimizer steps.
        batch_size: Problems per step.
        lr: Peak learning rate (AdamW).
        betas: AdamW betas.
        weight_decay: AdamW weight decay.
        clip: Gradient-norm clip.
        warmup: Fraction of ``steps`` with a linear warm-up; cosine decay to 0 after.
        seed: Seeds the initialisation (by the caller) and the data order.
        student_weight: Factor of the student's answer cross-entropy.
        distill_weight: Factor of the distillation loss.
        teacher_weight: Factor of the teacher's cross-entropy on steps and answer.
        question_weight: Factor of a language-model loss on the question tokens (0 = off).
        bare_steps: Write teacher steps as ``6-3=3`` instead of ``<<6-3=3>>``.
        data: Where problems come from: ``synthetic`` (the generator's train split, set
            by the ``data_*`` and step fields below) or any ``--data`` spec.
        data_style: Surface style of synthetic problems.
        data_seed: Seed of the synthetic training split.
        data_size: Number of distinct training problems generated (the pool).
        min_steps: Fewest reasoning steps in the pool.
        max_steps: Most reasoning steps in the pool.
        phases: The curriculum, in order; the last must end at 1.0.
        checkpoint_every: Steps between resumable checkpoints (0 = only at the end).
        log_every: Steps between lines of the loss log.
        threads: ``torch.set_num_threads`` for CPU training (0 = leave as is).
    """

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    clip: float = 1.0
    warmup: float = 0.03
    seed: int = 0
    student_weight: float = 1.0
    distill_weight: float = 1.0
    teacher_weight: float = 1.0
    question_weight: float = 0.0
    bare_steps: bool = False
    data: str = "synthetic"
    data_style: str = "compact"
    data_seed: int = 0
    data_size: int = 20_000
    min_steps: int = 1
    max_steps: int = 6
    phases: tuple[Phase, ...] = field(default_factory=lambda: (Phase(until=1.0),))
    checkpoint_every: int = 500
    log_every: int = 10
    threads: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be at least 1")
        if not self.phases or abs(self.phases[-1].until - 1.0) > 1e-9:
            raise ValueError("the last curriculum phase must end at until=1.0")
        if any(b.until <= a.until for a, b in zip(self.phases, self.phases[1:], strict=False)):
            raise ValueError("curriculum phases must end in increasing order")

    def phase_at(self, step: int) -> tuple[int, Phase]:
        """Index and phase of optimizer step ``step`` (0-based)."""
        for index, phase in enumerate(self.phases):
            if step < round(phase.until * self.steps):
                return index, phase
        return len(self.phases) - 1, self.phases[-1]

    def phase_start(self, index: int) -> int:
        """First step of phase ``index``."""
        return 0 if index == 0 else round(self.phases[index - 1].until * self.steps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown training config fields {unknown}")
        values = dict(data)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        if "phases" in values:
            values["phases"] = tuple(Phase(**p) for p in values["phases"])
        return cls(**values)
