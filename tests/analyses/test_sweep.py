"""The sweep: baseline invariants, selection, resume and refusal of a different run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thoughtscope.analyses.importance import (
    ImportanceConfig,
    ImportanceInputError,
    run_importance,
)
from thoughtscope.analyses.interventions import AblationResources, bind
from thoughtscope.engine.runner import Condition, Runner, RunOptions
from thoughtscope.model import CodiModel
from thoughtscope.problems.scoring import extract_number
from thoughtscope.problems.sources import load_problems
from thoughtscope.results.records import read_thoughts
from thoughtscope.results.store import read_manifest, read_records

DATA = "synthetic:test:seed=1:n=6"


def config(**changes: object) -> ImportanceConfig:
    base = {
        "data": DATA,
        "sites": "latent+block:1",
        "schedules": "prefix",
        "ablations": "zero",
        "max_new_tokens": 4,
        "batch_size": 16,
    }
    return ImportanceConfig(**{**base, **changes})  # type: ignore[arg-type]


def test_the_empty_intervention_reproduces_the_baseline_token_for_token(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    cfg = config(sites="latent+block:all", schedules="{},early-exit", ablations="zero,noise")
    result = run_importance(tiny_model, cfg, tmp_path, progress=False)
    assert result.baseline_mismatches == 0  # the empty condition's answer ids, every problem
    records = read_records(tmp_path)
    assert len(records) == 6
    for record in records:
        empty = [
            c
            for c in record.conditions
            if c.condition.positions == () and c.condition.num_latent in (None, 6)
        ]
        assert len(empty) == 2 * 5 + 1  # {} at 5 sites x 2 kinds, and exit@6
        for c in empty:
            assert c.output == record.baseline.output
            assert c.predicted == record.baseline.predicted and not c.changed
            assert c.gold_logprob == pytest.approx(record.baseline.gold_logprob, abs=1e-4)
            assert c.kl == pytest.approx(0.0, abs=1e-6)
        exits = [c for c in record.conditions if c.condition.is_early_exit]
        assert [c.name for c in exits] == [f"exit@{k}" for k in range(7)]
        assert all(c.kl is not None and c.kl >= -1e-6 for c in record.conditions)


def test_by_default_every_problem_gets_every_condition_and_the_manifest_says_so(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    result = run_importance(tiny_model, config(schedules="prefix,single"), tmp_path, progress=False)
    assert (result.n_problems, result.n_written, result.baseline_mismatches) == (6, 6, 0)
    records = read_records(tmp_path)
    names = [c.name for c in records[0].conditions]
    # 6 prefix + 6 single sets at 2 sites; {0} is in both schedules, run and recorded once.
    assert len(names) == len(set(names)) == 22
    schedules = {c.name: c.condition.schedules for c in records[0].conditions}
    assert schedules["zero@block:1:{0}"] == ("prefix", "single")
    assert schedules["zero@block:1:{0,1}"] == ("prefix",)
    assert schedules["zero@latent:{3}"] == ("single",)
    assert all(len(r.conditions) == 22 for r in records)
    line = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])
    shared = [c for c in line["conditions"] if c["name"] == "zero@block:1:{0}"]
    assert len(shared) == 1 and shared[0]["schedules"] == ["prefix", "single"]
    assert {"id", "baseline"} <= set(line) and {"ablation", "site", "positions", "output"} <= set(
        shared[0]
    )
    assert any(c.kl is not None and c.kl > 1e-6 for r in records for c in r.conditions)
    zero_first = next(c for c in records[0].conditions if c.name == "zero@latent:{0,1}")
    spec = zero_first.condition
    assert (spec.site, spec.layers, spec.positions) == ("latent", [], (0, 1))
    manifest = read_manifest(tmp_path)
    assert manifest["selection"] == "all"
    assert manifest["sites"] == ["latent", "block:1"] and manifest["layers"] == [1]
    assert manifest["schedules"] == ["prefix", "single"] and manifest["ablations"] == ["zero"]
    assert manifest["num_latent"] == 6 and manifest["validate"] is None
    assert manifest["model"]["num_layers"] == 4 and manifest["model"]["family"] == "codi"
    assert manifest["model"]["settings"]["remove_eos"] is False
    assert manifest["data"]["n_problems"] == 6 and len(manifest["data"]["fingerprint"]) == 64
    assert "position 0 is the first continuous thought" in manifest["positions"]
    assert set(manifest["versions"]) == {"python", "torch", "transformers", "thoughtscope"}
    assert manifest["strata"] == "1,2,3,4,5+" and "created" in manifest


def test_only_baseline_correct_still_records_the_problems_the_baseline_gets_wrong(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    # Make the answers of some problems what this random model happens to say.
    problems = load_problems("synthetic:test:seed=0:n=12").problems
    said = Runner(tiny_model).run(
        [p.question for p in problems], options=RunOptions(max_new_tokens=4)
    )
    rows = []
    for p, row in zip(problems, said, strict=True):
        predicted = extract_number(row[0].text)
        rows.append({"id": p.id, "question": p.question, "answer": predicted or 12345})
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    n_right = sum(r["answer"] != 12345 for r in rows)
    assert 0 < n_right < len(rows)

    run_dir = tmp_path / "run"
    cfg = config(data=str(data), only_baseline_correct=True, sites="block:1")
    run_importance(tiny_model, cfg, run_dir, progress=False)
    records = read_records(run_dir)
    assert len(records) == len(rows)
    assert sum(r.baseline.correct for r in records) == n_right
    for r in records:
        assert len(r.conditions) == (6 if r.baseline.correct else 0)
    assert read_manifest(run_dir)["selection"] == "baseline-correct"


def test_a_resumed_run_skips_finished_problems_and_ends_like_an_uninterrupted_one(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    cfg = config(ablations="zero,mean,noise,patch", mean_reference=4)
    whole = tmp_path / "whole"
    run_importance(tiny_model, cfg, whole, progress=False)
    expected = (whole / "results.jsonl").read_text().splitlines()

    resumed = tmp_path / "resumed"
    run_importance(tiny_model, cfg, resumed, progress=False)
    path = resumed / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][:50])  # two done, a third cut off
    result = run_importance(tiny_model, cfg, resumed, progress=False)
    assert (result.n_skipped, result.n_written) == (2, 4)
    assert sorted(path.read_text().splitlines()) == sorted(expected)
    assert (resumed / "means.safetensors").is_file()
    names = {c.name for c in read_records(resumed)[0].conditions}
    assert {"mean@block:1:{0}", "noise@latent:{0,1}", "patch@block:1:{0,1,2}"} <= names


def test_a_different_configuration_in_the_same_folder_is_refused(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    run_importance(tiny_model, config(), tmp_path, progress=False)
    with pytest.raises(ImportanceInputError, match="different configuration") as error:
        run_importance(tiny_model, config(schedules="single", seed=3), tmp_path, progress=False)
    assert error.value.option == "--out"
    assert "schedules" in str(error.value) and "seed" in str(error.value)
    assert "max_new_tokens" not in str(error.value)


def test_the_sweep_records_the_example_problems_decoded_thoughts(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    cfg = config(data="synthetic:test:seed=1:n=12", examples=1, lens_top_k=3, batch_size=8)
    run_importance(tiny_model, cfg, tmp_path, progress=False)
    records = read_records(tmp_path)
    thoughts = read_thoughts(tmp_path)
    first_of_stratum: dict[str, str] = {}
    for r in records:
        first_of_stratum.setdefault(r.stratum, r.id)
    assert [t.id for t in thoughts] == list(first_of_stratum.values())
    by_id = {r.id: r for r in records}
    for t in thoughts:
        assert t.answer == by_id[t.id].baseline.output  # the run's own baseline, not a re-run
        positions = list(dict.fromkeys(s.position for s in t.states))
        assert positions == ["bot", "0", "1", "2", "3", "4", "5", "eot"]
        assert {s.site for s in t.states} == {"latent", "input", *(f"block:{i}" for i in range(4))}
        assert all(len(s.tokens) == len(s.probs) == 3 for s in t.states)
        assert all(s.probs == sorted(s.probs, reverse=True) for s in t.states)


def test_kl_is_the_mean_per_token_kl_from_the_empty_condition(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    run_importance(tiny_model, config(sites="block:1"), tmp_path, progress=False)
    record = read_records(tmp_path)[0]
    outcome = next(c for c in record.conditions if c.name == "zero@block:1:{0,1,2}")
    spec = outcome.condition
    runner = Runner(tiny_model)
    base = runner.run([record.question], options=RunOptions(max_new_tokens=4))[0][0]
    along = base.answer_ids + ([tiny_model.config.eos_id] if base.finished else [])
    zero = bind(spec, AblationResources(problem_ids=[record.id]))
    rows = runner.run(
        [record.question],
        [Condition("empty"), zero],
        RunOptions(max_new_tokens=4, record_target_logits=True),
        targets={"baseline": [along]},
    )[0]
    reference = rows[0].target_logits["baseline"].float().log_softmax(-1)
    ablated = rows[1].target_logits["baseline"].float().log_softmax(-1)
    expected = float((reference.exp() * (reference - ablated)).sum(-1).mean())
    assert outcome.kl == pytest.approx(expected, rel=1e-4, abs=1e-7) and expected > 1e-6


def test_kl_comes_from_the_engine_without_target_logits(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    options = RunOptions(max_new_tokens=4, kl_reference="baseline")
    rows = Runner(tiny_model).run(
        ["1+1?"], [Condition("baseline")], options, targets={"baseline": [[5, 6]]}
    )[0]
    assert rows[0].target_logits == {}
    assert run_importance(tiny_model, config(), tmp_path, progress=False).n_written == 6


def test_batch_size_is_auto_by_default_and_answers_do_not_depend_on_it(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    assert ImportanceConfig(data=DATA).batch_size == "auto"
    run_importance(tiny_model, config(batch_size="auto"), tmp_path / "auto", progress=False)
    run_importance(tiny_model, config(batch_size=7), tmp_path / "seven", progress=False)
    rows = read_manifest(tmp_path / "auto")["batch_rows"]
    assert isinstance(rows, int) and rows >= 1
    assert read_manifest(tmp_path / "seven")["batch_rows"] == 7

    def answers(run: Path) -> list[tuple[str, str, list[str]]]:
        return [
            (r.id, r.baseline.output, [c.output for c in r.conditions]) for r in read_records(run)
        ]

    assert answers(tmp_path / "auto") == answers(tmp_path / "seven")


def test_a_folder_of_an_older_format_is_not_resumed_into(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    run_importance(tiny_model, config(), tmp_path, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    with pytest.raises(ImportanceInputError, match="format_version: 1 here, 2 now"):
        run_importance(tiny_model, config(), tmp_path, progress=False)


def test_prompts_too_long_for_the_model_stop_the_sweep_or_are_skipped_and_listed(
    tiny_model: CodiModel, tmp_path: Path
) -> None:
    data = tmp_path / "long.jsonl"
    rows = [
        {"id": "short", "question": "1+1?", "answer": 2},
        {"id": "huge", "question": "9" * 5000, "answer": 9},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ImportanceInputError, match=r"1 of 2 problems are too long: huge"):
        run_importance(tiny_model, config(data=str(data)), tmp_path / "refused", progress=False)
    assert not (tmp_path / "refused" / "results.jsonl").exists()

    result = run_importance(
        tiny_model, config(data=str(data), skip_long=True), tmp_path / "run", progress=False
    )
    assert result.n_written == 1
    assert [r.id for r in read_records(tmp_path / "run")] == ["short"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [p["id"] for p in manifest["too_long"]["too_long"]] == ["huge"]
