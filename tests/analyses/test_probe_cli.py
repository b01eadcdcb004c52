"""``thoughtscope probe`` and ``thoughtscope attention`` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from thoughtscope.cli import app


def test_probe_writes_probes_and_lens(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["probe", "--model", str(tiny_model_dir), "--data", "synthetic:test:seed=14:n=24",
            "--out", str(out), "--sites", "block:1", "--targets", "step_count", "--folds", "2",
            "--min-problems", "10", "--n-boot", "20", "--batch-size", "12",
            "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "step_count: most selective at block:1" in result.output
    rows = [json.loads(x) for x in (out / "probes.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {r["target"] for r in rows} == {"step_count"}
    assert (out / "lens.jsonl").is_file()
    # A probe-only folder gets its own report at the end, and `report` redraws it.
    assert "report:" in result.output
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "What the thoughts hold" in html and "probe-selectivity-step_count" in html
    (out / "report.html").unlink()
    redrawn = CliRunner().invoke(app, ["report", str(out)])
    assert redrawn.exit_code == 0, redrawn.output
    assert (out / "report.html").is_file()


def test_probe_refuses_bad_targets_in_one_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    args = ["probe", "--model", str(tiny_model_dir), "--data", "synthetic:test:n=12",
            "--out", str(tmp_path / "run"), "--targets", "step_result:x"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "--targets" in result.output and "Traceback" not in result.output


def test_attention_writes_masses_and_means(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["attention", "--model", str(tiny_model_dir), "--data", "synthetic:test:n=6",
            "--out", str(out), "--n-boot", "20"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "attention.safetensors").is_file() and (out / "attention.jsonl").is_file()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "What the thoughts hold" in html and "attention by step heatmap" in html
