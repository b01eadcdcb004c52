"""What the thoughts hold: linear probes and a numeric logit lens over recorded states.

Plan → run → records, a sibling of :mod:`thoughtscope.analyses.importance`:

1. **Plan.** Problems from ``--data`` (``--limit``), each with its ground truth
   (:mod:`thoughtscope.problems.ground_truth`); problems whose annotations cannot be read
   are listed in the manifest and left out, never guessed.
2. **States.** The baseline run records every site's state at every position
   (``RunOptions(record_hidden=True)``, large batches). Each batch is written to
   ``RUN/hidden/batch-NNNNN.safetensors`` (``hidden``: ``(n, N+2, layers+1, d)``
   float32, positions ``[bot, 0…N-1, eot]``, NaN where a row had fewer thoughts) before
   the next starts; a re-run skips the batches already there. In the same pass the
   logit lens reads each state as a number: the value of the highest-ranked token that
   is a numeral (``lens_number``, NaN when none is in the top ``lens_top_k``) and whether
   it is the top token overall (``lens_top1``).
3. **Probes.** For every target, site and position, the states are read back one slice
   at a time (never all at once) and probed with scikit-learn, cross-validated with
   folds split by problem (:class:`~sklearn.model_selection.GroupKFold`). Per problem
   the out-of-fold outcome is recorded for the probe, the control task and the majority
   baseline, in ``RUN/probe_outcomes.jsonl``; :mod:`thoughtscope.statistics.probes`
   turns them into ``RUN/probes.jsonl`` with bootstrap intervals over problems.

**Classification or regression.** A target with at most ``max_classes`` distinct values
is classified (multinomial logistic regression on standardised states, L2 strength
``1/C``); with more it is regressed (ridge, ``alpha = 1/C``) and a prediction counts as
right when it rounds to the value (within 0.5).

**Control task** (Hewitt & Liang 2019). There, each *word type* gets a fixed random
control label, sampled from the empirical distribution of the real task's labels; a
probe can only solve the control task by memorising word types, so the gap between the
real and the control accuracy (*selectivity*) says how much of the accuracy comes from
reading the property rather than from the probe's capacity to memorise inputs. Our
analogue of a word type is a problem's *surface*: the numbers in its question, in order
(:func:`surface_type`). Each surface gets a control label drawn, by a hash of
``--seed``, the target name and the surface, from the empirical distribution of the
target's values over the cell's problems: problems with the same numbers share a
control label, the control labels have the real labels' distribution, and nothing else
about the problem is in them. Because folds are split by problem, a held-out problem's
surface is usually unseen in training, so the control accuracy sits near the majority
baseline; it rises above it only when surfaces recur across folds and the states carry
them (memorisation), which is exactly what it is there to catch. A relabelling of
*values* (the first version) does not do this: a permutation of values is as learnable
as the values themselves, and a random many-to-one merge makes fewer, easier classes.
*Selectivity* is accuracy minus control accuracy, paired over problems.

**Fitting.** Per training fold one :class:`~sklearn.preprocessing.StandardScaler` is
fitted and shared by the probe and its control; L-BFGS stops at ``tol`` (``1e-3`` by
default, sklearn's is ``1e-4``: the measured trade-off is in docs/probes.md) and each
task's classifier is warm-started from its previous fold's solution when the folds have
the same classes. Fits that hit ``MAX_ITER`` are counted (``unconverged``).

**Majority baseline.** Per fold, the most frequent value of the training problems,
predicted for every held-out problem.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from safetensors import safe_open
from torch import Tensor
from tqdm.auto import tqdm

from thoughtscope.analyses.patching import fingerprint_model
from thoughtscope.analyses.sharded import locked_by_main
from thoughtscope.engine.batching import AUTO, auto_batch_size
from thoughtscope.engine.distributed import SINGLE, Ranks
from thoughtscope.engine.lens import readable_token
from thoughtscope.engine.runner import BASELINE, Runner, RunOptions
from thoughtscope.engine.sites import BOT, EOT, LATENT, Site, parse_sites, position_name
from thoughtscope.files import replacing, save_tensors, write_json, write_text
from thoughtscope.model.thought_model import ThoughtModel
from thoughtscope.problems.errors import ProblemDataError
from thoughtscope.problems.ground_truth import GroundTruth, ground_truths
from thoughtscope.problems.problem import Problem
from thoughtscope.problems.sources import load_problems
from thoughtscope.results.store import MANIFEST_FILE

__all__ = [
    "HIDDEN_DIR",
    "LENS_OUTCOMES_FILE",
    "OUTCOMES_FILE",
    "ProbeConfig",
    "ProbeInputError",
    "ProbePlan",
    "ProbeRunResult",
    "control_labels",
    "fit_cell",
    "number_tokens",
    "plan_probes",
    "probe_direction",
    "read_states",
    "readable_token",
    "run_probes",
    "surface_type",
    "target_names",
]

FORMAT = "thoughtscope-probes"
FORMAT_VERSION = 1
MAX_ITER = 1000
"""Iteration cap of the logistic-regression solver."""
HIDDEN_DIR = "hidden"
OUTCOMES_FILE = "probe_outcomes.jsonl"
LENS_OUTCOMES_FILE = "lens_outcomes.jsonl"
IDENTITY_KEYS = ("format_version", "model_fingerprint", "data_fingerprint", "limit")
"""Keys of the manifest's ``probes`` section that must match to reuse the state cache."""


class ProbeInputError(ValueError):
    """Bad input: the message names the option and what to do."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class ProbeConfig:
    """Everything that defines a probe run besides the model.

    Attributes:
        data: Problem source (``--data``).
        sites: Sites to probe (``latent``, ``block:all``, joined with ``+``); ``latent``
            is probed at thought positions only (at bot/eot it is a token embedding).
        targets: Comma-separated: ``final_answer``, ``step_count``, ``step_result:K``
            or ``step_result:all`` (K = 1 … the most steps of any problem).
        folds: Cross-validation folds (split by problem).
        max_classes: Targets with more distinct values are regressed, not classified.
        c: Inverse regularisation strength of the probes.
        min_problems: Cells with fewer problems (e.g. ``step_result:6``) are skipped.
        limit: Use only the first N problems of the source.
        batch_size: Rows per forward pass, or ``"auto"``.
        seed: Control labels and bootstrap seed.
        n_boot: Bootstrap resamples for the intervals.
        lens_top_k: Tokens searched for a numeral by the numeric lens.
        tol: Stopping tolerance of the logistic-regression solver (L-BFGS).
    """

    data: str
    sites: str = "latent+block:all"
    targets: str = "final_answer,step_result:all,step_count"
    folds: int = 5
    max_classes: int = 40
    c: float = 1.0
    min_problems: int = 20
    limit: int | None = None
    batch_size: int | Literal["auto"] = AUTO
    seed: int = 0
    n_boot: int = 1000
    lens_top_k: int = 20
    tol: float = 1e-3

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class ProbePlan:
    """A validated probe run."""

    config: ProbeConfig
    problems: list[Problem]
    truths: dict[str, GroundTruth]
    sites: list[Site]
    targets: list[str]
    manifest: dict[str, Any]


@dataclass(frozen=True)
class ProbeRunResult:
    """What :func:`run_probes` did: counts and wall time."""

    run_dir: Path
    n_problems: int
    n_left_out: int
    n_batches_skipped: int
    n_cells: int
    n_fitted: int
    seconds_states: float
    seconds_probes: float


# ----------------------------------------------------------------------------- targets
_TARGET_RE = re.compile(r"^(final_answer|step_count|step_result:(all|[1-9]\d*))$")


def target_names(text: str, max_steps: int) -> list[str]:
    """Parses ``--targets`` (``step_result:all`` becomes K = 1 … ``max_steps``).

    Raises:
        ProbeInputError: naming the part that cannot be read.
    """
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not _TARGET_RE.match(part):
            raise ProbeInputError(
                "--targets",
                f"--targets: cannot read {part!r}; use final_answer, step_count, "
                "step_result:K (K from 1) or step_result:all, comma-separated",
            )
        if part == "step_result:all":
            out.extend(f"step_result:{k}" for k in range(1, max_steps + 1))
        else:
            out.append(part)
    return list(dict.fromkeys(out))


# ------------------------------------------------------------------------------ tokens
_NUMERAL = re.compile(r"^-?\d+(?:\.\d+)?$")


def number_tokens(tokenizer: Any, vocab_size: int) -> tuple[list[int], list[float]]:
    """Ids of the tokens that are one numeral (spaces around allowed) and their values."""
    ids: list[int] = []
    values: list[float] = []
    for token_id in range(vocab_size):
        try:
            text = str(tokenizer.decode([token_id])).strip()
        except Exception:  # ids outside the tokenizer (padded vocabularies)
            continue
        if _NUMERAL.match(text):
            ids.append(token_id)
            values.append(float(text))
    return ids, values


# ---------------------------------------------------------------------------- planning
def plan_probes(model: ThoughtModel, config: ProbeConfig, *, model_spec: str = "") -> ProbePlan:
    """Validates the configuration, reads the problems and their ground truth.

    Raises:
        ProbeInputError: naming the option at fault and what to do.
    """
    if config.folds < 2:
        raise ProbeInputError("--folds", "--folds must be 2 or more")
    if config.max_classes < 2:
        raise ProbeInputError("--max-classes", "--max-classes must be 2 or more")
    if config.c <= 0:
        raise ProbeInputError("--c", "--c must be greater than 0")
    if config.limit is not None and config.limit < 1:
        raise ProbeInputError("--limit", "--limit must be 1 or more (or left out)")
    if config.tol <= 0:
        raise ProbeInputError("--tol", "--tol must be greater than 0 (e.g. 1e-3)")
    if config.lens_top_k < 1:
        raise ProbeInputError("--lens-top-k", "--lens-top-k must be 1 or more")
    try:
        sites = parse_sites(config.sites, model.num_layers)
    except ValueError as error:
        raise ProbeInputError("--sites", str(error)) from None
    try:
        loaded = load_problems(config.data)
    except ProblemDataError as error:
        raise ProbeInputError("--data", f"--data: {error}") from None
    selected = loaded.problems[: config.limit] if config.limit else loaded.problems
    truths, left_out = ground_truths(selected)
    problems = [p for p in selected if p.id in truths]
    if len(problems) < config.folds:
        raise ProbeInputError(
            "--data",
            f"--data {config.data}: {len(problems)} problems with readable step annotations "
            f"({len(left_out)} left out); probing needs at least --folds {config.folds}",
        )
    max_steps = max(t.step_count for t in truths.values())
    targets = target_names(config.targets, max_steps)
    text = json.dumps([p.to_dict() for p in problems], sort_keys=True)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "model": {
            "spec": model_spec,
            "name": model.name,
            "family": type(model.family).__name__,
            "num_layers": model.num_layers,
            "d_model": model.d_model,
            "num_thoughts": model.num_thoughts,
        },
        "model_fingerprint": fingerprint_model(model),
        "data_fingerprint": hashlib.sha256(text.encode()).hexdigest(),
        "data": config.data,
        "limit": config.limit,
        "n_problems": len(problems),
        "left_out": [{"id": u.problem_id, "reason": u.reason} for u in left_out],
        "sites": [str(s) for s in sites],
        "targets": targets,
        "probe": {
            "classifier": f"sklearn LogisticRegression(lbfgs, L2, C={config.c}, "
            f"tol={config.tol}, max_iter={MAX_ITER}), warm-started from the previous "
            "fold's solution when the classes agree",
            "regressor": f"sklearn Ridge(alpha={1.0 / config.c}); right when within 0.5",
            "scaling": "StandardScaler fitted on each training fold, shared by the probe "
            "and its control",
            "rule": f"classification when a target has at most {config.max_classes} "
            "distinct values, else regression",
            "folds": f"GroupKFold({config.folds}) over problems",
            "control": "each problem surface (the numbers in its question, in order) gets "
            "a fixed random label drawn from the empirical distribution of the target's "
            "values, seeded by seed, target and surface (Hewitt & Liang 2019's control "
            "task, word type -> problem surface); selectivity = accuracy - control accuracy",
            "majority": "most frequent training value, per fold",
            "latent": "probed at thought positions only",
        },
        "lens": {
            "reading": f"highest-ranked numeral token among the top {config.lens_top_k} "
            "of the logit lens (final norm + unembedding); top1: it is the top token",
        },
    }
    return ProbePlan(config, problems, truths, sites, targets, manifest)


def _write_manifest(run_dir: Path, section: dict[str, Any]) -> None:
    """Stores the probe settings as the ``probes`` section of ``RUN/manifest.json`` (a
    folder that already holds another analysis keeps its manifest; a new one is created).

    Raises:
        ProbeInputError: (``--out``) the folder holds probes of another model or data.
    """
    path = run_dir / MANIFEST_FILE
    manifest: dict[str, Any] = {}
    if path.is_file():
        manifest = json.loads(path.read_text(encoding="utf-8"))
        old = manifest.get("probes")
        if isinstance(old, dict):
            differ = [k for k in IDENTITY_KEYS if old.get(k) != section.get(k)]
            if differ:
                raise ProbeInputError(
                    "--out",
                    f"--out {run_dir} holds probe states of a different run ({', '.join(differ)} "
                    "differ); repeat the original --model/--data/--limit or choose another --out",
                )
    else:
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION}
    manifest["probes"] = section
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, manifest)


# ------------------------------------------------------------------------------ states
def _slot(position: int, num_thoughts: int) -> int:
    """Index of a position in the cache's position axis ``[bot, 0…N-1, eot]``."""
    if position == BOT:
        return 0
    if position == EOT:
        return num_thoughts + 1
    return position + 1


def _padded(hidden: Tensor, num_thoughts: int) -> Tensor:
    """``(n_pos, L+1, d)`` → ``(N+2, L+1, d)``, NaN where the row had fewer thoughts."""
    if hidden.shape[0] == num_thoughts + 2:
        return hidden
    out = torch.full((num_thoughts + 2, *hidden.shape[1:]), float("nan"))
    out[: hidden.shape[0] - 1] = hidden[:-1]
    out[-1] = hidden[-1]
    return out


@torch.inference_mode()
def _lens_numbers(
    model: ThoughtModel, hidden: Tensor, ids: Tensor, values: Tensor, top_k: int
) -> tuple[Tensor, Tensor]:
    """The numeric lens of ``hidden`` ``(n, P, L+1, d)``: per state the value of the
    highest-ranked numeral among the top ``top_k`` tokens (NaN if none) and whether it is
    the top token; both ``(n, P, L+1)``."""
    n, p, layers, d = hidden.shape
    flat = hidden.reshape(-1, d)
    number = torch.full((flat.shape[0],), float("nan"))
    top1 = torch.zeros(flat.shape[0], dtype=torch.bool)
    is_number = torch.zeros(model.vocab_size, dtype=torch.bool)
    is_number[ids] = True
    value_of = torch.full((model.vocab_size,), float("nan"))
    value_of[ids] = values
    chunk = 256
    for start in range(0, flat.shape[0], chunk):
        part = flat[start : start + chunk]
        ok = ~part.isnan().any(dim=-1)
        if not ok.any():
            continue
        states = part[ok].to(device=model.device, dtype=model.dtype)
        top = model.unembed(states).float().topk(min(top_k, model.vocab_size), dim=-1).indices
        top = top.cpu()
        numeral = is_number[top]
        first = numeral.float().argmax(dim=-1)
        found = numeral.any(dim=-1)
        chosen = top.gather(1, first[:, None])[:, 0]
        read = torch.where(found, value_of[chosen], torch.tensor(float("nan")))
        index = torch.arange(start, start + part.shape[0])[ok]
        number[index] = read
        top1[index] = found & (first == 0)
    return number.reshape(n, p, layers), top1.reshape(n, p, layers)


def _batch_file(run_dir: Path, index: int) -> Path:
    return run_dir / HIDDEN_DIR / f"batch-{index:05d}.safetensors"


def _record_states(
    model: ThoughtModel, plan: ProbePlan, run_dir: Path, progress: bool, ranks: Ranks = SINGLE
) -> tuple[int, int]:
    """Runs the baseline batch by batch and caches its states (under ``torchrun``, this
    rank's share of the batches); returns (batches, skipped). A cached batch is reused
    only when it holds exactly the batch's problems (another ``--batch-size`` recomputes)."""
    config = plan.config
    if config.batch_size == AUTO:
        longest = max((p.question for p in plan.problems), key=len)
        rows = auto_batch_size(
            model, prompt_length=len(model.question_ids(longest)), new_tokens=1, conditions=1
        )
    else:
        rows = int(config.batch_size)
    rows = max(1, rows)
    batches = [plan.problems[i : i + rows] for i in range(0, len(plan.problems), rows)]
    (run_dir / HIDDEN_DIR).mkdir(parents=True, exist_ok=True)
    if ranks.is_main:  # files of a run with fewer, larger batches
        for path in _cache_files(run_dir)[len(batches) :]:
            path.unlink()
    runner = Runner(model)
    ids, values = number_tokens(model.tokenizer, model.vocab_size)
    id_tensor = torch.tensor(ids, dtype=torch.long)
    value_tensor = torch.tensor(values, dtype=torch.float32)
    n_thoughts = model.num_thoughts
    skipped = 0
    mine = ranks.share(list(enumerate(batches)))
    bar = tqdm(total=len(mine), disable=not progress, desc="states", unit="batch")
    for index, batch in mine:
        path = _batch_file(run_dir, index)
        if _cached_ids(path) == [p.id for p in batch]:
            skipped += 1
            bar.update(1)
            continue
        options = RunOptions(max_new_tokens=1, batch_size=rows, record_hidden=True)
        results = runner.run([p.question for p in batch], [BASELINE], options)
        hidden = torch.stack([_padded(row[0].hidden, n_thoughts) for row in results])  # type: ignore[arg-type]
        number, top1 = _lens_numbers(model, hidden, id_tensor, value_tensor, config.lens_top_k)
        save_tensors(
            {"hidden": hidden.float().contiguous(), "lens_number": number, "lens_top1": top1},
            path,
            metadata={"ids": json.dumps([p.id for p in batch])},
        )
        bar.update(1)
    bar.close()
    return len(batches), skipped


def _cached_ids(path: Path) -> list[str] | None:
    """The problem ids of a cached batch (``None``: no such file)."""
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:
        ids: list[str] = json.loads((handle.metadata() or {}).get("ids", "[]"))
        return ids


def _cache_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / HIDDEN_DIR).glob("batch-*.safetensors"))


def read_states(run_dir: Path, slot: int, layer: int) -> tuple[list[str], NDArray[np.float32]]:
    """One (position slot, layer index) slice of the cached states: ids and ``(n, d)``."""
    ids: list[str] = []
    parts: list[NDArray[np.float32]] = []
    for path in _cache_files(run_dir):
        with safe_open(str(path), framework="pt") as handle:
            ids.extend(json.loads(handle.metadata()["ids"]))
            piece = handle.get_slice("hidden")[:, slot : slot + 1, layer : layer + 1, :]
            parts.append(piece.reshape(piece.shape[0], -1).numpy())
    return ids, np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def read_lens(run_dir: Path) -> tuple[list[str], NDArray[np.float32], NDArray[np.bool_]]:
    """The cached numeric lens: ids, numbers ``(n, P, L+1)`` and top-1 flags."""
    ids: list[str] = []
    numbers: list[NDArray[np.float32]] = []
    top1: list[NDArray[np.bool_]] = []
    for path in _cache_files(run_dir):
        with safe_open(str(path), framework="pt") as handle:
            ids.extend(json.loads(handle.metadata()["ids"]))
            numbers.append(handle.get_tensor("lens_number").numpy())
            top1.append(handle.get_tensor("lens_top1").numpy())
    return ids, np.concatenate(numbers), np.concatenate(top1)


# ------------------------------------------------------------------------------ probes
@dataclass(frozen=True)
class CellOutcome:
    """Out-of-fold outcomes of one (target, site, position) over its problems.

    Attributes:
        kind: ``classification`` or ``regression``.
        classes: Distinct values of the target in the cell.
        correct, control, majority: Per problem, 0/1, in input order: the probe, the
            same probe on the control task, the majority baseline.
        unconverged: Fits (probe and control, over folds) that stopped at ``max_iter``.
    """

    kind: str
    classes: int
    correct: NDArray[np.int8]
    control: NDArray[np.int8]
    majority: NDArray[np.int8]
    unconverged: int = 0


_NUMBER_IN_TEXT = re.compile(r"\d+(?:\.\d+)?")


def surface_type(question: str) -> tuple[str, ...]:
    """The numbers of ``question`` in order (thousands separators dropped): the problem's
    surface, our analogue of Hewitt & Liang's word type for the control task."""
    return tuple(_NUMBER_IN_TEXT.findall(question.replace(",", "")))


def control_labels(
    types: Sequence[Hashable], y: NDArray[Any], seed: int, target: str
) -> NDArray[np.float64]:
    """One control label per problem: a fixed random function of its surface type.

    Each type's label is drawn by inverse CDF from the empirical distribution of ``y``
    ``(n,)``, with a uniform number hashed from ``seed``, ``target`` and the type, so
    problems of one type share it, the labels follow the real labels' distribution, and
    the draw does not depend on the order or number of the other problems.
    """
    values, counts = np.unique(np.asarray(y, dtype=np.float64), return_counts=True)
    cdf = np.cumsum(counts) / counts.sum()
    out = np.empty(len(types), dtype=np.float64)
    for i, kind in enumerate(types):
        digest = hashlib.sha256(f"{seed}|{target}|{kind!r}".encode()).digest()
        uniform = int.from_bytes(digest[:8], "big") / 2.0**64
        out[i] = values[min(int(np.searchsorted(cdf, uniform, side="right")), len(values) - 1)]
    return out


def fit_cell(
    x: NDArray[Any],
    y: NDArray[Any],
    *,
    types: Sequence[Hashable] | None = None,
    folds: int = 5,
    max_classes: int = 40,
    c: float = 1.0,
    tol: float = 1e-3,
    seed: int = 0,
    target: str = "",
) -> CellOutcome:
    """Cross-validated probe, control task and majority baseline on one cell.

    Args:
        x: ``(n, d)`` states, one row per problem.
        y: ``(n,)`` target values.
        types: ``n`` surface types (:func:`surface_type`) for the control task; problems
            of one type share a control label. Default: every problem its own type.
        folds: Folds, split by problem.
        max_classes: Classification up to this many distinct values, else regression.
        c: Inverse regularisation strength.
        tol: Stopping tolerance of the logistic-regression solver.
        seed, target: Seed the control labels.
    """
    from threadpoolctl import threadpool_limits

    y = np.asarray(y, dtype=np.float64)
    kinds: Sequence[Hashable] = range(len(y)) if types is None else types
    if len(kinds) != len(y):
        raise ValueError(f"fit_cell: {len(kinds)} types for {len(y)} problems")
    control_y = control_labels(kinds, y, seed, target)
    with threadpool_limits(1):  # small fits: BLAS threads only fight (40x slower on 2 cores)
        return _fit_cell(x, y, control_y, folds, max_classes, c, tol)


def _fit_cell(
    x: NDArray[Any],
    y: NDArray[np.float64],
    control_y: NDArray[np.float64],
    folds: int,
    max_classes: int,
    c: float,
    tol: float,
) -> CellOutcome:
    from sklearn.model_selection import GroupKFold
    from sklearn.preprocessing import StandardScaler

    n = len(y)
    classify = len(np.unique(y)) <= max_classes
    outcomes = {"probe": np.zeros(n, np.int8), "control": np.zeros(n, np.int8)}
    majority = np.zeros(n, np.int8)
    fitted: dict[str, Any] = {}  # per task, the last fold's classifier (warm start)
    unconverged = 0
    splitter = GroupKFold(n_splits=min(folds, n))
    for train, test in splitter.split(x, y, groups=np.arange(n)):
        scaler = StandardScaler().fit(x[train])
        x_train, x_test = scaler.transform(x[train]), scaler.transform(x[test])
        for task, labels in (("probe", y), ("control", control_y)):
            predicted, stalled = _fit_predict(
                fitted, task, x_train, labels[train], x_test, classify, c, tol
            )
            unconverged += stalled
            if classify:
                outcomes[task][test] = predicted == labels[test]
            else:
                outcomes[task][test] = np.abs(predicted - labels[test]) < 0.5
        values, counts = np.unique(y[train], return_counts=True)
        majority[test] = y[test] == values[np.argmax(counts)]
    return CellOutcome(
        "classification" if classify else "regression",
        len(np.unique(y)),
        outcomes["probe"],
        outcomes["control"],
        majority,
        unconverged,
    )


def probe_direction(
    x: NDArray[Any], labels: NDArray[Any], *, c: float = 1.0, tol: float = 1e-4
) -> NDArray[np.float64]:
    """The unit vector ``(d,)`` in state space along which a linear probe tells
    ``labels`` ``(n,)`` (True/False) apart in ``x`` ``(n, d)``: a logistic regression on
    standardised states, whose weights ``w`` act on ``(x - mean) / scale``, so its
    decision grows fastest along ``w / scale`` in the states themselves.

    Raises:
        ValueError: ``labels`` has one class only.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        raise ValueError("a probe direction needs problems of both groups")
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scaler = StandardScaler().fit(x)
        model = LogisticRegression(C=c, tol=tol, max_iter=MAX_ITER)
        model.fit(scaler.transform(x), labels)
    weights = np.asarray(model.coef_[0], dtype=np.float64) / scaler.scale_
    return weights / np.linalg.norm(weights)


def _fit_predict(
    fitted: dict[str, Any],
    task: str,
    x_train: NDArray[Any],
    y_train: NDArray[Any],
    x_test: NDArray[Any],
    classify: bool,
    c: float,
    tol: float,
) -> tuple[NDArray[Any], int]:
    """Predictions for ``x_test`` and 1 if the solver stopped at ``MAX_ITER``, else 0."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge

    if not classify:
        return np.asarray(Ridge(alpha=1.0 / c).fit(x_train, y_train).predict(x_test)), 0
    classes = np.unique(y_train)
    if len(classes) == 1:
        return np.full(len(x_test), classes[0]), 0
    model = fitted.get(task)
    if model is None or not np.array_equal(model.classes_, classes):
        model = LogisticRegression(C=c, tol=tol, max_iter=MAX_ITER, warm_start=True)
        fitted[task] = model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # counted instead
        model.fit(x_train, y_train)
    return np.asarray(model.predict(x_test)), int(np.max(model.n_iter_) >= MAX_ITER)


def _cells(plan: ProbePlan) -> Iterator[tuple[Site, int, int, int]]:
    """(site, position, slot, layer index) of every probed cell."""
    n_thoughts = plan.manifest["model"]["num_thoughts"]
    for site in plan.sites:
        layer = 0 if site == LATENT else (site.layer or 0) + 1
        positions = list(range(n_thoughts)) if site == LATENT else [BOT, *range(n_thoughts), EOT]
        for position in positions:
            yield site, position, _slot(position, n_thoughts), layer


def _outcome_key(line: str) -> tuple[str, str, str]:
    record = json.loads(line)
    return record["target"], record["site"], record["position"]


def _bits(values: Sequence[int] | NDArray[Any]) -> str:
    return "".join("1" if v else "0" for v in values)


def _write_lens_outcomes(plan: ProbePlan, run_dir: Path) -> None:
    """Per (site, position): each problem's numeric-lens reading and, per target, whether
    it equals the target's value (``final_answer``, ``step_result:K``, and
    ``any_intermediate``: any step's result), to ``RUN/lens_outcomes.jsonl``."""
    ids, numbers, top1 = read_lens(run_dir)
    truths = plan.truths
    lens_targets = [t for t in plan.targets if t != "step_count"]
    with (
        replacing(run_dir / LENS_OUTCOMES_FILE) as tmp,
        tmp.open("w", encoding="utf-8") as handle,
    ):
        for site, position, slot, layer in _cells(plan):
            read = numbers[:, slot, layer]
            present = [i for i in range(len(ids)) if truths[ids[i]].step_count > 0]
            hits: dict[str, dict[str, Any]] = {}
            for target in [*lens_targets, "any_intermediate"]:
                chosen: list[int] = []
                bits: list[int] = []
                for i in present:
                    truth = truths[ids[i]]
                    value = read[i]
                    if target == "any_intermediate":
                        wanted: tuple[float, ...] = truth.results
                    else:
                        known = truth.value(target)
                        if known is None:
                            continue
                        wanted = (known,)
                    chosen.append(i)
                    bits.append(
                        int(not np.isnan(value) and any(abs(value - w) < 1e-9 for w in wanted))
                    )
                hits[target] = {"ids": [ids[i] for i in chosen], "hit": _bits(bits)}
            record = {
                "site": str(site),
                "position": position_name(position),
                "ids": list(ids),
                "numbers": [None if np.isnan(v) else float(v) for v in read.tolist()],
                "top1": _bits(top1[:, slot, layer]),
                "targets": hits,
            }
            handle.write(json.dumps(record) + "\n")


def _fit_fingerprint(config: ProbeConfig) -> str:
    """The settings an out-of-fold outcome depends on besides the states and the ids: an
    outcome recorded under another fingerprint is fitted again."""
    keys = ("folds", "max_classes", "c", "tol", "seed", "min_problems")
    settings = {k: getattr(config, k) for k in keys} | {"format": 1, "max_iter": MAX_ITER}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _recorded_outcomes(paths: Sequence[Path], fit: str) -> dict[tuple[str, str, str], str]:
    """The outcome lines already fitted under ``fit``, by (target, site, position), from
    the complete file of an earlier call and the partial file of a killed one (whose last
    line may be cut short: ignored)."""
    done: dict[tuple[str, str, str], str] = {}
    for path in paths:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            if isinstance(record, dict) and record.get("fit") == fit:
                done[(record["target"], record["site"], record["position"])] = line
    return done


def _fit_record(
    key: tuple[str, str, str],
    ids: list[str],
    x: NDArray[Any],
    y: NDArray[np.float64],
    types: list[tuple[str, ...]],
    config: ProbeConfig,
    fit: str,
) -> str:
    """One cell's outcome line (runs in a worker process when ``jobs`` > 1)."""
    target, site, position = key
    outcome = fit_cell(
        x,
        y,
        types=types,
        folds=config.folds,
        max_classes=config.max_classes,
        c=config.c,
        tol=config.tol,
        seed=config.seed,
        target=target,
    )
    record = {
        "target": target,
        "site": site,
        "position": position,
        "kind": outcome.kind,
        "classes": outcome.classes,
        "ids": ids,
        "correct": _bits(outcome.correct),
        "control": _bits(outcome.control),
        "majority": _bits(outcome.majority),
        "unconverged": outcome.unconverged,
        "fit": fit,
    }
    return json.dumps(record)


def run_probes(
    model: ThoughtModel,
    config: ProbeConfig,
    run_dir: str | Path,
    *,
    model_spec: str = "",
    progress: bool = True,
    jobs: int = 1,
    ranks: Ranks | None = None,
) -> ProbeRunResult:
    """Records (or resumes) the state cache and writes every cell's out-of-fold outcomes
    to ``RUN/probe_outcomes.jsonl``. Statistics:
    :func:`thoughtscope.statistics.probes.write_probe_statistics`.

    Fits resume too: each cell's outcome is appended to ``probe_outcomes.jsonl.partial``
    as it is fitted, and a later call (after a kill, or a repeat) fits only the cells
    not yet recorded under the same fit settings (``folds``, ``max_classes``, ``c``,
    ``tol``, ``seed``, ``min_problems``). ``jobs`` worker processes fit cells at once
    (each fit is single-threaded and deterministic, so the outcomes do not depend on
    ``jobs``). Under ``torchrun`` each rank records every ``world_size``-th batch of
    states and fits every ``world_size``-th cell (its own partial file,
    ``.partial-<rank>``); rank 0 then merges; done cells are known by name, so a resume
    may use another number of ranks. One launch at a time: rank 0 locks the folder.

    Raises:
        ProbeInputError: Bad configuration, or ``run_dir`` holds other probe states.
        OutputLockedError: Another run writes this folder.
    """
    ranks = ranks or SINGLE
    if jobs < 1:
        raise ProbeInputError("--jobs", f"--jobs {jobs}: give at least 1 worker process")
    run_dir = Path(run_dir)
    plan = plan_probes(model, config, model_spec=model_spec)
    prepare = functools.partial(_write_manifest, run_dir, plan.manifest)
    with locked_by_main(run_dir / OUTCOMES_FILE, ranks, "probes", prepare):
        return _run_probes_locked(model, plan, run_dir, progress, jobs, ranks)


def _partial_file(run_dir: Path, rank: int) -> Path:
    suffix = ".partial" if rank == 0 else f".partial-{rank}"
    return run_dir / (OUTCOMES_FILE + suffix)


def _run_probes_locked(
    model: ThoughtModel,
    plan: ProbePlan,
    run_dir: Path,
    progress: bool,
    jobs: int,
    ranks: Ranks,
) -> ProbeRunResult:
    from joblib import Parallel, delayed

    config = plan.config
    started = time.perf_counter()
    _, skipped = ranks.together(lambda: _record_states(model, plan, run_dir, progress, ranks))
    states_seconds = time.perf_counter() - started
    started = time.perf_counter()
    truths = plan.truths
    surfaces = {p.id: surface_type(p.question) for p in plan.problems}
    cells = list(_cells(plan))
    fit = _fit_fingerprint(config)
    final = run_dir / OUTCOMES_FILE
    partials = sorted(run_dir.glob(OUTCOMES_FILE + ".partial*"))
    done = _recorded_outcomes([final, *partials], fit)
    own = _partial_file(run_dir, ranks.rank)
    kept = _recorded_outcomes([own], fit)
    fitted = 0
    mine = ranks.share(cells)
    bar = tqdm(total=len(mine), disable=not progress, desc="probes", unit="cell")

    def work() -> Iterator[Any]:
        """This rank's fits still to do, cell by cell (states read one layer at a time)."""
        for site, position, slot, layer in mine:
            ids, states = read_states(run_dir, slot, layer)
            for target in plan.targets:
                key = (target, str(site), position_name(position))
                if key in done:
                    continue
                keep = [
                    i
                    for i, pid in enumerate(ids)
                    if truths[pid].value(target) is not None and not np.isnan(states[i]).any()
                ]
                if len(keep) < max(config.min_problems, config.folds):
                    continue
                y = np.array([truths[ids[i]].value(target) for i in keep], dtype=np.float64)
                kept_ids = [ids[i] for i in keep]
                types = [surfaces[i] for i in kept_ids]
                yield delayed(_fit_record)(key, kept_ids, states[keep], y, types, config, fit)
            bar.update(1)

    def fit_mine() -> None:
        nonlocal fitted
        # This rank's partial file starts as its own lines kept (atomically: lines of
        # other fit settings, or cut short, are dropped), then grows by one line per cell.
        write_text(own, "".join(line + "\n" for line in kept.values()))
        with own.open("a", encoding="utf-8") as handle:
            for line in Parallel(n_jobs=jobs, return_as="generator")(work()):
                handle.write(line + "\n")
                handle.flush()
                fitted += 1

    ranks.together(fit_mine)
    bar.close()
    n_cells = 0

    def merge() -> None:
        """Rank 0: every rank's cells into the one file, in cell order (together()
        above waited for every rank's fits)."""
        nonlocal n_cells
        if not ranks.is_main:
            return
        partials = sorted(run_dir.glob(OUTCOMES_FILE + ".partial*"))
        done = _recorded_outcomes([final, *partials], fit)
        order = [
            (target, str(site), position_name(position))
            for site, position, _, _ in cells
            for target in plan.targets
        ]
        lines = [done[key] for key in order if key in done]
        n_cells = len(lines)
        write_text(final, "".join(line + "\n" for line in lines))
        for path in partials:
            path.unlink()
        _write_lens_outcomes(plan, run_dir)

    ranks.together(merge)  # the others return once the merged files exist
    return ProbeRunResult(
        run_dir=run_dir,
        n_problems=len(plan.problems),
        n_left_out=len(plan.manifest["left_out"]),
        n_batches_skipped=skipped,
        n_cells=n_cells,
        n_fitted=fitted,
        seconds_states=states_seconds,
        seconds_probes=time.perf_counter() - started,
    )
