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
from typing import Any

from thoughtscope.report.figures import HeatPanel, Interval, Panel, Series

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

X_TITLES = {
    "prefix": "thoughts ablated together (the first i)",
    "suffix": "thoughts ablated together (the last ones)",
    "single": "thought ablated (alone)",
    "keep-one": "thoughts ablated (every thought but one)",
    "all": "thoughts ablated",
    "positions": "thoughts ablated",
    "early-exit": "thoughts fed before <eot> (early exit)",
}
ORIGINAL_X_TITLE = "positions zeroed (original numbering: 0 = <bot> step)"


@dataclass(frozen=True)
class Group:
    """The conditions of one schedule and ablation kind at one site, in schedule order.

    Attributes:
        schedule, ablation, site: What the members share.
        conditions: The members' entries of ``summary["conditions"]``.
        labels: Short x-axis labels, one per member (``0–2`` for ``{0,1,2}``).
    """

    schedule: str
    ablation: str
    site: str
    conditions: list[dict[str, Any]]
    labels: list[str]

    @property
    def x_title(self) -> str:
        """What the x axis counts, in words."""
        if self.site == "original":
            return ORIGINAL_X_TITLE
        return X_TITLES.get(self.schedule, "thoughts ablated")


def positions_label(positions: Sequence[int]) -> str:
    """``0–2,4`` for ``[0, 1, 2, 4]``; ``bot`` for ``-1``; ``none`` for ``[]``."""
    if not positions:
        return "none"
    parts: list[str] = []
    values = sorted(positions)
    if values[0] < 0:
        parts.append("bot")
        values = [v for v in values if v >= 0]
    start = prev = None
    for v in [*values, None]:
        if start is None:
            start = prev = v
            continue
        if v is not None and prev is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}–{prev}")
        start = prev = v
    return ",".join(parts)


def _site_key(site: str) -> tuple[int, int, str]:
    if site == "latent":
        return (0, 0, site)
    match = re.fullmatch(r"block:(\d+)", site)
    if match:
        return (1, int(match[1]), site)
    return (2, 0, site)


def site_title(site: str) -> str:
    """``latent (thought vectors)``, ``block 8 output``, ``early exit``..."""
    if site == "latent":
        return "latent (the thought vectors)"
    match = re.fullmatch(r"block:(\d+)", site)
    if match:
        return f"block {match[1]} output"
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


def _member_key(schedule: str, condition: Mapping[str, Any]) -> tuple[int, ...]:
    positions = list(condition.get("positions") or [])
    if schedule == "early-exit" or condition.get("ablation") == "early-exit":
        return (int(condition.get("num_latent") or 0),)
    if schedule == "prefix":
        return (len(positions),)
    if schedule == "suffix":
        return (-len(positions),)
    if schedule == "keep-one":
        missing = sorted(set(range(max(positions, default=0) + 2)) - set(positions))
        return (missing[0] if missing else 0,)
    return tuple(positions)


def condition_schedules(
    summary: Mapping[str, Any], schedules_of: Mapping[str, Sequence[str]]
) -> list[list[str]]:
    """For each entry of ``summary["conditions"]``, the schedules it stands for.

    An entry stands for its own schedule, and for every other schedule that asked for
    the same condition name but has no entry of its own (summaries that list a shared
    condition once).
    """
    present = {(c["name"], c["schedule"]) for c in summary["conditions"]}
    out = []
    for c in summary["conditions"]:
        others = [
            s
            for s in schedules_of.get(c["name"], [])
            if s != c["schedule"] and (c["name"], s) not in present
        ]
        out.append([c["schedule"], *others])
    return out


def _keep_one_labels(members: Sequence[Mapping[str, Any]]) -> list[str]:
    """``all but 3`` for each member that ablates every thought of the group but one."""
    every = set().union(*(set(c.get("positions") or []) for c in members))
    labels = []
    for c in members:
        missing = sorted(every - set(c.get("positions") or []))
        if len(missing) == 1:
            labels.append(f"all but {missing[0]}")
        else:
            labels.append(positions_label(c.get("positions") or []))
    return labels


def groups(summary: Mapping[str, Any], schedules_of: Mapping[str, Sequence[str]]) -> list[Group]:
    """Every (schedule, ablation, site) group of the summary's conditions.

    Schedules keep their order of first appearance; sites go latent, blocks by layer,
    then the rest.
    """
    keyed: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for condition, schedules in zip(
        summary["conditions"], condition_schedules(summary, schedules_of), strict=True
    ):
        for schedule in schedules:
            key = (schedule, condition["ablation"], condition["site"])
            keyed.setdefault(key, []).append(condition)
    order = {s: k for k, s in enumerate(dict.fromkeys(s for s, _, _ in keyed))}
    out = []
    for (schedule, ablation, site), members in sorted(
        keyed.items(), key=lambda item: (order[item[0][0]], item[0][1], _site_key(item[0][2]))
    ):
        members = sorted(members, key=lambda c: _member_key(schedule, c))
        if schedule == "early-exit" or ablation == "early-exit":
            labels = [str(c.get("num_latent")) for c in members]
        elif schedule == "keep-one":
            labels = _keep_one_labels(members)
        else:
            labels = [positions_label(c.get("positions") or []) for c in members]
        out.append(Group(schedule, ablation, site, members, labels))
    return out


def interval(metric: Mapping[str, Any] | None) -> Interval:
    """A summary metric (``{estimate, ci, n}``) as an :class:`Interval`."""
    if not metric:
        return Interval(None)
    ci = metric.get("ci") or [None, None]
    return Interval(metric.get("estimate"), ci[0], ci[1], int(metric.get("n") or 0))


def _label(title: str, values: Sequence[Interval]) -> str:
    n = max((v.n for v in values), default=0)
    return f"{title} (n={n})"


def _series_over(
    items: Sequence[Mapping[str, Any]],
    strata: Sequence[str],
    metric: str,
    view: str,
) -> list[Series]:
    """Overall and per-stratum series of ``metric`` over items holding ``overall`` and
    ``by_stratum`` blocks (conditions or prefix steps)."""

    def values(scope: str | None) -> list[Interval]:
        out = []
        for item in items:
            block = item["overall"] if scope is None else item["by_stratum"].get(scope, {})
            out.append(interval(block.get(view, {}).get("metrics", {}).get(metric)))
        return out

    overall = values(None)
    series = [Series(_label("all problems", overall), overall, "overall")]
    if len(strata) > 1:
        for k, label in enumerate(strata):
            vals = values(label)
            if all(v.estimate is None and v.n == 0 for v in vals):
                continue  # a configured stratum without problems: nothing to draw
            series.append(Series(_label(stratum_title(label), vals), vals, k))
    return series


def _baseline_interval(block: Mapping[str, Any]) -> Interval:
    low, high = block.get("ci") or (None, None)
    return Interval(block.get("accuracy"), low, high, int(block.get("n") or 0))


def baseline_panel(summary: Mapping[str, Any]) -> Panel:
    """Baseline accuracy overall and by stratum (one series, one bar per group)."""
    base = summary["baseline"]
    labels = ["all"]
    values = [_baseline_interval(base)]
    for label in summary["strata"]:
        labels.append(stratum_title(label))
        values.append(_baseline_interval(base["by_stratum"][label]))
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
            _series_over(g.conditions, strata, metric, view),
        )
        for g in chosen
    ]


def _value(condition: Mapping[str, Any], scope: str | None, view: str, metric: str) -> float | None:
    block = condition["overall"] if scope is None else condition["by_stratum"].get(scope, {})
    return interval(block.get(view, {}).get("metrics", {}).get(metric)).estimate


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
        [site_title(g.site).replace(" output", "") for g in chosen],
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


def marginal_panels(summary: Mapping[str, Any], metric: str, view: str) -> list[Panel]:
    """One panel per prefix family: the marginal step of each added thought."""
    panels = []
    families = sorted(
        summary.get("prefix_marginals", []), key=lambda f: _site_key(f["family"]["site"])
    )
    for family in families:
        steps = family["steps"]
        labels = ["+" + positions_label(s["added_positions"]) for s in steps]
        site = family["family"]["site"]
        title = f"{family['family']['ablation']} · {site_title(site)}"
        x_title = (
            "position added to the zeroed prefix (original numbering)"
            if site == "original"
            else "thought added to the ablated prefix"
        )
        panels.append(
            Panel(title, labels, x_title, _series_over(steps, summary["strata"], metric, view))
        )
    return panels
