"""Report pages of the causal analyses: patching heatmaps, the thought-to-thought graph
and steering dose-response curves, each drawn from its run's summary file only.

:func:`write_causal_report` reads ``RUN/manifest.json`` to tell which analysis made the
run, draws its figures into ``RUN/figures/`` (PNG and SVG) and writes ``RUN/report.html``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from thoughtscope.files import write_text
from thoughtscope.report.figures import DPI, STYLE, save_figure
from thoughtscope.report.html import FigureBlock, Section, figure_html, page, paragraph

__all__ = [
    "CAUSAL_DIR",
    "causal_section",
    "effects_figure",
    "is_causal_run",
    "patching_figure",
    "steering_figure",
    "write_causal_report",
]

FIGURES_DIR = "figures"
CAUSAL_DIR = "causal"
"""A run folder's subfolder for causal runs made on its data (the demo's): its report
shows each one's figure and links its report."""


def _positions_label(positions: list[int]) -> str:
    return "{" + ",".join("bot" if p == -1 else str(p) for p in positions) + "}"


def patching_figure(summary: dict[str, Any]) -> Figure:
    """Heatmaps, site (rows) × patched positions (columns), of the share of answers that
    stay, that become the source's, and the mean change of the logit difference."""
    cells = [c for c in summary["cells"] if c["stratum"] == "all"]
    sites = list(dict.fromkeys(c["site"] for c in cells))
    columns = list(dict.fromkeys(_positions_label(c["positions"]) for c in cells))
    panels = (
        ("stays", "answer stays (%)", 100.0, "Greens"),
        ("source", "becomes the source's answer (%)", 100.0, "Purples"),
        ("logit_diff_change", "change of log p(target) - log p(source)", 1.0, "RdBu"),
    )
    with mpl.rc_context(STYLE):  # type: ignore[arg-type]
        width = max(7.0, 0.55 * len(columns) * len(panels) + 2.5)
        fig = Figure(figsize=(width, 0.45 * len(sites) + 2.2), layout="constrained")
        axes = fig.subplots(1, len(panels))
        for ax, (key, title, scale, cmap) in zip(axes, panels, strict=True):
            grid = np.full((len(sites), len(columns)), np.nan)
            for c in cells:
                value = c[key]["estimate"]
                if value is not None:
                    grid[
                        sites.index(c["site"]), columns.index(_positions_label(c["positions"]))
                    ] = value * scale
            if key == "logit_diff_change":
                bound = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
                image = ax.imshow(grid, cmap=cmap, vmin=-bound, vmax=bound, aspect="auto")
            else:
                image = ax.imshow(grid, cmap=cmap, vmin=0, vmax=100, aspect="auto")
            for (r, k), value in np.ndenumerate(grid):
                if np.isfinite(value):
                    ax.text(
                        k,
                        r,
                        f"{value:.0f}" if scale > 1 else f"{value:.1f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                    )
            ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
            ax.set_yticks(range(len(sites)), sites)
            ax.set_xlabel("patched positions")
            ax.set_title(title)
            fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def effects_figure(summary: dict[str, Any], metric: str = "rel_l2") -> Figure:
    """The causal graph, one panel per (ablation, site): thoughts as nodes left to right,
    an arc ``i → j`` as wide and dark as the mean ``metric`` of thought ``j`` after
    editing thought ``i``, and an arrow to the answer as wide as its change rate."""
    n = int(summary["num_thoughts"])
    keys = list(dict.fromkeys((e["ablation"], e["site"]) for e in summary["nodes"]))
    top = (
        max(
            (e[metric]["estimate"] or 0.0 for e in summary["edges"]),
            default=1.0,
        )
        or 1.0
    )
    with mpl.rc_context(STYLE):  # type: ignore[arg-type]
        height = 0.32 * (n + 1) + 0.9
        fig = Figure(figsize=(1.1 * (n + 1) + 1.0, height * len(keys) + 0.4), layout="constrained")
        axes = np.atleast_1d(fig.subplots(len(keys), 1))
        for ax, (ablation, site) in zip(axes, keys, strict=True):
            for edge in summary["edges"]:
                if (edge["ablation"], edge["site"]) != (ablation, site):
                    continue
                value = edge[metric]["estimate"]
                if value is None:
                    continue
                i, j = edge["source"], edge["target"]
                strength = min(1.0, value / top)
                ax.add_patch(
                    FancyArrowPatch(
                        (i, 0),
                        (j, 0),
                        connectionstyle="arc3,rad=-0.3",
                        arrowstyle="-|>",
                        mutation_scale=8,
                        linewidth=0.3 + 4.0 * strength,
                        color=mpl.colormaps["viridis_r"](0.15 + 0.85 * strength),
                        alpha=0.25 + 0.7 * strength,
                    )
                )
            for node in summary["nodes"]:
                if (node["ablation"], node["site"]) != (ablation, site):
                    continue
                rate = node["changed"]["estimate"] or 0.0
                ax.add_patch(
                    FancyArrowPatch(
                        (node["position"], 0),
                        (n, 0),
                        connectionstyle="arc3,rad=0.3",
                        arrowstyle="-|>",
                        mutation_scale=8,
                        linewidth=0.3 + 6.0 * rate,
                        color="#D55E00",
                        alpha=0.35 + 0.6 * rate,
                    )
                )
            for k in range(n):
                ax.scatter([k], [0], s=420, color="white", edgecolor="#222", zorder=3)
                ax.text(k, 0, str(k), ha="center", va="center", zorder=4)
            ax.scatter([n], [0], s=700, color="#fde0d0", edgecolor="#D55E00", zorder=3)
            ax.text(n, 0, "answer", ha="center", va="center", fontsize=7, zorder=4)
            ax.set_xlim(-0.6, n + 0.8)
            reach = 0.16 * (n + 1) + 0.35  # the longest arcs' height
            ax.set_ylim(-reach, reach)
            ax.set_axis_off()
            ax.set_title(
                f"{ablation} at {site}: arcs i→j = mean {metric} of thought j (darker, "
                f"wider = larger; max {top:.2f}); orange = answer changed"
            )
    return fig


def steering_figure(summary: dict[str, Any]) -> Figure:
    """Dose-response: answer-change rate and target-value hit rate over α, with 95%
    intervals, one line per (site, positions)."""
    curves = summary["curves"]
    with mpl.rc_context(STYLE):  # type: ignore[arg-type]
        fig = Figure(figsize=(8.0, 3.2), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, key, title in zip(
            axes,
            ("changed", "hit"),
            ("answer changed (%)", "answer equals the target value (%)"),
            strict=True,
        ):
            for curve in curves:
                alphas = [p["alpha"] for p in curve["points"]]
                est = [
                    np.nan if p[key]["estimate"] is None else 100 * p[key]["estimate"]
                    for p in curve["points"]
                ]
                low = [
                    np.nan if p[key]["low"] is None else 100 * p[key]["low"]
                    for p in curve["points"]
                ]
                high = [
                    np.nan if p[key]["high"] is None else 100 * p[key]["high"]
                    for p in curve["points"]
                ]
                label = f"{curve['mode']} at {curve['site']} {_positions_label(curve['positions'])}"
                (line,) = ax.plot(alphas, est, marker="o", markersize=3, label=label)
                ax.fill_between(alphas, low, high, color=line.get_color(), alpha=0.15)
            ax.set_xlabel("α (multiple of the direction added or projected out)")
            ax.set_ylabel(title)
            ax.set_ylim(-2, 102)
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7)
    return fig


_KINDS: dict[str, tuple[str, str, Callable[[dict[str, Any]], Figure], str]] = {
    "thoughtscope-patching": (
        "patching_summary.json",
        "Counterfactual patching",
        patching_figure,
        "Per site (rows) and patched positions (columns), over all pairs: the share of "
        "patched answers that stay the target's baseline answer, that become the source's "
        "(over pairs whose two baseline answers differ), and the mean change of the "
        "log-probability difference between the target's and the source's expected answers. "
        "Intervals are in patching_summary.json.",
    ),
    "thoughtscope-effects": (
        "effects_summary.json",
        "Thought-to-thought effects",
        effects_figure,
        "The causal graph: thought i was edited; an arc to thought j shows the mean "
        "relative L2 change of thought j, an arc to the answer the share of answers whose "
        "number changed. Intervals are in effects_summary.json.",
    ),
    "thoughtscope-steering": (
        "steering_summary.json",
        "Steering dose-response",
        steering_figure,
        "Answer changes and target-value hits as the added multiple α of the direction "
        "grows; shaded: 95% bootstrap intervals over problems.",
    ),
}


def is_causal_run(path: str | Path) -> bool:
    """Whether ``path`` is the folder of a patching, effects or steering run."""
    manifest = Path(path) / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("format") in _KINDS
    except ValueError:
        return False


def causal_summaries() -> dict[str, tuple[Callable[..., Path], Callable[[dict[str, Any]], str]]]:
    """Per run format: the function writing its summary file from the run folder
    (``(run_dir, *, n_boot)``) and the one formatting that summary as a terminal table."""
    from thoughtscope.statistics.effects import format_effects, write_effects_summary
    from thoughtscope.statistics.patching import format_patching, write_patching_summary
    from thoughtscope.statistics.steering import format_steering, write_steering_summary

    return {
        "thoughtscope-patching": (write_patching_summary, format_patching),
        "thoughtscope-effects": (write_effects_summary, format_effects),
        "thoughtscope-steering": (write_steering_summary, format_steering),
    }


def _summarise(run_dir: Path, fmt: str, n_boot: int) -> None:
    """Writes the run's summary file from its rows."""
    causal_summaries()[fmt][0](run_dir, n_boot=n_boot)


def write_causal_report(run_dir: str | Path, *, n_boot: int | None = None) -> Path:
    """Draws the run's figure and writes ``RUN/report.html``; returns its path.

    ``n_boot``: recompute the summary with this many resamples first (it is computed
    with the default when missing).

    Raises:
        ValueError: The folder holds no patching, effects or steering run.
    """
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    kind = _KINDS.get(str(manifest.get("format")))
    if kind is None:
        raise ValueError(
            f"{run_dir}: not a patching, effects or steering run (format "
            f"{manifest.get('format')!r}); use `thoughtscope report` for importance runs"
        )
    file_name, title, draw, caption = kind
    if n_boot is not None or not (run_dir / file_name).is_file():
        from thoughtscope.statistics.bootstrap import DEFAULT_N_BOOT

        _summarise(run_dir, str(manifest["format"]), DEFAULT_N_BOOT if n_boot is None else n_boot)
    summary = json.loads((run_dir / file_name).read_text(encoding="utf-8"))
    stem = file_name.removesuffix("_summary.json")
    saved = save_figure(draw(summary), run_dir / FIGURES_DIR, stem)
    body = figure_html(FigureBlock(saved, caption, title))
    data, model = manifest.get("data", {}), manifest.get("model", {})
    settings = paragraph(
        f"Data {data.get('spec')}; model {model.get('spec')}; sites "
        f"{', '.join(manifest.get('sites', []))}; seed {manifest.get('seed')}."
    )
    manifest_text = json.dumps(manifest, indent=2)
    sections = [
        Section("figure", title, settings + body),
        Section("manifest", "Run manifest", f"<pre>{_escape(manifest_text)}</pre>"),
    ]
    path = run_dir / "report.html"
    write_text(
        path,
        page(f"thoughtscope: {title.lower()}", str(run_dir), sections, "made by thoughtscope"),
    )
    return path


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def causal_section(run_dir: str | Path) -> str | None:
    """The HTML of a report section showing the causal runs in ``RUN/causal/*`` (each
    one's figure, embedded, and a link to its own report), or ``None`` when there are
    none. Runs whose figure is not drawn yet are listed without it."""
    import base64
    from html import escape

    folder = Path(run_dir) / CAUSAL_DIR
    if not folder.is_dir():
        return None
    order = list(_KINDS)
    runs = []
    for sub in sorted(folder.iterdir()):
        if is_causal_run(sub):
            fmt = json.loads((sub / "manifest.json").read_text(encoding="utf-8"))["format"]
            runs.append((order.index(fmt), sub, _KINDS[fmt]))
    if not runs:
        return None
    parts = [
        paragraph(
            "How the thoughts cause, on the same data: counterfactual patching, "
            "thought-to-thought effects and steering runs kept in this folder's "
            f"{CAUSAL_DIR}/ subfolder. Each has its own report, rows and manifest."
        )
    ]
    for _, sub, (file_name, title, _draw, caption) in sorted(runs, key=lambda r: r[0]):
        link = f"{CAUSAL_DIR}/{sub.name}/report.html"
        parts.append(f"<h3>{escape(title)}</h3><p><a href='{escape(link)}'>{escape(link)}</a></p>")
        png = sub / FIGURES_DIR / f"{file_name.removesuffix('_summary.json')}.png"
        if png.is_file():
            data = png.read_bytes()
            width = round(int.from_bytes(data[16:20], "big") * 96 / DPI)
            encoded = base64.b64encode(data).decode("ascii")
            shown = f"{CAUSAL_DIR}/{sub.name}/{FIGURES_DIR}/{png.name}"
            parts.append(
                f'<figure><img src="data:image/png;base64,{encoded}" width="{width}" '
                f'alt="{escape(title)}"><figcaption>{escape(caption)} <span class="muted">'
                f"File: <code>{escape(shown)}</code>.</span></figcaption></figure>"
            )
    return "".join(parts)
