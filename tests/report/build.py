"""Small hand-made run folders for the report tests: records, a manifest and an
original-layout scores file, shaped like what ``thoughtscope importance`` writes."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from thoughtscope.results.conditions import ConditionSpec
from thoughtscope.results.records import ConditionOutcome, Outcome, ProblemRecord

NUM_LATENT = 6


def _positions(schedule: str, n: int) -> list[tuple[int, ...]]:
    if schedule == "prefix":
        return [tuple(range(i)) for i in range(1, n + 1)]
    if schedule == "single":
        return [(i,) for i in range(n)]
    if schedule == "suffix":
        return [tuple(range(i, n)) for i in range(n)]
    if schedule == "keep-one":
        return [tuple(j for j in range(n) if j != i) for i in range(n)]
    if schedule == "early-exit":
        return [(k,) for k in range(n + 1)]
    raise ValueError(schedule)


def plan(sites: list[str], schedules: list[str]) -> list[dict[str, Any]]:
    """Manifest ``conditions``: one entry per name, with every schedule asking for it."""
    by_name: dict[str, dict[str, Any]] = {}
    for site in sites:
        layers = [] if site == "latent" else [int(site.split(":")[1])]
        for schedule in schedules:
            if schedule == "early-exit":
                continue
            for positions in _positions(schedule, NUM_LATENT):
                name = f"zero@{site}:{{{','.join(map(str, positions))}}}"
                entry = by_name.setdefault(
                    name,
                    {
                        "name": name,
                        "schedules": [],
                        "ablation": "zero",
                        "site": site,
                        "layers": layers,
                        "positions": list(positions),
                        "num_latent": None,
                    },
                )
                entry["schedules"].append(schedule)
    if "early-exit" in schedules:
        for (k,) in _positions("early-exit", NUM_LATENT):
            by_name[f"exit@{k}"] = {
                "name": f"exit@{k}",
                "schedules": ["early-exit"],
                "ablation": "early-exit",
                "site": "",
                "layers": [],
                "positions": [],
                "num_latent": k,
            }
    return list(by_name.values())


def _stratum(steps: int, strata: list[str]) -> str:
    """The label of the band holding ``steps`` (bands like ``1``, ``5+``)."""
    for label in strata:
        low = int(label.rstrip("+"))
        if steps == low or (label.endswith("+") and steps >= low):
            return label
    return "other"


def records(
    n: int,
    conditions: list[dict[str, Any]],
    *,
    strata: list[str],
    seed: int = 0,
    baseline_correct_only: bool = False,
    max_steps: int = 6,
) -> list[ProblemRecord]:
    """``n`` problems; harder problems and more ablated thoughts break more answers."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        steps = 1 + i % max_steps
        expected = float(10 + i)
        base_ok = rng.random() < 0.9 - 0.08 * steps
        base_pred = expected if base_ok else expected + 1
        items: list[ConditionOutcome] = []
        if base_ok or not baseline_correct_only:
            for spec in conditions:
                if spec["ablation"] == "early-exit":
                    damage = 0.9 - 0.15 * spec["num_latent"]
                else:
                    damage = 0.05 + 0.09 * len(spec["positions"]) + 0.03 * steps
                    if spec["layers"]:
                        damage *= 1.0 - 0.15 * spec["layers"][0]
                ok = rng.random() > damage if base_ok else rng.random() < 0.1
                predicted = expected if ok else expected + rng.choice([1, 2, 7])
                items.append(
                    ConditionOutcome(
                        condition=ConditionSpec.from_dict(spec),
                        output=f"A:{predicted:g}",
                        predicted=predicted,
                        correct=ok,
                        changed=predicted != base_pred,
                        gold_logprob=-rng.random() * 3,
                        kl=rng.random(),
                    )
                )
        out.append(
            ProblemRecord(
                id=f"synthetic-{i}",
                question=f"Tom has {i} apples and buys {steps} more <bags> & boxes. How many?",
                steps=steps,
                steps_source="generator",
                stratum=_stratum(steps, strata),
                expected=expected,
                baseline=Outcome(f"A:{base_pred:g}", base_pred, base_ok, -0.5),
                conditions=items,
            )
        )
    return out


def manifest(
    sites: list[str],
    schedules: list[str],
    conditions: list[dict[str, Any]],
    strata: str,
    model_spec: str = "toy",
) -> dict[str, Any]:
    """A manifest with the fields ``thoughtscope importance`` writes."""
    return {
        "format": "thoughtscope-importance",
        "format_version": 1,
        "selection": "all",
        "strata": strata,
        "seed": 0,
        "num_latent": NUM_LATENT,
        "schedules": schedules,
        "sites": sites,
        "ablations": ["zero"],
        "layers": sorted({c["layers"][0] for c in conditions if c["layers"]}),
        "model": {
            "name": "tiny",
            "spec": model_spec,
            "fingerprint": "0" * 64,
            "family": "codi",
            "architecture": "LlamaForCausalLM",
            "num_layers": 4,
            "d_model": 128,
            "num_latent": NUM_LATENT,
            "settings": {"remove_eos": True, "answer_format": "A:{answer}"},
        },
        "data": {
            "spec": "synthetic:test:seed=0:n=300",
            "source": "synthetic",
            "layout": "synthetic",
            "fingerprint": "1" * 64,
            "n_loaded": 300,
            "n_problems": 300,
        },
        "versions": {"python": "3.12", "torch": "2.x", "thoughtscope": "0.1"},
        "positions": "thought k is the k-th vector fed back; position 0 is the first "
        "continuous thought, not the <bot> step.",
        "validate": None,
        "limit": None,
        "max_new_tokens": 32,
        "batch_size": 256,
        "dtype": "float32",
        "device": "cpu",
        "mean_reference": None,
        "ablation_kinds": {"zero": "replace the activation by zeros"},
        "early_exit": "early-exit" in schedules,
        "conditions": conditions,
        "created": "2026-11-25T19:00:00+00:00",
    }


def write_run(
    run_dir: Path,
    *,
    n: int = 36,
    sites: tuple[str, ...] = ("latent", "block:0", "block:1", "block:2", "block:3"),
    schedules: tuple[str, ...] = ("prefix", "single", "early-exit"),
    strata: str = "1,2,3,4,5+",
    seed: int = 0,
    model_spec: str = "toy",
    max_steps: int = 6,
) -> Path:
    """A run folder (manifest.json, results.jsonl) like ``thoughtscope importance``'s."""
    labels = strata.split(",")
    conditions = plan(list(sites), list(schedules))
    run_dir.mkdir(parents=True, exist_ok=True)
    data = manifest(list(sites), list(schedules), conditions, strata, model_spec)
    (run_dir / "manifest.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    lines = [
        json.dumps(r.to_dict()) + "\n"
        for r in records(n, conditions, strata=labels, seed=seed, max_steps=max_steps)
    ]
    (run_dir / "results.jsonl").write_text("".join(lines), encoding="utf-8")
    return run_dir


def write_original_scores(path: Path, *, n: int = 24, seed: int = 0) -> Path:
    """A ``step_importance_scores.json`` in the original study's layout."""
    rng = random.Random(seed)
    problems = []
    for i in range(n):
        difficulty = 2 + i % 4
        base = rng.random() < 0.8
        results = []
        for position in range(6):
            ablated = base if position == 0 else rng.random() > 0.12 * position
            results.append(
                {
                    "position": position,
                    "ablated_answer": f"The answer is: {i if ablated else i + 1}",
                    "ablated_correct": ablated,
                    "importance_score": 0.0 if ablated == base else 1.0,
                    "baseline_to_ablated": f"{int(base)} → {int(ablated)}",
                }
            )
        problems.append(
            {
                "problem_id": f"gsm8k_{i}",
                "question": f"Question {i}?",
                "expected_answer": i,
                "baseline_answer": f"The answer is: {i if base else i + 1}",
                "baseline_correct": base,
                "difficulty": difficulty,
                "position_results": results,
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(problems, indent=2), encoding="utf-8")
    return path
