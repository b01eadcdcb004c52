"""Coconut on the command line: a published checkpoint answers as the published loop
does, and every analysis (thoughts, importance with every ablation, site and schedule,
``per-stage`` included) runs on it unchanged."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import published_coconut_generate, write_coconut_checkpoint
from thoughtscope.analyses.interventions.ablations import ABLATIONS
from thoughtscope.cli import app
from thoughtscope.cli.importance import family_line
from thoughtscope.model.coconut import load_published_coconut
from thoughtscope.problems import extract_number, load_problems
from thoughtscope.results.conditions import SCHEDULES
from thoughtscope.results.store import read_records

DATA = "synthetic:test:seed=3:n=7"
SMALL = "synthetic:test:seed=3:n=3"


def test_answer_writes_the_published_loops_decoded_answer(tmp_path: Path) -> None:
    checkpoint, base = write_coconut_checkpoint(tmp_path, "gpt2")
    out = tmp_path / "answers.jsonl"
    args = ["answer", "--family", "coconut", "--model", str(checkpoint), "--base-model"]
    args += [str(base), "--num-latent", "6", "--data", DATA, "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--batch-size", "5", "--max-new-tokens", "24"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    model = load_published_coconut(checkpoint, base, num_latent=6)
    c, tok = model.config, model.tokenizer
    problems = load_problems(DATA).problems
    assert len(rows) == len(problems) == 7
    for row, problem in zip(rows, problems, strict=True):
        prompt = [*tok.encode(problem.question + "\n"), c.start_id, *([c.latent_id] * 6), c.end_id]
        new = published_coconut_generate(model.lm, prompt, c.latent_id, c.eos_id, 24)
        assert row["output"] == tok.decode(new, skip_special_tokens=True)


def test_the_published_scoring_and_thoughtscopes_extraction_agree_on_hash_answers() -> None:
    for text in ["### 18", "### 1,250", " ### -3", "### 7\n", "a=1;b=?\n### 12"]:
        published = text.split("#")[-1].replace(",", "").strip()
        assert extract_number(text) == float(published)


def test_family_errors_are_one_line_naming_the_option(tmp_path: Path) -> None:
    checkpoint, _ = write_coconut_checkpoint(tmp_path, "gpt2")
    base = ["answer", "--data", DATA, "--out", str(tmp_path / "a.jsonl")]
    result = CliRunner().invoke(app, [*base, "--family", "cocnut", "--model", "toy"])
    assert result.exit_code == 2 and "--family 'cocnut' is unknown" in result.output
    result = CliRunner().invoke(app, [*base, "--family", "coconut", "--model", str(checkpoint)])
    assert result.exit_code == 2 and "--base-model" in result.output
    assert "Traceback" not in result.output


def test_thoughts_and_importance_run_on_a_coconut_model(tmp_path: Path) -> None:
    checkpoint, base = write_coconut_checkpoint(tmp_path, "llama")
    folder = tmp_path / "saved"
    load_published_coconut(checkpoint, base, num_latent=4, c_thought=2).save_pretrained(folder)
    decoded = tmp_path / "decoded.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "thoughts",
            "--model",
            str(folder),
            "--data",
            DATA,
            "--out",
            str(tmp_path / "t.st"),
            "--decoded",
            str(decoded),
            "--max-new-tokens",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(decoded.read_text().splitlines()) == 7
    run = tmp_path / "run"
    every_schedule = ",".join(s for s in SCHEDULES if s != "positions") + ",{0,2}"
    # Every schedule with one ablation, and every ablation at every kind of site.
    for name, schedules, ablations, sites in [
        ("schedules", every_schedule, "zero", "latent"),
        ("ablations", "per-stage", ",".join(ABLATIONS), "latent+block:1"),
    ]:
        result = CliRunner().invoke(
            app,
            [
                *["importance", "--model", str(folder), "--data", SMALL, "--out", str(run / name)],
                *["--sites", sites, "--schedule", schedules, "--ablation", ablations],
                *["--mean-reference", "4", "--max-new-tokens", "2", "--no-progress"],
            ],
        )
        assert result.exit_code == 0, result.output
        assert len((run / name / "results.jsonl").read_text().splitlines()) == 3
    # The demo's side-by-side line reads a run's records.
    line = family_line({"coconut": run / "schedules"})
    records = read_records(run / "schedules" / "results.jsonl")
    base = 100 * sum(r.baseline.correct for r in records) / 3
    assert f"coconut {base:.1f} / " in line
    run = run / "schedules"
    manifest = json.loads((run / "manifest.json").read_text())
    # per-stage: whole stages of c_thought = 2 thoughts.
    stage_sets = [c["positions"] for c in manifest["conditions"] if "per-stage" in c["schedules"]]
    assert [0, 1] in stage_sets and [0, 1, 2, 3] in stage_sets and [0, 1, 2] not in stage_sets
