"""``thoughtscope data``: show and export exactly the problems a run would use."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, TextIO

import typer

from thoughtscope.cli.app import UsageError, app, fail
from thoughtscope.cli.options import check_output
from thoughtscope.files import write_text
from thoughtscope.problems.difficulty import Strata
from thoughtscope.problems.errors import ProblemDataError
from thoughtscope.problems.sampling import SampleReport, sample_stratified
from thoughtscope.problems.sources import LoadResult, load_problems

_MAX_SKIPPED_SHOWN = 20


@app.command("data")
def data_command(
    data: Annotated[
        str,
        typer.Argument(
            help="Problem source: synthetic[:SPLIT][:seed=S][:n=N][:style=compact|words]..., "
            "hf:openai/gsm8k[:SPLIT], or a .jsonl/.csv/.json file.",
            show_default=False,
            metavar="DATA",
        ),
    ],
    sample: Annotated[
        int | None,
        typer.Option("--sample", help="Stratified random sample of N problems.", min=0),
    ] = None,
    per_stratum: Annotated[
        bool,
        typer.Option("--per-stratum/--total", help="N per stratum, or N in total spread evenly."),
    ] = True,
    strata: Annotated[
        str, typer.Option("--strata", help="Difficulty strata by step count.")
    ] = "1,2,3,4,5+",
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    min_steps: Annotated[
        int | None, typer.Option("--min-steps", help="Drop problems with fewer steps.")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Drop problems with more steps.")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", help="Use only the first N problems (after steps filters).", min=0),
    ] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip bad rows (and list them) instead of stopping.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write the problems as JSON lines to this file ('-' for stdout)."
        ),
    ] = None,
) -> None:
    """Count problems per difficulty stratum and write the normalised problems.

    Prints a table of available/requested/taken problems per stratum (with any
    shortfall) and, with --out, writes one JSON object per line with id, question,
    answer, steps, steps_source, solution and source, in the source's order.
    """
    if out is not None:
        check_output(out, "--out")
    try:
        parsed_strata = Strata.parse(strata)
    except ValueError as error:
        raise UsageError(str(error), param_hint="--strata") from None
    if min_steps is not None and max_steps is not None and min_steps > max_steps:
        raise UsageError(
            f"--min-steps {min_steps} is larger than --max-steps {max_steps}",
            param_hint="--min-steps",
        )

    try:
        loaded = load_problems(data, skip_bad=skip_bad)
    except ProblemDataError as error:
        fail(str(error))
    chosen = sample_stratified(
        loaded.problems,
        sample,
        strata=parsed_strata,
        per_stratum=per_stratum,
        seed=seed,
        min_steps=min_steps,
        max_steps=max_steps,
        limit=limit,
    )

    # With --out -, stdout carries the problems, so the summary goes to stderr.
    summary = sys.stderr if out is not None and str(out) == "-" else sys.stdout
    _print_summary(loaded, chosen.report, summary)

    if out is None:
        return
    lines = [json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in chosen.problems]
    if str(out) == "-":
        sys.stdout.writelines(lines)
        return
    try:
        write_text(out, "".join(lines))
    except OSError as error:
        fail(f"cannot write --out {str(out)!r}: {error.strerror or error}")
    print(f"wrote {len(lines)} problems to {out}", file=summary)


def _print_summary(loaded: LoadResult, report: SampleReport, stream: TextIO) -> None:
    """The source line, skipped rows, the per-stratum table and any shortfall."""
    loaded_count = len(loaded.problems)
    print(f"source: {loaded.source} ({loaded.layout} layout), {loaded_count} problems", file=stream)
    if loaded.skipped:
        print(f"skipped {len(loaded.skipped)} bad rows:", file=stream)
        for bad in loaded.skipped[:_MAX_SKIPPED_SHOWN]:
            print(f"  {bad.describe()}", file=stream)
        if len(loaded.skipped) > _MAX_SKIPPED_SHOWN:
            print(f"  ... and {len(loaded.skipped) - _MAX_SKIPPED_SHOWN} more", file=stream)
    if report.dropped_by_steps:
        print(f"dropped {report.dropped_by_steps} outside the steps range", file=stream)
    if report.dropped_by_limit:
        print(f"dropped {report.dropped_by_limit} beyond the limit", file=stream)

    sampling = report.n is not None
    header = ["stratum", "available", *(["requested", "taken", "shortfall"] if sampling else [])]
    rows = []
    for stratum in report.strata:
        cells = [stratum.label, str(stratum.available)]
        if sampling:
            cells += [str(stratum.requested), str(stratum.taken), str(stratum.shortfall or "")]
        rows.append(cells)
    total = ["total", str(sum(c.available for c in report.strata))]
    if sampling:
        requested = sum(c.requested or 0 for c in report.strata)
        total += [str(requested), str(report.taken), str(report.shortfall or "")]
    widths = [max(len(r[i]) for r in [header, *rows, total]) for i in range(len(header))]
    for cells in [header, *rows, total]:
        line = "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        print(line.rstrip(), file=stream)

    if sampling:
        mode = "per stratum" if report.per_stratum else "in total"
        print(f"sample: {report.n} {mode}, seed {report.seed}: {report.taken} taken", file=stream)
        for short in report.short_strata():
            print(
                f"shortfall: stratum {short.label} has {short.available} of the "
                f"{short.requested} requested; all taken",
                file=stream,
            )
