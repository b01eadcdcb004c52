"""Small hand-made records, manifests and original-layout files for the statistics tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thoughtscope.results.conditions import ConditionSpec
from thoughtscope.results.records import ConditionOutcome, Outcome, ProblemRecord


def prefix_name(site: str, size: int, ablation: str = "zero") -> str:
    return f"{ablation}@{site}:{{" + ",".join(str(p) for p in range(size)) + "}"


def condition(
    name: str,
    correct: bool,
    *,
    baseline_correct: bool,
    schedule: str = "prefix",
    schedules: tuple[str, ...] | None = None,
    site: str = "block:8",
    positions: list[int] | None = None,
    ablation: str = "zero",
    gold_logprob: float | None = None,
    kl: float | None = None,
    changed: bool | None = None,
) -> ConditionOutcome:
    spec = ConditionSpec(
        name=name,
        schedules=(schedule,) if schedules is None else schedules,
        ablation=ablation,
        site=site,
        positions=() if positions is None else tuple(positions),
    )
    return ConditionOutcome(
        condition=spec,
        output=f"The answer is: {'18' if correct else '7'}",
        predicted=18.0 if correct else 7.0,
        correct=correct,
        changed=(correct != baseline_correct) if changed is None else changed,
        gold_logprob=gold_logprob,
        kl=kl,
    )


def problem(
    pid: str,
    steps: int,
    baseline_correct: bool,
    conditions: list[ConditionOutcome],
    *,
    gold_logprob: float | None = None,
) -> ProblemRecord:
    return ProblemRecord(
        id=pid,
        question=f"Question {pid}?",
        steps=steps,
        steps_source="annotations",
        stratum=str(steps) if steps < 5 else "5+",
        expected=18.0,
        baseline=Outcome(
            output=f"The answer is: {'18' if baseline_correct else '7'}",
            predicted=18.0 if baseline_correct else 7.0,
            correct=baseline_correct,
            gold_logprob=gold_logprob,
        ),
        conditions=conditions,
    )


def prefix_problem(
    pid: str, steps: int, baseline_correct: bool, correct_by_size: list[bool], site: str = "block:8"
) -> ProblemRecord:
    """A problem with a zero prefix family at ``site``: sizes 1, 2, ... in order."""
    conds = [
        condition(
            prefix_name(site, size),
            ok,
            baseline_correct=baseline_correct,
            site=site,
            positions=list(range(size)),
        )
        for size, ok in enumerate(correct_by_size, start=1)
    ]
    return problem(pid, steps, baseline_correct, conds)


def manifest(selection: str = "all", **extra: Any) -> dict[str, Any]:
    return {
        "selection": selection,
        "strata": "1,2,3,4,5+",
        "seed": 0,
        "num_latent": 6,
        "schedules": ["prefix"],
        "sites": "block:8",
        "ablations": ["zero"],
        "layers": [8],
        "model": {"name": "toy", "num_layers": 16},
        "data": {"source": "synthetic"},
        "validate": None,
        **extra,
    }


def write_run(run_dir: Path, records: list[ProblemRecord], manifest_data: dict[str, Any]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "manifest.json").write_text(json.dumps(manifest_data), encoding="utf-8")
    lines = "".join(json.dumps(r.to_dict()) + "\n" for r in records)
    (run_dir / "results.jsonl").write_text(lines, encoding="utf-8")
    return run_dir


def original_position(position: int, baseline_correct: bool, ablated_correct: bool) -> dict:
    return {
        "position": position,
        "ablated_answer": f"The answer is: {'18' if ablated_correct else '7'}",
        "ablated_correct": ablated_correct,
        "importance_score": 0.0 if baseline_correct == ablated_correct else 1.0,
        "baseline_to_ablated": f"{int(baseline_correct)} → {int(ablated_correct)}",
    }


def original_problem(
    pid: str, difficulty: int, baseline_correct: bool, ablated: list[bool]
) -> dict:
    """One problem in the original layout; ``ablated`` gives positions 1..5."""
    results = [original_position(0, baseline_correct, baseline_correct)]
    results += [original_position(i, baseline_correct, ok) for i, ok in enumerate(ablated, start=1)]
    return {
        "problem_id": pid,
        "question": f"Question {pid}?",
        "expected_answer": 18,
        "baseline_answer": f"The answer is: {'18' if baseline_correct else '7'}",
        "baseline_correct": baseline_correct,
        "difficulty": difficulty,
        "position_results": results,
    }


T, F = True, False

ORIGINAL_SCORES = [
    # difficulty 2: three problems, all baseline-correct
    original_problem("gsm8k_1", 2, T, [T, T, F, F, F]),
    original_problem("gsm8k_2", 2, T, [T, F, F, F, F]),
    original_problem("gsm8k_3", 2, T, [T, T, T, T, F]),
    # difficulty 3: three problems, one baseline-wrong (fixed at position 1)
    original_problem("gsm8k_4", 3, T, [F, F, F, F, F]),
    original_problem("gsm8k_5", 3, F, [T, F, F, F, F]),
    original_problem("gsm8k_6", 3, T, [T, T, T, F, F]),
    # difficulty 5: two problems
    original_problem("gsm8k_7", 5, T, [T, T, F, F, F]),
    original_problem("gsm8k_8", 5, T, [T, T, T, T, T]),
]
"""Eight problems in the original study's layout (positions 0-5, 0 = nothing ablated)."""
