"""Thought-to-thought effects: ablate or patch thought ``i`` and measure how every later
thought ``j`` and the answer change.

For each batch of problems, one runner call: the empty condition and, per ablation
kind, site and thought position ``i``, that one edit
(:func:`~thoughtscope.analyses.interventions.bind`). Each row keeps its thoughts and
only the last block's output at each step (``RunOptions.record_layers``), what the
metrics read; each edited row is compared with the *empty* row of the same call, so the
differences are the edit's alone. Only a kind that needs recorded activations (``patch``:
its donors' baseline states) adds a short baseline pass before it, over just the
problems it needs (one decoded token, every site recorded).

Metrics per (problem, ablation, site, ``i``), for every later thought ``j > i``:

* ``cosine``: cosine distance ``1 - cos(t_j, t'_j)`` between the thought vectors fed back
  at position ``j`` (the ``latent`` site), unedited and edited;
* ``rel_l2``: ``||t'_j - t_j|| / ||t_j||``;
* ``kl``: KL(unedited ‖ edited) between the logit-lens distributions (final norm and
  unembedding) of the last block's output at the step that produced thought ``j``;

and for the answer: whether its number changed, and the change of the expected answer's
log-probability. Thought ``j ≤ i`` cannot see the edit and is not recorded (``None``).
Rows go to ``RUN/results.jsonl`` (:class:`~thoughtscope.results.effects.EffectRow`), one
per (problem, ablation, site, position), through the shared run store
(:func:`~thoughtscope.analyses.sharded.run_in_shards`): resumable by row id with a
manifest; under ``torchrun`` each rank computes every ``world_size``-th batch of problems
into its own shard and rank 0 merges them.
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

from thoughtscope.analyses.interventions import (
    ABLATIONS,
    RESOURCES,
    AblationResources,
    ResourceContext,
    bind,
    parse_ablations,
    parse_schedules,
    plan_conditions,
)
from thoughtscope.analyses.patching import (
    IDENTITY_KEYS,
    PatchInputError,
    check_shared_options,
    fingerprint_model,
)
from thoughtscope.analyses.sharded import RowsRun, ShardedWork, run_in_shards
from thoughtscope.engine.distributed import SINGLE, Ranks
from thoughtscope.engine.runner import BASELINE, Condition, Generation, Runner, RunOptions
from thoughtscope.model.thought_model import ThoughtModel
from thoughtscope.problems.difficulty import Strata
from thoughtscope.problems.errors import ProblemDataError
from thoughtscope.problems.problem import Problem, fingerprint_problems
from thoughtscope.problems.scoring import extract_number, is_correct
from thoughtscope.problems.sources import load_problems
from thoughtscope.results.effects import EFFECT_ROWS, EffectRow
from thoughtscope.results.shards import row_id

__all__ = ["EffectsConfig", "EffectsResult", "run_effects", "thought_effects"]

FORMAT = "thoughtscope-effects"
EMPTY = "empty"


@dataclass(frozen=True)
class EffectsConfig:
    """Everything that defines an effects run besides the model.

    Attributes:
        data: Problem source.
        sites: Where thought ``i`` is edited (``latent``, ``block:L``, … joined with ``+``).
        ablations: Comma-separated kinds (``zero``, ``mean``, ``noise``, ``patch``).
        limit: Use only the first ``limit`` problems.
        seed: Noise, mean-reference and donor seed.
        strata: Difficulty strata by step count.
        batch_size: Problems per batch.
        max_new_tokens: Decoding length.
        mean_reference: Problems averaged over for ``mean``.
    """

    data: str
    sites: str = "latent"
    ablations: str = "zero"
    limit: int | None = None
    seed: int = 0
    strata: str = "1,2,3,4,5+"
    batch_size: int = 16
    max_new_tokens: int = 16
    mean_reference: int = 100

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


EffectsResult = RowsRun
"""What :func:`run_effects` did (:class:`~thoughtscope.analyses.sharded.RowsRun`)."""


def thought_effects(
    model: ThoughtModel, reference: Generation, edited: Generation, after: int
) -> tuple[list[float | None], list[float | None], list[float | None]]:
    """Cosine distance, relative L2 and lens KL of every thought ``j`` (``None`` for
    ``j <= after``) between two generations of one problem recorded with ``hidden``.

    ``thoughts``: ``(N, d)``; ``hidden``: ``(N+2, k, d)`` (positions bot, 0…N-1, eot)
    whose last layer entry is the last block's output (every layer, or only that one:
    ``RunOptions.record_layers``). Thought ``j`` is produced by the last block's output
    at hidden index ``j``.
    """
    assert reference.hidden is not None and edited.hidden is not None
    a, b = reference.thoughts.double(), edited.thoughts.double()
    n = a.shape[0]
    cosine = 1 - torch.nn.functional.cosine_similarity(a, b, dim=-1)
    rel = (b - a).norm(dim=-1) / a.norm(dim=-1).clamp_min(1e-12)
    with torch.inference_mode():
        states = torch.stack([reference.hidden[:n, -1], edited.hidden[:n, -1]])
        logp = model.unembed(states.to(device=model.device, dtype=model.dtype))
        logp = logp.float().log_softmax(dim=-1).double().cpu()
    kl = (logp[0].exp() * (logp[0] - logp[1])).sum(dim=-1)

    def values(x: Tensor) -> list[float | None]:
        return [None if j <= after else float(x[j]) for j in range(n)]

    return values(cosine), values(rel), values(kl)


def run_effects(
    model: ThoughtModel,
    config: EffectsConfig,
    run_dir: str | Path,
    *,
    model_spec: str = "",
    progress: bool = False,
    ranks: Ranks | None = None,
) -> EffectsResult:
    """Runs (or resumes) a thought-to-thought effects run into ``run_dir`` (locked against
    a second run; under ``torchrun`` this rank's share of the batches of problems).

    Args:
        ranks: This process's rank of a ``torchrun`` launch (started); default one process.

    Raises:
        PatchInputError: Bad configuration (naming the option), or ``run_dir`` holds a
            different run.
        OutputLockedError: Another run writes into ``run_dir``.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    strata, sites = check_shared_options(config, model.num_layers)
    try:
        ablations = parse_ablations(config.ablations)
    except ValueError as error:
        raise PatchInputError("--ablation", str(error)) from None
    schedules = parse_schedules("single", model.num_thoughts)
    specs = plan_conditions(sites, schedules, ablations)
    try:
        loaded = load_problems(config.data)
    except ProblemDataError as error:
        raise PatchInputError("--data", f"--data: {error}") from None
    problems = loaded.problems[: config.limit] if config.limit else loaded.problems
    if len(problems) < 1:
        raise PatchInputError("--data", f"--data {config.data}: no problems in it")
    needs = list(dict.fromkeys(n for a in ablations for n in ABLATIONS[a].needs))
    resource_entries: dict[str, Any] = {}
    for name in needs:
        try:
            resource_entries.update(RESOURCES[name].manifest(problems, config.mean_reference))
        except ValueError as error:
            raise PatchInputError("--ablation", str(error)) from None
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": 1,
        "pairs": None,
        "sites": [str(s) for s in sites],
        "positions": [str(i) for i in range(model.num_thoughts)],
        "ablations": ablations,
        "seed": config.seed,
        "limit": config.limit,
        "strata": str(strata),
        "max_new_tokens": config.max_new_tokens,
        "dtype": str(model.dtype).removeprefix("torch."),
        "num_thoughts": model.num_thoughts,
        "model": {
            "name": model.name,
            "spec": model_spec,
            "fingerprint": fingerprint_model(model),
            "settings": model.family.to_dict(),
        },
        "data": {
            "spec": config.data,
            "source": loaded.source,
            "fingerprint": fingerprint_problems(problems),
            "n_problems": len(problems),
        },
        **resource_entries,
        "ablation_kinds": {a: ABLATIONS[a].description for a in ablations},
        "metrics": {
            "cosine": "1 - cos(thought j unedited, thought j edited), the vectors fed back",
            "rel_l2": "||edited - unedited|| / ||unedited|| of thought j",
            "kl": "KL(unedited || edited) of the logit-lens distributions of the last "
            "block's output at the step that produced thought j",
            "changed": "the answer's number differs from the empty condition's",
            "gold_logprob_change": "log p(expected answer), edited minus unedited",
        },
        "reference": "every edited row is compared with the empty condition's row of the "
        "same runner call",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    runner = Runner(model)
    context = ResourceContext(
        model=model,  # type: ignore[arg-type]
        run_dir=run_dir,
        problems=problems,
        seed=config.seed,
        batch_size=config.batch_size * (len(specs) + 1),
        mean_reference=config.mean_reference,
    )
    resources = [RESOURCES[name](context) for name in needs]

    def prepare() -> None:
        for resource in resources:
            resource.prepare()

    work: ShardedWork[Problem, EffectRow] = ShardedWork(
        rows=EFFECT_ROWS,
        manifest=manifest,
        identity=[*IDENTITY_KEYS, "ablations"],
        units=problems,
        row_ids=lambda p: [row_id(p.id, s.ablation, s.site, s.positions[0]) for s in specs],
        batch_size=config.batch_size,
        # Rows already written are dropped after the batch (skip nothing inside).
        run_batch=lambda batch: _run_batch(
            model, runner, batch, specs, resources, config, strata, set()
        ),
        input_error=PatchInputError,
        prepare=prepare,
        desc="effects",
        unit="problem",
    )
    done = run_in_shards(work, run_dir, ranks=ranks or SINGLE, progress=progress)
    return EffectsResult(
        run_dir, len(problems), done.n_written, done.n_skipped, time.perf_counter() - started
    )


def _run_batch(
    model: ThoughtModel,
    runner: Runner,
    batch: Sequence[Problem],
    specs: Sequence[Any],
    resources: Sequence[Any],
    config: EffectsConfig,
    strata: Strata,
    done: set[tuple[str, str, str, int]],
) -> list[EffectRow]:
    """The rows of one batch of problems: the empty condition and every edit in one
    runner call, each row keeping only the thoughts and the last block's output (what
    the metrics read); before it, only when a kind needs recorded activations (``patch``:
    its donors), a baseline pass over just those problems."""
    gold = {p.id: model.answer_ids(p.answer) for p in batch}
    recorded: dict[str, Generation] = {}
    wanted = [r.baseline_problems(batch) for r in resources if r.records_hidden]
    extra = list({p.id: p for problems in wanted for p in problems}.values())
    if extra:
        options = RunOptions(
            max_new_tokens=1, batch_size=config.batch_size * (len(specs) + 1), record_hidden=True
        )
        base = runner.run([p.question for p in extra], [BASELINE], options)
        recorded = {p.id: row[0] for p, row in zip(extra, base, strict=True)}
    bound = AblationResources(
        problem_ids=[p.id for p in batch],
        seed=config.seed,
        values={r.name: r.for_batch(batch, recorded) for r in resources},
    )
    conditions = [Condition(EMPTY)] + [bind(s, bound) for s in specs]
    options = RunOptions(
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size * (len(specs) + 1),
        record_hidden=True,
        record_layers=(model.num_layers,),  # the last block's output, for the lens KL
        # Every row is compared with its problem's empty row of this call: a ballast row
        # last keeps them all off the last row, whose last bits a CPU may round
        # differently (an edit that changes nothing then gives exactly no effect).
        ballast=True,
    )
    results = runner.run(
        [p.question for p in batch],
        conditions,
        options,
        targets={"gold": [gold[p.id] for p in batch]},
    )
    out: list[EffectRow] = []
    for problem, generations in zip(batch, results, strict=True):
        empty = generations[0]
        base_number = extract_number(empty.text)
        base_gold = float(empty.target_logprobs["gold"].sum())
        for spec, gen in zip(specs, generations[1:], strict=True):
            position = spec.positions[0]
            if (problem.id, spec.ablation, spec.site, position) in done:
                continue
            cosine, rel_l2, kl = thought_effects(model, empty, gen, position)
            number = extract_number(gen.text)
            changed = (number is None) != (base_number is None) or (
                number is not None
                and base_number is not None
                and not is_correct(number, base_number)
            )
            out.append(
                EffectRow(
                    problem=problem.id,
                    stratum=strata.label_for(problem.steps),
                    ablation=spec.ablation,
                    site=spec.site,
                    position=position,
                    output=gen.text,
                    baseline_output=empty.text,
                    changed=changed,
                    gold_logprob_change=float(gen.target_logprobs["gold"].sum()) - base_gold,
                    cosine=cosine,
                    rel_l2=rel_l2,
                    kl=kl,
                )
            )
    return out
