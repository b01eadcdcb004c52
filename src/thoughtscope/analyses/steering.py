"""Steering: add ``α · direction`` to, or project a direction out of, the states at chosen
sites and positions, and trace the answers' dose-response over ``α``.

**Directions** (one ``(d,)`` vector per site and position) come from

* ``mean-diff``: the difference of means of the baseline states of two groups of
  problems: those whose value (the answer, or step ``K``'s result with
  ``--group step:K``) equals the target value, minus the others;
* ``probe``: the direction of a linear probe (logistic regression) telling the same two
  groups apart, scaled to the groups' mean difference along it; or
* a file (``.safetensors``) holding ``direction`` (one vector for every site and
  position) and/or ``<site>@<position>`` vectors (``block:2@3``, ``latent@0``), the layout
  a probe can write; unnamed sites and positions use ``direction``.

The directions used are saved as ``RUN/directions.safetensors`` (same layout), so a run
can be repeated with ``--direction RUN/directions.safetensors``.

**Edits.** ``add``: ``h + α·v``; ``project``: ``h - α·(h·u)u`` with ``u = v/|v|``
(``α = 1`` removes the component). ``α = 0`` is the empty condition of the same call,
the reference every row is compared with.

**Metrics** per (problem, site, positions, mode, ``α``): the answer, whether its number
changed from ``α = 0``, whether it *hits* the target value (counted only for problems
whose ``α = 0`` answer is not already the target value), and the change of the expected
answer's log-probability.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor

from thoughtscope.analyses.interventions.activations import position_index, site_index
from thoughtscope.analyses.interventions.schedules import parse_schedules
from thoughtscope.analyses.patching import (
    IDENTITY_KEYS,
    PatchInputError,
    check_shared_options,
    fingerprint_model,
)
from thoughtscope.analyses.probes import probe_direction
from thoughtscope.analyses.sharded import RowsRun, ShardedWork, run_in_shards
from thoughtscope.engine.distributed import SINGLE, Ranks
from thoughtscope.engine.edits import Edit, EditContext
from thoughtscope.engine.runner import BASELINE, Condition, Runner, RunOptions
from thoughtscope.engine.sites import BOT, LATENT, Position, Site, position_name
from thoughtscope.files import save_tensors
from thoughtscope.model.thought_model import ThoughtModel
from thoughtscope.problems.difficulty import Strata
from thoughtscope.problems.errors import ProblemDataError
from thoughtscope.problems.pairs import step_values
from thoughtscope.problems.problem import Problem, fingerprint_problems
from thoughtscope.problems.scoring import extract_number, is_correct
from thoughtscope.problems.sources import load_problems
from thoughtscope.results.shards import row_id
from thoughtscope.results.steering import STEER_ROWS, SteerRow, read_steer_rows

__all__ = [
    "DIRECTIONS_FILE",
    "SteerConfig",
    "SteerResult",
    "SteerRow",
    "group_directions",
    "read_steer_rows",
    "run_steering",
    "steer_edit",
]

FORMAT = "thoughtscope-steering"
DIRECTIONS_FILE = "directions.safetensors"
Mode = Literal["add", "project"]


@dataclass(frozen=True)
class SteerConfig:
    """Everything that defines a steering run besides the model.

    Attributes:
        data: Problems to steer.
        target_value: The value steered towards (hits are counted against it).
        direction: ``mean-diff``, ``probe`` or a ``.safetensors`` file (see the module
            docstring).
        group: What ``mean-diff`` and ``probe`` group by: ``answer`` or ``step:K``.
        reference: Problems the means are taken over (default: ``data``).
        sites: ``latent``, ``block:L``, … joined with ``+``.
        positions: Position schedules (``single``, ``all``, ``{0,2}``).
        modes: Comma-separated ``add``, ``project``.
        alphas: Comma-separated multiples (0 is always run, as the reference).
        limit: Use only the first ``limit`` problems of ``data`` (and of ``reference``).
        seed: Recorded; bootstrap seed of the statistics.
        strata: Difficulty strata.
        batch_size: Problems per batch.
        max_new_tokens: Decoding length.
    """

    data: str
    target_value: float
    direction: str = "mean-diff"
    group: str = "answer"
    reference: str | None = None
    sites: str = "latent"
    positions: str = "all"
    modes: str = "add"
    alphas: str = "0.5,1,2,4"
    limit: int | None = None
    seed: int = 0
    strata: str = "1,2,3,4,5+"
    batch_size: int = 16
    max_new_tokens: int = 16

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


SteerResult = RowsRun
"""What :func:`run_steering` did (:class:`~thoughtscope.analyses.sharded.RowsRun`)."""


def steer_edit(vector: Tensor, mode: Mode, alpha: float) -> Edit:
    """``add``: ``h + α·v``; ``project``: ``h - α·(h·u)u``, ``u = v/|v|``.
    ``hidden (rows, d) -> (rows, d)``."""

    def edit(hidden: Tensor, context: EditContext) -> Tensor:
        v = vector.to(device=hidden.device, dtype=torch.float32)
        h = hidden.float()
        if mode == "add":
            return (h + alpha * v).to(hidden.dtype)
        u = v / v.norm().clamp_min(1e-12)
        return (h - alpha * (h @ u)[:, None] * u).to(hidden.dtype)

    return edit


def _key(site: Site, position: Position) -> str:
    return f"{site}@{position_name(position)}"


DIRECTION_RULES = {
    "mean-diff": "mean baseline state of the reference problems whose value equals "
    "target_value minus the mean of the others, per site and position",
    "probe": "unit weight vector of a logistic probe (standardised states, C = 1) telling "
    "the two groups of mean-diff apart, per site and position, times the difference of "
    "the group means along it",
}
"""How each computed ``--direction`` is made (recorded in the manifest)."""


def group_directions(
    model: ThoughtModel,
    problems: Sequence[Problem],
    value_of: dict[str, float | None],
    target: float,
    keys: Sequence[tuple[Site, Position]],
    *,
    method: str = "mean-diff",
    batch_size: int = 32,
) -> dict[str, Tensor]:
    """One direction per site and position (``"<site>@<position>"`` → ``(d,)``) that
    separates the problems whose value equals ``target`` from the others (problems
    without a value are left out), from their baseline states:

    * ``mean-diff``: ``mean(states | value == target) - mean(states | value != target)``;
    * ``probe``: the unit direction ``u`` of a linear probe telling the two groups apart
      (:func:`thoughtscope.analyses.probes.probe_direction`), scaled to the difference
      of the group means along it, ``u · (u · mean-diff)``: the probe's direction, with
      the length by which the groups differ along it, so ``α`` means the same for both.

    Raises:
        ValueError: One of the groups is empty.
    """
    if method not in DIRECTION_RULES:
        raise ValueError(f"unknown direction method {method!r}")
    runner = Runner(model)
    sums: dict[bool, Tensor | None] = {True: None, False: None}
    counts = {True: 0, False: 0}
    kept: dict[bool, list[Tensor]] = {True: [], False: []}  # the probe's inputs only
    usable = [p for p in problems if value_of.get(p.id) is not None]
    layers = sorted({site_index(site) for site, _ in keys})  # only these leave the device
    slots = [(position_index(position), layers.index(site_index(site))) for site, position in keys]
    for start in range(0, len(usable), batch_size):
        chunk = usable[start : start + batch_size]
        options = RunOptions(
            max_new_tokens=1,
            batch_size=batch_size,
            record_hidden=True,
            record_layers=tuple(layers),
        )
        results = runner.run([p.question for p in chunk], [BASELINE], options)
        for problem, row in zip(chunk, results, strict=True):
            hidden = row[0].hidden
            assert hidden is not None
            value = value_of[problem.id]
            member = value is not None and is_correct(value, target)
            # Only the asked sites and positions: (keys, d).
            state = torch.stack([hidden[i, j] for i, j in slots]).double()
            total = sums[member]
            sums[member] = state if total is None else total + state
            counts[member] += 1
            if method == "probe":
                kept[member].append(state)
    inside, outside = sums[True], sums[False]
    if inside is None or outside is None:
        raise ValueError(
            f"--direction {method}: {counts[True]} reference problems have the value "
            f"{target:g} and {counts[False]} do not; both groups need at least one (choose "
            "another --target-value or --group, or more --reference problems)"
        )
    difference = inside / counts[True] - outside / counts[False]  # (keys, d)
    out: dict[str, Tensor] = {}
    for k, (site, position) in enumerate(keys):
        vector = difference[k]
        if method == "probe":
            x = torch.stack([s[k] for s in kept[True] + kept[False]]).numpy()
            labels = np.r_[np.ones(counts[True], bool), np.zeros(counts[False], bool)]
            unit = torch.from_numpy(probe_direction(x, labels))
            vector = unit * (unit @ vector)
        out[_key(site, position)] = vector.float().clone()
    return out


def _value_reader(group: str) -> Any:
    if group == "answer":
        return lambda p: p.answer
    if group.startswith("step:") and group.removeprefix("step:").isdigit():
        k = int(group.removeprefix("step:"))
        if k >= 1:

            def step(p: Problem) -> float | None:
                values = step_values(p)
                return values[k - 1] if values and len(values) >= k else None

            return step
    raise PatchInputError(
        "--group", f"--group {group!r}: use answer or step:K (K = 1 for the first operation)"
    )


def _file_directions(path: Path, keys: Sequence[tuple[Site, Position]]) -> dict[str, Tensor]:
    if not path.is_file():
        raise PatchInputError("--direction", f"--direction {path}: no such file")
    try:
        tensors = load_file(str(path))
    except Exception as error:  # safetensors raises its own error types
        raise PatchInputError(
            "--direction", f"--direction {path}: not a safetensors file ({error})"
        ) from None
    found: dict[str, Tensor] = {}
    for site, position in keys:
        vector = tensors.get(_key(site, position), tensors.get("direction"))
        if vector is None:
            raise PatchInputError(
                "--direction",
                f"--direction {path}: no vector for {_key(site, position)} and no 'direction'; "
                "add one of them",
            )
        found[_key(site, position)] = vector.float().reshape(-1).clone()
    return found


def run_steering(
    model: ThoughtModel,
    config: SteerConfig,
    run_dir: str | Path,
    *,
    model_spec: str = "",
    progress: bool = False,
    ranks: Ranks | None = None,
) -> SteerResult:
    """Runs (or resumes) a steering run into ``run_dir`` (locked against a second run;
    under ``torchrun`` this rank's share of the batches of problems). ``mean-diff``
    directions are computed once, by rank 0, and saved to ``RUN/directions.safetensors``,
    which the other ranks (and a resumed run) read.

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
        schedules = parse_schedules(config.positions, model.num_thoughts, option="--positions")
    except ValueError as error:
        raise PatchInputError("--positions", str(error)) from None
    sets = list(dict.fromkeys(tuple(s) for sch in schedules for s in sch.position_sets if s))
    if any(sch.is_early_exit for sch in schedules) or not sets:
        raise PatchInputError("--positions", "--positions: give position sets to steer")
    if LATENT in sites and any(BOT in s for s in sets):
        raise PatchInputError("--positions", "--positions: the latent site has no bot position")
    modes = [m.strip() for m in config.modes.split(",")]
    if not modes or any(m not in ("add", "project") for m in modes):
        raise PatchInputError("--mode", f"--mode {config.modes!r}: use add, project or both")
    try:
        alphas = sorted({float(a) for a in config.alphas.split(",")} - {0.0})
    except ValueError:
        raise PatchInputError(
            "--alphas", f"--alphas {config.alphas!r}: give numbers, comma-separated"
        ) from None
    if not alphas:
        raise PatchInputError("--alphas", "--alphas: give at least one non-zero multiple")
    try:
        problems = load_problems(config.data).problems
        reference = load_problems(config.reference).problems if config.reference else problems
    except ProblemDataError as error:
        raise PatchInputError("--data", f"--data: {error}") from None
    if config.limit:
        problems, reference = problems[: config.limit], reference[: config.limit]
    keys = list(dict.fromkeys((site, p) for site in sites for s in sets for p in s))
    value = _value_reader(config.group)
    path = run_dir / DIRECTIONS_FILE
    if config.direction in DIRECTION_RULES:
        directions = None
        if path.is_file():
            directions = _file_directions(path, keys)
    elif config.direction.endswith(".safetensors"):
        directions = _file_directions(Path(config.direction), keys)
    else:
        raise PatchInputError(
            "--direction",
            f"--direction {config.direction!r}: use mean-diff, probe or a .safetensors file",
        )
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": 1,
        "pairs": None,
        "sites": [str(s) for s in sites],
        "positions": [sch.text for sch in schedules],
        "modes": modes,
        "alphas": alphas,
        "target_value": config.target_value,
        "direction": config.direction,
        "direction_rule": DIRECTION_RULES.get(config.direction, "read from the file"),
        "group": config.group,
        "reference": {
            "spec": config.reference or config.data,
            "fingerprint": fingerprint_problems(reference),
            "n": len(reference),
        },
        "seed": config.seed,
        "limit": config.limit,
        "strata": str(strata),
        "max_new_tokens": config.max_new_tokens,
        "dtype": str(model.dtype).removeprefix("torch."),
        "model": {
            "name": model.name,
            "spec": model_spec,
            "fingerprint": fingerprint_model(model),
            "settings": model.family.to_dict(),
        },
        "data": {
            "spec": config.data,
            "fingerprint": fingerprint_problems(problems),
            "n_problems": len(problems),
        },
        "edits": "add: h + alpha*v; project: h - alpha*(h.u)u with u = v/|v|; alpha = 0 is "
        "the empty condition of the same runner call",
        "metrics": {
            "changed": "the answer's number differs from alpha = 0's",
            "hit": "the answer's number equals target_value; only problems whose alpha = 0 "
            "answer does not",
        },
        "directions_file": DIRECTIONS_FILE,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    ranks = ranks or SINGLE
    found: dict[str, Tensor] = {} if directions is None else dict(directions)

    def prepare() -> None:
        """Rank 0 computes (or takes) the directions and saves them; the others read."""
        if not found and path.is_file():  # saved by rank 0 of this launch
            found.update(_file_directions(path, keys))
        if not found:
            try:
                found.update(
                    group_directions(
                        model,
                        reference,
                        {p.id: value(p) for p in reference},
                        config.target_value,
                        keys,
                        method=config.direction,
                        batch_size=config.batch_size,
                    )
                )
            except ValueError as error:
                raise PatchInputError("--direction", str(error)) from None
        if ranks.is_main:
            save_tensors({k: v.contiguous() for k, v in found.items()}, str(path))

    specs = [
        (site, positions, mode, alpha)
        for site in sites
        for positions in sets
        for mode in modes
        for alpha in alphas
    ]
    conditions: list[Condition] = []
    runner = Runner(model)

    def run_batch(batch: list[Problem]) -> list[SteerRow]:
        if not conditions:
            conditions.extend(_conditions(found, specs))
        return _steer_batch(model, runner, batch, conditions, specs, config, strata)

    identity = [*IDENTITY_KEYS, "modes", "alphas", "target_value", "direction", "group"]
    work: ShardedWork[Problem, SteerRow] = ShardedWork(
        rows=STEER_ROWS,
        manifest=manifest,
        identity=[*identity, "reference.fingerprint"],
        units=problems,
        row_ids=lambda p: [row_id(p.id, str(s), ps, m, a) for s, ps, m, a in specs],
        batch_size=config.batch_size,
        run_batch=run_batch,
        input_error=PatchInputError,
        prepare=prepare,
        desc="steering",
        unit="problem",
    )
    done = run_in_shards(work, run_dir, ranks=ranks, progress=progress)
    return SteerResult(
        run_dir, len(problems), done.n_written, done.n_skipped, time.perf_counter() - started
    )


def _conditions(
    directions: dict[str, Tensor], specs: Sequence[tuple[Site, tuple[int, ...], str, float]]
) -> list[Condition]:
    """``alpha=0`` (the empty condition), then one condition per steering spec."""
    conditions = [Condition("alpha=0")]
    for site, positions, mode, alpha in specs:
        edits = {
            (site, p): steer_edit(directions[_key(site, p)], mode, alpha)  # type: ignore[arg-type]
            for p in positions
        }
        name = f"{mode}{alpha:g}@{site}:" + ",".join(position_name(p) for p in positions)
        conditions.append(Condition(name, edits))
    return conditions


def _steer_batch(
    model: ThoughtModel,
    runner: Runner,
    batch: Sequence[Problem],
    conditions: Sequence[Condition],
    specs: Sequence[tuple[Site, tuple[int, ...], str, float]],
    config: SteerConfig,
    strata: Strata,
) -> list[SteerRow]:
    """Every steered row of a batch of problems, each against its ``α = 0`` row."""
    # Each steered row is compared with its problem's alpha = 0 row of this call: a ballast
    # row last keeps them all off the last row, whose last bits a CPU may round
    # differently (a zero direction then changes nothing, exactly).
    options = RunOptions(
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size * len(conditions),
        ballast=True,
    )
    gold = [model.answer_ids(p.answer) for p in batch]
    results = runner.run(
        [p.question for p in batch], list(conditions), options, targets={"gold": gold}
    )
    rows: list[SteerRow] = []
    for problem, generations in zip(batch, results, strict=True):
        empty = generations[0]
        base = extract_number(empty.text)
        base_gold = float(empty.target_logprobs["gold"].sum())
        already = base is not None and is_correct(base, config.target_value)
        for (site, positions, mode, alpha), gen in zip(specs, generations[1:], strict=True):
            number = extract_number(gen.text)
            changed = (number is None) != (base is None) or (
                number is not None and base is not None and not is_correct(number, base)
            )
            hit = (
                None
                if already
                else (number is not None and is_correct(number, config.target_value))
            )
            rows.append(
                SteerRow(
                    problem=problem.id,
                    stratum=strata.label_for(problem.steps),
                    site=str(site),
                    positions=list(positions),
                    mode=mode,
                    alpha=alpha,
                    output=gen.text,
                    baseline_output=empty.text,
                    changed=changed,
                    hit=hit,
                    gold_logprob_change=float(gen.target_logprobs["gold"].sum()) - base_gold,
                )
            )
    return rows
