"""Pair rules for patching, and counterfactual twins of synthetic problems."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thoughtscope.problems.pairs import make_pairs, step_values
from thoughtscope.problems.synthetic import counterfactual_twin, generate

PROBLEMS = generate("test", 13, 40)


def test_a_twin_changes_one_number_and_keeps_the_steps_before_the_first_difference() -> None:
    for problem in PROBLEMS:
        twin = counterfactual_twin(problem, seed=3)
        assert twin is not None
        before, after = step_values(problem), step_values(twin.problem)
        assert before is not None and after is not None and len(before) == len(after)
        k = twin.first_changed_step
        assert before[: k - 1] == after[: k - 1] and before[k - 1] != after[k - 1]
        # Compact questions are statements joined by ";": exactly one differs.
        parts = zip(problem.question.split(";"), twin.problem.question.split(";"), strict=True)
        assert sum(a != b for a, b in parts) == 1
        assert twin.problem.id == problem.id + "~cf"
        assert counterfactual_twin(problem, seed=3) == twin  # seeded


def test_twins_prefer_a_different_final_answer() -> None:
    twins = [counterfactual_twin(p) for p in PROBLEMS]
    pairs = zip(twins, PROBLEMS, strict=True)
    assert sum(t is not None and t.problem.answer != p.answer for t, p in pairs) >= 38


def test_words_problems_have_no_twin() -> None:
    words = generate("test", 1, 3, style="words")
    assert all(counterfactual_twin(p) is None for p in words)
    assert make_pairs(words, "counterfactual").unpaired == [p.id for p in words]


@pytest.mark.parametrize("same", [True, False])
def test_value_rules_pair_equal_or_different_step_results(same: bool) -> None:
    rule = "same-value:2" if same else "different-value:2"
    pairs = make_pairs(PROBLEMS, rule, seed=1)
    assert pairs.rule == rule and pairs.pairs
    for pair in pairs.pairs:
        t, s = step_values(pair.target), step_values(pair.source)
        assert t is not None and s is not None
        assert (t[1] == s[1]) == same
        assert pair.target.question != pair.source.question
    assert make_pairs(PROBLEMS, rule, seed=1) == pairs
    one_step = {p.id for p in PROBLEMS if p.steps == 1}
    assert one_step <= set(pairs.unpaired)


def test_random_pairs_never_pair_a_problem_with_itself() -> None:
    pairs = make_pairs(PROBLEMS, "random", seed=5)
    assert len(pairs.pairs) == len(PROBLEMS)
    assert all(p.target.id != p.source.id for p in pairs.pairs)
    assert make_pairs(PROBLEMS, "random", seed=6) != pairs


def test_a_pair_file_names_the_line_of_an_unknown_id(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    rows = [{"target": PROBLEMS[0].id, "source": PROBLEMS[1].id}, {"target": "x", "source": "y"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(ValueError, match=r"pairs.jsonl, line 2: target 'x'"):
        make_pairs(PROBLEMS, str(path))
    path.write_text(json.dumps(rows[0]))
    assert [p.id for p in make_pairs(PROBLEMS, str(path)).pairs] == [
        f"{PROBLEMS[0].id}<-{PROBLEMS[1].id}"
    ]


def test_unknown_rules_and_bad_steps_say_what_is_accepted() -> None:
    with pytest.raises(ValueError, match="--pairs: unknown rule 'nearest'; use self"):
        make_pairs(PROBLEMS, "nearest")
    with pytest.raises(ValueError, match="same-value:0: the step must be"):
        make_pairs(PROBLEMS, "same-value:0")


def test_a_csv_pair_file_is_read_by_its_header(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(f"source,target\n{PROBLEMS[2].id},{PROBLEMS[3].id}\n")
    (pair,) = make_pairs(PROBLEMS, str(path)).pairs
    assert (pair.target.id, pair.source.id) == (PROBLEMS[3].id, PROBLEMS[2].id)
