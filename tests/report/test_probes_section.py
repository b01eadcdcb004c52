"""The report's "What the thoughts hold" section: probe and lens heatmaps, attention
maps, and the per-thought join with importance, drawn from the run folder's files."""

from __future__ import annotations

import json
from pathlib import Path

from tests.report.build import write_run
from thoughtscope.report import write_report


def _lines(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _held(run: Path) -> None:
    positions = ["bot", "0", "1", "2", "3", "4", "5", "eot"]
    _lines(
        run / "probes.jsonl",
        [
            {"target": t, "site": site, "position": p, "n": 36, "accuracy": 0.5,
             "accuracy_ci": [0.4, 0.6], "control_accuracy": 0.3, "majority": 0.1,
             "selectivity": 0.2 if p != "2" else 0.6}
            for t in ("final_answer", "step_result:1")
            for site in ("latent", "block:0")
            for p in positions
            if not (site == "latent" and p in ("bot", "eot"))
        ],
    )  # fmt: skip
    _lines(
        run / "lens.jsonl",
        [{"site": "block:0", "position": p, "target": "final_answer", "n": 36, "rate": 0.25,
          "rate_ci": [0.1, 0.4]} for p in positions],
    )  # fmt: skip
    _lines(
        run / "attention.jsonl",
        [
            {"layer": layer, "head": head, "query": "answer:0", "source": s, "n": 36,
             "mean": 0.1 + 0.1 * (layer == 1 and s == "thought:3"), "ci": [0.0, 0.2]}
            for layer in (0, 1) for head in (0, 1)
            for s in ["question", "bot", *(f"thought:{k}" for k in range(6))]
        ],
    )  # fmt: skip


def test_section_shows_heatmaps_attention_and_the_join(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    _held(run)
    html = Path(write_report(run)).read_text(encoding="utf-8")
    assert "What the thoughts hold" in html
    figures = {p.name for p in (run / "figures").glob("*.png")}
    assert {
        "probe-selectivity-final_answer.png",
        "probe-selectivity-step_result-1.png",
        "lens-final_answer.png",
        "attention-by-step.png",
        "attention-heads.png",
    } <= figures
    assert "how much it matters, what it holds, who reads it" in html
    assert (
        "final_answer at latent: 60 pp (accuracy 50%, majority 10%)" in html
    )  # position 2's most selective probe
    assert "layer 1 head 0" in html  # thought 3's strongest reader


def test_no_section_without_probe_files(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    assert "What the thoughts hold" not in Path(write_report(run)).read_text(encoding="utf-8")


def test_a_folder_with_only_probes_lens_and_attention_gets_its_report(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from thoughtscope.cli import app

    run = tmp_path / "held"
    run.mkdir()
    _held(run)
    (run / "manifest.json").write_text(json.dumps({"probes": {"model": {"name": "toy"}}}))
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "What the thoughts hold" in html and "Run manifest" in html and "toy" in html
    figures = {p.name for p in (run / "figures").glob("*.png")}
    assert {"probe-selectivity-final_answer.png", "lens-final_answer.png"} <= figures
    assert "attention-by-step.png" in figures
    # No importance results: no importance join.
    assert "how much it matters, what it holds, who reads it" not in html


def test_an_empty_folder_is_still_refused_by_report(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from thoughtscope.cli import app

    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code != 0 and not (tmp_path / "report.html").exists()
