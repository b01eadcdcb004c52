"""The synthetic generator: deterministic, split-disjoint, chained and correct."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from thoughtscope.problems.synthetic import MAX_STEPS, generate, split_of

ANNOTATION = re.compile(r"<<(-?\d+)([-+*/])(\d+)=(-?\d+)>>")


def evaluate(a: int, op: str, b: int) -> int:
    if op == "/":
        assert a % b == 0, f"inexact division {a}/{b}"
        return a // b
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def annotations_of(solution: str) -> list[tuple[int, str, int, int]]:
    return [(int(a), op, int(b), int(c)) for a, op, b, c in ANNOTATION.findall(solution)]


def test_same_arguments_give_the_same_problems() -> None:
    assert generate("test", 7, 50) == generate("test", 7, 50)
    assert generate("train", 3, 50, style="words") == generate("train", 3, 50, style="words")


def test_different_seeds_give_different_problems() -> None:
    first = [p.question for p in generate("test", 1, 30)]
    second = [p.question for p in generate("test", 2, 30)]
    assert first != second


def test_compact_problems_are_pinned_for_seed_7() -> None:
    # If this fails, generation changed: bump _GENERATOR_VERSION and update on purpose.
    problems = generate("test", 7, 3)
    assert [(p.question, p.solution, p.answer, p.steps) for p in problems] == [
        ("a=3;b=a-1;b=?", "<<3-1=2>>\n#### 2", 2.0, 1),
        ("a=6;b=a-4;c=b*8;c=?", "<<6-4=2>> <<2*8=16>>\n#### 16", 16.0, 2),
        (
            "a=1;b=a+2;c=b-2;d=c*2;e=d*3;f=e+5;g=f+3;g=?",
            "<<1+2=3>> <<3-2=1>> <<1*2=2>> <<2*3=6>> <<6+5=11>> <<11+3=14>>\n#### 14",
            14.0,
            6,
        ),
    ]
    assert problems[0].id == "synthetic-test-s7-00000"
    assert problems[0].source == ("synthetic:test:seed=7:style=compact:min_steps=1:max_steps=6")


def test_words_problem_is_pinned_for_seed_7() -> None:
    first = generate("test", 7, 1, style="words")[0]
    assert first.question == (
        "Priya collected 4 shells last week. Priya misplaces 2 of the shells. "
        "The number of shells grows to 5 times what it was. "
        "She uses 5 shells for a school project. How many shells does Priya have now?"
    )
    assert first.solution == (
        "Priya then has 4 - 2 = <<4-2=2>>2 shells.\n"
        "Priya then has 2 * 5 = <<2*5=10>>10 shells.\n"
        "Priya then has 10 - 5 = <<10-5=5>>5 shells.\n"
        "#### 5"
    )
    assert first.answer == 5.0


def test_a_longer_run_starts_with_the_shorter_one() -> None:
    assert generate("test", 7, 200)[:80] == generate("test", 7, 80)


@pytest.mark.parametrize("style", ["compact", "words"])
def test_train_and_test_share_no_question(style: str) -> None:
    train = {p.question for p in generate("train", 0, 5000, style=style)}
    test = {p.question for p in generate("test", 0, 2000, style=style)}
    assert not train & test


def test_split_of_is_the_same_for_every_seed_and_style() -> None:
    assert split_of("7|+5|*2|-9") == split_of("7|+5|*2|-9")
    assert {split_of(f"{a}|+{b}") for a in range(1, 10) for b in range(1, 10)} == {
        "train",
        "val",
        "test",
    }


@pytest.mark.parametrize("style", ["compact", "words"])
def test_annotations_form_a_correct_chain_ending_in_the_answer(style: str) -> None:
    for problem in generate("val", 11, 300, style=style):
        assert problem.solution is not None
        steps = annotations_of(problem.solution)
        assert len(steps) == problem.steps
        assert problem.steps_source == "annotations"
        first_number = int(re.search(r"\d+", problem.question).group())  # type: ignore[union-attr]
        assert steps[0][0] == first_number
        for (a, op, b, c), previous in zip(steps, [None, *steps], strict=False):
            assert evaluate(a, op, b) == c
            if previous is not None:
                assert a == previous[3], "every step must use the previous result"
        assert problem.solution.endswith(f"\n#### {steps[-1][3]}")
        assert problem.answer == steps[-1][3]


def test_compact_numbers_stay_small() -> None:
    for problem in generate("train", 5, 500):
        assert problem.solution is not None
        for a, op, b, c in annotations_of(problem.solution):
            assert 1 <= b <= 9
            assert 0 <= a <= 19 and 0 <= c <= 19
            assert op in "+-*"
        assert re.fullmatch(r"a=\d(;[b-z]=[a-y][-+*]\d)+;[b-z]=\?", problem.question)


def test_words_numbers_stay_modest() -> None:
    for problem in generate("train", 5, 500, style="words"):
        assert problem.solution is not None
        for a, op, b, c in annotations_of(problem.solution):
            assert 2 <= a <= 100 and 2 <= c <= 100
            assert b <= 20 if op in "+-" else 2 <= b <= 9


def test_words_style_uses_varied_wording() -> None:
    problems = generate("test", 1, 200, style="words")
    names = Counter(p.question.split()[0] for p in problems)
    openers = Counter(p.question.split(".")[1].strip().split()[0] for p in problems)
    assert len(names) >= 8
    assert len(openers) >= 5


def test_step_counts_are_spread_evenly() -> None:
    counts = Counter(p.steps for p in generate("test", 4, 600))
    assert counts == {s: 100 for s in range(1, 7)}
    narrow = Counter(p.steps for p in generate("test", 4, 90, min_steps=2, max_steps=4))
    assert narrow == {2: 30, 3: 30, 4: 30}


def test_ids_number_the_problems_in_order() -> None:
    ids = [p.id for p in generate("train", 12, 3)]
    assert ids == [f"synthetic-train-s12-0000{i}" for i in range(3)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "dev"}, "unknown split 'dev'"),
        ({"style": "poetry"}, "unknown style 'poetry'"),
        ({"n": -1}, "n must be 0 or more"),
        ({"min_steps": 0}, "min_steps"),
        ({"min_steps": 4, "max_steps": 3}, "min_steps"),
        ({"max_steps": MAX_STEPS + 1}, "max_steps"),
    ],
)
def test_bad_arguments_are_refused_with_the_valid_values(
    kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"split": "test", "seed": 0, "n": 1, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        generate(**arguments)  # type: ignore[arg-type]
