"""Steering: the edits do what they say, a zero direction changes nothing, and the
command writes dose-response curves."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from thoughtscope.analyses.patching import PatchInputError
from thoughtscope.analyses.probes import probe_direction
from thoughtscope.analyses.steering import (
    SteerConfig,
    group_directions,
    read_steer_rows,
    run_steering,
    steer_edit,
)
from thoughtscope.cli import app
from thoughtscope.engine.edits import EditContext
from thoughtscope.engine.sites import LATENT, block
from thoughtscope.files import save_tensors
from thoughtscope.model import CodiModel
from thoughtscope.problems.sources import load_problems

DATA = "synthetic:test:seed=13:n=6"


def test_add_moves_along_the_direction_and_project_removes_it() -> None:
    hidden = torch.randn(3, 8)
    direction = torch.randn(8)
    context = EditContext(LATENT, 0, torch.arange(3), "steer")
    added = steer_edit(direction, "add", 2.0)(hidden, context)
    torch.testing.assert_close(added - hidden, 2.0 * direction.expand(3, 8))
    removed = steer_edit(direction, "project", 1.0)(hidden, context)
    unit = direction / direction.norm()
    torch.testing.assert_close(removed @ unit, torch.zeros(3), atol=1e-5, rtol=0)


def test_a_zero_direction_changes_nothing(tiny_model: CodiModel, tmp_path: Path) -> None:
    path = tmp_path / "zero.safetensors"
    save_tensors({"direction": torch.zeros(tiny_model.d_model)}, str(path))
    config = SteerConfig(
        data=DATA,
        target_value=4,
        direction=str(path),
        sites="latent+block:1",
        modes="add,project",
        alphas="1,3",
        max_new_tokens=3,
        batch_size=4,
    )
    result = run_steering(tiny_model, config, tmp_path / "run")
    rows = read_steer_rows(tmp_path / "run")
    assert result.n_rows == len(rows) == 6 * 2 * 2 * 2
    assert not any(r.changed for r in rows)
    assert all(r.gold_logprob_change == 0.0 and r.output == r.baseline_output for r in rows)
    again = run_steering(tiny_model, config, tmp_path / "run")
    assert again.n_rows == 0 and again.n_skipped == len(rows)


def test_mean_difference_needs_both_groups(tiny_model: CodiModel, tmp_path: Path) -> None:
    config = SteerConfig(data=DATA, target_value=12345, max_new_tokens=2)
    with pytest.raises(PatchInputError, match="0 reference problems have the value 12345"):
        run_steering(tiny_model, config, tmp_path)


def test_a_probe_direction_finds_a_planted_direction_among_larger_noise() -> None:
    rng = np.random.default_rng(0)
    planted = np.zeros(16)
    planted[3] = 1.0
    labels = rng.random(2000) < 0.4
    # The groups differ by 1.5 along the planted axis; another axis has 10x the noise.
    x = rng.normal(size=(2000, 16)) + 1.5 * labels[:, None] * planted
    x[:, 7] *= 10
    unit = probe_direction(x, labels)
    assert np.linalg.norm(unit) == pytest.approx(1.0)
    assert unit @ planted > 0.9
    with pytest.raises(ValueError, match="both groups"):
        probe_direction(x, np.ones(2000, bool))


def test_probe_directions_point_as_the_groups_differ(tiny_model: CodiModel) -> None:
    problems = load_problems("synthetic:test:seed=13:n=40").problems
    values = {p.id: float(p.answer) for p in problems}
    target = Counter(values.values()).most_common(1)[0][0]
    keys = [(LATENT, 2), (block(1), 0)]
    mean = group_directions(tiny_model, problems, values, target, keys, batch_size=16)
    probe = group_directions(
        tiny_model, problems, values, target, keys, method="probe", batch_size=16
    )
    assert set(probe) == set(mean) == {"latent@2", "block:1@0"}
    for key, vector in probe.items():
        # Along the probe's own direction, with the groups' difference along it as length.
        assert vector.shape == (tiny_model.d_model,)
        assert 0 < float(vector @ mean[key]) <= float(mean[key] @ mean[key]) + 1e-4
        assert not torch.allclose(vector, mean[key])


def test_the_steer_command_writes_dose_response_curves(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = ["steer", "--model", str(tiny_model_dir), "--data", "synthetic:test:seed=13:n=12"]
    args += ["--target-value", "19", "--alphas", "1,4", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--max-new-tokens", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "steering_summary.json").read_text())
    (curve,) = summary["curves"]
    assert [p["alpha"] for p in curve["points"]] == [0.0, 1.0, 4.0]
    assert (out / "directions.safetensors").is_file()
    assert (out / "figures" / "steering.png").stat().st_size > 0

    probed = tmp_path / "probed"
    args = [*args[:-1], str(probed), "--direction", "probe", "--sites", "block:1"]
    result = CliRunner().invoke(app, [*args, "--max-new-tokens", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((probed / "manifest.json").read_text())
    assert manifest["direction"] == "probe" and "logistic probe" in manifest["direction_rule"]
