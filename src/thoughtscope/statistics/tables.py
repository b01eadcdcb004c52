"""Plain-text tables of a summary for the terminal: aligned columns, rates with CIs."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from thoughtscope.results.conditions import format_positions
from thoughtscope.statistics.schema import Metric, Summary, View

__all__ = ["format_tables"]

_WIDTH = 100


def _pct(metric: Metric | None, signed: bool = False) -> str:
    if metric is None or metric.estimate is None:
        return "-"
    sign = "+" if signed else ""
    text = f"{100 * metric.estimate:{sign}.1f}%"
    ci = metric.ci
    if ci is not None:
        text += f" [{100 * ci[0]:{sign}.1f}, {100 * ci[1]:{sign}.1f}]"
    return text


def _val(metric: Metric | None, signed: bool = False) -> str:
    if metric is None or metric.estimate is None:
        return "-"
    sign = "+" if signed else ""
    text = f"{metric.estimate:{sign}.3g}"
    ci = metric.ci
    if ci is not None:
        text += f" [{ci[0]:{sign}.3g}, {ci[1]:{sign}.3g}]"
    return text


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """Columns padded to their widest cell; the first ``left`` columns left-aligned."""
    widths = [max(len(str(r[k])) for r in [headers, *rows]) for k in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if k < left else str(c).rjust(w)
            for k, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def _baseline(summary: Summary) -> str:
    scopes = [("all", summary.baseline), *summary.baseline_by_stratum.items()]
    rows = [[label, str(b.n), _pct(Metric(b.accuracy, b.ci, b.n, b.reason))] for label, b in scopes]
    return _table(["stratum", "n", "baseline accuracy [95% CI]"], rows)


_VIEW_TITLE = {
    "unconditional": "unconditional view (every problem with a result)",
    "conditional": "conditional view (baseline-correct problems only)",
    "both": "both views (every problem with a result was baseline-correct, so they coincide)",
}


def _views(summary: Summary) -> tuple[list[tuple[str, str]], str | None]:
    """Which views to print (view key, title), and a line for an empty conditional view."""
    overall = [c.scopes.overall for c in summary.conditions]
    measured = [o for o in overall if o["unconditional"].n > 0]
    if not measured:
        return [], None
    if all(o["unconditional"].note is not None for o in measured):
        return [("conditional", _VIEW_TITLE["both"])], None
    views = [("unconditional", _VIEW_TITLE["unconditional"])]
    if any(o["conditional"].n > 0 for o in measured):
        return [*views, ("conditional", _VIEW_TITLE["conditional"])], None
    return views, "Conditional view: empty (no problem with a result was baseline-correct)."


def _conditions(summary: Summary, view: str) -> str:
    """One row per condition (a condition in several schedules once, all of them named)."""
    rows = []
    schedules: dict[str, list[str]] = {}
    for c in summary.conditions:
        schedules.setdefault(c.name, []).append(c.schedule)
    for c in summary.conditions:
        if c.schedule != schedules[c.name][0]:
            continue  # the same figures as its first schedule's entry
        v: View = c.scopes.overall[view]
        test = v.mcnemar
        rows.append(
            [
                c.name,
                ",".join(schedules[c.name]),
                str(v.n),
                _pct(v.metric("importance")),
                _pct(v.metric("flip_wrong_to_right")),
                _pct(v.metric("changed")),
                _val(v.metric("delta_gold_logprob"), signed=True),
                _val(v.metric("kl")),
                "-" if test is None else f"{test.b}/{test.c}",
                _p(None if test is None else test.p_value),
                _p(None if test is None else test.p_value_holm),
            ]
        )
    headers = [
        "condition",
        "schedules",
        "n",
        "importance (right->wrong)",
        "wrong->right",
        "changed",
        "delta gold logprob",
        "KL",
        "b/c",
        "p",
        "p Holm",
    ]
    return _table(headers, rows)


def _marginals(summary: Summary, view: str) -> str:
    blocks = []
    for family in summary.prefix_marginals:
        rows = []
        for step in family.steps:
            v = step.scopes.overall[view]
            rows.append(
                [
                    f"{step.from_name} -> {step.to_name}",
                    format_positions(step.added_positions),
                    str(v.n),
                    _pct(v.metric("importance"), signed=True),
                    _pct(v.metric("accuracy"), signed=True),
                    _pct(v.metric("changed"), signed=True),
                    _val(v.metric("gold_logprob"), signed=True),
                    _val(v.metric("kl"), signed=True),
                ]
            )
        headers = ["step", "added", "n", "importance", "accuracy", "changed", "gold logprob", "KL"]
        blocks.append(f"{family.label}\n" + _table(headers, rows))
    return "\n\n".join(blocks)


def _early_late(summary: Summary, view: str) -> str:
    rows = []
    for entry in summary.early_late:
        scopes = [("all", entry.scopes.overall), *entry.scopes.by_stratum.items()]
        for label, scope in scopes:
            v = scope[view]
            rows.append(
                [
                    entry.label,
                    label,
                    str(v.n),
                    _pct(v.metric("early")),
                    _pct(v.metric("late")),
                    _pct(v.metric("late_minus_early"), signed=True),
                ]
            )
    headers = ["family", "stratum", "n", "early (0-2)", "late (3-5)", "late - early"]
    return _table(headers, rows, left=2)


def _original(figures: Mapping[str, Any]) -> str:
    pos = figures.get("position_importance", {})
    pos_rows = [[k, "-" if v is None else f"{v:.3f}"] for k, v in pos.items()]
    diff_rows = []
    for key, d in figures.get("by_difficulty", {}).items():
        diff_rows.append(
            [
                key,
                str(d["n_problems"]),
                f"{d['baseline_accuracy']:.3f}",
                "-" if d["early_importance"] is None else f"{d['early_importance']:.3f}",
                "-" if d["late_importance"] is None else f"{d['late_importance']:.3f}",
            ]
        )
    base = figures.get("baseline_accuracy")
    head = (
        f"n_problems {figures.get('n_problems')}, baseline_accuracy "
        f"{'-' if base is None else f'{base:.3f}'}"
    )
    return "\n\n".join(
        [
            head,
            _table(["position", "position_importance"], pos_rows),
            _table(
                ["difficulty", "n", "baseline acc.", "early_importance", "late_importance"],
                diff_rows,
            ),
        ]
    )


def format_tables(summary: Summary | Mapping[str, Any]) -> str:
    """The summary (typed, or its JSON layout) as terminal tables: baseline, conditions
    (both views), marginal steps, early/late, the original's figures, and the caveats."""
    if not isinstance(summary, Summary):
        summary = Summary.from_dict(summary)
    parts = [
        f"{summary.n_problems} problems; selection: {summary.selection} "
        f"({summary.selection_rule}). Intervals: 95% percentile bootstrap, "
        f"{summary.bootstrap['n_boot']} resamples, seed {summary.bootstrap['seed']}.",
        "Baseline accuracy (all problems)\n" + _baseline(summary),
    ]
    views, empty_line = _views(summary)
    for view, title in views:
        parts.append(f"Conditions, {title}\n" + _conditions(summary, view))
    for view, title in views if summary.prefix_marginals else []:
        parts.append(
            f"Prefix marginal steps, {title}: what each added thought changes given the "
            "earlier ones are already ablated (paired differences)\n" + _marginals(summary, view)
        )
    for view, title in views if summary.early_late else []:
        parts.append(f"Early vs late importance, {title}\n" + _early_late(summary, view))
    if empty_line:
        parts.append(empty_line)
    figures = None if summary.original_layout is None else summary.original_layout.figures
    if figures:
        parts.append("The original study's figures, computed its way\n" + _original(figures))
    if summary.caveats:
        wrapped = [
            textwrap.fill(
                c, width=_WIDTH, initial_indent=f"{k}. ", subsequent_indent=" " * (len(str(k)) + 2)
            )
            for k, c in enumerate(summary.caveats, 1)
        ]
        parts.append("Caveats\n" + "\n".join(wrapped))
    return "\n\n".join(parts) + "\n"
