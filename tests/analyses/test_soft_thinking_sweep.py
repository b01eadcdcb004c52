"""Importance runs on a soft thinker: problems think for different counts, a condition at
thought k is recorded only for problems that reached k, statistics count n per position,
and capped problems are flagged and counted."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.model.test_soft_thinking import tiny_soft_thinker
from thoughtscope.analyses.importance import ImportanceConfig, run_importance
from thoughtscope.cli.app import app
from thoughtscope.results.store import read_manifest, read_records
from thoughtscope.statistics.summary import summary_from_records

SETTINGS_TEXT = (
    "think_start=<think>,think_end=O,top_k=5,top_p=0.9,min_p=0.01,max_topk=3,"
    "entropy_threshold=3.3,entropy_steps=2,max_thoughts=8"
)


def _config(**changes: object) -> ImportanceConfig:
    base = {
        "data": "synthetic:test:seed=0:n=10",
        "sites": "latent+block:1",
        "schedules": "single,early-exit",
        "ablations": "zero",
        "max_new_tokens": 4,
        "batch_size": 64,
    }
    return ImportanceConfig(**{**base, **changes})  # type: ignore[arg-type]


def test_conditions_exist_only_where_the_problem_reached_the_position(tmp_path: Path) -> None:
    model = tiny_soft_thinker()
    result = run_importance(model, _config(), tmp_path, progress=False)
    assert result.baseline_mismatches == 0
    records = read_records(tmp_path)
    counts = [r.baseline.n_thoughts for r in records]
    assert len(set(counts)) > 1
    for record in records:
        n = record.baseline.n_thoughts
        assert n is not None
        for c in record.conditions:
            assert all(p < n for p in c.condition.positions)  # no result for unreached k
            if c.condition.is_early_exit:
                assert c.condition.num_latent is not None and c.condition.num_latent <= n
                assert c.n_thoughts == c.condition.num_latent
            else:
                assert c.n_thoughts == n  # held to the baseline's length
        singles = {c.condition.positions[0] for c in record.conditions if c.condition.positions}
        assert singles == set(range(n))
    summary = summary_from_records(records, read_manifest(tmp_path), n_boot=20)
    for condition in summary["conditions"]:
        if condition["positions"]:
            (k,) = condition["positions"]
            assert condition["overall"]["unconditional"]["n"] == sum(c > k for c in counts)
    lengths = summary["thought_lengths"]
    assert lengths["n_capped"] == sum(r.baseline.thoughts_capped for r in records) > 0
    assert any("never stopped thinking" in c for c in summary["caveats"])


def test_free_thinking_lets_ablated_rows_stop_on_their_own(tmp_path: Path) -> None:
    model = tiny_soft_thinker()
    run_importance(model, _config(free_thinking=True, sites="latent"), tmp_path, progress=False)
    records = read_records(tmp_path)
    assert any(
        c.n_thoughts != r.baseline.n_thoughts
        for r in records
        for c in r.conditions
        if not c.condition.is_early_exit
    )


def test_the_cli_runs_answer_thoughts_and_importance_on_an_hf_folder(tmp_path: Path) -> None:
    model = tiny_soft_thinker()
    folder = tmp_path / "lm"
    model.lm.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    common = ["--model", str(folder), "--family", "soft-thinking", "--thinking", SETTINGS_TEXT]
    data = ["--data", "synthetic:n=4", "--max-new-tokens", "4"]
    runner = CliRunner()
    answers = tmp_path / "answers.jsonl"
    result = runner.invoke(app, ["answer", *common, *data, "--out", str(answers)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    assert all("n_thoughts" in r and "thoughts_capped" in r for r in rows)
    decoded = tmp_path / "decoded.jsonl"
    result = runner.invoke(
        app,
        ["thoughts", *common, *data, "--out", str(tmp_path / "t.safetensors"),
         "--decoded", str(decoded)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    first = json.loads(decoded.read_text().splitlines()[0])
    assert len(first["mixtures"]) == first["n_thoughts"]
    result = runner.invoke(
        app,
        ["importance", *common, *data, "--all", "--schedule", "single", "--sites", "latent",
         "--out", str(tmp_path / "run"), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "summary.json").is_file()


def test_a_bad_thinking_setting_is_one_line_naming_the_option(tmp_path: Path) -> None:
    model = tiny_soft_thinker()
    model.lm.save_pretrained(tmp_path / "lm")
    model.tokenizer.save_pretrained(tmp_path / "lm")
    result = CliRunner().invoke(
        app,
        ["answer", "--model", str(tmp_path / "lm"), "--family", "soft-thinking",
         "--thinking", "topk=3", "--data", "synthetic:n=2", "--out", str(tmp_path / "a")],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "'topk' is not a setting" in result.output and "--thinking" in result.output
