"""The report page: one self-contained HTML file (inline CSS, figures as base64 PNG, no
scripts, nothing fetched), every piece of text escaped."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from thoughtscope.report.figures import DPI, FigureFile
from thoughtscope.report.panels import Group, condition_schedules, site_title, stratum_title
from thoughtscope.results.records import ConditionOutcome, DecodedThoughts, ProblemRecord
from thoughtscope.statistics.schema import ConditionFigures, Metric, Summary

__all__ = ["SECTIONS", "FigureBlock", "Section", "figure_html", "page"]

SECTIONS = (
    ("overview", "Overview"),
    ("caveats", "Caveats"),
    ("baseline", "Baseline accuracy by difficulty"),
    ("schedules", "Importance by schedule"),
    ("prefix-marginals", "Prefix schedule: marginal steps"),
    ("heatmaps", "Heatmaps"),
    ("conditions", "Every condition"),
    ("examples", "Example problems and decoded thoughts"),
    ("manifest", "Run manifest"),
    ("definitions", "Definitions"),
)
"""Section ids and headings, in page order."""

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
  color: #1a1a1a; background: #fff; margin: 0 auto; max-width: 1180px; padding: 1.2em 1.6em;
  line-height: 1.45; font-size: 15px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.08em; margin-top: 1.5em; }
nav ol { columns: 2; font-size: 0.92em; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  font-size: 0.9em; }
.muted { color: #555; }
.note { background: #f6f6f2; border-left: 4px solid #c9b458; padding: 0.5em 0.8em; }
figure { margin: 1em 0 1.6em 0; break-inside: avoid; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #333; max-width: 60em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.5em; vertical-align: top; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.nowrap { white-space: nowrap; }
table.conditions th { white-space: normal; min-width: 4em; }
span.ci { color: #666; font-size: 0.88em; }
td.ok { background: #e3f3e3; }
td.bad { background: #fbe1de; }
td.changed { font-weight: bold; }
table.tokens td { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.92em;
  white-space: nowrap; }
table.tokens span.p { color: #777; }
.wide { overflow-x: auto; }
dl dt { font-weight: bold; margin-top: 0.6em; }
dl dd { margin-left: 1.4em; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
@media print { body { max-width: none; font-size: 11px; } .wide { overflow: visible; }
  h2 { break-after: avoid; } details { display: block; } }
"""


@dataclass(frozen=True)
class FigureBlock:
    """A saved figure and what to say under it."""

    file: FigureFile
    caption: str
    alt: str


@dataclass(frozen=True)
class Section:
    """One section of the page: its id, heading and already-escaped HTML body."""

    id: str
    title: str
    body: str


def e(value: object) -> str:
    """Escaped text."""
    return escape(str(value), quote=True)


def figure_html(block: FigureBlock) -> str:
    """A ``<figure>`` with the PNG embedded and the file names in the caption."""
    data = base64.b64encode(block.file.png_bytes).decode("ascii")
    # Display at the figure's size in inches (96 css px per inch).
    width = round(block.file.width_px * 96 / DPI)
    return (
        f'<figure id="fig-{e(block.file.stem)}">'
        f'<img src="data:image/png;base64,{data}" width="{width}" alt="{e(block.alt)}">'
        f"<figcaption>{e(block.caption)} <span class='muted'>Files: "
        f"<code>figures/{e(block.file.png.name)}</code>, "
        f"<code>figures/{e(block.file.svg.name)}</code>.</span></figcaption></figure>"
    )


def paragraph(text: str, cls: str | None = None) -> str:
    """An escaped paragraph."""
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{e(text)}</p>"


def items(values: Iterable[str]) -> str:
    """An escaped bullet list."""
    return "<ul>" + "".join(f"<li>{e(v)}</li>" for v in values) + "</ul>"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table; ``rows`` hold already-built ``<td>`` cells."""
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return (
        f'<div class="wide"><table{attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def cell(text: object, cls: str = "", title: str | None = None) -> str:
    """An escaped ``<td>``."""
    attrs = f' class="{cls}"' if cls else ""
    if title:
        attrs += f' title="{e(title)}"'
    return f"<td{attrs}>{e(text)}</td>"


def _number(value: float, unit: str) -> str:
    """Percentages and points to one decimal; other quantities (log-probabilities, KL) to
    three significant digits, so small values do not print as ``0.0``; never ``−0``."""
    text = f"{value:.1f}" if unit in ("%", " pp") else f"{value:.3g}"
    if float(text) == 0:
        text = text.lstrip("-")
    return text.replace("-", "−")


def percent(metric: Metric | None, scale: float = 100.0, unit: str = "%") -> str:
    """``24.7% [13.7, 32.9]``, or ``—`` when the summary has no estimate."""
    if metric is None or metric.estimate is None:
        return "—"
    text = _number(metric.estimate * scale, unit) + unit
    if metric.ci is not None:
        low, high = (_number(v * scale, unit) for v in metric.ci)
        text += f" [{low}, {high}]"
    return text


def metric_cell(metric: Metric | None, scale: float = 100.0, unit: str = "%") -> str:
    """A numeric cell: the estimate, its interval on a second line; the summary's reason
    goes into the tooltip when it has no value."""
    if metric is None or metric.estimate is None:
        reason = None if metric is None else metric.reason
        return cell("—", "num", reason)
    body = e(_number(metric.estimate * scale, unit) + unit)
    if metric.ci is not None:
        low, high = (_number(v * scale, unit) for v in metric.ci)
        body += f"<br><span class='ci'>[{e(low)}, {e(high)}]</span>"
    return f'<td class="num">{body}</td>'


# --- sections ---------------------------------------------------------------------------


def conditions_table(summary: Summary, schedules_of: Mapping[str, Sequence[str]]) -> str:
    """Every condition's overall figures (one row each, naming all its schedules), both
    views, with intervals and McNemar."""
    header = [
        "condition",
        "schedules",
        "n",
        "accuracy",
        "importance (baseline-correct)",
        "importance (all)",
        "answer changed",
        "wrong→right",
        "Δ log p(gold)",
        "KL (nats)",
        "McNemar p (Holm)",
    ]
    # One row per condition: a condition in several schedules has the same figures in each.
    schedules_by_name: dict[str, list[str]] = {}
    first: dict[str, ConditionFigures] = {}
    for c, schedules in zip(
        summary.conditions, condition_schedules(summary, schedules_of), strict=True
    ):
        first.setdefault(c.name, c)
        known = schedules_by_name.setdefault(c.name, [])
        known.extend(s for s in schedules if s not in known)
    rows = []
    for c in first.values():
        schedules = schedules_by_name[c.name]
        unc = c.scopes.overall["unconditional"]
        con = c.scopes.overall["conditional"]
        holm = None if unc.mcnemar is None else unc.mcnemar.p_value_holm
        rows.append(
            [
                cell(c.name, "mono nowrap"),
                cell(", ".join(schedules), "nowrap"),
                cell(unc.n, "num"),
                metric_cell(unc.metric("accuracy")),
                metric_cell(con.metric("importance")),
                metric_cell(unc.metric("importance")),
                metric_cell(unc.metric("changed")),
                metric_cell(unc.metric("flip_wrong_to_right")),
                metric_cell(unc.metric("delta_gold_logprob"), 1.0, ""),
                metric_cell(unc.metric("kl"), 1.0, ""),
                cell("—" if holm is None else f"{holm:.3g}", "num"),
            ]
        )
    return table(header, rows, "conditions")


def early_late_table(summary: Summary) -> str:
    """The original study's early/late summary with intervals (empty string if none)."""
    rows = []
    for item in summary.early_late:
        view = item.scopes.overall["conditional"]
        rows.append(
            [
                cell(item.label),
                cell(item.semantics),
                metric_cell(view.metric("early")),
                metric_cell(view.metric("late")),
                metric_cell(view.metric("late_minus_early"), 100.0, " pp"),
            ]
        )
    if not rows:
        return ""
    return table(["family", "what early and late mean here", "early", "late", "late − early"], rows)


def visible(text: str) -> str:
    """``text`` with control and other unprintable characters written as escapes
    (``\\x07``), so model output cannot garble the page."""
    return "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in text)


def _token(text: str) -> str:
    shown = text.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥")
    return visible(shown) if shown else "∅"


def _probability(p: float) -> str:
    return f"{p * 100:.0f}%" if p >= 0.095 else f"{p * 100:.1f}%"


def decoded_table(decoded: DecodedThoughts) -> str:
    """Rows: input/latent then blocks; columns: positions bot, 0…N-1, eot."""
    positions = list(dict.fromkeys(s.position for s in decoded.states))
    sites = list(
        dict.fromkeys(
            "latent/input" if s.site in ("latent", "input") else s.site for s in decoded.states
        )
    )
    grid: dict[tuple[str, str], str] = {}
    for s in decoded.states:
        site = "latent/input" if s.site in ("latent", "input") else s.site
        lines = [
            f"{e(_token(t))} <span class='p'>{_probability(p)}</span>"
            for t, p in zip(s.tokens, s.probs, strict=True)
        ]
        grid[(site, s.position)] = "<br>".join(lines)
    header = ["layer \\ position", *positions]
    rows = []
    for site in sites:
        title = (
            "input embedding (the thought itself at 0…N−1)"
            if site == "latent/input"
            else (site_title(site))
        )
        rows.append([cell(title), *(f"<td>{grid.get((site, p), '')}</td>" for p in positions)])
    return table(header, rows, "tokens")


def answers_table(record: ProblemRecord, chosen: Sequence[Group]) -> str:
    """The problem's answer under each condition of one schedule and ablation: rows are
    sites, columns the schedule's members; green = correct, red = wrong, bold = the
    predicted number differs from the baseline's."""
    outcomes: dict[str, ConditionOutcome] = {}
    for c in record.conditions:
        outcomes.setdefault(c.name, c)
    columns = list(dict.fromkeys(label for g in chosen for label in g.labels))
    rows = []
    for g in chosen:
        by_label = dict(zip(g.labels, (c.name for c in g.conditions), strict=True))
        row = [cell(site_title(g.site))]
        for column in columns:
            outcome = outcomes.get(by_label.get(column, ""))
            if outcome is None:
                row.append(cell("", "num"))
                continue
            shown = (
                f"{outcome.predicted:g}"
                if outcome.predicted is not None
                else visible(outcome.output[:16])
            )
            classes = ("ok" if outcome.correct else "bad") + (" changed" if outcome.changed else "")
            row.append(
                cell(shown or "∅", f"num {classes}", f"{outcome.name}: “{visible(outcome.output)}”")
            )
        rows.append(row)
    return table([chosen[0].x_title + " →", *columns], rows)


def example_html(
    record: ProblemRecord,
    by_schedule: Sequence[Sequence[Group]],
    decoded: DecodedThoughts | None,
    decoded_note: str,
) -> str:
    """One example problem: question, baseline, answers under conditions, decoded thoughts."""
    verdict = "correct" if record.baseline.correct else "wrong"
    parts = [
        f"<h3>Problem <code>{e(record.id)}</code> · {e(stratum_title(record.stratum))}</h3>",
        f"<p><b>Question:</b> {e(record.question)}</p>",
        f"<p><b>Expected:</b> {e(f'{record.expected:g}')} · <b>Baseline answer:</b> "
        f"<code>{e(visible(record.baseline.output))}</code> ({verdict})</p>",
    ]
    for chosen in by_schedule:
        first = chosen[0]
        parts.append(f"<p><b>Answers under {e(first.schedule)} · {e(first.ablation)}</b></p>")
        parts.append(answers_table(record, chosen))
    if decoded is not None:
        parts.append(
            "<p><b>Decoded thoughts</b> (recorded during the run: the baseline's states read "
            "through the logit lens, top tokens with probabilities)</p>"
        )
        parts.append(decoded_table(decoded))
    else:
        parts.append(paragraph(decoded_note, "note"))
    return "".join(parts)


MANIFEST_FIELDS = (
    ("model", "model.name"),
    ("model spec", "model.spec"),
    ("model family", "model.family"),
    ("blocks (layers)", "model.num_layers"),
    ("hidden size", "model.d_model"),
    ("continuous thoughts", "num_latent"),
    ("model fingerprint", "model.fingerprint"),
    ("data", "data.spec"),
    ("data source", "data.source"),
    ("problems loaded / selected", ("data.n_loaded", "data.n_problems")),
    ("data fingerprint", "data.fingerprint"),
    ("selection", "selection"),
    ("validation sample", "validate"),
    ("limit", "limit"),
    ("difficulty strata", "strata"),
    ("seed", "seed"),
    ("schedules", "schedules"),
    ("sites", "sites"),
    ("ablations", "ablations"),
    ("ablation kinds", "ablation_kinds"),
    ("blocks edited", "layers"),
    ("positions", "positions"),
    ("max new tokens", "max_new_tokens"),
    ("batch size", "batch_size"),
    ("dtype / device", ("dtype", "device")),
    ("versions", "versions"),
    ("created", "created"),
)


def _dotted(data: Mapping[str, Any], key: str) -> Any:
    value: Any = data
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _plain(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value) or "—"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items()) or "—"
    return str(value)


def manifest_html(manifest: Mapping[str, Any], summary: Summary) -> str:
    """The manifest's main fields in words, then the whole manifest as JSON."""
    rows = [[cell("selection rule"), cell(summary.selection_rule or "—")]]
    boot = summary.bootstrap
    if boot:
        rows.append(
            [
                cell("intervals"),
                cell(
                    f"{boot.get('level', 0.95) * 100:.0f}% {boot.get('method', '')}; "
                    f"{boot.get('n_boot')} resamples, seed {boot.get('seed')}"
                ),
            ]
        )
    for label, key in MANIFEST_FIELDS:
        keys = key if isinstance(key, tuple) else (key,)
        values = [_dotted(manifest, k) for k in keys]
        if all(v is None for v in values):
            continue
        rows.append([cell(label), cell(" / ".join(_plain(v) for v in values))])
    full = json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True)
    return (
        table(["field", "value"], rows)
        + f"<details><summary>Full manifest (JSON)</summary><pre>{e(full)}</pre></details>"
    )


def definitions_html(summary: Summary) -> str:
    """The summary's plain-words definitions as a definition list."""
    entries = summary.definitions
    return "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in entries.items()) + "</dl>"


def page(title: str, subtitle: str, sections: Sequence[Section], footer: str) -> str:
    """The whole HTML document."""
    nav = "".join(f'<li><a href="#{e(s.id)}">{e(s.title)}</a></li>' for s in sections)
    body = "".join(
        f'<section id="{e(s.id)}"><h2>{e(s.title)}</h2>{s.body}</section>' for s in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{e(title)}</h1><p class='muted'>{e(subtitle)}</p>"
        f"<nav><ol>{nav}</ol></nav></header>{body}"
        f"<footer><p class='muted'>{e(footer)}</p></footer></body></html>\n"
    )


def positions_note(manifest: Mapping[str, Any]) -> str:
    """How positions are numbered in this run, in words."""
    note = manifest.get("positions")
    if isinstance(note, str) and note:
        return note
    return (
        "Positions are 0-based continuous thoughts: thought 0 is the first vector fed back; "
        "the original study's position 0 was the <bot> step."
    )
