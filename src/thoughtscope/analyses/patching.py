"""Counterfactual activation patching: a source problem's states patched into a target.

For each batch of pairs (:mod:`thoughtscope.problems.pairs`), **one** runner call over
the batch's targets and sources (each once, plus a row per extra pair of a target), as
one padded batch, under:

* the **empty** condition: every problem's baseline (the targets' and the sources'
  baseline answers come from these rows);
* one condition per (site, position set) whose edit gives each target row, at that site
  and step, the activation its source's empty row holds *in the same forward pass*
  (:meth:`~thoughtscope.engine.edits.EditContext.reference`; rows that are no pair's
  target get their own problem's);
* per site, a **self-patch** of every thought: each row given its own problem's empty-row
  activation.

Every row teacher-forces the target's expected answer (``gold``) and the source's
(``source``): the change of the gold log-probability and of the log-probability
difference between the two answers.

A self-patched row copies, at each step, exactly the value its empty row computes in the
same batch, from identical inputs, so it stays identical to it; patching every thought
from a source with the same question is the identity for the same reason. Every run
checks the self-patch on every row (answer ids and teacher-forced log-probabilities, bit
for bit) and records the counts in the manifest (``checks``). Nothing is recorded: no
second pass, no states on the CPU.

Rows go to ``RUN/results.jsonl`` (:class:`~thoughtscope.results.patching.PatchRow`), one
per (pair, site, positions), batch by batch, through the shared run store
(:func:`~thoughtscope.analyses.sharded.run_in_shards`): under ``torchrun`` each rank
computes every ``world_size``-th batch of pairs into its own shard and rank 0 merges them;
re-running the same command skips rows already written (by pair, site and positions, with
any number of ranks), and a different configuration in the same folder is refused. Each
batch's self-patch check goes to ``RUN/checks.jsonl`` (sharded the same way); their sum
over every batch of every rank is the manifest's ``checks``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from thoughtscope.analyses.interventions.schedules import ScheduleSpec, parse_schedules
from thoughtscope.analyses.sharded import ShardedWork, run_in_shards
from thoughtscope.engine.distributed import SINGLE, Ranks
from thoughtscope.engine.edits import Edit, EditContext
from thoughtscope.engine.runner import Condition, Generation, Runner, RunOptions
from thoughtscope.engine.sites import BOT, LATENT, Position, Site, parse_sites, position_name
from thoughtscope.model.thought_model import ThoughtModel, weights_fingerprint
from thoughtscope.problems.difficulty import Strata
from thoughtscope.problems.errors import ProblemDataError
from thoughtscope.problems.pairs import Pair, PairSet, make_pairs
from thoughtscope.problems.problem import Problem, fingerprint_problems
from thoughtscope.problems.scoring import extract_number, is_correct
from thoughtscope.problems.sources import load_problems
from thoughtscope.results.patching import (
    CHECKS_FILE,
    PATCH_ROWS,
    SELF_PATCH_CHECKS,
    PatchRow,
    SelfPatchCheck,
    self_patch_totals,
)
from thoughtscope.results.shards import row_id
from thoughtscope.results.store import write_manifest

__all__ = [
    "FORMAT",
    "PatchConfig",
    "PatchInputError",
    "PatchPlan",
    "PatchResult",
    "fingerprint_model",
    "patch_edit",
    "plan_patching",
    "run_patching",
]

FORMAT = "thoughtscope-patching"
FORMAT_VERSION = 1
EMPTY = "empty"
IDENTITY_KEYS = (
    "format_version",
    "pairs",
    "sites",
    "positions",
    "seed",
    "limit",
    "strata",
    "max_new_tokens",
    "dtype",
    "model.fingerprint",
    "data.fingerprint",
)


class PatchInputError(ValueError):
    """Bad input: the message names the option and what to do."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


def check_shared_options(config: Any, num_layers: int) -> tuple[Strata, list[Site]]:
    """Checks the options ``patch``, ``effects`` and ``steer`` share (``batch_size``,
    ``max_new_tokens``, ``limit``, ``strata``, ``sites``); returns the strata and sites.

    Raises:
        PatchInputError: naming the option at fault.
    """
    if config.batch_size < 1:
        raise PatchInputError("--batch-size", "--batch-size must be 1 or more")
    if config.max_new_tokens < 1:
        raise PatchInputError("--max-new-tokens", "--max-new-tokens must be 1 or more")
    if config.limit is not None and config.limit < 1:
        raise PatchInputError("--limit", "--limit must be 1 or more (or left out)")
    try:
        strata = Strata.parse(config.strata)
    except ValueError as error:
        raise PatchInputError("--strata", f"--strata: {error}") from None
    try:
        sites = parse_sites(config.sites, num_layers)
    except ValueError as error:
        raise PatchInputError("--sites", str(error)) from None
    return strata, sites


@dataclass(frozen=True)
class PatchConfig:
    """Everything that defines a patching run besides the model.

    Attributes:
        data: Problem source (:func:`thoughtscope.problems.sources.load_problems`).
        pairs: Pair rule or file (:func:`thoughtscope.problems.pairs.make_pairs`).
        sites: ``latent``, ``block:L``, … joined with ``+``.
        positions: Comma-separated position schedules: ``single`` (each alone), ``all``,
            ``prefix``, ``suffix``, or sets like ``{0,2}``.
        limit: Use only the first ``limit`` problems of ``data``.
        seed: Seeds the pair rules.
        strata: Difficulty strata (by the target's step count).
        batch_size: Pairs per batch.
        max_new_tokens: Decoding length.
    """

    data: str
    pairs: str = "counterfactual"
    sites: str = "latent"
    positions: str = "single,all"
    limit: int | None = None
    seed: int = 0
    strata: str = "1,2,3,4,5+"
    batch_size: int = 32
    max_new_tokens: int = 16

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class PatchSpec:
    """One patch: a site, a position set, and the schedule that asked for it."""

    site: Site
    positions: tuple[Position, ...]
    schedule: str

    @property
    def name(self) -> str:
        """``patch@latent:{0,1}``: unique within a run."""
        inner = ",".join(position_name(p) for p in self.positions)
        return f"patch@{self.site}:{{{inner}}}"


@dataclass(frozen=True)
class PatchPlan:
    """A validated run: its pairs, its patches, the strata and the manifest to write."""

    config: PatchConfig
    pairs: PairSet
    patches: list[PatchSpec]
    sites: list[Site]
    strata: Strata
    manifest: dict[str, Any]


@dataclass(frozen=True)
class PatchResult:
    """What :func:`run_patching` did.

    Attributes:
        run_dir: The run folder.
        n_pairs: Pairs of the run.
        n_rows: Rows written by this call.
        n_skipped: Rows already present (resume).
        self_patch_rows / self_patch_identical: The check of this call on this rank (the
            whole run's, summed over every batch of every rank, is the manifest's
            ``checks``): rows self-patched at every position of a site, and how many
            reproduced the empty condition exactly (answer ids and teacher-forced
            log-probabilities).
        self_patch_same_answer: Of those rows, how many gave the same answer ids.
        self_patch_max_difference: Largest absolute difference of a teacher-forced
            log-probability between a self-patched row and its empty row.
        seconds: Wall time.
    """

    run_dir: Path
    n_pairs: int
    n_rows: int
    n_skipped: int
    self_patch_rows: int
    self_patch_identical: int
    self_patch_same_answer: int
    self_patch_max_difference: float
    seconds: float


def fingerprint_model(model: ThoughtModel) -> str:
    """SHA-256 of the family's settings and every weight."""
    return weights_fingerprint(model, model.family.to_dict())


# ---------------------------------------------------------------------------- planning
def _patches(sites: Sequence[Site], schedules: Sequence[ScheduleSpec]) -> list[PatchSpec]:
    found: dict[str, PatchSpec] = {}
    for site in sites:
        for schedule in schedules:
            for positions in schedule.position_sets:
                if not positions:
                    continue
                spec = PatchSpec(site, tuple(positions), schedule.name)
                found.setdefault(spec.name, spec)
    return list(found.values())


def plan_patching(
    model: ThoughtModel, config: PatchConfig, *, model_spec: str = "", pairs: PairSet | None = None
) -> PatchPlan:
    """Validates the configuration against the model and data; builds the manifest.

    Args:
        pairs: Pairs made by the caller (the Python API); default: ``config.pairs`` over
            the problems of ``config.data``.

    Raises:
        PatchInputError: naming the option at fault and what to do.
    """
    strata, sites = check_shared_options(config, model.num_layers)
    try:
        schedules = parse_schedules(config.positions, model.num_thoughts, option="--positions")
    except ValueError as error:
        raise PatchInputError("--positions", str(error)) from None
    for schedule in schedules:
        if schedule.is_early_exit:
            raise PatchInputError(
                "--positions", "--positions: early-exit patches nothing; use position sets"
            )
        if LATENT in sites and any(BOT in s for s in schedule.position_sets):
            raise PatchInputError(
                "--positions",
                f"--positions {schedule.text}: the latent site has no bot position; drop bot "
                "or patch block sites only",
            )
    patches = _patches(sites, schedules)
    if not patches:
        raise PatchInputError("--positions", "--positions: no position to patch")
    try:
        loaded = load_problems(config.data)
    except ProblemDataError as error:
        raise PatchInputError("--data", f"--data: {error}") from None
    problems = loaded.problems[: config.limit] if config.limit else loaded.problems
    if pairs is None:
        try:
            pairs = make_pairs(problems, config.pairs, config.seed)
        except ValueError as error:
            raise PatchInputError("--pairs", str(error)) from None
    if not pairs.pairs:
        raise PatchInputError(
            "--pairs",
            f"--pairs {config.pairs}: no problem of --data {config.data} has a source under "
            "this rule (counterfactual twins exist for compact synthetic problems only)",
        )
    ids = [p.id for p in pairs.pairs]
    if len(set(ids)) != len(ids):
        raise PatchInputError("--pairs", "--pairs: a pair is listed twice; list each once")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "pairs": pairs.rule,
        "n_pairs": len(pairs.pairs),
        "unpaired": pairs.unpaired,
        "sites": [str(s) for s in sites],
        "positions": [s.text for s in schedules],
        "patches": [p.name for p in patches],
        "seed": config.seed,
        "limit": config.limit,
        "strata": str(strata),
        "max_new_tokens": config.max_new_tokens,
        "batch_size": config.batch_size,
        "dtype": str(model.dtype).removeprefix("torch."),
        "device": str(model.device),
        "model": {
            "name": model.name,
            "spec": model_spec,
            "fingerprint": fingerprint_model(model),
            "num_layers": model.num_layers,
            "num_thoughts": model.num_thoughts,
            "settings": model.family.to_dict(),
        },
        "data": {
            "spec": config.data,
            "source": loaded.source,
            "fingerprint": fingerprint_problems(problems),
            "n_problems": len(problems),
        },
        "metrics": {
            "outcome": "stays: the patched number equals the target's baseline number; "
            "source: it equals the source's baseline number (only where the two differ); "
            "other: anything else",
            "gold_logprob": "sum log-probability of the target's expected answer (answer "
            "format + eos), teacher-forced after the closing ids",
            "logit_diff": "log p(target's expected answer) - log p(source's expected "
            "answer), both teacher-forced; the change is patched minus unpatched",
        },
        "method": "one forward pass per batch of pairs: a patch gives the target row, at "
        "that site and step, the state its source's empty-condition row holds in the same "
        "pass; a patch at block:L replaces block L's output at that step, so later thoughts "
        "see it",
        "checks": {"self_patch_rows": 0, "self_patch_identical": 0},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return PatchPlan(config, pairs, patches, sites, strata, manifest)


# ------------------------------------------------------------------------------ running
@dataclass(frozen=True)
class PatchFromReference:
    """An edit giving each row the state its source problem's reference row holds at the
    same site and step of the same forward pass (:meth:`EditContext.reference`: the
    source's row under the empty condition).

    Two such edits are equal when their sources are, so conditions that patch the same
    sources at a position share rows up to there (forking). Where a source stopped
    thinking before the step (a family with a stopping rule), the row keeps its own state.

    Attributes:
        sources: ``sources[p]`` the runner problem whose state problem ``p`` gets
            (``sources[p] == p``: the row gets its own problem's unedited state).
    """

    sources: tuple[int, ...]

    def __call__(self, hidden: Tensor, context: EditContext) -> Tensor:
        index = torch.tensor(self.sources, device=context.problems.device)
        sources = index[context.problems]
        patched = context.reference(sources).to(hidden)
        # A source that stopped thinking before this step (soft thinking) has no state
        # here: the row keeps its own.
        reached = context.reference_reached(sources).to(hidden.device)
        return torch.where(reached[:, None], patched, hidden)


def patch_edit(sources: Sequence[int] | Tensor) -> Edit:
    """The edit patching each problem ``p`` with the state of problem ``sources[p]``,
    read in flight from the source's reference row (see :class:`PatchFromReference`).

    The rows that are read must run in the same runner batch, with a condition without
    edits (the engine raises :class:`~thoughtscope.engine.edits.MissingReferenceError`
    otherwise).
    """
    values = sources.tolist() if isinstance(sources, Tensor) else list(sources)
    return PatchFromReference(tuple(int(v) for v in values))


def _difference(a: Generation, b: Generation) -> float:
    """Largest absolute difference of the teacher-forced log-probabilities (0: equal)."""
    return max(
        float((a.target_logprobs[k].double() - b.target_logprobs[k].double()).abs().max())
        for k in a.target_logprobs
    )


def _changed(predicted: float | None, reference: float | None) -> bool:
    if predicted is None or reference is None:
        return (predicted is None) != (reference is None)
    return not is_correct(predicted, reference)


class _Patching:
    def __init__(self, model: ThoughtModel, plan: PatchPlan):
        self.model = model
        self.plan = plan
        self.runner = Runner(model)
        self.self_rows = 0
        self.self_identical = 0
        self.self_differing: list[str] = []
        self.self_same_answer = 0
        self.self_max_difference = 0.0
        self._taken = SelfPatchCheck("", 0, 0, 0, 0.0)
        self.max_difference_seen = 0.0

    def take_check(self, pairs: Sequence[Pair]) -> SelfPatchCheck:
        """The self-patch check of the batches run since the last call (``pairs``)."""
        taken = self._taken
        check = SelfPatchCheck(
            batch=" ".join(p.id for p in pairs),
            rows=self.self_rows - taken.rows,
            identical=self.self_identical - taken.identical,
            same_answer=self.self_same_answer - taken.same_answer,
            max_difference=self.self_max_difference,
            differing=self.self_differing[len(taken.differing) :],
        )
        self._taken = SelfPatchCheck(
            "",
            self.self_rows,
            self.self_identical,
            self.self_same_answer,
            0.0,
            list(self.self_differing),
        )
        self.max_difference_seen = max(self.max_difference_seen, self.self_max_difference)
        self.self_max_difference = 0.0  # run_batch raises it to the next batch's largest
        return check

    def run_batch(
        self, pairs: Sequence[Pair], skip: set[tuple[str, str, tuple[int, ...]]]
    ) -> list[PatchRow]:
        """The rows of a batch of pairs (those not in ``skip``)."""
        config = self.plan.config
        # The questions of the runner call: each problem once, then a row per extra pair
        # of a target already listed.
        problems: list[Problem] = []
        index: dict[str, int] = {}
        for pair in pairs:
            for problem in (pair.target, pair.source):
                if problem.id not in index:
                    index[problem.id] = len(problems)
                    problems.append(problem)
        row_of_pair: list[int] = []
        taken: set[int] = set()
        for pair in pairs:
            row = index[pair.target.id]
            if row in taken:
                row = len(problems)
                problems.append(pair.target)
            taken.add(row)
            row_of_pair.append(row)
        source_of = list(range(len(problems)))
        source_answer = [p.answer for p in problems]
        for pair, row in zip(pairs, row_of_pair, strict=True):
            source_of[row] = index[pair.source.id]
            source_answer[row] = pair.source.answer
        questions = [p.question for p in problems]
        gold = [self.model.answer_ids(p.answer) for p in problems]
        other = [self.model.answer_ids(a) for a in source_answer]

        targets = {"gold": gold, "source": other}
        patch = patch_edit(source_of)
        own = patch_edit(range(len(problems)))
        positions = list(range(self.model.num_thoughts))
        # The empty condition first: its rows are the reference rows the patches read,
        # in this same forward pass; then the patches and, per site, a self-patch of every
        # thought (each row given its own problem's unedited state).
        conditions = [Condition(EMPTY)]
        for spec in self.plan.patches:
            conditions.append(Condition(spec.name, {(spec.site, p): patch for p in spec.positions}))
        for site in self.plan.sites:
            conditions.append(Condition(f"self@{site}", {(site, p): own for p in positions}))
        # One batch (the patches read their sources' rows in the same forward pass), with
        # a ballast row last, so that a row's numbers do not depend on where it sits
        # (RunOptions.ballast): the self-patch check compares rows bit for bit.
        options = RunOptions(
            max_new_tokens=config.max_new_tokens,
            batch_size=len(questions) * len(conditions),
            ballast=True,
        )
        results = self.runner.run(questions, conditions, options, targets=targets)
        n_patch = len(self.plan.patches)
        for problem, generations in zip(problems, results, strict=True):
            for check in generations[1 + n_patch :]:
                self.self_rows += 1
                answer = check.answer_ids == generations[0].answer_ids
                difference = _difference(generations[0], check)
                self.self_same_answer += answer
                self.self_identical += answer and difference == 0.0
                self.self_max_difference = max(self.self_max_difference, difference)
                if not answer or difference:
                    self.self_differing.append(f"{problem.id} ({check.condition})")
        out: list[PatchRow] = []
        for pair, r in zip(pairs, row_of_pair, strict=True):
            target_base = results[index[pair.target.id]][0]
            source_base = results[index[pair.source.id]][0]
            t_pred = extract_number(target_base.text)
            s_pred = extract_number(source_base.text)
            distinguishable = _changed(s_pred, t_pred)
            empty = results[r][0]
            gold0 = float(empty.target_logprobs["gold"].sum())
            diff0 = gold0 - float(empty.target_logprobs["source"].sum())
            stratum = self.plan.strata.label_for(pair.target.steps)
            for spec, gen in zip(self.plan.patches, results[r][1 : 1 + n_patch], strict=True):
                key = (pair.id, str(spec.site), tuple(spec.positions))
                if key in skip:
                    continue
                predicted = extract_number(gen.text)
                if not _changed(predicted, t_pred):
                    outcome = "stays"
                elif distinguishable and not _changed(predicted, s_pred):
                    outcome = "source"
                else:
                    outcome = "other"
                gold_lp = float(gen.target_logprobs["gold"].sum())
                diff = gold_lp - float(gen.target_logprobs["source"].sum())
                if pair.target.answer == pair.source.answer:
                    diff = diff0 = 0.0
                out.append(
                    PatchRow(
                        pair=pair.id,
                        target=pair.target.id,
                        source=pair.source.id,
                        rule=self.plan.pairs.rule,
                        note=pair.note,
                        stratum=stratum,
                        site=str(spec.site),
                        positions=list(spec.positions),
                        schedule=spec.schedule,
                        output=gen.text,
                        predicted=predicted,
                        target_baseline_output=target_base.text,
                        source_baseline_output=source_base.text,
                        target_expected=pair.target.answer,
                        source_expected=pair.source.answer,
                        outcome=outcome,  # type: ignore[arg-type]
                        distinguishable=distinguishable,
                        correct=is_correct(predicted, pair.target.answer),
                        gold_logprob=gold_lp,
                        gold_logprob_change=gold_lp - gold0,
                        logit_diff=diff,
                        logit_diff_change=diff - diff0,
                    )
                )
        return out


def run_patching(
    model: ThoughtModel,
    config: PatchConfig,
    run_dir: str | Path,
    *,
    model_spec: str = "",
    pairs: PairSet | None = None,
    progress: bool = False,
    ranks: Ranks | None = None,
) -> PatchResult:
    """Runs (or resumes) a patching run into ``run_dir``.

    Writes ``RUN/manifest.json`` first, appends rows to ``RUN/results.jsonl`` (this rank's
    shard of it under ``torchrun``) and each batch's self-patch check to
    ``RUN/checks.jsonl`` batch by batch; rank 0 merges the shards and writes the checks
    summed over every batch of the run into the manifest's ``checks``. The folder is
    locked against a second run.

    Args:
        ranks: This process's rank of a ``torchrun`` launch (started); default one process.

    Raises:
        PatchInputError: Bad configuration, or ``run_dir`` holds a different run.
        OutputLockedError: Another run writes into ``run_dir``.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    ranks = ranks or SINGLE
    plan = plan_patching(model, config, model_spec=model_spec, pairs=pairs)
    patching = _Patching(model, plan)
    row_ids = {
        p.id: [row_id(p.id, str(s.site), s.positions) for s in plan.patches]
        for p in plan.pairs.pairs
    }
    with SELF_PATCH_CHECKS.output(run_dir / CHECKS_FILE, ranks) as checks:
        work: ShardedWork[Pair, PatchRow] = ShardedWork(
            rows=PATCH_ROWS,
            manifest=plan.manifest,
            identity=IDENTITY_KEYS,
            units=plan.pairs.pairs,
            row_ids=lambda pair: row_ids[pair.id],
            batch_size=config.batch_size,
            # Rows already written are dropped after the batch (skip nothing inside).
            run_batch=lambda batch: patching.run_batch(batch, set()),
            input_error=PatchInputError,
            after_batch=lambda batch: checks.append([patching.take_check(batch)]),
            desc="patching",
            unit="pair",
        )
        done = run_in_shards(work, run_dir, ranks=ranks, progress=progress)
        checks.finish()
        if ranks.is_main:
            manifest = dict(done.manifest)
            manifest["checks"] = self_patch_totals(run_dir)
            write_manifest(run_dir, manifest)
    return PatchResult(
        run_dir=run_dir,
        n_pairs=len(plan.pairs.pairs),
        n_rows=done.n_written,
        n_skipped=done.n_skipped,
        self_patch_rows=patching.self_rows,
        self_patch_identical=patching.self_identical,
        self_patch_same_answer=patching.self_same_answer,
        self_patch_max_difference=max(patching.max_difference_seen, patching.self_max_difference),
        seconds=time.perf_counter() - started,
    )
