"""The step-importance sweep: problems → batches → runner → records → result store.

For each batch of problems, two runner calls:

1. **Baseline** (and, for ``patch``, the donors' baseline activations): the answer, its
   number and correctness, and the log-probability of the expected answer.
2. **Conditions**: the empty condition plus every ablation / early-exit condition, all
   in one batch sharing each question's prefix. Each row teacher-forces the expected
   answer (``gold_logprob``) and the *baseline's* answer (for the KL). The empty
   condition gives the baseline's distributions along its own answer under exactly the
   same teacher forcing, and checks that an empty intervention reproduces the baseline.

Each finished batch is appended to ``RUN/results.jsonl`` (flushed and fsynced) before the
next starts; re-running the same command skips finished problems, and a different
configuration in the same folder is refused. Batches are cut from the full selection, not
from what is left, so a resumed run batches the same problems together.

Selection: by default every condition runs on every problem. With
``only_baseline_correct`` the problems the baseline gets wrong are still written, with
their baseline outcome and no conditions, so baseline accuracy stays honest; the manifest
says ``selection: "baseline-correct"``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import torch

from thoughtscope.analyses.inputs import check_prompt_lengths
from thoughtscope.analyses.interventions import (
    ABLATIONS,
    RESOURCES,
    AblationResources,
    Resource,
    ResourceContext,
    bind,
    parse_ablations,
    parse_schedules,
    plan_conditions,
)
from thoughtscope.analyses.sharded import ShardedWork, run_in_shards
from thoughtscope.engine.batching import AUTO, auto_batch_size
from thoughtscope.engine.distributed import SINGLE, Ranks
from thoughtscope.engine.lens import decode_states
from thoughtscope.engine.runner import BASELINE, Condition, Generation, Runner, RunOptions
from thoughtscope.engine.sites import BOT, LATENT, parse_sites
from thoughtscope.model.thought_model import ThoughtModel, weights_fingerprint
from thoughtscope.problems.difficulty import Strata
from thoughtscope.problems.errors import ProblemDataError
from thoughtscope.problems.problem import Problem, fingerprint_problems
from thoughtscope.problems.sampling import Sample, sample_stratified
from thoughtscope.problems.scoring import (
    DEFAULT_REL_TOLERANCE,
    DEFAULT_TOLERANCE,
    extract_number,
    is_clean,
    is_correct,
)
from thoughtscope.problems.sources import load_problems
from thoughtscope.results.conditions import ConditionSpec
from thoughtscope.results.records import (
    THOUGHTS_FILE,
    ConditionOutcome,
    DecodedThoughts,
    LensReading,
    Outcome,
    ProblemRecord,
    read_thoughts,
)
from thoughtscope.results.shards import RECORDS
from thoughtscope.results.store import MANIFEST_FILE, read_manifest

__all__ = [
    "IDENTITY_KEYS",
    "POSITIONS_NOTE",
    "ImportanceConfig",
    "ImportanceInputError",
    "RunPlan",
    "SweepResult",
    "append_thoughts",
    "lens_reading",
    "model_fingerprint",
    "plan_run",
    "run_importance",
]

log = logging.getLogger(__name__)

FORMAT = "thoughtscope-importance"
FORMAT_VERSION = 2
"""2: each condition recorded once per problem with all its ``schedules``; sites named
``block:L`` in condition names (1: once per schedule, ``zero@L8:{0}``)."""
EMPTY_CONDITION = "baseline"
"""Name of the empty condition run beside the ablations in every batch."""

POSITIONS_NOTE = (
    "thought k is the k-th vector fed back; position 0 is the first continuous thought, "
    "not the <bot> step (the original study's position 0 was the <bot> step). Block sites "
    "at position k edit block L's output at the step whose input is thought k; the latent "
    "site replaces thought k itself. -1 stands for the <bot> step."
)

IDENTITY_KEYS = (
    "format_version",
    "skip_long",
    "selection",
    "strata",
    "seed",
    "num_latent",
    "schedules",
    "sites",
    "ablations",
    "layers",
    "validate",
    "limit",
    "max_new_tokens",
    "dtype",
    "mean_reference.n",
    "model.fingerprint",
    "data.fingerprint",
)
"""Manifest keys that must match to resume a run (dotted: nested keys)."""


class ImportanceInputError(ValueError):
    """Bad input: the message names the option and what to do.

    Attributes:
        option: The command-line option at fault (``--sites``, ``--data``, …).
    """

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


def _option(flag: str, help_text: str) -> dict[str, str]:
    """Field metadata: the command-line option of a config field and its help."""
    return {"option": flag, "help": help_text}


@dataclass(frozen=True)
class ImportanceConfig:
    """Everything that defines an importance run besides the model.

    Each field's metadata names its command-line option and help text; the
    ``importance`` command's options are made from them (:mod:`thoughtscope.cli.importance`).

    Attributes:
        data: Problem source (see :func:`thoughtscope.problems.sources.load_problems`).
        sites: ``latent``, ``block:8``, ``block:4,8,14``, ``block:all``, joined with ``+``.
        schedules: Comma-separated schedules (``prefix,single``, ``{0,2}``, ``early-exit``).
        ablations: Comma-separated ablation kinds (``zero,mean``).
        validate: Stratified validation sample of this many problems (in total).
        all_problems: Use every problem (the default when ``validate`` is not given).
        limit: Use only the first ``limit`` problems of the source.
        only_baseline_correct: Run conditions only where the baseline is correct.
        batch_size: Rows (problems × conditions) per forward pass, or ``"auto"``: as
            many as fit memory (:mod:`thoughtscope.engine.batching`).
        max_new_tokens: Decoding length.
        seed: Sampling, noise and mean-reference seed.
        strata: Difficulty strata by step count.
        mean_reference: Problems averaged over for ``mean`` ablations.
        examples: Example problems per difficulty stratum whose thoughts are decoded
            (logit lens, top ``lens_top_k``) into ``RUN/thoughts.jsonl`` for the report.
        lens_top_k: Tokens per decoded state.
        free_thinking: For a family whose rows stop thinking on their own (soft
            thinking): let every condition's rows stop on their own instead of keeping
            the baseline's thought count (the default, as arXiv 2602.08783 does).
    """

    data: str = field(
        metadata=_option(
            "--data",
            "Problems: synthetic[:SPLIT][:seed=S][:n=N]..., a GSM8K .jsonl, a .json/.csv "
            "file, or hf:openai/gsm8k (see `thoughtscope data --help`).",
        )
    )
    sites: str = field(
        default="latent+block:all",
        metadata=_option(
            "--sites",
            "latent, block:8, block:4,8,14, block:all, or several joined with + "
            "(block:L is the output of decoder block L, 0-based).",
        ),
    )
    schedules: str = field(
        default="prefix,single",
        metadata=_option(
            "--schedule",
            "Comma-separated: prefix, suffix, single, keep-one, all, early-exit, or "
            "position sets like {0,2,4} / positions:0,2.",
        ),
    )
    ablations: str = field(
        default="zero",
        metadata=_option("--ablation", "Comma-separated: zero, mean, mean-pooled, noise, patch."),
    )
    validate: int | None = field(
        default=None,
        metadata=_option(
            "--validate", "A stratified validation sample of N problems (N in total)."
        ),
    )
    all_problems: bool = field(
        default=False,
        metadata=_option("--all", "Every problem (the default without --validate)."),
    )
    limit: int | None = field(
        default=None, metadata=_option("--limit", "Use only the first N problems of --data.")
    )
    only_baseline_correct: bool = field(
        default=False,
        metadata=_option(
            "--only-baseline-correct",
            "Run conditions only on problems the baseline answers correctly (the others "
            "are still recorded, so baseline accuracy stays honest).",
        ),
    )
    batch_size: int | Literal["auto"] = field(
        default=AUTO,
        metadata=_option(
            "--batch-size",
            "Rows (problem x condition) per forward pass, or auto: as many as fit memory.",
        ),
    )
    max_new_tokens: int = field(
        default=32, metadata=_option("--max-new-tokens", "Longest answer to decode.")
    )
    seed: int = field(default=0, metadata=_option("--seed", "Sampling, noise and reference seed."))
    strata: str = field(
        default="1,2,3,4,5+", metadata=_option("--strata", "Difficulty strata by step count.")
    )
    mean_reference: int = field(
        default=100,
        metadata=_option("--mean-reference", "Problems averaged over for --ablation mean."),
    )
    examples: int = field(
        default=3,
        metadata=_option(
            "--examples",
            "Example problems per difficulty stratum whose thoughts are decoded (logit "
            "lens) into OUT/thoughts.jsonl for the report.",
        ),
    )
    lens_top_k: int = field(
        default=5, metadata=_option("--lens-top-k", "Tokens per decoded thought state.")
    )
    skip_long: bool = field(
        default=False,
        metadata=_option(
            "--skip-long",
            "Leave out (and list in the manifest) problems longer than the model's context, "
            "instead of stopping.",
        ),
    )
    free_thinking: bool = field(
        default=False,
        metadata=_option(
            "--free-thinking",
            "Soft thinking: let ablated runs stop thinking on their own (default: they keep "
            "the baseline's thought count).",
        ),
    )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class RunPlan:
    """A validated run: the problems, the conditions and the manifest to write."""

    config: ImportanceConfig
    problems: list[Problem]
    strata: Strata
    conditions: list[ConditionSpec]
    manifest: dict[str, Any]

    @property
    def resources(self) -> list[str]:
        """Names of the resources the conditions' ablation kinds need, in first-use order."""
        return _resources_of(c.ablation for c in self.conditions if not c.is_early_exit)


@dataclass(frozen=True)
class SweepResult:
    """What a call to :func:`run_importance` did.

    Attributes:
        run_dir: The run folder.
        n_problems: Problems in the selection.
        n_skipped: Problems already finished before this call (resume).
        n_written: Problems written by this call.
        n_conditions: Conditions per problem.
        seconds: Wall time of the sweep (means included).
        baseline_mismatches: Problems whose empty condition did not reproduce the
            baseline answer (should be 0; non-zero means numerics differ with batching).
    """

    run_dir: Path
    n_problems: int
    n_skipped: int
    n_written: int
    n_conditions: int
    seconds: float
    baseline_mismatches: int


def _resources_of(ablations: Iterable[str]) -> list[str]:
    names = [need for a in ablations if a in ABLATIONS for need in ABLATIONS[a].needs]
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------ fingerprints
def model_fingerprint(model: ThoughtModel) -> str:
    """SHA-256 of the model's weights and family (name and settings)."""
    return weights_fingerprint(model, {"family": model.family.name, **model.family.to_dict()})


def _versions() -> dict[str, str]:
    import transformers

    try:
        own = metadata.version("thoughtscope")
    except metadata.PackageNotFoundError:
        own = "unknown"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "thoughtscope": own,
    }


# ---------------------------------------------------------------------------- planning
def _select(config: ImportanceConfig, problems: list[Problem], strata: Strata) -> Sample:
    return sample_stratified(
        problems,
        config.validate,
        strata=strata,
        per_stratum=False,
        seed=config.seed,
        limit=config.limit,
    )


def _check_numbers(config: ImportanceConfig) -> None:
    if config.validate is not None and config.all_problems:
        raise ImportanceInputError(
            "--validate", "--validate and --all exclude each other; give one of them"
        )
    if config.validate is not None and config.validate < 1:
        raise ImportanceInputError("--validate", "--validate needs a sample size of 1 or more")
    if config.limit is not None and config.limit < 1:
        raise ImportanceInputError("--limit", "--limit must be 1 or more (or left out)")
    if config.batch_size != AUTO and (
        isinstance(config.batch_size, bool)
        or not isinstance(config.batch_size, int)
        or config.batch_size < 1
    ):
        raise ImportanceInputError(
            "--batch-size", "--batch-size must be auto or a whole number of 1 or more"
        )
    if config.examples < 0:
        raise ImportanceInputError("--examples", "--examples must be 0 or more")
    if config.lens_top_k < 1:
        raise ImportanceInputError("--lens-top-k", "--lens-top-k must be 1 or more")
    if config.max_new_tokens < 1:
        raise ImportanceInputError("--max-new-tokens", "--max-new-tokens must be 1 or more")
    if config.mean_reference < 1:
        raise ImportanceInputError("--mean-reference", "--mean-reference must be 1 or more")


def plan_run(model: ThoughtModel, config: ImportanceConfig, *, model_spec: str = "") -> RunPlan:
    """Validates the configuration against the model and data; builds the manifest.

    Raises:
        ImportanceInputError: naming the option at fault and what to do.
    """
    _check_numbers(config)
    n_latent = model.num_thoughts
    try:
        strata = Strata.parse(config.strata)
    except ValueError as error:
        raise ImportanceInputError("--strata", f"--strata: {error}") from None
    try:
        sites = parse_sites(config.sites, model.num_layers)
    except ValueError as error:
        raise ImportanceInputError("--sites", str(error)) from None
    try:
        stage = int(model.family.to_dict().get("c_thought", 1))  # Coconut's curriculum stages
        schedules = parse_schedules(config.schedules, n_latent, group=stage)
    except ValueError as error:
        raise ImportanceInputError("--schedule", str(error)) from None
    try:
        ablations = parse_ablations(config.ablations)
    except ValueError as error:
        raise ImportanceInputError("--ablation", str(error)) from None
    for schedule in schedules:
        if (
            not schedule.is_early_exit
            and LATENT in sites
            and any(BOT in s for s in schedule.position_sets)
        ):
            raise ImportanceInputError(
                "--schedule",
                f"--schedule {schedule.text}: the latent site has no bot position (no "
                "vector is fed back there); drop bot or use block sites only",
            )
    conditions = plan_conditions(sites, schedules, ablations)
    if not conditions:
        raise ImportanceInputError("--schedule", "--schedule: no conditions to run")
    try:
        loaded = load_problems(config.data)
    except ProblemDataError as error:
        raise ImportanceInputError("--data", f"--data: {error}") from None
    if not loaded.problems:
        raise ImportanceInputError(
            "--data", f"--data {config.data}: no problems in it; give a source with problems"
        )
    sample = _select(config, loaded.problems, strata)
    if not sample.problems:
        raise ImportanceInputError(
            "--data",
            f"--data {config.data}: no problem is left after --limit/--validate; "
            "check those options",
        )
    lengths = check_prompt_lengths(model, sample.problems, max_new_tokens=config.max_new_tokens)
    if lengths.too_long and not config.skip_long:
        raise ImportanceInputError(
            "--data",
            f"--data {config.data}: {lengths.explain(len(sample.problems))}. Pass --skip-long "
            "to leave them out (they are listed in the manifest), or a smaller --max-new-tokens",
        )
    problems = lengths.fitting(sample.problems)
    if not problems:
        raise ImportanceInputError(
            "--data", f"--data {config.data}: every selected problem is too long for the model"
        )
    ablating = [s for s in schedules if not s.is_early_exit]
    resource_entries: dict[str, Any] = {"mean_reference": None, "patch_pairing": None}
    for name in _resources_of(ablations) if ablating else []:
        try:
            resource_entries.update(RESOURCES[name].manifest(problems, config.mean_reference))
        except ValueError as error:
            raise ImportanceInputError("--ablation", str(error)) from None
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "selection": "baseline-correct" if config.only_baseline_correct else "all",
        "strata": str(strata),
        "seed": config.seed,
        "num_latent": n_latent,
        "schedules": [s.text for s in schedules],
        "sites": [str(s) for s in sites] if ablating else [],
        "ablations": ablations if ablating else [],
        "layers": sorted({layer for c in conditions for layer in c.layers}),
        "model": {
            "name": model.name,
            "spec": model_spec,
            "fingerprint": model_fingerprint(model),
            "family": model.family.name,
            "architecture": type(model.base_lm).__name__,
            "num_layers": model.num_layers,
            "d_model": model.d_model,
            "num_latent": n_latent,
            "settings": model.family.to_dict(),  # the family's config, all of it
        },
        "data": {
            "spec": config.data,
            "source": loaded.source,
            "layout": loaded.layout,
            "fingerprint": fingerprint_problems(loaded.problems),
            "n_loaded": len(loaded.problems),
            "n_problems": len(problems),
            "sampling": sample.report.to_dict(),
        },
        "versions": _versions(),
        "positions": POSITIONS_NOTE,
        "validate": config.validate,
        "limit": config.limit,
        "max_new_tokens": config.max_new_tokens,
        "batch_size": config.batch_size,
        "dtype": str(model.dtype).removeprefix("torch."),
        "device": str(model.device),
        **resource_entries,
        "ablation_kinds": {a: ABLATIONS[a].description for a in ablations},
        "early_exit": any(s.is_early_exit for s in schedules),
        "examples": {
            "per_stratum": config.examples,
            "top_k": config.lens_top_k,
            "file": THOUGHTS_FILE,
            "rule": "the first problems with condition results of each difficulty stratum, "
            "in selection order; their baseline run's recorded states read through the "
            "logit lens (final norm + unembedding): a reading aid, not causal evidence",
        },
        "conditions": [c.to_dict() for c in conditions],
        "metrics": {
            "correct": f"|predicted - expected| within abs {DEFAULT_TOLERANCE} or rel "
            f"{DEFAULT_REL_TOLERANCE}",
            "changed": "the predicted number differs from the baseline's",
            "gold_logprob": "sum of log-probabilities of the expected answer's tokens "
            "(answer format + eos), teacher-forced after <eot>",
            "kl": "mean over the baseline answer's tokens (+ eos if it finished) of "
            "KL(baseline || condition) between next-token distributions, both teacher-forced "
            "along the baseline answer",
        },
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    manifest["skip_long"] = config.skip_long
    manifest["too_long"] = lengths.to_dict()
    return RunPlan(config, problems, strata, conditions, manifest)


# ------------------------------------------------------------------------------ sweep
def _changed(predicted: float | None, baseline: float | None) -> bool:
    if predicted is None or baseline is None:
        return (predicted is None) != (baseline is None)
    return not is_correct(predicted, baseline)


def _outcome_of(gen: Generation, expected: float) -> Outcome:
    predicted = extract_number(gen.text)
    gold = gen.target_logprobs.get("gold")
    return Outcome(
        output=gen.text,
        predicted=predicted,
        correct=is_correct(predicted, expected),
        gold_logprob=None if gold is None else float(gold.sum()),
        finished=gen.finished,
        clean=is_clean(gen.text),
    )


def _settle(run_dir: Path, model: ThoughtModel, plan: RunPlan) -> None:
    """Fixes the run's rows per forward pass in its manifest (before it is checked or
    written): a resumed automatic run keeps the size it began with."""
    old = read_manifest(run_dir) if (run_dir / MANIFEST_FILE).is_file() else {}
    if plan.config.batch_size == AUTO and isinstance(old.get("batch_rows"), int):
        plan.manifest["batch_rows"] = old["batch_rows"]
    else:
        plan.manifest["batch_rows"] = _batch_rows(model, plan)


def _batch_rows(model: ThoughtModel, plan: RunPlan) -> int:
    """Rows per forward pass: the configured number, or as many as fit memory."""
    if plan.config.batch_size != AUTO:
        return int(plan.config.batch_size)
    longest = max((p.question for p in plan.problems), key=len)
    return auto_batch_size(
        model,
        prompt_length=len(model.question_ids(longest)),
        new_tokens=plan.config.max_new_tokens,
        conditions=len(plan.conditions) + 1,
    )


class _Sweep:
    """One run's sweep state: model, plan, resources and example thoughts; complete once
    :meth:`start` has run."""

    def __init__(self, model: ThoughtModel, plan: RunPlan, run_dir: Path):
        self.model = model
        self.plan = plan
        self.config = plan.config
        self.runner = Runner(model)
        self.run_dir = run_dir
        self.rows = 0
        self.resources: list[Resource] = []
        self.examples_left: dict[str, int] = {}
        self.mismatches = 0

    def start(self, done: set[str]) -> None:
        """Once the manifest's rows per forward pass are settled and the finished problems
        (``done``) read: the resources and the example thoughts still to record."""
        run_dir, plan = self.run_dir, self.plan
        self.rows = int(plan.manifest["batch_rows"])
        context = ResourceContext(
            model=self.model,
            run_dir=run_dir,
            problems=plan.problems,
            seed=self.config.seed,
            batch_size=self.rows,
            mean_reference=self.config.mean_reference,
        )
        self.resources = [RESOURCES[name](context) for name in plan.resources]
        # Example thoughts: the first problems with conditions of each stratum.
        recorded = [t for t in read_thoughts(run_dir) if t.id in done]
        stratum_of = {p.id: plan.strata.label_for(p.steps) for p in plan.problems}
        self.examples_left = {label: self.config.examples for label in stratum_of.values()}
        for thoughts in recorded:
            if thoughts.id in stratum_of:
                self.examples_left[stratum_of[thoughts.id]] -= 1

    def options(self, record_hidden: bool = False, kl: bool = False) -> RunOptions:
        """Run options; ``kl``: what the KL to the empty condition needs."""
        settings: dict[str, Any] = {
            "max_new_tokens": self.config.max_new_tokens,
            "batch_size": self.rows,
            "record_hidden": record_hidden,
            "hold_thoughts": None if self.config.free_thinking else EMPTY_CONDITION,
            # Rows are compared within a batch (the empty condition with the baseline and
            # every condition, KL against the empty row): a ballast row last keeps every
            # compared row off the last row, whose numbers can differ in the last bit.
            "ballast": True,
        }
        if kl:
            # The engine computes KL(empty ‖ row) on the device along the baseline answer.
            settings["kl_reference"] = EMPTY_CONDITION
        return RunOptions(**settings)

    def prepare(self) -> None:
        """Prepares every resource the run's ablation kinds need (once per run)."""
        for resource in self.resources:
            resource.prepare()

    def run_batch(self, batch: list[Problem]) -> list[ProblemRecord]:
        """Baseline, then every condition, for one batch; one record per problem."""
        # Pass 1: baselines of the batch and of the problems its resources ask for.
        pass1 = list(batch)
        seen = {p.id for p in batch}
        for resource in self.resources:
            for extra in resource.baseline_problems(batch):
                if extra.id not in seen:
                    seen.add(extra.id)
                    pass1.append(extra)
        strata = {p.id: self.plan.strata.label_for(p.steps) for p in batch}
        wants_examples = any(self.examples_left.get(strata[p.id], 0) > 0 for p in batch)
        record_hidden = wants_examples or any(r.records_hidden for r in self.resources)
        gold = {p.id: self.model.answer_ids(p.answer) for p in pass1}
        results = self.runner.run(
            [p.question for p in pass1],
            [BASELINE],
            self.options(record_hidden=record_hidden),
            targets={"gold": [gold[p.id] for p in pass1]},
        )
        base_gen = {p.id: row[0] for p, row in zip(pass1, results, strict=True)}
        baselines = {
            p.id: replace(
                _outcome_of(base_gen[p.id], p.answer),
                n_thoughts=int(base_gen[p.id].thoughts.shape[0]),
                thoughts_capped=base_gen[p.id].thoughts_capped,
            )
            for p in batch
        }

        # Pass 2: the empty condition and every condition, on the problems that get them.
        todo = [
            p for p in batch if not self.config.only_baseline_correct or baselines[p.id].correct
        ]
        outcomes: dict[str, list[ConditionOutcome]] = {p.id: [] for p in batch}
        if todo:
            outcomes.update(self._conditions(todo, base_gen, baselines, gold))
            self._record_examples(todo, base_gen, strata)
        return [
            ProblemRecord(
                id=p.id,
                question=p.question,
                steps=p.steps,
                steps_source=p.steps_source,
                stratum=strata[p.id],
                expected=p.answer,
                baseline=baselines[p.id],
                conditions=outcomes[p.id],
            )
            for p in batch
        ]

    def _record_examples(
        self, todo: list[Problem], base_gen: dict[str, Generation], strata: dict[str, str]
    ) -> None:
        """Appends the lens reading of this batch's example problems to ``thoughts.jsonl``."""
        chosen: list[DecodedThoughts] = []
        for p in todo:
            hidden = base_gen[p.id].hidden
            if self.examples_left.get(strata[p.id], 0) <= 0 or hidden is None:
                continue
            self.examples_left[strata[p.id]] -= 1
            chosen.append(lens_reading(self.model, p.id, base_gen[p.id], self.config.lens_top_k))
        if chosen:
            append_thoughts(self.run_dir, chosen)

    def _conditions(
        self,
        todo: list[Problem],
        base_gen: dict[str, Generation],
        baselines: dict[str, Outcome],
        gold: dict[str, list[int]],
    ) -> dict[str, list[ConditionOutcome]]:
        eos = self.model.family.eos_id
        resources = AblationResources(
            problem_ids=[p.id for p in todo],
            seed=self.config.seed,
            values={r.name: r.for_batch(todo, base_gen) for r in self.resources},
        )
        conditions = [Condition(EMPTY_CONDITION)] + [
            bind(c, resources) for c in self.plan.conditions
        ]
        along_baseline = [
            base_gen[p.id].answer_ids + ([eos] if base_gen[p.id].finished else []) for p in todo
        ]
        results = self.runner.run(
            [p.question for p in todo],
            conditions,
            self.options(kl=True),
            targets={"gold": [gold[p.id] for p in todo], "baseline": along_baseline},
        )
        out: dict[str, list[ConditionOutcome]] = {}
        for p, row in zip(todo, results, strict=True):
            empty, rest = row[0], row[1:]
            if empty.answer_ids != base_gen[p.id].answer_ids:
                self.mismatches += 1
                log.warning(
                    "problem %s: the empty condition answered %r, the baseline %r",
                    p.id,
                    empty.text,
                    base_gen[p.id].text,
                )
            baseline_predicted = baselines[p.id].predicted
            items: list[ConditionOutcome] = []
            reached = int(base_gen[p.id].thoughts.shape[0])
            for spec, gen in zip(self.plan.conditions, rest, strict=True):
                if not _exists(spec, reached, int(gen.thoughts.shape[0])):
                    continue  # a position this problem never reached: no result
                outcome = _outcome_of(gen, p.answer)
                items.append(
                    ConditionOutcome(
                        condition=spec,
                        output=outcome.output,
                        predicted=outcome.predicted,
                        correct=outcome.correct,
                        changed=_changed(outcome.predicted, baseline_predicted),
                        gold_logprob=outcome.gold_logprob,
                        kl=float(gen.target_kl["baseline"].mean()),
                        finished=outcome.finished,
                        clean=outcome.clean,
                        n_thoughts=int(gen.thoughts.shape[0]),
                    )
                )
            out[p.id] = items
        return out


def _exists(spec: ConditionSpec, baseline_count: int, own_count: int) -> bool:
    """Whether a condition means something for a problem whose baseline fed
    ``baseline_count`` thoughts and whose own run ``own_count``: every edited thought
    position was reached (by its own run), and an early exit after k thoughts needs k
    of the baseline's. Always true for a fixed thought count."""
    thoughts = [p for p in spec.positions if p != BOT]
    if thoughts and max(thoughts) >= own_count:
        return False
    return spec.num_latent is None or spec.num_latent <= baseline_count


def lens_reading(
    model: ThoughtModel, problem_id: str, generation: Generation, top_k: int = 5
) -> DecodedThoughts:
    """A baseline generation's recorded states (``hidden``: ``(N+2, layers+1, d)``) read
    through the logit lens, top ``top_k`` tokens each.

    Raises:
        ValueError: The generation was run without ``record_hidden``.
    """
    if generation.hidden is None:
        raise ValueError("the generation has no recorded states (run with record_hidden)")
    states = decode_states(model, generation.hidden, top_k=top_k)
    readings = [
        LensReading(s.position, s.site, list(s.tokens), [float(x) for x in s.probs]) for s in states
    ]
    return DecodedThoughts(problem_id, generation.text, readings)


def append_thoughts(run_dir: Path, items: Sequence[DecodedThoughts]) -> None:
    """Appends decoded thoughts to ``RUN/thoughts.jsonl`` (flushed and fsynced)."""
    path = Path(run_dir) / THOUGHTS_FILE
    # One write per line on an O_APPEND descriptor: ranks of a sharded run append to the
    # same file without interleaving their lines.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        for item in items:
            os.write(fd, (json.dumps(item.to_dict(), ensure_ascii=False) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def run_importance(
    model: ThoughtModel,
    config: ImportanceConfig,
    run_dir: str | Path,
    *,
    model_spec: str = "",
    progress: bool = True,
    ranks: Ranks | None = None,
) -> SweepResult:
    """Runs (or resumes) an importance sweep into ``run_dir``.

    Writes ``RUN/manifest.json`` first, then appends one record per problem to
    ``RUN/results.jsonl`` batch by batch (flushed and fsynced); ``mean`` ablations cache
    their reference means in ``RUN/means.safetensors``. Statistics are a separate step
    (:func:`thoughtscope.statistics.write_run_statistics`).

    Under ``torchrun`` (``ranks`` from :meth:`Ranks.from_environment`, started), each
    rank runs every ``world_size``-th batch into its own shard and rank 0 merges the
    shards at the end (:mod:`thoughtscope.results.shards`); the folder is locked
    against a second run (:mod:`thoughtscope.results.lock`).

    Raises:
        ImportanceInputError: Bad configuration, or ``run_dir`` holds a different run.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    plan = plan_run(model, config, model_spec=model_spec)
    sweep = _Sweep(model, plan, run_dir)
    # Rank 0 settles the rows per forward pass first and the others take the same: every
    # rank must cut the same batches.
    work = ShardedWork(
        rows=RECORDS,
        manifest=plan.manifest,
        identity=IDENTITY_KEYS,
        units=plan.problems,
        row_ids=lambda problem: [problem.id],
        batch_size=lambda: max(1, sweep.rows // (len(plan.conditions) + 1)),
        run_batch=sweep.run_batch,
        input_error=ImportanceInputError,
        prepare=sweep.prepare,  # rank 0 computes shared resources, the others read them
        desc="importance",
        unit="problem",
        settle=lambda: _settle(run_dir, model, plan),
        start=sweep.start,
        check_first=False,
        bar_from_done=True,
    )
    done = run_in_shards(work, run_dir, ranks=ranks or SINGLE, progress=progress)
    return SweepResult(
        run_dir=run_dir,
        n_problems=len(plan.problems),
        n_skipped=done.n_skipped,
        n_written=done.n_written,
        n_conditions=len(plan.conditions),
        seconds=time.perf_counter() - started,
        baseline_mismatches=sweep.mismatches,
    )
