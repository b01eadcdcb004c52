"""From ``summary.json`` to the figures' plain data: which conditions go together, in
which order, under which labels.

A *group* is every condition of one schedule with one ablation kind at one site (e.g. the
``prefix`` conditions of ``zero`` at ``block:8``), ordered along the schedule. A condition
that several schedules ask for (``{0}`` is both the first ``prefix`` and the first
``single`` condition) belongs to each of their groups. Values are copied from the summary
as they are; nothing is estimated here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from thoughtscope.report.figures import HeatPanel, Interval, Panel, Series
from thoughtscope.results.conditions import positions_label, schedule, site_sort_key
from thoughtscope.statistics.schema import (
    BaselineAccuracy,
    ConditionFigures,
    Metric,
    Scoped,
    Summary,
)

__all__ = [
    "Group",
    "baseline_panel",
    "condition_schedules",
    "curve_panels",
    "difficulty_panels",
    "groups",
    "interval",
    "layer_position_panel",
    "marginal_panels",
    "positions_label",
    "site_title",
    "stratum_title",
]

ORIGINAL_X_TITLE = "positions zeroed (original numbering: 0 = <bot> step)"


@dataclass(frozen=True)
class Group:
    """The conditions of one schedule and ablation kind at one site, in schedule order.

    Attributes:
        schedule, ablation, site: What the members share.
        conditions: The members' figures.
        labels: Short x-axis labels, one per member (``0–2`` for ``{0,1,2}``).
    """

    schedule: str
    ablation: str
    site: str
    conditions: list[ConditionFigures]
    labels: list[str]

    @property
    def x_title(self) -> str:
        """What the x axis counts, in words (the schedule's own axis title)."""
        if self.site == "original":
            return ORIGINAL_X_TITLE
        return schedule(self.schedule).axis_title


def site_title(site: str) -> str:
    """The one name of a site everywhere: ``latent``, ``block:8``; ``early exit``..."""
    if site == "":
        return "early exit (no ablation)"
    if site == "original":
        return "original file (layer not recorded)"
    return site


def stratum_title(label: str) -> str:
    """``1 step``, ``5+ steps``, or the label itself."""
    if re.fullmatch(r"\d+\+?", label):
        return f"{label} step" if label == "1" else f"{label} steps"
    if re.fullmatch(r"\d+-\d+", label):
        return f"{label} steps"
    return label


def condition_schedules(
    summary: Summary, schedules_of: Mapping[str, Sequence[str]]
) -> list[list[str]]:
    """For each entry of ``summary.conditions``, the schedules it stands for.

    An entry stands for its own schedule, and for every other schedule that asked for
    the same condition name but has no entry of its own (summaries that list a shared
    condition once).
    """
    present = {(c.name, c.schedule) for c in summary.conditions}
    out = []
    for c in summary.conditions:
        others = [
            s
            for s in schedules_of.get(c.name, [])
            if s != c.schedule and (c.name, s) not in present
        ]
        out.append([c.schedule, *others])
    return out


def groups(summary: Summary, schedules_of: Mapping[str, Sequence[str]]) -> list[Group]:
    """Every (schedule, ablation, site) group of the summary's conditions.

    Schedules keep their order of first appearance; sites go latent, blocks by layer,
    then the rest; members go in schedule order, labelled by their schedule.
    """
    keyed: dict[tuple[str, str, str], list[ConditionFigures]] = {}
    for figures, schedules in zip(
        summary.conditions, condition_schedules(summary, schedules_of), strict=True
    ):
        for name in schedules:
            key = (name, figures.condition.ablation, figures.condition.site)
            keyed.setdefault(key, []).append(figures)
    order = {s: k for k, s in enumerate(dict.fromkeys(s for s, _, _ in keyed))}
    out = []
    for (name, ablation, site), members in sorted(
        keyed.items(), key=lambda item: (order[item[0][0]], item[0][1], site_sort_key(item[0][2]))
    ):
        kind = schedule(name)
        members = sorted(members, key=lambda c: kind.sort_key(c.condition))
        specs = [m.condition for m in members]
        labels = [kind.tick(spec, specs) for spec in specs]
        out.append(Group(name, ablation, site, members, labels))
    return out


def interval(metric: Metric | None) -> Interval:
    """A summary metric as an :class:`Interval`."""
    if metric is None:
        return Interval(None)
    low, high = metric.ci if metric.ci is not None else (None, None)
    return Interval(metric.estimate, low, high, metric.n)


def _label(title: str, values: Sequence[Interval]) -> str:
    n = max((v.n for v in values), default=0)
    return f"{title} (n={n})"


def _series_over(
    items: Sequence[Scoped],
    strata: Sequence[str],
    metric: str,
    view: str,
) -> list[Series]:
    """Overall and per-stratum series of ``metric`` over items' figures (conditions or
    prefix steps)."""

    def values(scope: str | None) -> list[Interval]:
        return [interval(item.metric(view, metric, scope)) for item in items]

    overall = values(None)
    series = [Series(_label("all problems", overall), overall, "overall")]
    if len(strata) > 1:
        for k, label in enumerate(strata):
            vals = values(label)
            if all(v.estimate is None and v.n == 0 for v in vals):
                continue  # a configured stratum without problems: nothing to draw
            series.append(Series(_label(stratum_title(label), vals), vals, k))
    return series


def _baseline_interval(block: BaselineAccuracy) -> Interval:
    low, high = block.ci if block.ci is not None else (None, None)
    return Interval(block.accuracy, low, high, block.n)


def baseline_panel(summary: Summary) -> Panel:
    """Baseline accuracy overall and by stratum (one series, one bar per group)."""
    labels = ["all"]
    values = [_baseline_interval(summary.baseline)]
    for label in summary.strata:
        labels.append(stratum_title(label))
        values.append(_baseline_interval(summary.baseline_by_stratum[label]))
    x_labels = [f"{label}\nn={v.n}" for label, v in zip(labels, values, strict=True)]
    return Panel(
        "",
        x_labels,
        "difficulty stratum (reasoning steps)",
        [Series("baseline accuracy", values, 0)],
    )


def curve_panels(
    chosen: Sequence[Group], strata: Sequence[str], metric: str, view: str
) -> list[Panel]:
    """One panel per group (site): overall and per-stratum lines of ``metric``."""
    return [
        Panel(
            site_title(g.site),
            g.labels,
            g.x_title,
            _series_over([c.scopes for c in g.conditions], strata, metric, view),
        )
        for g in chosen
    ]


def _value(condition: ConditionFigures, scope: str | None, view: str, metric: str) -> float | None:
    return interval(condition.scopes.metric(view, metric, scope)).estimate


def layer_position_panel(chosen: Sequence[Group], metric: str, view: str) -> HeatPanel:
    """Sites (rows: latent, then blocks by layer) × members (columns), overall values."""
    columns = list(dict.fromkeys(label for g in chosen for label in g.labels))
    values = []
    for g in chosen:
        by_label = dict(zip(g.labels, g.conditions, strict=True))
        values.append(
            [_value(by_label[c], None, view, metric) if c in by_label else None for c in columns]
        )
    first = chosen[0]
    return HeatPanel(
        "",
        [site_title(g.site) for g in chosen],
        columns,
        values,
        first.x_title,
        "site",
    )


def difficulty_panels(
    chosen: Sequence[Group], strata: Sequence[str], metric: str, view: str
) -> list[HeatPanel]:
    """One heatmap per group (site): strata (rows) × members (columns)."""
    panels = []
    for g in chosen:
        values = [[_value(c, label, view, metric) for c in g.conditions] for label in strata]
        panels.append(
            HeatPanel(
                site_title(g.site),
                [stratum_title(s) for s in strata],
                g.labels,
                values,
                g.x_title,
                "difficulty",
            )
        )
    return panels


def marginal_panels(summary: Summary, metric: str, view: str) -> list[Panel]:
    """One panel per prefix family: the marginal step of each added thought."""
    panels = []
    for family in sorted(summary.prefix_marginals, key=lambda f: site_sort_key(f.family.site)):
        labels = ["+" + positions_label(s.added_positions) for s in family.steps]
        site = family.family.site
        title = f"{family.family.ablation} · {site_title(site)}"
        x_title = (
            "position added to the zeroed prefix (original numbering)"
            if site == "original"
            else "thought added to the ablated prefix"
        )
        series = _series_over([s.scopes for s in family.steps], summary.strata, metric, view)
        panels.append(Panel(title, labels, x_title, series))
    return panels
