"""``thoughtscope answer`` and ``thoughtscope thoughts``.

Both run under ``torchrun`` too (see ``docs/scaling.md``): each rank takes every
``world_size``-th chunk of ``--batch-size`` problems, writes its own shard beside
``--out``, and rank 0 merges the shards into ``--out`` in problem order. ``answer``
resumes: its configuration is kept beside the answers (``NAME.manifest.json``), finished
problems are skipped, and ``--force`` starts over.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from tqdm.auto import tqdm

from thoughtscope.analyses.answers import answer_problems
from thoughtscope.analyses.importance import model_fingerprint
from thoughtscope.analyses.thoughts import Mixture, ThoughtDump, extract_thoughts
from thoughtscope.cli.app import UsageError, app, fail, streaming_to
from thoughtscope.cli.launch import DEFAULT_THREADS, ProgressOpt, ThreadsOpt, start_ranks
from thoughtscope.cli.options import (
    BatchSizeOpt,
    DataOpt,
    LimitOpt,
    MaxNewTokensOpt,
    ModelChoice,
    ModelOpt,
    SkipBadOpt,
    SkipLongOpt,
    check_output,
    fitting_problems,
    model_options,
    read_problems,
)
from thoughtscope.engine.distributed import RankFailedError
from thoughtscope.files import replacing, write_json
from thoughtscope.problems import Problem
from thoughtscope.problems.problem import fingerprint_problems
from thoughtscope.results.lock import OutputLock
from thoughtscope.results.shards import ShardedOutput, merge_shards, shard_path
from thoughtscope.results.store import ResultStoreError, json_rows

ANSWERS_FORMAT = "thoughtscope-answers"
ANSWER_IDENTITY = ("model.fingerprint", "data.fingerprint", "max_new_tokens")
"""Manifest keys that must match to resume an ``answer`` output."""


def answers_manifest_path(out: Path) -> Path:
    """Where ``answer`` keeps the configuration of ``out``: ``a.jsonl`` -> ``a.manifest.json``."""
    return out.with_name(f"{out.stem if out.suffix else out.name}.manifest.json")


def _chunks(problems: Sequence[Problem], size: int) -> list[list[Problem]]:
    """Chunks cut from the full list (not from what is left), so a resumed or sharded
    run batches the same problems together as an uninterrupted one."""
    return [list(problems[i : i + size]) for i in range(0, len(problems), size)]


def _dotted(data: dict[str, Any], key: str) -> Any:
    value: Any = data
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _check_answers_manifest(
    out: Path, manifest: dict[str, Any], n_done: int, *, force: bool = False
) -> None:
    """Writes the manifest of a new output (or, with ``force``, of a fresh start);
    refuses one written with another configuration (naming what differs) or without a
    manifest."""
    path = answers_manifest_path(out)
    if path.is_file() and not force:
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            fail(f"{path}: not valid JSON ({error}); pass --force to start over", "--out")
        differ = [k for k in ANSWER_IDENTITY if _dotted(old, k) != _dotted(manifest, k)]
        if differ:
            shown = "; ".join(_difference(k, old, manifest) for k in differ)
            fail(
                f"{out} holds answers from a different configuration ({shown}). Repeat the "
                "original options to resume, pass --force to start over, or choose another "
                "--out",
                "--out",
            )
        return
    if n_done:
        fail(
            f"{out} already holds {n_done} answers but no {path.name}, so it cannot be "
            "resumed safely; pass --force to overwrite it, or choose another --out",
            "--out",
        )
    write_json(path, manifest, sort_keys=True)


def _difference(key: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """``key: OLD here, NEW now``, showing what a user typed rather than a fingerprint."""
    if key == "data.fingerprint":
        typed = [k for k in ("data.spec", "data.limit") if _dotted(old, k) != _dotted(new, k)]
        if typed:
            return "; ".join(_difference(k, old, new) for k in typed)
        return f"--data {_dotted(new, 'data.spec')}: its problems changed"
    if key == "model.fingerprint":
        if _dotted(old, "model.spec") != _dotted(new, "model.spec"):
            return _difference("model.spec", old, new)
        return f"--model {_dotted(new, 'model.spec')}: its weights changed"
    return f"{key}: {json.dumps(_dotted(old, key))} here, {json.dumps(_dotted(new, key))} now"


def _row_id(row: dict[str, Any]) -> str:
    return str(row["id"])


@app.command("answer")
@model_options
def answer_command(
    data: DataOpt,
    out: Annotated[
        Path,
        typer.Option("--out", help="Answers as JSON lines (resumed if present; see --force)."),
    ],
    choice: ModelChoice,
    model: ModelOpt = "toy",
    batch_size: BatchSizeOpt = 32,
    max_new_tokens: MaxNewTokensOpt = 64,
    limit: LimitOpt = None,
    skip_bad: SkipBadOpt = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Start over: discard the answers already in --out."),
    ] = False,
    threads: ThreadsOpt = DEFAULT_THREADS,
    progress: ProgressOpt = True,
    skip_long: SkipLongOpt = False,
) -> None:
    """Answer every problem through the continuous thoughts and score the answers.

    Writes one JSON line per problem: id, question, expected, steps, output, predicted,
    correct, finished (stopped before --max-new-tokens), clean (one well-formed number;
    see thoughtscope.problems.scoring), n_tokens. Re-running the same command resumes:
    finished problems are skipped (a different model, data or --max-new-tokens is
    refused); --force starts over.
    """
    check_output(out, "--out")
    problems = read_problems(data, skip_bad=skip_bad, limit=limit)
    ranks, choice = start_ranks(choice, threads)
    try:
        codi = choice.load()
        problems = fitting_problems(
            codi, problems, max_new_tokens=max_new_tokens, skip_long=skip_long
        )
        manifest = {
            "format": ANSWERS_FORMAT,
            "model": {"spec": model, "fingerprint": model_fingerprint(codi)},
            "data": {"spec": data, "limit": limit, "fingerprint": fingerprint_problems(problems)},
            "max_new_tokens": max_new_tokens,
        }
        rows = json_rows(out, what="answer row")
        n_done, n_written = 0, 0
        with ShardedOutput(
            out, ranks, lambda p: json_rows(p, what="answer row"), _row_id, start_over=force
        ) as output:
            n_done = len(output.done)
            streaming_to(output.shard, resume="run the same command again to answer them all")
            ranks.main_first(lambda: _check_answers_manifest(out, manifest, n_done, force=force))
            chunks = [
                [p for p in chunk if p.id not in output.done]
                for chunk in _chunks(problems, batch_size)
            ]
            mine = ranks.share([c for c in chunks if c])
            with tqdm(
                total=sum(len(c) for c in mine),
                disable=not (progress and ranks.is_main),
                desc="answering",
                unit="problem",
            ) as bar:
                for chunk in mine:
                    n_written += output.append(
                        answer_problems(
                            codi, chunk, batch_size=batch_size, max_new_tokens=max_new_tokens
                        )
                    )
                    bar.update(len(chunk))
            output.finish(order=[p.id for p in problems])
    except RankFailedError as error:
        fail(str(error))
    finally:
        ranks.stop()
    if not ranks.is_main:
        typer.echo(f"rank {ranks.rank}: {n_written} answers written")
        return
    wanted = {p.id for p in problems}
    answered = [r for r in rows.read() if r["id"] in wanted]
    n_correct = sum(bool(r["correct"]) for r in answered)
    resumed = f" ({n_done} already there, {len(answered) - n_done} new)" if n_done else ""
    typer.echo(
        f"accuracy {n_correct}/{len(answered)} = {100 * n_correct / max(1, len(answered)):.1f}%"
        f"{resumed}  -> {out}"
    )


@app.command("thoughts")
@model_options
def thoughts_command(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="safetensors file for thoughts and states.")],
    choice: ModelChoice,
    model: ModelOpt = "toy",
    layers: Annotated[
        str, typer.Option("--layers", help="Blocks to keep: all, or e.g. 4,8,14 (0-based).")
    ] = "all",
    top_k: Annotated[int, typer.Option("--top-k", help="Tokens per decoded state.", min=1)] = 5,
    decoded: Annotated[
        Path | None,
        typer.Option("--decoded", help="Also write top-k decoded tokens as JSON lines here."),
    ] = None,
    batch_size: BatchSizeOpt = 32,
    max_new_tokens: MaxNewTokensOpt = 64,
    limit: LimitOpt = None,
    skip_bad: SkipBadOpt = False,
    skip_long: SkipLongOpt = False,
    threads: ThreadsOpt = DEFAULT_THREADS,
    progress: ProgressOpt = True,
) -> None:
    """Extract the continuous thoughts and every chosen block's hidden state at every
    latent position (bot, thoughts 0…N-1, eot); optionally decode them (logit lens)."""
    check_output(out, "--out")
    if decoded is not None:
        check_output(decoded, "--decoded")
    problems = read_problems(data, skip_bad=skip_bad, limit=limit)
    if layers == "all":
        chosen = None
    else:
        try:
            chosen = [int(x) for x in layers.split(",")]
        except ValueError:
            raise UsageError(
                f"cannot read {layers!r}; use all or e.g. 4,8,14", param_hint="--layers"
            ) from None
    ranks, choice = start_ranks(choice, threads)
    locks: list[OutputLock] = []
    try:
        # Rank 0 locks the outputs; every rank locks the shards it writes.
        def lock(paths: list[Path]) -> None:
            locks.extend(OutputLock(path).acquire() for path in paths)

        outputs = [out] + ([decoded] if decoded else [])
        ranks.together(lambda: lock(outputs if ranks.is_main else []))
        shards = [shard_path(p, ranks.rank, ranks.world_size) for p in outputs]
        if ranks.is_sharded:
            ranks.together(lambda: lock(shards))
        codi = choice.load()
        problems = fitting_problems(
            codi, problems, max_new_tokens=max_new_tokens, skip_long=skip_long
        )
        mine = [p for chunk in ranks.share(_chunks(problems, batch_size)) for p in chunk]
        dump = ranks.together(
            lambda: extract_thoughts(
                codi,
                mine,
                layers=chosen,
                top_k=top_k if decoded else 0,
                batch_size=batch_size,
                max_new_tokens=max_new_tokens,
                progress=progress and ranks.is_main,
            )
        )
        dump.save(shards[0])
        if decoded:
            _write_decoded(shards[1], dump)
        ranks.barrier()
        if ranks.is_main and ranks.is_sharded:
            ids = [p.id for p in problems]
            dump = merge_thought_shards(out, ranks.world_size, ids)
            if decoded:
                merge_shards(decoded, json_rows, _row_id, ids)
    except RankFailedError as error:
        fail(str(error))
    except ResultStoreError:
        raise  # a busy or damaged output: the application prints it as one line
    except ValueError as error:
        raise UsageError(str(error), param_hint="--layers") from None
    finally:
        for held in reversed(locks):
            held.release()
        ranks.stop()
    if not ranks.is_main:
        typer.echo(f"rank {ranks.rank}: thoughts of {len(dump.ids)} problems")
        return
    typer.echo(f"thoughts {tuple(dump.thoughts.shape)}, hidden {tuple(dump.hidden.shape)} -> {out}")
    if decoded:
        typer.echo(f"decoded top-{top_k} tokens -> {decoded}")


def _write_decoded(path: Path, dump: ThoughtDump) -> None:
    """The logit-lens tokens of ``dump`` as JSON lines (one per problem)."""
    with replacing(path) as temporary, temporary.open("w", encoding="utf-8") as handle:
        for i, (problem_id, answer, states) in enumerate(
            zip(dump.ids, dump.answers, dump.decoded, strict=True)
        ):
            row: dict[str, object] = {
                "id": problem_id,
                "answer": answer,
                "n_thoughts": dump.n_thoughts[i],
                "thoughts_capped": dump.capped[i],
                "states": [asdict(s) for s in states],
            }
            if dump.mixtures[i]:  # soft thoughts: each one's token mixture
                row["mixtures"] = [asdict(m) for m in dump.mixtures[i]]
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


T = TypeVar("T")


def merge_thought_shards(out: Path, world_size: int, ids: list[str]) -> ThoughtDump:
    """Joins the ranks' ``.safetensors`` shards into ``out`` in problem order; deletes
    the shards."""
    import torch
    from safetensors import safe_open

    parts: list[ThoughtDump] = []
    shards = [shard_path(out, rank, world_size) for rank in range(world_size)]
    for shard in shards:
        with safe_open(str(shard), framework="pt") as handle:
            meta = handle.metadata() or {}
            parts.append(
                ThoughtDump(
                    ids=json.loads(meta["ids"]),
                    thoughts=handle.get_tensor("thoughts"),
                    hidden=handle.get_tensor("hidden"),
                    layers=json.loads(meta["layers"]),
                    answers=json.loads(meta["answers"]),
                    n_thoughts=json.loads(meta.get("n_thoughts", "[]")),
                    capped=json.loads(meta.get("thoughts_capped", "[]")),
                    mixtures=[
                        [Mixture(**m) for m in row]
                        for row in json.loads(meta.get("mixtures", "[]"))
                    ],
                )
            )
    # Ragged families pad each shard to its own longest thinking: pad all to the longest,
    # keeping eot last on the hidden states' position axis.
    longest = max(part.thoughts.shape[1] for part in parts)

    def padded(part: ThoughtDump, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        thoughts, hidden = part.thoughts[i], part.hidden[i]
        missing = longest - thoughts.shape[0]
        if missing == 0:
            return thoughts, hidden
        thoughts = torch.cat([thoughts, thoughts.new_zeros(missing, *thoughts.shape[1:])])
        gap = hidden.new_zeros(missing, *hidden.shape[1:])
        return thoughts, torch.cat([hidden[:-1], gap, hidden[-1:]])

    where = {pid: (k, i) for k, part in enumerate(parts) for i, pid in enumerate(part.ids)}
    order = [where[pid] for pid in ids]
    rows = [padded(parts[k], i) for k, i in order]

    def per_problem(values: Callable[[ThoughtDump], list[T]]) -> list[T]:
        return [values(parts[k])[i] for k, i in order] if all(values(p) for p in parts) else []

    merged = ThoughtDump(
        ids=ids,
        thoughts=torch.stack([t for t, _ in rows]),
        hidden=torch.stack([h for _, h in rows]),
        layers=parts[0].layers,
        answers=[parts[k].answers[i] for k, i in order],
        n_thoughts=per_problem(lambda p: p.n_thoughts),
        capped=per_problem(lambda p: p.capped),
        mixtures=per_problem(lambda p: p.mixtures),
    )
    merged.save(out)
    for shard in shards:
        shard.unlink()
    return merged
