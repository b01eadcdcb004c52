"""Probes and the numeric lens: a planted linear signal is found, noise is not, and a
run folder gets probes.jsonl / lens.jsonl with the documented fields."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from thoughtscope.analyses.probes import (
    HIDDEN_DIR,
    OUTCOMES_FILE,
    ProbeConfig,
    ProbeInputError,
    control_labels,
    fit_cell,
    number_tokens,
    read_states,
    readable_token,
    run_probes,
    surface_type,
    target_names,
)
from thoughtscope.model import CodiModel, byte_level_tokenizer
from thoughtscope.results.lock import OutputLock, OutputLockedError
from thoughtscope.statistics.probes import write_lens_statistics, write_probe_statistics


def _values(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 10, size=n).astype(float)


def test_a_planted_linear_signal_is_found_and_beats_its_control() -> None:
    rng = np.random.default_rng(0)
    y = _values(200, rng)
    direction = rng.normal(size=8)
    x = 0.05 * rng.normal(size=(200, 8)) + y[:, None] * direction[None, :]
    cell = fit_cell(x, y, folds=5, c=100.0, target="planted")
    assert cell.kind == "classification" and cell.classes == 10
    assert cell.correct.mean() > 0.9
    assert cell.majority.mean() < 0.2
    assert cell.control.mean() < cell.majority.mean() + 0.08  # the control holds nothing
    assert cell.correct.mean() - cell.control.mean() > 0.7  # selective


def test_noise_holds_nothing_probe_and_control_near_majority() -> None:
    rng = np.random.default_rng(1)
    y = _values(300, rng)
    x = rng.normal(size=(300, 8))
    cell = fit_cell(x, y, folds=5, target="noise")
    majority = cell.majority.mean()
    assert abs(cell.correct.mean() - majority) < 0.08
    assert abs(cell.control.mean() - majority) < 0.08
    assert abs(cell.correct.mean() - cell.control.mean()) < 0.1  # selectivity near 0


def test_the_control_task_catches_a_probe_that_memorises_surfaces() -> None:
    # 40 surfaces, each seen by 6 problems; the states carry the surface, not the value.
    rng = np.random.default_rng(3)
    surfaces = np.repeat(np.arange(40), 6)
    y = _values(240, rng)
    codes = rng.normal(size=(40, 40))
    x = codes[surfaces] + 0.05 * rng.normal(size=(240, 40))
    cell = fit_cell(x, y, types=surfaces.tolist(), folds=5, c=100.0, target="memorised")
    assert cell.control.mean() > cell.majority.mean() + 0.5  # memorised across folds
    assert abs(cell.correct.mean() - cell.majority.mean()) < 0.1  # y is not in the states
    assert cell.correct.mean() - cell.control.mean() < -0.4  # selectivity exposes it


def test_control_labels_are_a_fixed_function_of_the_surface_with_the_real_distribution() -> None:
    y = np.array([1.0] * 300 + [2.0] * 100 + [7.0] * 600)
    types = [(str(i),) for i in range(1000)]
    labels = control_labels(types, y, 0, "final_answer")
    assert set(np.unique(labels)) <= {1.0, 2.0, 7.0}
    shares = [float(np.mean(labels == v)) for v in (1.0, 2.0, 7.0)]
    assert shares == pytest.approx([0.3, 0.1, 0.6], abs=0.05)
    # Same type → same label, whatever the other problems or their order.
    again = control_labels(types[::-1], y[::-1], 0, "final_answer")
    assert np.array_equal(again[::-1], labels)
    shared = control_labels([("3", "4")] * 5, np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 0, "t")
    assert len(set(shared.tolist())) == 1
    # Another seed or target draws other labels.
    assert not np.array_equal(control_labels(types, y, 1, "final_answer"), labels)
    assert not np.array_equal(control_labels(types, y, 0, "step_count"), labels)


def test_a_problem_surface_is_the_numbers_of_its_question() -> None:
    assert surface_type("Tom has 1,200 apples and eats 3.5 of them, then 7.") == (
        "1200",
        "3.5",
        "7",
    )


def test_many_values_are_regressed_and_a_linear_value_is_read() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 500, size=300).astype(float)
    x = np.concatenate([y[:, None] / 100.0, rng.normal(size=(300, 4))], axis=1)
    cell = fit_cell(x, y, max_classes=40, c=1000.0, target="wide")
    assert cell.kind == "regression"
    assert cell.correct.mean() > 0.9


def test_targets_parse_and_bad_ones_name_the_option() -> None:
    assert target_names("final_answer,step_result:all", 3) == [
        "final_answer",
        "step_result:1",
        "step_result:2",
        "step_result:3",
    ]
    with pytest.raises(ProbeInputError, match="--targets"):
        target_names("step_result:0", 3)


def test_number_tokens_and_readable_pieces() -> None:
    tokenizer = byte_level_tokenizer(bos=True)
    ids, values = number_tokens(tokenizer, 256)
    assert sorted(values) == [float(d) for d in range(10)]
    assert readable_token(tokenizer, ids[0]).isdigit()
    assert readable_token(tokenizer, 0xE2) == "<0xE2>"  # a lone UTF-8 lead byte


def test_probe_run_writes_probes_and_lens_with_the_documented_fields(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    config = ProbeConfig(
        data="synthetic:test:seed=14:n=40",
        sites="latent+block:3",
        targets="final_answer,step_count",
        folds=2,
        min_problems=10,
        batch_size=16,
        n_boot=50,
    )
    result = run_probes(tiny_model, config, tmp_path, progress=False)
    assert result.n_problems == 40 and result.n_cells > 0
    assert len(list((tmp_path / HIDDEN_DIR).glob("*.safetensors"))) == 3
    rows = [json.loads(line) for line in write_probe_statistics(tmp_path).read_text().splitlines()]
    first = rows[0]
    for key in (
        "target",
        "site",
        "position",
        "n",
        "accuracy",
        "accuracy_ci",
        "control_accuracy",
        "majority",
        "selectivity",
    ):
        assert key in first
    assert {r["site"] for r in rows} == {"latent", "block:3"}
    assert {r["position"] for r in rows if r["site"] == "block:3"} == {
        "bot",
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "eot",
    }
    assert "bot" not in {r["position"] for r in rows if r["site"] == "latent"}
    assert {r["target"] for r in rows} == {"final_answer", "step_count"}
    lens = [json.loads(line) for line in write_lens_statistics(tmp_path).read_text().splitlines()]
    assert {r["target"] for r in lens} == {"final_answer", "any_intermediate"}
    assert all(0.0 <= r["rate"] <= 1.0 for r in lens)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["probes"]["probe"]["rule"].startswith("classification")

    # Resume: the cached batches are reused, not recomputed.
    again = run_probes(tiny_model, config, tmp_path, progress=False)
    assert again.n_batches_skipped == 3


def test_fits_resume_after_a_kill_and_do_not_depend_on_the_number_of_workers(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    config = ProbeConfig(
        data="synthetic:test:seed=14:n=30",
        sites="block:1",
        targets="final_answer,step_count",
        folds=2,
        min_problems=10,
        batch_size=16,
        n_boot=0,
    )
    whole = tmp_path / "whole"
    first = run_probes(tiny_model, config, whole, progress=False)
    assert first.n_fitted == first.n_cells == 16
    expected = (whole / OUTCOMES_FILE).read_text()

    # A kill after three cells, the fourth line cut short: only the rest is fitted, by
    # two worker processes, and the file is the same byte for byte.
    killed = tmp_path / "killed"
    run_probes(tiny_model, config, killed, progress=False)
    lines = expected.splitlines(keepends=True)
    (killed / (OUTCOMES_FILE + ".partial")).write_text("".join(lines[:3]) + lines[3][:40])
    (killed / OUTCOMES_FILE).unlink()
    resumed = run_probes(tiny_model, config, killed, progress=False, jobs=2)
    assert (resumed.n_cells, resumed.n_fitted) == (16, 13)
    assert (killed / OUTCOMES_FILE).read_text() == expected
    assert not (killed / (OUTCOMES_FILE + ".partial")).exists()

    # A repeat fits nothing; other fit settings fit every cell again.
    assert run_probes(tiny_model, config, whole, progress=False).n_fitted == 0
    other = run_probes(tiny_model, replace(config, tol=1e-2), whole, progress=False)
    assert other.n_fitted == 16
    assert (whole / OUTCOMES_FILE).read_text() != expected


def test_another_batch_size_recomputes_states_and_a_second_writer_is_refused(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    config = ProbeConfig(
        data="synthetic:test:seed=14:n=20",
        sites="block:0",
        targets="step_count",
        folds=2,
        min_problems=10,
        batch_size=6,
        n_boot=0,
    )
    run_probes(tiny_model, config, tmp_path, progress=False)
    assert len(list((tmp_path / HIDDEN_DIR).glob("*.safetensors"))) == 4
    larger = run_probes(tiny_model, replace(config, batch_size=8), tmp_path, progress=False)
    assert larger.n_batches_skipped == 0  # no batch of 8 was cached
    ids, states = read_states(tmp_path, 0, 1)
    assert len(ids) == len(set(ids)) == 20 and states.shape[0] == 20

    with OutputLock(tmp_path / OUTCOMES_FILE), pytest.raises(OutputLockedError):
        run_probes(tiny_model, config, tmp_path, progress=False)


def test_other_data_in_the_same_folder_is_refused(tiny_model: CodiModel, tmp_path: Path) -> None:
    config = ProbeConfig(
        data="synthetic:test:seed=14:n=12",
        sites="block:0",
        targets="step_count",
        folds=2,
        min_problems=100,
        batch_size=16,
        n_boot=0,
    )
    run_probes(tiny_model, config, tmp_path, progress=False)
    with pytest.raises(ProbeInputError, match="--out"):
        other = ProbeConfig(data="synthetic:test:seed=15:n=12", folds=2, batch_size=16)
        run_probes(tiny_model, other, tmp_path, progress=False)


def test_soft_thinking_rows_with_fewer_thoughts_leave_later_cells_smaller(tmp_path: Path) -> None:
    from tests.model.test_soft_thinking import tiny_soft_thinker

    model = tiny_soft_thinker()
    config = ProbeConfig(
        data="synthetic:test:seed=14:n=30",
        sites="latent",
        targets="step_count",
        folds=2,
        min_problems=2,
        batch_size=16,
        n_boot=20,
    )
    result = run_probes(model, config, tmp_path, progress=False)
    assert result.n_cells > 0
    rows = [json.loads(line) for line in write_probe_statistics(tmp_path).read_text().splitlines()]
    sizes = [r["n"] for r in sorted(rows, key=lambda r: int(r["position"]))]
    assert len(sizes) == model.num_thoughts and sizes[0] == 30
    assert sizes == sorted(sizes, reverse=True)  # a row that stopped is left out after
    assert sizes[-1] < 30  # some rows stopped before the last position
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
