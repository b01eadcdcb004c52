"""Plain-text tables of a summary for the terminal: aligned columns, rates with CIs."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_tables"]

_WIDTH = 100


def _pct(metric: Mapping[str, Any] | None, signed: bool = False) -> str:
    if metric is None or metric.get("estimate") is None:
        return "-"
    sign = "+" if signed else ""
    text = f"{100 * metric['estimate']:{sign}.1f}%"
    ci = metric.get("ci")
    if ci is not None:
        text += f" [{100 * ci[0]:{sign}.1f}, {100 * ci[1]:{sign}.1f}]"
    return text


def _val(metric: Mapping[str, Any] | None, signed: bool = False) -> str:
    if metric is None or metric.get("estimate") is None:
        return "-"
    sign = "+" if signed else ""
    text = f"{metric['estimate']:{sign}.3g}"
    ci = metric.get("ci")
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


def _baseline(summary: Mapping[str, Any]) -> str:
    base = summary["baseline"]
    rows = [["all", str(base["n"]), _pct({"estimate": base["accuracy"], "ci": base["ci"]})]]
    for label, b in base["by_stratum"].items():
        rows.append([label, str(b["n"]), _pct({"estimate": b["accuracy"], "ci": b["ci"]})])
    return _table(["stratum", "n", "baseline accuracy [95% CI]"], rows)


_VIEW_TITLE = {
    "unconditional": "unconditional view (every problem with a result)",
    "conditional": "conditional view (baseline-correct problems only)",
    "both": "both views (every problem with a result was baseline-correct, so they coincide)",
}


def _views(summary: Mapping[str, Any]) -> tuple[list[tuple[str, str]], str | None]:
    """Which views to print (view key, title), and a line for an empty conditional view."""
    overall = [c["overall"] for c in summary["conditions"]]
    measured = [o for o in overall if o["unconditional"]["n"] > 0]
    if not measured:
        return [], None
    if all(o["unconditional"]["note"] is not None for o in measured):
        return [("conditional", _VIEW_TITLE["both"])], None
    views = [("unconditional", _VIEW_TITLE["unconditional"])]
    if any(o["conditional"]["n"] > 0 for o in measured):
        return [*views, ("conditional", _VIEW_TITLE["conditional"])], None
    return views, "Conditional view: empty (no problem with a result was baseline-correct)."


def _conditions(summary: Mapping[str, Any], view: str) -> str:
    rows = []
    for c in summary["conditions"]:
        v = c["overall"][view]
        m = v["metrics"]
        test = v["mcnemar"]
        rows.append(
            [
                c["name"],
                str(v["n"]),
                _pct(m["importance"]),
                _pct(m["flip_wrong_to_right"]),
                _pct(m["changed"]),
                _val(m["delta_gold_logprob"], signed=True),
                _val(m["kl"]),
                f"{test['b']}/{test['c']}",
                _p(test["p_value"]),
                _p(test.get("p_value_holm")),
            ]
        )
    headers = [
        "condition",
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


def _marginals(summary: Mapping[str, Any], view: str) -> str:
    blocks = []
    for family in summary["prefix_marginals"]:
        rows = []
        for step in family["steps"]:
            m = step["overall"][view]["metrics"]
            added = ",".join(str(p) for p in step["added_positions"])
            rows.append(
                [
                    f"{step['from']} -> {step['to']}",
                    "{" + added + "}",
                    str(step["overall"][view]["n"]),
                    _pct(m["importance"], signed=True),
                    _pct(m["accuracy"], signed=True),
                    _pct(m["changed"], signed=True),
                    _val(m["gold_logprob"], signed=True),
                    _val(m["kl"], signed=True),
                ]
            )
        headers = ["step", "added", "n", "importance", "accuracy", "changed", "gold logprob", "KL"]
        blocks.append(f"{family['label']}\n" + _table(headers, rows))
    return "\n\n".join(blocks)


def _early_late(summary: Mapping[str, Any], view: str) -> str:
    rows = []
    for entry in summary["early_late"]:
        scopes = [("all", entry["overall"]), *entry["by_stratum"].items()]
        for label, scope in scopes:
            m = scope[view]["metrics"]
            rows.append(
                [
                    entry["label"],
                    label,
                    str(scope[view]["n"]),
                    _pct(m["early"]),
                    _pct(m["late"]),
                    _pct(m["late_minus_early"], signed=True),
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


def format_tables(summary: Mapping[str, Any]) -> str:
    """The summary as terminal tables: baseline, conditions (both views), marginal
    steps, early/late, the original's figures, and the caveats."""
    parts = [
        f"{summary['n_problems']} problems; selection: {summary['selection']} "
        f"({summary['selection_rule']}). Intervals: 95% percentile bootstrap, "
        f"{summary['bootstrap']['n_boot']} resamples, seed {summary['bootstrap']['seed']}.",
        "Baseline accuracy (all problems)\n" + _baseline(summary),
    ]
    views, empty_line = _views(summary)
    for view, title in views:
        parts.append(f"Conditions, {title}\n" + _conditions(summary, view))
    for view, title in views if summary["prefix_marginals"] else []:
        parts.append(
            f"Prefix marginal steps, {title}: what each added thought changes given the "
            "earlier ones are already ablated (paired differences)\n" + _marginals(summary, view)
        )
    for view, title in views if summary["early_late"] else []:
        parts.append(f"Early vs late importance, {title}\n" + _early_late(summary, view))
    if empty_line:
        parts.append(empty_line)
    figures = (summary.get("original_layout") or {}).get("figures")
    if figures:
        parts.append("The original study's figures, computed its way\n" + _original(figures))
    if summary["caveats"]:
        wrapped = [
            textwrap.fill(
                c, width=_WIDTH, initial_indent=f"{k}. ", subsequent_indent=" " * (len(str(k)) + 2)
            )
            for k, c in enumerate(summary["caveats"], 1)
        ]
        parts.append("Caveats\n" + "\n".join(wrapped))
    return "\n\n".join(parts) + "\n"
