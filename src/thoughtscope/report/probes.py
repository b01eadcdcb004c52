"""Report section "What the thoughts hold": probes, numeric lens, attention to thoughts.

Reads ``RUN/probes.jsonl`` and ``RUN/lens.jsonl`` (:mod:`thoughtscope.statistics.probes`)
and ``RUN/attention.jsonl`` (:mod:`thoughtscope.statistics.attention`) and draws, per
target, a site × position heatmap, and attention maps; when the folder also holds an
importance run, the joined table puts beside each thought position how much it matters
(from the report's summary, supplied by the writer) and what it holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from thoughtscope.files import write_text
from thoughtscope.report.figures import FigureFile, save_figure
from thoughtscope.report.html import (
    FigureBlock,
    Section,
    cell,
    e,
    figure_html,
    page,
    paragraph,
    table,
)
from thoughtscope.statistics.schema import Summary

__all__ = ["is_held_run", "probes_section", "single_latent_importance", "write_held_report"]

PROBES_FILE = "probes.jsonl"
LENS_FILE = "lens.jsonl"
ATTENTION_FILE = "attention.jsonl"
_IMPORTANCE_RESULTS = "results.jsonl"
# What each statistics file is computed from (the analyses' records).
_RECORDS = {
    PROBES_FILE: "probe_outcomes.jsonl",
    LENS_FILE: "lens_outcomes.jsonl",
    ATTENTION_FILE: "attention.safetensors",
}


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _position_key(name: str) -> int:
    return -1 if name == "bot" else 10_000 if name == "eot" else int(name)


def _site_key(name: str) -> int:
    return -1 if name == "latent" else int(name.split(":")[1])


def _heatmap(
    rows: list[dict[str, Any]], value: str, title: str, label: str, limits: tuple[float, float]
) -> Any:
    sites = sorted({r["site"] for r in rows}, key=_site_key)
    positions = sorted({r["position"] for r in rows}, key=_position_key)
    grid = np.full((len(sites), len(positions)), np.nan)
    for r in rows:
        grid[sites.index(r["site"]), positions.index(r["position"])] = 100 * r[value]
    fig, ax = _figure(1.0 + 0.55 * len(positions), 1.0 + 0.32 * len(sites))
    image = ax.imshow(
        grid,
        aspect="auto",
        cmap="RdBu_r" if limits[0] < 0 else "viridis",
        vmin=limits[0],
        vmax=limits[1],
    )
    ax.set_xticks(range(len(positions)), positions)
    ax.set_yticks(range(len(sites)), sites)
    ax.set_xlabel("position (0 = first continuous thought)")
    ax.set_title(title, fontsize=9)
    for (i, j), v in np.ndenumerate(grid):
        if not np.isnan(v):
            ax.text(
                j,
                i,
                f"{v:.0f}",
                ha="center",
                va="center",
                fontsize=6,
                color="black" if limits[0] < 0 or v > (limits[0] + limits[1]) / 2 else "white",
            )
    fig.colorbar(image, ax=ax, label=label, fraction=0.05)
    fig.tight_layout()
    return fig


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    """A one-axes figure on its own Agg canvas (no pyplot registry, so nothing to close)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def single_latent_importance(summary: Summary) -> dict[str, float]:
    """Position → importance of zeroing that one thought at the latent site (share of
    baseline-correct problems whose answer changes), where the run has it."""
    out: dict[str, float] = {}
    for item in summary.conditions:
        spec = item.condition
        if item.schedule != "single" or spec.site != "latent" or len(spec.positions) != 1:
            continue
        metric = item.scopes.metric("conditional", "importance")
        if metric is not None and metric.estimate is not None:
            position = spec.positions[0]
            out.setdefault("bot" if position == -1 else str(position), metric.estimate)
    return out


def _matrix_figure(
    grid: np.ndarray, rows: list[str], cols: list[str], title: str, label: str
) -> Any:
    fig, ax = _figure(1.4 + 0.55 * len(cols), 1.0 + 0.22 * len(rows))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows, fontsize=6 if len(rows) > 24 else 8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label=label, fraction=0.05)
    fig.tight_layout()
    return fig


def _attention_parts(
    rows: list[dict[str, Any]], figures: Path, save: Callable[[Any, Path, str], FigureFile]
) -> tuple[list[str], dict[str, str]]:
    """Attention figures and, per thought, its strongest reader at the first answer token."""
    sources = [s for s in dict.fromkeys(r["source"] for r in rows) if s != "question"]
    queries = list(dict.fromkeys(r["query"] for r in rows))
    heads = sorted({(r["layer"], r["head"]) for r in rows})
    by_query = np.zeros((len(queries), len(sources)))
    count = np.zeros_like(by_query)
    reading = np.zeros((len(heads), len(sources)))
    reader: dict[str, tuple[float, str]] = {}
    for r in rows:
        if r["source"] == "question":
            continue
        q, s = queries.index(r["query"]), sources.index(r["source"])
        by_query[q, s] += r["mean"]
        count[q, s] += 1
        if r["query"] == "answer:0":
            reading[heads.index((r["layer"], r["head"])), s] = r["mean"]
            best = reader.get(r["source"])
            if best is None or r["mean"] > best[0]:
                reader[r["source"]] = (r["mean"], f"layer {r['layer']} head {r['head']}")
    with np.errstate(invalid="ignore"):
        grid = np.where(count > 0, by_query / np.maximum(count, 1), np.nan)
    parts = []
    fig = _matrix_figure(grid, queries, sources, "attention by step (mean over heads)", "mass")
    file = save(fig, figures, "attention-by-step")
    parts.append(
        figure_html(
            FigureBlock(
                file,
                "Mean attention mass (over problems, layers and heads) that each step puts on "
                "<bot>, each thought, the closing ids (eot) and the answer so far (answer; "
                "the rest goes to the question); rows: the step's input (a thought "
                "position, eot, or answer token a). Per-head values with 95% intervals: "
                "attention.jsonl.",
                "attention by step heatmap",
            )
        )
    )
    if reading.any():
        labels = [f"L{layer} H{head}" for layer, head in heads]
        fig = _matrix_figure(
            reading, labels, sources, "which heads read which thought (first answer token)", "mass"
        )
        file = save(fig, figures, "attention-heads")
        parts.append(
            figure_html(
                FigureBlock(
                    file,
                    "Attention mass from the step whose input is the first answer token, per "
                    "layer and head, on <bot>, each thought, the closing ids and the answer so "
                    "far (mean over problems).",
                    "attention per head heatmap",
                )
            )
        )
    return parts, {s: name for s, (_, name) in reader.items()}


def probes_section(
    run_dir: Path,
    figures: Path,
    importance_by_position: Mapping[str, float] | None = None,
    save: Callable[[Any, Path, str], FigureFile] = save_figure,
) -> str | None:
    """The section's HTML, or ``None`` when the folder has no probe results.

    Args:
        run_dir: The run folder.
        figures: Where figures go.
        importance_by_position: Position name → importance (share of baseline-correct
            problems whose answer an ablation at that single position changes), when the
            folder holds an importance run: joined beside what each position holds.
    """
    probes = _rows(run_dir / PROBES_FILE)
    lens = _rows(run_dir / LENS_FILE)
    attention = _rows(run_dir / ATTENTION_FILE)
    if not probes and not lens and not attention:
        return None
    parts = [
        paragraph(
            "Linear probes read each site's state at each position; selectivity is probe "
            "accuracy minus the accuracy of the same probe on a control task (a fixed random "
            "label per problem surface, i.e. the numbers in its question, drawn from the "
            "target's value distribution), in percentage points. Cross-validated with folds split "
            "by problem; intervals in probes.jsonl. A probe shows what is linearly "
            "readable, not what the model uses."
        )
    ]
    for target in sorted({r["target"] for r in probes}):
        chosen = [r for r in probes if r["target"] == target]
        fig = _heatmap(chosen, "selectivity", f"probe selectivity: {target}", "pp", (-100, 100))
        file = save(fig, figures, f"probe-selectivity-{target.replace(':', '-')}")
        parts.append(
            figure_html(
                FigureBlock(
                    file,
                    f"Selectivity of linear probes for {target} "
                    "(accuracy − control accuracy, pp) by site and position.",
                    f"probe selectivity heatmap for {target}",
                )
            )
        )
    for target in sorted({r["target"] for r in lens}):
        chosen = [r for r in lens if r["target"] == target]
        fig = _heatmap(chosen, "rate", f"numeric lens = {target}", "% of problems", (0, 100))
        file = save(fig, figures, f"lens-{target.replace(':', '-')}")
        parts.append(
            figure_html(
                FigureBlock(
                    file,
                    f"Share of problems whose logit-lens reading (the "
                    f"highest-ranked numeral token) equals {target}.",
                    f"numeric lens hit rate for {target}",
                )
            )
        )
    readers: dict[str, str] = {}
    if attention:
        attention_html, readers = _attention_parts(attention, figures, save)
        parts.extend(attention_html)
    if importance_by_position:
        rows = []
        for position in sorted(importance_by_position, key=_position_key):
            held = [r for r in probes if r["position"] == position]
            best = max(held, key=lambda r: r["selectivity"], default=None)
            rows.append(
                [
                    cell(position),
                    cell(f"{100 * importance_by_position[position]:.1f}%"),
                    cell(
                        f"{best['target']} at {best['site']}: {100 * best['selectivity']:.0f} pp "
                        f"(accuracy {100 * best['accuracy']:.0f}%, majority "
                        f"{100 * best['majority']:.0f}%)"
                        if best
                        else "—"
                    ),
                    cell(readers.get(f"thought:{position}", "—")),
                ]
            )
        parts.append("<h3>Each thought: how much it matters, what it holds, who reads it</h3>")
        header = [
            "position",
            "importance (single ablation)",
            "most selective probe",
            "strongest reader at the first answer token",
        ]
        parts.append(table(header, rows))
    return "".join(parts)


def is_held_run(path: str | Path) -> bool:
    """Whether ``path`` is a folder with probe, lens or attention results (or their
    records) and no importance results: its report is :func:`write_held_report`'s."""
    folder = Path(path)
    if not folder.is_dir() or (folder / _IMPORTANCE_RESULTS).is_file():
        return False
    return any((folder / name).is_file() for pair in _RECORDS.items() for name in pair)


def _complete_statistics(run_dir: Path, n_boot: int) -> None:
    """Computes a statistics file that is missing while its records are there."""
    from thoughtscope.statistics.attention import write_attention_statistics
    from thoughtscope.statistics.probes import write_lens_statistics, write_probe_statistics

    writers = {
        PROBES_FILE: write_probe_statistics,
        LENS_FILE: write_lens_statistics,
        ATTENTION_FILE: write_attention_statistics,
    }
    for name, records in _RECORDS.items():
        if not (run_dir / name).is_file() and (run_dir / records).is_file():
            writers[name](run_dir, n_boot=n_boot)


def write_held_report(
    run_dir: str | Path, *, out_dir: str | Path | None = None, n_boot: int = 1000
) -> Path:
    """Writes ``report.html`` (and ``figures/``) for a folder holding only probe, lens or
    attention results: the "What the thoughts hold" section and the run's manifest.
    Missing statistics files are first computed from the records (``n_boot``
    resamples). Returns the HTML's path.

    Raises:
        ValueError: The folder holds none of those results.
    """
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    _complete_statistics(run_dir, n_boot)
    figures = out / "figures"
    body = probes_section(run_dir, figures)
    if body is None:
        raise ValueError(
            f"{run_dir}: no probes.jsonl, lens.jsonl or attention.jsonl; run "
            "`thoughtscope probe` or `thoughtscope attention` with --out there first"
        )
    sections = [Section("probes", "What the thoughts hold", body)]
    manifest_path = run_dir / "manifest.json"
    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        text = json.dumps(manifest, indent=2)
        sections.append(Section("manifest", "Run manifest", f"<pre>{e(text)}</pre>"))
    held = [name for name in ("probes", "attention") if name in manifest]
    models = [manifest[k].get("model", {}) for k in held if isinstance(manifest[k], dict)]
    model_name = next((m.get("name") for m in models if m.get("name")), "model not recorded")
    subtitle = f"{model_name} · {', '.join(held) or 'probes, lens, attention'}"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    title = f"thoughtscope report: {run_dir.name}"
    write_text(path, page(title, subtitle, sections, "made by thoughtscope"))
    return path
