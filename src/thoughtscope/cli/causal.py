"""What the ``patch``, ``effects`` and ``steer`` commands share: running into a locked,
resumable run folder (one shard per rank under ``torchrun``), and writing the statistics
and the report afterwards (rank 0)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import typer

from thoughtscope.analyses.patching import PatchInputError
from thoughtscope.cli.app import fail, streaming_to
from thoughtscope.cli.launch import start_ranks
from thoughtscope.cli.options import ModelChoice, check_output
from thoughtscope.engine.distributed import RankFailedError, Ranks
from thoughtscope.results.shards import shard_path

RESUME_HINT = "run the same command again to continue (finished rows are kept)"


class _RowsResult(Protocol):
    """What a causal run reports: rows written, rows already there, wall time."""

    @property
    def n_rows(self) -> int: ...
    @property
    def n_skipped(self) -> int: ...
    @property
    def seconds(self) -> float: ...


R = TypeVar("R", bound=_RowsResult)


def run_into(
    out: Path,
    choice: ModelChoice,
    threads: int | None,
    analysis: Callable[..., R],
    config: object,
    *,
    model_spec: str,
    progress: bool,
) -> tuple[R, Ranks]:
    """Checks ``--out``, joins the ``torchrun`` launch if there is one, loads the model
    on this rank's device and runs ``analysis(model, config, out, model_spec=…,
    progress=…, ranks=…)``, which writes ``out/results.jsonl`` (this rank's shard of it);
    an interruption says how to resume, a bad configuration stops with one line naming
    its option."""
    check_output(out, "--out", folder=True)
    ranks, choice = start_ranks(choice, threads)
    try:
        model = choice.load()
        shard = shard_path(out / "results.jsonl", ranks.rank, ranks.world_size)
        streaming_to(shard, resume=RESUME_HINT)
        result = analysis(model, config, out, model_spec=model_spec, progress=progress, ranks=ranks)
        return result, ranks
    except PatchInputError as error:
        fail(str(error), error.option)
    except RankFailedError as error:
        fail(str(error))
    finally:
        ranks.stop()


def tell_rows(ranks: Ranks, result: _RowsResult, of: str) -> bool:
    """:func:`tell` with the :func:`rows_line` of ``result`` (``of``: what the rows are
    of, e.g. ``"60 problems"``)."""
    return tell(ranks, rows_line(result.n_rows, result.n_skipped, of, result.seconds))


def tell(ranks: Ranks, line: str) -> bool:
    """Prints what this rank did; returns whether it goes on to the statistics and the
    report (rank 0: it merged the shards, and reports for every rank)."""
    typer.echo((f"rank {ranks.rank} of {ranks.world_size}: " if ranks.is_sharded else "") + line)
    return ranks.is_main


def rows_line(n_rows: int, n_skipped: int, of: str, seconds: float) -> str:
    """``"<n> rows written[, <k> already done] (<of>) in <s> s"``: what a causal command
    did on this rank."""
    resumed = f", {n_skipped} already done" if n_skipped else ""
    return f"{n_rows} rows written{resumed} ({of}) in {seconds:.1f} s"


def summarise(out: Path, *, n_boot: int | None = None, report: bool = True) -> None:
    """Writes a patching, effects or steering run's statistics (and its report), printing
    the tables and the paths; ``thoughtscope stats RUN`` and the commands themselves."""
    from thoughtscope.report.causal import causal_summaries, write_causal_report

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    write_summary, format_summary = causal_summaries()[str(manifest.get("format"))]
    summary = write_summary(out) if n_boot is None else write_summary(out, n_boot=n_boot)
    typer.echo(format_summary(json.loads(summary.read_text(encoding="utf-8"))))
    typer.echo(f"statistics: {summary}")
    if report:
        typer.echo(f"report: {write_causal_report(out)} (open it in a browser)")
