"""`thoughtscope compare` / `write_comparison`: runs of two thought families side by side,
read from their summary.json and manifest.json only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.report.build import write_run
from thoughtscope.cli import app
from thoughtscope.report.compare import CompareInputError, write_comparison
from thoughtscope.statistics import write_run_statistics


def _run(folder: Path, family: str, *, seed: int, schedules: tuple[str, ...]) -> Path:
    write_run(folder, n=24, sites=("latent", "block:1"), schedules=schedules, seed=seed)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["model"]["family"] = family
    manifest["model"]["name"] = f"tiny-{family}"
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    write_run_statistics(folder, n_boot=50)
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {
        "codi": _run(root / "codi", "codi", seed=0, schedules=("prefix", "single")),
        "coconut": _run(root / "coconut", "coconut", seed=1, schedules=("single",)),
    }


def test_the_page_holds_each_family_and_the_shared_schedule_figure(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    page = write_comparison(runs, tmp_path / "cmp")
    assert page == tmp_path / "cmp" / "compare.html"
    text = page.read_text(encoding="utf-8")
    for family in ("codi", "coconut"):
        assert f"<td>{family}</td>" in text and f"tiny-{family}" in text
    assert "data:image/png;base64," in text
    figures = tmp_path / "cmp" / "figures"
    for suffix in ("png", "svg"):
        assert (figures / f"compare-importance.{suffix}").stat().st_size > 1000
        # only codi has the prefix schedule: its marginal steps are still drawn
        assert (figures / f"compare-prefix-marginals.{suffix}").is_file()
    # the shared schedule is `single` only (coconut has no prefix conditions)
    svg = (figures / "compare-importance.svg").read_text(encoding="utf-8")
    assert ">single<" in svg and ">prefix<" not in svg


def test_each_run_links_to_its_own_report_by_relative_path(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    (runs["codi"] / "report.html").write_text("<html></html>", encoding="utf-8")
    try:
        text = write_comparison(runs, tmp_path / "out").read_text(encoding="utf-8")
    finally:
        (runs["codi"] / "report.html").unlink()
    expected = Path(os.path.relpath(runs["codi"] / "report.html", tmp_path / "out"))
    assert f'<a href="{expected.as_posix()}">report</a>' in text
    assert "no report yet" in text  # coconut's report was never written


def test_the_baseline_accuracy_and_its_interval_come_from_the_summary(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    summary = json.loads((runs["codi"] / "summary.json").read_text(encoding="utf-8"))
    accuracy = summary["baseline"]["accuracy"]
    low, high = summary["baseline"]["ci"]
    text = write_comparison(runs, tmp_path / "out").read_text(encoding="utf-8")
    assert f"{100 * accuracy:.1f}% [{100 * low:.1f}, {100 * high:.1f}]" in text


def test_a_folder_without_statistics_is_refused_naming_the_stats_command(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    bare = write_run(tmp_path / "bare", n=4, sites=("latent",), schedules=("single",))
    with pytest.raises(CompareInputError, match=r"bare: no summary.json; run `thoughtscope stats"):
        write_comparison({"codi": runs["codi"], "bare": bare}, tmp_path / "out")
    with pytest.raises(CompareInputError, match="at least two run folders"):
        write_comparison({"codi": runs["codi"]}, tmp_path / "out")


def test_the_command_writes_the_page_and_refuses_bad_input_in_one_line(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    invoke = CliRunner().invoke
    out = tmp_path / "cmp"
    result = invoke(app, ["compare", str(runs["codi"]), str(runs["coconut"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"Wrote {out / 'compare.html'}" in result.stdout
    one = invoke(app, ["compare", str(runs["codi"]), "--out", str(out)])
    assert one.exit_code != 0 and "at least two run folders" in one.stderr
    assert len(one.stderr.strip().splitlines()) == 1
    missing = invoke(app, ["compare", str(runs["codi"]), str(tmp_path), "--out", str(out)])
    assert missing.exit_code != 0
    assert f"run `thoughtscope stats {tmp_path}` first" in missing.stderr
    (tmp_path / "file").write_text("x", encoding="utf-8")
    bad_out = invoke(app, ["compare", str(runs["codi"]), str(runs["coconut"]), "--out",
                           str(tmp_path / "file")])  # fmt: skip
    assert bad_out.exit_code != 0 and "--out" in bad_out.stderr


def test_the_comparison_loads_no_model_or_engine() -> None:
    code = (
        "import sys, thoughtscope.report.compare; "
        "print(sorted(m for m in sys.modules if m.startswith(('thoughtscope.engine', "
        "'thoughtscope.model', 'thoughtscope.analyses', 'transformers'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
