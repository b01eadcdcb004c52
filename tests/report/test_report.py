"""The report: a self-contained HTML page with every section, and valid figures."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib import image as mpimg
from typer.testing import CliRunner

from tests.conftest import tiny_codi
from tests.report.build import write_original_scores, write_run
from thoughtscope.analyses.importance import append_thoughts, lens_reading
from thoughtscope.cli import app
from thoughtscope.engine.runner import Runner, RunOptions
from thoughtscope.model import CodiModel
from thoughtscope.report import ReportInputError, write_report
from thoughtscope.report.examples import choose_examples
from thoughtscope.report.html import SECTIONS, visible
from thoughtscope.report.inputs import load_inputs
from thoughtscope.report.panels import condition_schedules, groups
from thoughtscope.results.conditions import ConditionSpec
from thoughtscope.results.store import read_records
from thoughtscope.statistics import write_run_statistics
from thoughtscope.statistics.schema import ConditionFigures, Scoped

runner = CliRunner()


@pytest.fixture(scope="module")
def multi_layer_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two blocks, prefix and single, strata ``1…4`` and an empty ``5+``; the sweep's
    decoded thoughts of two example problems (from a tiny real model) are in the run
    folder, as ``thoughtscope importance`` records them; the report is written by the CLI."""
    root = tmp_path_factory.mktemp("report")
    run = write_run(
        root / "run",
        n=24,
        sites=("block:0", "block:1"),
        schedules=("prefix", "single"),
        strata="1,2,3,4,5+",
        model_spec="tiny",
        max_steps=4,
    )
    write_examples(run, tiny_codi("llama"), 2)
    write_run_statistics(run, n_boot=100)
    result = runner.invoke(app, ["report", str(run), "--examples", "2"])
    assert result.exit_code == 0, result.output
    return run


def write_examples(run: Path, model: CodiModel, n: int) -> None:
    """``RUN/thoughts.jsonl`` for the report's first ``n`` examples, decoded as the sweep does."""
    records = read_records(run)
    chosen = choose_examples(records, load_inputs(run).summary.strata, n)
    generations = Runner(model).run(
        [r.question for r in chosen], options=RunOptions(max_new_tokens=4, record_hidden=True)
    )
    append_thoughts(
        run, [lens_reading(model, r.id, g[0]) for r, g in zip(chosen, generations, strict=True)]
    )


def _html(run: Path) -> str:
    return (run / "report.html").read_text(encoding="utf-8")


def _check_figures(folder: Path) -> list[str]:
    """Asserts every PNG is a real, non-blank image and every SVG parses; returns stems."""
    pngs = sorted(folder.glob("*.png"))
    assert pngs
    for png in pngs:
        pixels = mpimg.imread(png)
        assert pixels.ndim == 3 and pixels.shape[0] >= 200 and pixels.shape[1] >= 300, png
        assert float(np.var(pixels)) > 0, f"{png} is blank"
        svg = png.with_suffix(".svg")
        root = ET.parse(svg).getroot()
        assert root.tag.endswith("svg"), svg
        assert len(svg.read_text(encoding="utf-8")) > 1000
    return [p.stem for p in pngs]


def test_report_holds_every_section(multi_layer_run: Path) -> None:
    html = _html(multi_layer_run)
    for section_id, title in SECTIONS:
        assert f'<section id="{section_id}"><h2>{title}</h2>' in html


def test_report_writes_each_figure_as_png_and_svg(multi_layer_run: Path) -> None:
    stems = _check_figures(multi_layer_run / "figures")
    assert set(stems) == {
        "baseline-accuracy",
        "importance-prefix-zero",
        "changed-prefix-zero",
        "importance-single-zero",
        "changed-single-zero",
        "prefix-marginals",
        "layer-position-prefix-zero",
        "layer-position-single-zero",
        "difficulty-prefix-zero",
        "difficulty-single-zero",
    }


def test_report_is_self_contained(multi_layer_run: Path) -> None:
    html = _html(multi_layer_run)
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"""(src|href)=["'](https?:|//|figures/)""", html)
    embedded = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', html)
    assert len(embedded) == len(list((multi_layer_run / "figures").glob("*.png")))


class _TagStack(HTMLParser):
    """Records tags that close out of order or never close."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.misnested: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1] == tag:
            self.open.pop()
        else:
            self.misnested.append(tag)


def test_report_html_is_well_nested(multi_layer_run: Path) -> None:
    parser = _TagStack()
    parser.feed(_html(multi_layer_run))
    assert parser.misnested == [] and parser.open == []


def test_report_escapes_text_from_the_run(multi_layer_run: Path) -> None:
    html = _html(multi_layer_run)
    assert "&lt;bags&gt; &amp; boxes" in html
    assert "<bags>" not in html


def test_report_shows_the_example_thoughts_the_run_recorded(multi_layer_run: Path) -> None:
    html = _html(multi_layer_run)
    assert html.count('<table class="tokens">') == 2
    for position in ("bot", "0", "5", "eot"):
        assert f"<th>{position}</th>" in html
    assert "logit-lens reading" in html  # its caveat


def test_report_shows_the_manifest_and_caveats(multi_layer_run: Path) -> None:
    html = _html(multi_layer_run)
    manifest = html[html.index('id="manifest"') :]
    for field in ("selection rule", "synthetic:test:seed=0:n=300", "LlamaForCausalLM"):
        assert field in manifest
    caveats = html[html.index('id="caveats"') : html.index('id="baseline"')]
    assert "cumulative" in caveats


def test_single_schedule_group_includes_the_condition_shared_with_prefix(
    multi_layer_run: Path,
) -> None:
    inputs = load_inputs(multi_layer_run)
    single = [g for g in groups(inputs.summary, inputs.schedules_of) if g.schedule == "single"]
    assert [g.site for g in single] == ["block:0", "block:1"]
    assert [g.labels for g in single] == [["0", "1", "2", "3", "4", "5"]] * 2


def test_one_layer_one_stratum_run_gets_a_sensible_report(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", n=10, sites=("block:1",), schedules=("prefix",), strata="1+")
    (run / "figures").mkdir()
    (run / "figures" / "notes.txt").write_text("mine", encoding="utf-8")
    (run / "figures" / "importance-suffix-zero.png").write_bytes(b"stale")
    path = write_report(run, examples=1, n_boot=50)  # no summary.json yet: written here
    assert (run / "summary.json").is_file()
    stems = _check_figures(run / "figures")
    assert not any(s.startswith("layer-position") for s in stems)
    assert "importance-suffix-zero" not in stems  # a stale figure of an earlier report
    assert (run / "figures" / "notes.txt").read_text(encoding="utf-8") == "mine"
    html = path.read_text(encoding="utf-8")
    assert "fewer than two blocks" in html
    assert "Decoded thoughts were not recorded for this problem" in html
    for section_id, _ in SECTIONS:
        assert f'id="{section_id}"' in html


def test_report_on_an_original_layout_scores_file(tmp_path: Path) -> None:
    scores = write_original_scores(tmp_path / "study" / "step_importance_scores.json")
    result = runner.invoke(app, ["report", str(scores), "--n-boot", "50", "--examples", "1"])
    assert result.exit_code == 0, result.output
    html = (scores.parent / "report.html").read_text(encoding="utf-8")
    for section_id, _ in SECTIONS:
        assert f'id="{section_id}"' in html
    assert "original study" in html and "not available for a file in the original" in html
    stems = _check_figures(scores.parent / "figures")
    assert "prefix-marginals" in stems


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ReportInputError, match=r"manifest\.json"):
        write_report(tmp_path)
    result = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "Error:" in result.output and "no such file or folder" in result.output


def test_a_condition_listed_once_still_joins_every_schedule_that_asked_for_it() -> None:
    def entry(name: str, schedule: str) -> ConditionFigures:
        spec = ConditionSpec(name, (schedule,), "zero", "block:0", (0,))
        return ConditionFigures(spec, schedule, Scoped({}, {}))

    shared, own = entry("zero@block:0:{0}", "prefix"), entry("zero@block:0:{1}", "single")
    summary = SimpleNamespace(conditions=[shared, own])
    schedules_of = {"zero@block:0:{0}": ["prefix", "single"], "zero@block:0:{1}": ["single"]}
    assert condition_schedules(summary, schedules_of) == [["prefix", "single"], ["single"]]
    both = SimpleNamespace(conditions=[shared, entry("zero@block:0:{0}", "single")])
    assert condition_schedules(both, schedules_of) == [["prefix"], ["single"]]


def test_unprintable_model_output_is_shown_as_escapes() -> None:
    assert visible("A:\x07 12\u200b") == "A:\\x07 12\\u200b"


def test_every_condition_table_lists_a_shared_condition_once(multi_layer_run: Path) -> None:
    html = _html(multi_layer_run)
    table = html[html.index('<table class="conditions">') :]
    table = table[: table.index("</table>")]
    shared = table.count('<td class="mono nowrap">zero@block:0:{0}</td>')
    assert shared == 1
    assert '<td class="mono nowrap">zero@block:0:{0}</td><td class="nowrap">prefix, single' in table
