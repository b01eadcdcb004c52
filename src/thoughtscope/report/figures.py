"""The report's figures, drawn with matplotlib (Agg canvas) from plain data, and saved as PNG
and SVG.

Figure functions take plain data (:class:`Panel`, :class:`HeatPanel`: labels and
:class:`Interval` values as fractions) and return a matplotlib ``Figure``; nothing here
reads files or computes statistics. Values are fractions in ``[0, 1]`` (or differences of
fractions) and are drawn as percentages (or percentage points). Every figure is sized to
its content, labels its axes with units, and puts legends and colour bars outside the
plotting area so nothing overlaps.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "FigureFile",
    "HeatPanel",
    "Interval",
    "Panel",
    "Series",
    "bars_figure",
    "curves_figure",
    "heatmap_figure",
    "save_figure",
]

DPI = 150
"""Resolution of the PNG files (and of the copies embedded in the HTML)."""

OVERALL_COLOR = "#222222"
STRATUM_COLORS = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#8C6D31",
    "#7F7F7F",
)
"""Colour-blind-safe colours for strata, in difficulty order (markers differ too, so
grey-scale prints stay readable)."""
STRATUM_MARKERS = ("s", "^", "D", "v", "P", "X", "<", ">")

STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 11,
    "svg.fonttype": "none",
    "svg.hashsalt": "thoughtscope",
}
"""Matplotlib settings applied while a figure is built and saved (never globally)."""

P = ParamSpec("P")
R = TypeVar("R")


def _styled(function: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with mpl.rc_context(STYLE):  # type: ignore[arg-type]
            return function(*args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class Interval:
    """A figure from ``summary.json``: estimate, 95% interval and support.

    ``None`` where the summary has no value (e.g. a stratum with no problem that counts).
    """

    estimate: float | None
    low: float | None = None
    high: float | None = None
    n: int = 0


@dataclass(frozen=True)
class Series:
    """One line (or one set of bars) across a panel's x positions.

    Attributes:
        label: Legend entry, e.g. ``all problems`` or ``stratum 3``.
        values: One interval per x position.
        style: ``overall`` (black, thick) or the stratum's index (its colour).
    """

    label: str
    values: list[Interval]
    style: str | int = "overall"


@dataclass(frozen=True)
class Panel:
    """One subplot of a curve or bar figure."""

    title: str
    x_labels: list[str]
    x_title: str
    series: list[Series]


@dataclass(frozen=True)
class HeatPanel:
    """One heatmap: ``values[row][column]`` fractions (``None``: no value)."""

    title: str
    row_labels: list[str]
    col_labels: list[str]
    values: list[list[float | None]]
    x_title: str
    y_title: str


@dataclass(frozen=True)
class FigureFile:
    """A saved figure.

    Attributes:
        stem: File name without extension (``figures/<stem>.png`` and ``.svg``).
        png: Path of the PNG.
        svg: Path of the SVG.
        png_bytes: The PNG's content (embedded in the HTML).
        width_px, height_px: PNG size in pixels.
    """

    stem: str
    png: Path
    svg: Path
    png_bytes: bytes
    width_px: int
    height_px: int


# --- helpers ---------------------------------------------------------------------------


def _pct(value: float | None, scale: float = 100.0) -> float:
    return math.nan if value is None else value * scale


def _style(series: Series) -> dict[str, object]:
    if series.style == "overall":
        return {"color": OVERALL_COLOR, "marker": "o", "linewidth": 2.0, "markersize": 4.5}
    index = int(series.style)
    return {
        "color": STRATUM_COLORS[index % len(STRATUM_COLORS)],
        "marker": STRATUM_MARKERS[index % len(STRATUM_MARKERS)],
        "linewidth": 1.0,
        "markersize": 3.5,
        "alpha": 0.85,
    }


def _longest(labels: Sequence[str]) -> int:
    return max((len(line) for s in labels for line in s.split("\n")), default=0)


def _needs_rotation(labels: Sequence[str]) -> bool:
    return len(labels) > 12 or _longest(labels) * len(labels) > 48


def _set_xticks(ax: Axes, labels: Sequence[str]) -> None:
    ax.set_xticks(range(len(labels)))
    if _needs_rotation(labels):
        ax.set_xticklabels(labels, rotation=45, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticklabels(labels)


def _grid(
    n: int,
    ncols: int,
    panel_w: float,
    panel_h: float,
    *,
    title: str,
    extra_w: float = 0.0,
    extra_h: float = 0.0,
) -> tuple[Figure, list[Axes]]:
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    # Wide enough for the title (about 0.095 in per character at its size).
    width = max(panel_w * ncols + extra_w, 0.095 * len(title) + 0.6)
    # A Figure on its own Agg canvas: no pyplot, no global backend or figure registry.
    fig = Figure(figsize=(width, panel_h * nrows + extra_h), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.remove()
    return fig, flat[:n]


LEGEND_RIGHT_BELOW = 6.5
"""Figures narrower than this (inches, before the legend) get their legend at the right."""
LEGEND_WIDTH = 2.2


def _legend_right(panel_w: float, n_panels: int, ncols: int) -> bool:
    return panel_w * max(1, min(ncols, n_panels)) < LEGEND_RIGHT_BELOW


def _legend(fig: Figure, axes: Sequence[Axes], n_entries: int, right: bool) -> None:
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if not handles:
        return
    width = fig.get_figwidth()
    if right:
        # Narrow figure: one column at the right keeps every entry inside the figure.
        fig.legend(handles, labels, loc="outside right center", ncols=1)
    else:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=max(1, min(n_entries, int(width / 2.3))),
        )


def _is_empty(panel: Panel) -> bool:
    return all(v.estimate is None for series in panel.series for v in series.values)


def _empty_note(ax: Axes, text: str) -> None:
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        wrap=True,
        fontsize=8.5,
        color="#444444",
        bbox={"facecolor": "#f4f4f4", "edgecolor": "#cccccc", "pad": 4},
    )


def _label_axes(ax: Axes, title: str, x_title: str, y_title: str) -> None:
    if title:
        ax.set_title(title)
    ax.set_xlabel(x_title)
    ax.set_ylabel(y_title)
    ax.grid(True, axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


def _panel_width(n_x: int, labels: Sequence[str]) -> float:
    longest = _longest(labels)
    per_tick = 0.42 if not _needs_rotation(labels) else 0.3
    return max(3.4, 1.4 + per_tick * n_x + (0.05 * longest if _needs_rotation(labels) else 0))


def _rotated_extra(labels: Sequence[str]) -> float:
    if not _needs_rotation(labels):
        return 0.0
    return 0.06 * _longest(labels)


# --- figures ---------------------------------------------------------------------------


def _shared_limits(panels: Sequence[Panel], zero_line: bool) -> tuple[float, float]:
    """One y range for every panel (so bars compare across panels), with margins."""
    values = [
        _pct(x)
        for p in panels
        for series in p.series
        for v in series.values
        for x in (v.estimate, v.low, v.high)
        if x is not None
    ]
    if not values:
        return (-10.0, 10.0) if zero_line else (0.0, 100.0)
    low = min([0.0, *values]) if zero_line else 0.0
    high = max([0.0, *values])
    span = max(high - low, 1.0)
    return (low - 0.06 * span if low < 0 else 0.0, high + 0.1 * span)


@_styled
def curves_figure(
    panels: Sequence[Panel],
    *,
    title: str,
    y_label: str,
    y_limits: tuple[float, float] | None = (0.0, 100.0),
    ncols: int = 3,
    empty_text: str = "no value here",
    bands_for_all: bool = False,
) -> Figure:
    """Lines, one panel per site, one line per series; the overall series (all
    problems) with its 95% interval band, strata without bands (every series gets its
    band with ``bands_for_all``, for a few lines that are not strata).

    Values are fractions drawn as percentages; a missing estimate leaves a gap, and a
    panel without any value says ``empty_text``.
    """
    all_labels = [label for p in panels for label in p.x_labels]
    width = max(_panel_width(len(p.x_labels), p.x_labels) for p in panels)
    height = 2.7 + _rotated_extra(all_labels)
    n_series = max(len(p.series) for p in panels)
    right = _legend_right(width, len(panels), ncols) and n_series > 1
    fig, axes = _grid(
        len(panels),
        ncols,
        width,
        height,
        title=title,
        extra_w=LEGEND_WIDTH if right else 0.0,
        extra_h=0.3 if right else 0.5 + 0.2 * (n_series > 4),
    )
    columns = max(1, min(ncols, len(panels)))
    for index, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
        x = np.arange(len(panel.x_labels))
        if _is_empty(panel):
            _empty_note(ax, empty_text)
        for series in panel.series:
            est = np.array([_pct(v.estimate) for v in series.values])
            low = np.array([_pct(v.low) for v in series.values])
            high = np.array([_pct(v.high) for v in series.values])
            style = _style(series)
            ax.plot(x, est, label=series.label, **style)  # type: ignore[arg-type]
            band = np.isfinite(low) & np.isfinite(high)
            # Only the overall line gets its band: six overlapping bands are unreadable;
            # the strata's intervals are in summary.json and the heatmaps' source.
            if band.any() and (bands_for_all or series.style == "overall"):
                ax.fill_between(
                    x,
                    np.where(band, low, np.nan),
                    np.where(band, high, np.nan),
                    color=style["color"],
                    alpha=0.18,
                    linewidth=0,
                )
        _set_xticks(ax, panel.x_labels)
        ax.set_xlim(-0.4, len(panel.x_labels) - 0.6)
        if y_limits is not None:
            ax.set_ylim(y_limits[0] - 2, y_limits[1] + 2)
        _label_axes(ax, panel.title, panel.x_title, y_label if index % columns == 0 else "")
    fig.suptitle(title)
    _legend(fig, axes, n_series, right)
    return fig


@_styled
def bars_figure(
    panels: Sequence[Panel],
    *,
    title: str,
    y_label: str,
    y_limits: tuple[float, float] | None = None,
    ncols: int = 2,
    zero_line: bool = False,
    show_values: bool = False,
    y_ticks: Sequence[float] | None = None,
    empty_text: str = "no value here",
) -> Figure:
    """Grouped bars with 95% interval whiskers: one group per x label, one bar per
    series. Values are fractions drawn as percentages (or percentage points); a bar
    without a value says ``n/a``, a panel without any value says ``empty_text``."""
    n_series = max(len(p.series) for p in panels)
    n_x = max(len(p.x_labels) for p in panels)
    all_labels = [label for p in panels for label in p.x_labels]
    width = max(3.6, 1.3 + n_x * (0.13 * n_series + 0.3))
    if width > 5.5:
        ncols = 1
    height = 2.9 + _rotated_extra(all_labels)
    right = _legend_right(width, len(panels), ncols) and n_series > 1
    fig, axes = _grid(
        len(panels),
        ncols,
        width,
        height,
        title=title,
        extra_w=LEGEND_WIDTH if right else 0.0,
        extra_h=0.3 if right or n_series == 1 else 0.5,
    )
    columns = max(1, min(ncols, len(panels)))
    bar_w = 0.8 / n_series
    if y_limits is None:
        y_limits = _shared_limits(panels, zero_line)
    for index, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
        x = np.arange(len(panel.x_labels))
        empty = _is_empty(panel)
        if empty:
            _empty_note(ax, empty_text)
        for k, series in enumerate(panel.series):
            offset = (k - (len(panel.series) - 1) / 2) * bar_w
            est = np.array([_pct(v.estimate) for v in series.values])
            low = np.array([_pct(v.low) for v in series.values])
            high = np.array([_pct(v.high) for v in series.values])
            style = _style(series)
            heights = np.nan_to_num(est)
            ax.bar(
                x + offset,
                heights,
                width=bar_w * 0.92,
                color=style["color"],
                alpha=0.85,
                label=series.label,
                edgecolor="white",
                linewidth=0.4,
            )
            has_ci = np.isfinite(low) & np.isfinite(high) & np.isfinite(est)
            if has_ci.any():
                ax.errorbar(
                    (x + offset)[has_ci],
                    est[has_ci],
                    yerr=[est[has_ci] - low[has_ci], high[has_ci] - est[has_ci]],
                    fmt="none",
                    ecolor="#111111",
                    elinewidth=0.9,
                    capsize=2.0,
                )
            for xi, value in zip(x + offset, est, strict=True):
                if not np.isfinite(value) and not empty:
                    ax.text(xi, 0, "n/a", ha="center", va="bottom", fontsize=6.5, rotation=90)
            for xi, value, top in zip(x + offset, est, high, strict=True):
                if show_values and np.isfinite(value):
                    ax.text(
                        xi,
                        (top if np.isfinite(top) else value) + 1.5,
                        f"{value:.0f}%",
                        ha="center",
                        va="bottom",
                        fontsize=7,
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.8},
                    )
        _set_xticks(ax, panel.x_labels)
        ax.set_xlim(-0.6, len(panel.x_labels) - 0.4)
        ax.set_ylim(*y_limits)
        if y_ticks is not None:
            ax.set_yticks(list(y_ticks))
        if zero_line:
            ax.axhline(0, color="#555555", linewidth=0.8)
        _label_axes(ax, panel.title, panel.x_title, y_label if index % columns == 0 else "")
    fig.suptitle(title)
    if n_series > 1:
        _legend(fig, axes, n_series, right)
    return fig


@_styled
def heatmap_figure(
    panels: Sequence[HeatPanel],
    *,
    title: str,
    colorbar_label: str,
    ncols: int = 2,
    annotate: bool = True,
) -> Figure:
    """Heatmaps of fractions (drawn as %) on one shared colour scale from 0 to the
    largest value (at least 10 %), with a labelled colour bar; empty cells are grey."""
    finite = [v for p in panels for row in p.values for v in row if v is not None]
    top = max([0.1, *finite]) * 100
    vmax = math.ceil(top / 10) * 10
    n_cols = max(len(p.col_labels) for p in panels)
    n_rows = max(len(p.row_labels) for p in panels)
    col_labels = [label for p in panels for label in p.col_labels]
    row_label_len = max((len(s) for p in panels for s in p.row_labels), default=1)
    panel_w = max(3.0, 0.9 + 0.07 * row_label_len + 0.5 * n_cols)
    panel_h = max(2.1, 0.9 + 0.32 * n_rows) + _rotated_extra(col_labels)
    fig, axes = _grid(len(panels), ncols, panel_w, panel_h, title=title, extra_w=0.9, extra_h=0.4)
    cmap = mpl.colormaps["YlOrRd"].with_extremes(bad="#d9d9d9")
    image = None
    for ax, panel in zip(axes, panels, strict=True):
        data = np.array([[_pct(v) for v in row] for row in panel.values], dtype=float).reshape(
            len(panel.row_labels), len(panel.col_labels)
        )
        image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0, vmax=vmax, aspect="auto")
        if annotate and data.size <= 240:
            for (i, j), value in np.ndenumerate(data):
                text = "–" if not np.isfinite(value) else f"{value:.0f}"
                dark = np.isfinite(value) and value > 0.6 * vmax
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
        _set_xticks(ax, panel.col_labels)
        ax.set_yticks(range(len(panel.row_labels)))
        ax.set_yticklabels(panel.row_labels)
        ax.set_xlabel(panel.x_title)
        ax.set_ylabel(panel.y_title)
        if panel.title:
            ax.set_title(panel.title)
        ax.tick_params(length=0)
    if image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.9, pad=0.02, aspect=30)
        bar.set_label(colorbar_label)
    fig.suptitle(title)
    return fig


@_styled
def save_figure(fig: Figure, folder: Path, stem: str) -> FigureFile:
    """Writes ``folder/<stem>.png`` and ``.svg``, closes the figure, returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    png_bytes = buffer.getvalue()
    png = folder / f"{stem}.png"
    svg = folder / f"{stem}.svg"
    png.write_bytes(png_bytes)
    # The PNG draw has placed everything; keep that layout instead of solving it again.
    fig.set_layout_engine("none")
    fig.savefig(svg, format="svg", facecolor="white", metadata={"Date": None})
    width = int.from_bytes(png_bytes[16:20], "big")
    height = int.from_bytes(png_bytes[20:24], "big")
    return FigureFile(stem, png, svg, png_bytes, width, height)
