"""A smoke run of bench/throughput.py: a few problems, a tiny model, no timing claims."""

from __future__ import annotations

import re

import pytest
from bench.throughput import main


def test_the_benchmark_runs_and_both_paths_give_identical_answers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    speedup, identical = main(
        ["--model", "random-toy-size", "--problems", "2", "--max-new-tokens", "6", "--threads", "1"]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert identical == 100.0
    assert speedup > 0
    assert lines[-1] == f"speedup {speedup:.1f}x, identical answers 100.0%"
    assert re.match(r"engine \d+\.\d+ GFLOP/s, \d+\.\d% of the measured matmul peak", lines[-2])
    assert lines[-3].startswith("second yardstick, the model's own shapes:")


def test_forking_saves_rows_and_changes_no_answer(capsys: pytest.CaptureFixture[str]) -> None:
    _, identical = main(
        [
            "--model",
            "random-toy-size",
            "--problems",
            "2",
            "--max-new-tokens",
            "4",
            "--schedule",
            "single,suffix",
            "--threads",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert identical == 100.0
    (line,) = [x for x in out.splitlines() if x.startswith("engine forward passes:")]
    assert line.endswith("forking changes 0 answers")
    saved = int(line.split("saved ")[1].split(" rows")[0])
    assert saved > 0  # single and suffix conditions share the baseline's first thoughts


def test_all_layers_mode_reports_the_cost_per_condition(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, identical = main(
        [
            "--model",
            "random-toy-size",
            "--problems",
            "2",
            "--max-new-tokens",
            "4",
            "--layers",
            "all",
            "--threads",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert identical == 100.0
    assert "engine cost per condition: 1 layer (7 conditions)" in out
    assert "4 layers (25 conditions)" in out


def test_the_flop_count_is_the_same_batched_or_one_at_a_time() -> None:
    """Left padding is work the engine wastes, not work it must do: a batch of two
    questions of different lengths counts exactly what the two count alone."""
    import torch
    from bench.throughput import build_model, counting_forward, prefix_plan, run_engine

    from thoughtscope.problems import load_problems

    model = build_model("random-toy-size", torch.device("cpu"), torch.float32)
    problems = load_problems("synthetic:test:seed=0:n=12").problems
    short = min(problems, key=lambda p: len(p.question))
    long = max(problems, key=lambda p: len(p.question))
    assert len(short.question) < len(long.question)
    plan = prefix_plan([2], model.config.num_latent, [short, long])
    counts = []
    for group in ([short, long], [short], [long]):
        with counting_forward(model) as counted:
            run_engine(model, group, plan, max_new_tokens=4, batch_size=64)
        counts.append(counted)
    together, alone = counts[0], counts[1:]
    assert together["padding"] > 0 and alone[0]["padding"] == alone[1]["padding"] == 0
    assert together["flops"] == alone[0]["flops"] + alone[1]["flops"]


def test_the_naive_reference_can_run_on_the_first_problems_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--model", "random-toy-size", "--problems", "3", "--max-new-tokens", "4"]
    speedup, identical = main([*args, "--naive-problems", "1", "--threads", "1"])
    out = capsys.readouterr().out
    (naive,) = [x for x in out.splitlines() if x.startswith("naive reference:")]
    assert naive.endswith("[first 1 of the 3 problems]")
    (engine,) = [x for x in out.splitlines() if x.startswith("engine         :")]
    assert "[first" not in engine
    assert identical == 100.0 and speedup > 0
    with pytest.raises(SystemExit, match="--naive-problems must be 1 to --problems"):
        main([*args, "--naive-problems", "4"])
