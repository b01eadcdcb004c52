"""``write_report``: a run's ``report.html`` and its figures, from ``summary.json``.

Which figures, in page order:

* ``baseline-accuracy``: baseline accuracy overall and by stratum;
* ``importance-<schedule>-<ablation>`` and ``changed-<schedule>-<ablation>``: importance
  (right → wrong among baseline-correct problems) and the share of changed answers along
  each schedule, one panel per site, one line per stratum, 95% interval bands;
* ``prefix-marginals``: what each thought added to an ablated prefix changes;
* ``layer-position-<schedule>-<ablation>``: site × condition, for runs with two or more
  blocks;
* ``difficulty-<schedule>-<ablation>``: stratum × condition, one panel per site.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from thoughtscope.files import write_text
from thoughtscope.report import html
from thoughtscope.report.causal import causal_section
from thoughtscope.report.examples import choose_examples
from thoughtscope.report.figures import (
    bars_figure,
    curves_figure,
    heatmap_figure,
    save_figure,
)
from thoughtscope.report.html import FigureBlock, Section, e, figure_html, paragraph
from thoughtscope.report.inputs import ReportInputs, load_inputs
from thoughtscope.report.panels import (
    Group,
    baseline_panel,
    curve_panels,
    difficulty_panels,
    groups,
    layer_position_panel,
    marginal_panels,
    site_title,
)
from thoughtscope.report.probes import probes_section, single_latent_importance
from thoughtscope.results.conditions import EARLY_EXIT, schedule, site_sort_key
from thoughtscope.results.records import DecodedThoughts, read_thoughts
from thoughtscope.statistics import DEFAULT_N_BOOT, Summary

__all__ = ["FIGURES_DIR", "REPORT_FILE", "write_report"]

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"

IMPORTANCE_LABEL = "importance: right → wrong\n(% of baseline-correct problems)"
HEATMAP_LABEL = "importance (%\nof baseline-correct problems)"
MAX_STRATIFIED_MARGINAL_PANELS = 4
"""Above this many prefix families, the marginal-step figure shows all problems only."""
NO_BASELINE_CORRECT = "no baseline-correct problem here:\nimportance is undefined"
CHANGED_LABEL = "answer changed\n(% of problems)"


FIGURE_STEMS = re.compile(
    r"^(baseline-accuracy|prefix-marginals|(importance|changed|layer-position|difficulty)-.+)"
    r"\.(png|svg)$"
)
"""Names of the files this module writes into ``figures/``."""


def _remove_old_figures(folder: Path) -> None:
    """Deletes figures an earlier report wrote (a schedule may be gone since); leaves
    every other file alone."""
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file() and FIGURE_STEMS.match(path.name):
                path.unlink()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _what(group: Group) -> str:
    """``schedule · ablation`` in words (early exit has no ablation)."""
    if group.ablation == EARLY_EXIT:
        return "early exit"
    return f"{group.schedule} · {group.ablation}"


def _stem(group: Group) -> str:
    """File-name part for a (schedule, ablation) bundle: ``prefix-zero``, ``early-exit``."""
    if group.ablation == EARLY_EXIT:
        return _slug(group.schedule)
    return _slug(f"{group.schedule}-{group.ablation}")


def _by_schedule(all_groups: Sequence[Group]) -> list[list[Group]]:
    """Groups bundled by (schedule, ablation), sites in order."""
    bundles: dict[tuple[str, str], list[Group]] = {}
    for g in all_groups:
        bundles.setdefault((g.schedule, g.ablation), []).append(g)
    return list(bundles.values())


class _Figures:
    """Saves figures into ``figures/`` and remembers them for the page."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.saved: list[FigureBlock] = []

    def add(self, fig: Any, stem: str, caption: str, alt: str) -> str:
        block = FigureBlock(save_figure(fig, self.folder, stem), caption, alt)
        self.saved.append(block)
        return figure_html(block)


def _distinct(summary: Summary) -> int:
    """Conditions counted once, whatever the number of schedules they belong to."""
    return len({c.name for c in summary.conditions})


def _output_flags(n_unfinished: int | None, n_unclean: int | None) -> list[str]:
    """The overview's line on baseline answers that never finished or hold no clean
    number (none when the run did not record these flags)."""
    if n_unfinished is None or n_unclean is None:
        return []
    return [
        f"Baseline answers that never finished (ran to --max-new-tokens): {n_unfinished}; "
        f"without one clean number: {n_unclean}"
    ]


def _overview(inputs: ReportInputs) -> str:
    s = inputs.summary
    m = inputs.manifest
    accuracy = s.baseline.accuracy
    acc = "—" if accuracy is None else f"{accuracy * 100:.1f}%"
    model: dict[str, Any] = m["model"] if isinstance(m.get("model"), dict) else {}
    data: dict[str, Any] = m["data"] if isinstance(m.get("data"), dict) else {}
    facts = [
        f"Source: {inputs.source}"
        + (" (a file in the original study's layout)" if inputs.is_original_file else ""),
        f"Model: {model.get('name', 'not recorded')}"
        + (f" ({model.get('num_layers')} blocks)" if model.get("num_layers") else ""),
        f"Data: {data.get('spec', 'not recorded')}",
        f"Problems: {s.n_problems} ({s.n_with_conditions} with condition results, "
        f"{s.n_baseline_correct} baseline-correct); baseline accuracy {acc}",
        f"Selection: {s.selection}: {s.selection_rule}",
        *_output_flags(s.baseline.n_unfinished, s.baseline.n_unclean),
        f"Conditions: {_distinct(s)}; strata: " + (", ".join(s.strata) if s.strata else "none"),
    ]
    return html.items(facts) + paragraph(
        "Every rate comes with a 95% bootstrap interval (bands and whiskers in the "
        "figures, brackets in the tables). Importance is the share of baseline-correct "
        "problems that an intervention turns wrong. " + html.positions_note(inputs.manifest),
        "note",
    )


def _report_caveats(inputs: ReportInputs, decoded: bool, all_groups: Sequence[Group]) -> list[str]:
    out = list(inputs.summary.caveats)
    if decoded:
        out.append(
            "Decoded thoughts are a logit-lens reading (the final norm and unembedding "
            "applied to an intermediate state): they show what a state resembles in token "
            "space, not what the model uses; they are not causal evidence."
        )
    if any(schedule(g.schedule).cumulative for g in all_groups):
        out.append(
            "In the importance-by-schedule figures, a prefix curve is cumulative: do not "
            "read its rise as 'later thoughts matter more'. See the marginal steps and the "
            "single-thought schedule."
        )
    return out


def _schedule_section(
    inputs: ReportInputs, bundles: Sequence[Sequence[Group]], figs: _Figures
) -> str:
    strata = inputs.summary.strata
    parts = []
    for chosen in bundles:
        first = chosen[0]
        name = _stem(first)
        what = "early exit" if first.ablation == EARLY_EXIT else first.ablation
        parts.append(f"<h3>{e(_what(first))}</h3>")
        parts.append(
            figs.add(
                curves_figure(
                    curve_panels(chosen, strata, "importance", "conditional"),
                    title=f"Importance along the schedule: {_what(first)}",
                    y_label=IMPORTANCE_LABEL,
                    empty_text=NO_BASELINE_CORRECT,
                ),
                f"importance-{name}",
                f"Importance (share of baseline-correct problems whose answer became wrong) "
                f"for each condition of the {first.schedule} schedule, {what}, one panel "
                "per site; black: all problems, colours: difficulty strata (n = problems "
                "that count); band: the 95% bootstrap interval of all problems (the "
                "strata's intervals are in summary.json, conditions → by_stratum).",
                f"importance along the {first.schedule} schedule",
            )
        )
        parts.append(
            figs.add(
                curves_figure(
                    curve_panels(chosen, strata, "changed", "unconditional"),
                    title=f"Changed answers along the schedule: {_what(first)}",
                    y_label=CHANGED_LABEL,
                    empty_text="no problem has a result here",
                ),
                f"changed-{name}",
                "Share of all problems with a result whose predicted number differs from "
                "the baseline's (in either direction of correctness); same layout as above.",
                f"changed answers along the {first.schedule} schedule",
            )
        )
    if not parts:
        parts.append(paragraph("This run has no conditions.", "note"))
    return "".join(parts)


def _marginals_section(inputs: ReportInputs, figs: _Figures) -> str:
    panels = marginal_panels(inputs.summary, "importance", "conditional")
    if not panels:
        return paragraph(
            "This run has no prefix schedule (conditions ablating thoughts {0..i-1}), so "
            "there are no marginal steps to show.",
            "note",
        )
    by_stratum = len(panels) <= MAX_STRATIFIED_MARGINAL_PANELS
    if not by_stratum:
        # Many sites: strata bars would make one unreadably tall figure; keep all problems.
        panels = [replace(p, series=p.series[:1]) for p in panels]
    fig = bars_figure(
        panels,
        title="Prefix schedule: marginal step of each added thought",
        y_label="change in importance\n(percentage points)",
        zero_line=True,
        empty_text=NO_BASELINE_CORRECT,
        ncols=2 if by_stratum else 3,
    )
    strata_note = (
        "black: all problems, colours: strata"
        if by_stratum
        else f"all problems only (more than {MAX_STRATIFIED_MARGINAL_PANELS} sites; the "
        "steps within each stratum are in summary.json, prefix_marginals → by_stratum)"
    )
    return paragraph(
        "A prefix condition ablates thoughts 0…i−1 together, so its importance includes "
        "the damage of every earlier thought and tends to rise whatever thought i does. "
        "Each bar here is the paired difference between consecutive prefix conditions "
        "(and between the first one and the baseline): what ablating one more thought adds "
        "once the earlier ones are already ablated. It is not the importance of that "
        "thought alone; for that, read the single schedule."
    ) + figs.add(
        fig,
        "prefix-marginals",
        "Marginal importance step (percentage points of baseline-correct problems) for "
        "each thought added to the ablated prefix, one panel per site and ablation; "
        f"{strata_note}; whiskers: 95% paired bootstrap intervals.",
        "marginal steps of the prefix schedule",
    )


def _heatmap_section(
    inputs: ReportInputs, bundles: Sequence[Sequence[Group]], figs: _Figures
) -> str:
    strata = inputs.summary.strata
    parts = ["<h3>Layer × position</h3>"]
    layered = [
        chosen for chosen in bundles if sum(g.site.startswith("block:") for g in chosen) >= 2
    ]
    if not layered:
        parts.append(
            paragraph(
                "This run edits fewer than two blocks, so there is no layer × position "
                "heatmap; the figures above show its one site per panel.",
                "note",
            )
        )
    for chosen in layered:
        first = chosen[0]
        panel = layer_position_panel(chosen, "importance", "conditional")
        parts.append(
            figs.add(
                heatmap_figure(
                    [panel],
                    title=f"Importance by site and condition: {_what(first)}",
                    colorbar_label=HEATMAP_LABEL,
                    ncols=1,
                ),
                f"layer-position-{_stem(first)}",
                f"Importance over all problems for each site (rows: the thought vectors "
                f"themselves, then each block's output) and each condition of the "
                f"{first.schedule} schedule (columns); numbers are percentages, grey cells "
                "have no value.",
                f"layer by position heatmap, {first.schedule}",
            )
        )
    parts.append("<h3>Difficulty × condition</h3>")
    for chosen in bundles:
        first = chosen[0]
        panels = difficulty_panels(chosen, strata, "importance", "conditional")
        parts.append(
            figs.add(
                heatmap_figure(
                    panels,
                    title=f"Importance by difficulty and condition: {_what(first)}",
                    colorbar_label=HEATMAP_LABEL,
                    ncols=1 if len(panels) == 1 else 2,
                ),
                f"difficulty-{_stem(first)}",
                f"Importance within each difficulty stratum (rows) for each condition of the "
                f"{first.schedule} schedule (columns), one panel per site; numbers are "
                "percentages; grey cells have no baseline-correct problem. Intervals for "
                "these cells are in summary.json (by_stratum); small strata are noisy.",
                f"difficulty by condition heatmap, {first.schedule}",
            )
        )
    if not bundles:
        parts.append(paragraph("This run has no conditions.", "note"))
    return "".join(parts)


def _examples_section(
    inputs: ReportInputs, bundles: Sequence[Sequence[Group]], examples: int
) -> tuple[str, bool]:
    chosen = choose_examples(inputs.records, inputs.summary.strata, examples)
    if not chosen:
        return paragraph("No example problems requested, or no problem has results.", "note"), False
    recorded = {t.id: t for t in read_thoughts(inputs.source)} if inputs.source.is_dir() else {}
    decoded: list[DecodedThoughts | None] = [recorded.get(r.id) for r in chosen]
    note = (
        "Decoded thoughts were not recorded for this problem: the run recorded them for "
        "its first problems of each stratum (importance --examples; runs made before "
        "thoughtscope recorded them have none)."
    )
    if inputs.is_original_file:
        note = "Decoded thoughts are not available for a file in the original study's layout."
    intro = paragraph(
        "Problems picked without looking at outcomes: difficulty strata take turns, each "
        "giving its next problem in file order. In the answer tables, rows are sites and "
        "columns the schedule's conditions; each cell is the predicted number (green: "
        "correct, red: wrong, bold: differs from the baseline's); hover for the full "
        "answer text."
    )
    body = "".join(
        html.example_html(record, bundles, d, note)
        for record, d in zip(chosen, decoded, strict=True)
    )
    return intro + body, any(d is not None for d in decoded)


def write_report(
    run_dir: Path,
    *,
    examples: int = 3,
    out_dir: Path | None = None,
    n_boot: int = DEFAULT_N_BOOT,
) -> Path:
    """Writes ``report.html`` and ``figures/*.png|svg``; returns the HTML's path.

    Args:
        run_dir: A run folder, or a file in the original study's layout
            (``step_importance_scores.json``).
        examples: Example problems to show (0: none).
        out_dir: Where to write (default: the run folder, or the file's folder).
        n_boot: Bootstrap resamples if ``summary.json`` must be (re)computed.

    Raises:
        ReportInputError: The input is not a readable run or original-layout file.
    """
    inputs = load_inputs(Path(run_dir), out_dir, n_boot=n_boot)
    folder = inputs.out_dir / FIGURES_DIR
    _remove_old_figures(folder)
    figs = _Figures(folder)
    all_groups = groups(inputs.summary, inputs.schedules_of)
    bundles = _by_schedule(all_groups)

    baseline = figs.add(
        bars_figure(
            [baseline_panel(inputs.summary)],
            title="Baseline accuracy by difficulty",
            y_label="accuracy (%)",
            y_limits=(0, 114),
            ncols=1,
            show_values=True,
            y_ticks=range(0, 101, 20),
            empty_text="no problem in this run yet",
        ),
        "baseline-accuracy",
        "Share of problems answered correctly without intervention, over every problem "
        "in the run and within each difficulty stratum (n below each bar); whiskers: 95% "
        "bootstrap intervals.",
        "baseline accuracy by difficulty",
    )
    examples_body, decoded = _examples_section(inputs, bundles, examples)
    early_late = html.early_late_table(inputs.summary)
    bodies = {
        "overview": _overview(inputs),
        "caveats": html.items(_report_caveats(inputs, decoded, all_groups)),
        "baseline": baseline,
        "schedules": _schedule_section(inputs, bundles, figs),
        "prefix-marginals": _marginals_section(inputs, figs),
        "heatmaps": _heatmap_section(inputs, bundles, figs),
        "conditions": paragraph(
            "Overall figures for every condition. 'Baseline-correct' columns count only "
            "problems the model got right without intervention; the others count every "
            "problem with a result. Brackets: 95% bootstrap intervals; hover over a dash "
            "for why a figure is missing."
        )
        + html.conditions_table(inputs.summary, inputs.schedules_of)
        + (
            "<h3>Early and late thoughts (the original study's summary)</h3>"
            + paragraph(
                "Mean importance among baseline-correct problems over the early members "
                "(indices 0-2) and the late ones (3-5) of each family, and their paired "
                "difference in percentage points (pp)."
            )
            + early_late
            if early_late
            else ""
        ),
        "examples": examples_body,
        "manifest": html.manifest_html(inputs.manifest, inputs.summary),
        "definitions": html.definitions_html(inputs.summary),
    }
    sections = [Section(sid, title, bodies[sid]) for sid, title in html.SECTIONS]
    held = probes_section(
        Path(run_dir) if Path(run_dir).is_dir() else inputs.out_dir,
        folder,
        single_latent_importance(inputs.summary),
    )
    if held is not None:
        sections.insert(-2, Section("probes", "What the thoughts hold", held))
    caused = causal_section(Path(run_dir)) if Path(run_dir).is_dir() else None
    if caused is not None:
        sections.insert(-2, Section("causal", "How the thoughts cause", caused))
    try:
        version = metadata.version("thoughtscope")
    except metadata.PackageNotFoundError:
        version = "unknown"
    model_info = inputs.manifest.get("model")
    model_name = model_info.get("name") if isinstance(model_info, dict) else None
    title = f"thoughtscope report: {inputs.source.name}"
    subtitle = (
        f"{model_name or 'model not recorded'} · {inputs.summary.n_problems} problems · "
        f"{_distinct(inputs.summary)} conditions · sites: "
        + (
            ", ".join(
                sorted(
                    {site_title(c.condition.site) for c in inputs.summary.conditions},
                    key=site_sort_key,
                )
            )
            or "—"
        )
    )
    footer = (
        f"Written by thoughtscope {version} on "
        f"{datetime.now(UTC).isoformat(timespec='seconds')} from {inputs.source}; "
        f"figures: {len(figs.saved)} (PNG and SVG in {FIGURES_DIR}/)."
    )
    path = inputs.out_dir / REPORT_FILE
    return write_text(path, html.page(title, subtitle, sections, footer))
