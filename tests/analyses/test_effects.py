"""Thought-to-thought effects: what an edit of thought i does to later thoughts and the
answer, measured against the empty condition of the same call."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from thoughtscope.analyses.effects import EffectsConfig, run_effects, thought_effects
from thoughtscope.cli import app
from thoughtscope.engine.edits import EditContext
from thoughtscope.engine.runner import BASELINE, Condition, Runner, RunOptions
from thoughtscope.engine.sites import LATENT
from thoughtscope.model import CodiModel
from thoughtscope.results.effects import read_effect_rows
from thoughtscope.statistics.effects import effects_summary

DATA = "synthetic:test:seed=13:n=5"


def test_a_generation_has_no_effect_on_itself(tiny_model: CodiModel) -> None:
    options = RunOptions(max_new_tokens=2, record_hidden=True)
    gen = Runner(tiny_model).run(["a=3;b=a*2;b=?"], [BASELINE], options)[0][0]
    cosine, rel_l2, kl = thought_effects(tiny_model, gen, gen, after=1)
    for values in (cosine, rel_l2, kl):
        assert values[:2] == [None, None]
        assert all(v is not None and abs(v) < 1e-9 for v in values[2:])


def test_editing_thought_i_is_measured_on_every_later_thought(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    config = EffectsConfig(
        data=DATA, sites="latent+block:1", ablations="zero,patch", max_new_tokens=3, batch_size=2
    )
    result = run_effects(tiny_model, config, tmp_path)
    rows = read_effect_rows(tmp_path)
    assert result.n_rows == len(rows) == 5 * 2 * 2 * 6
    for row in rows:
        i = row.position
        assert row.cosine[: i + 1] == [None] * (i + 1)
        later = [v for v in row.rel_l2[i + 1 :] if v is not None]
        assert len(later) == 6 - i - 1 and all(v >= 0 for v in later)
    # Zeroing thought 0 moves thought 1 (it is computed from the edited step).
    first = [r for r in rows if (r.ablation, r.site, r.position) == ("zero", "latent", 0)]
    assert all((r.rel_l2[1] or 0) > 0 for r in first)
    again = run_effects(tiny_model, config, tmp_path)
    assert again.n_rows == 0 and again.n_skipped == len(rows)
    summary = effects_summary(rows, n_boot=20)
    assert len(summary["nodes"]) == 2 * 2 * 6
    assert len(summary["edges"]) == 2 * 2 * (5 + 4 + 3 + 2 + 1)
    edge = summary["edges"][0]
    assert edge["rel_l2"]["support"] == 5


def test_the_effects_command_writes_the_graph(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["effects", "--model", str(tiny_model_dir), "--data", DATA, "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--max-new-tokens", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "mean rel_l2 of thought j after editing thought i" in result.output
    assert (out / "figures" / "effects.png").stat().st_size > 0
    assert json.loads((out / "effects_summary.json").read_text())["num_thoughts"] == 6
    assert (out / "report.html").is_file()


def test_effects_keep_only_the_last_block_and_measure_the_same(tiny_model: CodiModel) -> None:
    questions = ["a=3;b=a*2;b=?", "1+1?"]
    full = RunOptions(max_new_tokens=2, record_hidden=True)
    last = RunOptions(max_new_tokens=2, record_hidden=True, record_layers=(4,))
    conditions = [BASELINE, Condition("zero@latent:1", {(LATENT, 1): _zero})]
    runner = Runner(tiny_model)
    every, kept = runner.run(questions, conditions, full), runner.run(questions, conditions, last)
    for a, b in zip(every, kept, strict=True):
        for x, y in zip(a, b, strict=True):
            assert x.hidden is not None and y.hidden is not None
            assert y.hidden.shape[1] == 1 and torch.equal(y.hidden[:, 0], x.hidden[:, 4])
        assert thought_effects(tiny_model, a[0], a[1], 1) == thought_effects(
            tiny_model, b[0], b[1], 1
        )


def _zero(hidden: torch.Tensor, context: EditContext) -> torch.Tensor:
    return torch.zeros_like(hidden)
