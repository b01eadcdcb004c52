"""``write_comparison``: runs of several thought families side by side, from their
``summary.json`` and ``manifest.json`` only.

The page (``compare.html``, self-contained like the run report) holds:

* a table: per run, its family, model, problems and baseline accuracy with its interval,
  and a link to the run's own report;
* ``compare-importance``: for every schedule that each run has at the ``latent`` site with
  the ``zero`` ablation, importance (right → wrong among baseline-correct problems, the
  run report's schedule figure and view) along the schedule, one line per run with its
  95% interval band, one panel per schedule;
* ``compare-prefix-marginals``: the marginal step of each thought added to the zeroed
  latent prefix, one bar per run (only runs whose summary has that family).

It never loads a model or the engine and computes no statistics: every figure is copied
from the runs' summaries.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from thoughtscope.files import write_text
from thoughtscope.report import html
from thoughtscope.report.figures import (
    STRATUM_COLORS,
    Interval,
    Panel,
    Series,
    bars_figure,
    curves_figure,
    save_figure,
)
from thoughtscope.report.html import FigureBlock, Section, cell, e, figure_html, paragraph
from thoughtscope.report.panels import Group, groups, interval
from thoughtscope.report.writer import FIGURES_DIR, IMPORTANCE_LABEL, NO_BASELINE_CORRECT
from thoughtscope.results.conditions import positions_label, schedule
from thoughtscope.statistics import StatisticsInputError, Summary, read_summary
from thoughtscope.statistics.files import MANIFEST_FILE, SUMMARY_FILE, load_json
from thoughtscope.statistics.schema import Metric

__all__ = ["COMPARE_FILE", "CompareInputError", "ComparedRun", "read_compared", "write_comparison"]

COMPARE_FILE = "compare.html"
SITE = "latent"
ABLATION = "zero"
FIGURE_STEMS = re.compile(r"^compare-(importance|prefix-marginals)\.(png|svg)$")
"""Names of the files this module writes into ``figures/``."""


class CompareInputError(ValueError):
    """Runs the comparison cannot use; the message names the folder and what to do."""


@dataclass(frozen=True)
class ComparedRun:
    """One run as the comparison reads it.

    Attributes:
        label: The name the page gives it (e.g. ``codi``).
        folder: The run folder.
        summary: Its ``summary.json``.
        manifest: Its ``manifest.json``.
        schedules_of: Condition name → every schedule that asked for it (from the
            manifest's plan).
    """

    label: str
    folder: Path
    summary: Summary
    manifest: dict[str, Any]
    schedules_of: dict[str, list[str]]

    def model_field(self, key: str) -> str:
        """``manifest["model"][key]`` as text (``not recorded`` when missing)."""
        model = self.manifest.get("model")
        value = model.get(key) if isinstance(model, dict) else None
        return str(value) if value not in (None, "") else "not recorded"


def _schedules_of(manifest: Mapping[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    conditions = manifest.get("conditions")
    for entry in conditions if isinstance(conditions, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("schedules"), list):
            known = out.setdefault(str(entry.get("name", "")), [])
            known.extend(str(s) for s in entry["schedules"] if str(s) not in known)
    return out


def read_compared(label: str, folder: Path) -> ComparedRun:
    """Reads one run folder's ``summary.json`` and ``manifest.json``.

    Raises:
        CompareInputError: No such folder, no ``summary.json``, or an unreadable file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CompareInputError(f"{folder}: no such run folder; give the folders of two runs")
    if not (folder / SUMMARY_FILE).is_file():
        raise CompareInputError(
            f"{folder}: no {SUMMARY_FILE}; run `thoughtscope stats {folder}` first"
        )
    try:
        summary = read_summary(folder / SUMMARY_FILE)
        manifest = load_json(folder / MANIFEST_FILE)
    except StatisticsInputError as error:
        raise CompareInputError(str(error)) from None
    if not isinstance(manifest, dict):
        raise CompareInputError(f"{folder / MANIFEST_FILE}: not a run manifest (a JSON object)")
    return ComparedRun(label, folder, summary, manifest, _schedules_of(manifest))


def _latent_zero(run: ComparedRun) -> dict[str, Group]:
    """The run's groups at the latent site with the zero ablation, by schedule."""
    return {
        g.schedule: g
        for g in groups(run.summary, run.schedules_of)
        if g.site == SITE and g.ablation == ABLATION
    }


def _aligned(
    columns: Sequence[tuple[str, Sequence[str], Sequence[Interval]]],
) -> tuple[list[str], list[list[Interval]]]:
    """x labels shared by every run (the union, longest run first) and each run's values
    on them (``None`` where a run has no such member)."""
    labels = list(
        dict.fromkeys(x for _, xs, _ in sorted(columns, key=lambda c: -len(c[1])) for x in xs)
    )
    values = []
    for _, xs, vals in columns:
        by_label = dict(zip(xs, vals, strict=True))
        values.append([by_label.get(x, Interval(None)) for x in labels])
    return labels, values


def _series(label: str, k: int, values: list[Interval]) -> Series:
    n = max((v.n for v in values), default=0)
    return Series(f"{label} (n={n})", values, k % len(STRATUM_COLORS))


def schedule_panels(runs: Sequence[ComparedRun]) -> list[Panel]:
    """One panel per schedule every run has (latent, zero): one importance line per run."""
    by_run = [_latent_zero(r) for r in runs]
    shared = [s for s in by_run[0] if all(s in other for other in by_run[1:])]
    panels = []
    for name in shared:
        columns = []
        for run, found in zip(runs, by_run, strict=True):
            g = found[name]
            vals = [interval(c.scopes.metric("conditional", "importance")) for c in g.conditions]
            columns.append((run.label, g.labels, vals))
        labels, values = _aligned(columns)
        series = [
            _series(run.label, k, v) for k, (run, v) in enumerate(zip(runs, values, strict=True))
        ]
        panels.append(Panel(name, labels, schedule(name).axis_title, series))
    return panels


def marginal_panel(runs: Sequence[ComparedRun]) -> Panel | None:
    """The latent zero prefix family's marginal steps, one series per run that has them
    (``None`` when no run has them)."""
    columns = []
    for run in runs:
        for family in run.summary.prefix_marginals:
            if family.family.site == SITE and family.family.ablation == ABLATION:
                labels = ["+" + positions_label(s.added_positions) for s in family.steps]
                vals = [
                    interval(s.scopes.metric("conditional", "importance")) for s in family.steps
                ]
                columns.append((run.label, labels, vals))
                break
    if not columns:
        return None
    labels, values = _aligned(columns)
    series = [
        _series(label, k, v)
        for k, ((label, _, _), v) in enumerate(zip(columns, values, strict=True))
    ]
    return Panel("zero · latent", labels, "thought added to the zeroed prefix", series)


def _accuracy(run: ComparedRun) -> Metric:
    b = run.summary.baseline
    return Metric(b.accuracy, b.ci, b.n, b.reason)


def _table(runs: Sequence[ComparedRun], out_dir: Path) -> str:
    rows = []
    for run in runs:
        report = run.folder / "report.html"
        link = (
            f'<td><a href="{e(Path(os.path.relpath(report, out_dir)).as_posix())}">report</a></td>'
            if report.is_file()
            else cell("no report yet (run `thoughtscope report`)", "muted")
        )
        rows.append(
            [
                cell(run.label),
                cell(run.model_field("family")),
                cell(run.model_field("name")),
                cell(run.summary.n_problems, "num"),
                cell(html.percent(_accuracy(run)), "num"),
                link,
            ]
        )
    header = ["run", "family", "model", "problems", "baseline accuracy [95% CI]", "own report"]
    return html.table(header, rows)


def _remove_old_figures(folder: Path) -> None:
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file() and FIGURE_STEMS.match(path.name):
                path.unlink()


def write_comparison(runs: Mapping[str, Path], out_dir: Path) -> Path:
    """Writes ``out_dir/compare.html`` and ``out_dir/figures/compare-*.png|svg``.

    Args:
        runs: Label → run folder (each with ``summary.json`` and ``manifest.json``), in
            page order; at least two.
        out_dir: Where the page and its figures go (created if missing).

    Returns:
        The HTML file's path.

    Raises:
        CompareInputError: Fewer than two runs, or a run folder that cannot be read.
    """
    if len(runs) < 2:
        raise CompareInputError(
            f"{len(runs)} run(s) given; a comparison needs at least two run folders"
        )
    read = [read_compared(label, Path(folder)) for label, folder in runs.items()]
    out_dir = Path(out_dir)
    folder = out_dir / FIGURES_DIR
    _remove_old_figures(folder)
    saved: list[FigureBlock] = []

    def add(fig: Any, stem: str, caption: str, alt: str) -> str:
        block = FigureBlock(save_figure(fig, folder, stem), caption, alt)
        saved.append(block)
        return figure_html(block)

    panels = schedule_panels(read)
    if panels:
        curves = add(
            curves_figure(
                panels,
                title="Importance along each schedule: zero ablation at the latent site",
                y_label=IMPORTANCE_LABEL,
                empty_text=NO_BASELINE_CORRECT,
                bands_for_all=True,
            ),
            "compare-importance",
            "Importance (share of baseline-correct problems whose answer became wrong) for "
            "each condition of each schedule that every run has, zero ablation at the "
            "latent site; one line per run (n = baseline-correct problems), band: its 95% "
            "bootstrap interval. Each run's strata are in its own report.",
            "importance along the schedules, one line per run",
        )
    else:
        curves = paragraph(
            "No schedule with the zero ablation at the latent site is common to every run.",
            "note",
        )
    marginal = marginal_panel(read)
    if marginal is not None:
        steps = add(
            bars_figure(
                [marginal],
                title="Prefix schedule: marginal step of each added thought",
                y_label="change in importance\n(percentage points)",
                zero_line=True,
                empty_text=NO_BASELINE_CORRECT,
                ncols=1,
            ),
            "compare-prefix-marginals",
            "Paired change in importance (percentage points of baseline-correct problems) "
            "when one more thought is zeroed at the latent site after the earlier ones; one "
            "bar per run that has the prefix schedule; whiskers: 95% paired bootstrap "
            "intervals.",
            "marginal steps of the prefix schedule, one bar per run",
        )
    else:
        steps = paragraph("No run has the prefix schedule with zero at the latent site.", "note")
    sections = [
        Section(
            "runs",
            "Runs",
            paragraph(
                "Each run's figures come from its own summary.json; the intervals are 95% "
                "bootstrap intervals over its problems. Runs on the same problems compare "
                "best (see each run's manifest)."
            )
            + _table(read, out_dir),
        ),
        Section("schedules", "Importance along the schedules", curves),
        Section("prefix-marginals", "Marginal steps of the prefix schedule", steps),
    ]
    families = ", ".join(f"{r.label} ({r.model_field('family')})" for r in read)
    footer = (
        f"Written by thoughtscope on {datetime.now(UTC).isoformat(timespec='seconds')} from "
        + ", ".join(str(r.folder) for r in read)
        + f"; figures: {len(saved)} (PNG and SVG in {FIGURES_DIR}/)."
    )
    page = html.page("thoughtscope comparison", families, sections, footer)
    return write_text(out_dir / COMPARE_FILE, page)
