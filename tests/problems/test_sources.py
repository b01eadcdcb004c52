"""Every --data source, and every way its input can be bad."""

from __future__ import annotations

import json
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GSM8K_TEST
from thoughtscope.problems.difficulty import DEFAULT_STRATA
from thoughtscope.problems.errors import ProblemDataError
from thoughtscope.problems.sources import accepted_forms, load_problems

JANET = {
    "question": "Janet's ducks lay 16 eggs per day. How much does she make?",
    "answer": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
    "She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18",
}
HOUSE = {
    "question": "Josh flips a house. How much profit did he make?",
    "answer": "It cost 80,000+50,000=$<<80000+50000=130000>>130,000\n#### 70,000",
}
ALGEBRA = {
    "question": "How old is Carver's son?",
    "answer": "Let x be his age.\nThen 45=(2*x)-5.\nSo 50=2*x and x=25.\n#### 25",
}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# --- synthetic ---------------------------------------------------------------------------


def test_plain_synthetic_is_500_compact_test_problems() -> None:
    result = load_problems("synthetic")
    assert len(result.problems) == 500
    assert result.layout == "synthetic"
    assert result.problems[0].id == "synthetic-test-s0-00000"
    assert result.source == "synthetic:test:seed=0:n=500:style=compact:min_steps=1:max_steps=6"
    assert result.problems[0].question.startswith("a=")


def test_synthetic_options_reach_the_generator() -> None:
    result = load_problems("synthetic:train:seed=7:n=30:style=words:min_steps=2:max_steps=3")
    assert len(result.problems) == 30
    assert {p.steps for p in result.problems} == {2, 3}
    assert result.problems[0].id == "synthetic-train-s7-00000"
    assert "how many" in result.problems[0].question.lower()
    assert load_problems("synthetic:seed=7:n=5").problems[0].id == "synthetic-test-s7-00000"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("synthetic:foo=1", "unknown option 'foo'"),
        ("synthetic:n=3:n=4", "given twice"),
        ("synthetic:n=many", "n='many' is not a whole number"),
        ("synthetic:n=3:train", "must come first"),
        ("synthetic:dev", "unknown split 'dev'"),
        ("synthetic:style=poem", "unknown style 'poem'"),
        ("synthetic:min_steps=5:max_steps=2", "min_steps"),
    ],
)
def test_bad_synthetic_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ProblemDataError, match=message):
        load_problems(spec)


# --- GSM8K JSONL -------------------------------------------------------------------------


def test_gsm8k_jsonl_reads_answers_steps_and_solutions(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "test.jsonl", [JANET, "", HOUSE, ALGEBRA])
    result = load_problems(str(path))
    assert result.layout == "gsm8k"
    janet, house, algebra = result.problems
    assert (janet.answer, janet.steps, janet.steps_source) == (18.0, 2, "annotations")
    assert janet.solution == JANET["answer"]
    assert janet.id == "gsm8k-test-0000"
    assert janet.source == str(path)
    assert (house.answer, house.steps) == (70000.0, 1)  # thousands separator
    assert (algebra.answer, algebra.steps, algebra.steps_source) == (25.0, 2, "fallback:lines")
    assert result.skipped == []


def test_gsm8k_negative_and_decimal_answers(tmp_path: Path) -> None:
    rows = [
        {"question": "q1", "answer": "<<3-13=-10>>\n#### -10"},
        {"question": "q2", "answer": "<<5/2=2.5>>\n#### 2.5"},
    ]
    result = load_problems(str(write_jsonl(tmp_path / "gsm8k_small.jsonl", rows)))
    assert [p.answer for p in result.problems] == [-10.0, 2.5]
    assert result.problems[0].id == "gsm8k_small-0000"


def test_a_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_text("\ufeff" + json.dumps(JANET) + "\n", encoding="utf-8")
    assert load_problems(str(path)).problems[0].answer == 18.0


# --- plain JSONL and CSV -----------------------------------------------------------------


def test_plain_jsonl_has_numeric_answers_and_unknown_steps(tmp_path: Path) -> None:
    rows = [
        {"question": "2+2?", "answer": 4},
        {"question": "half?", "answer": 0.5, "id": "half"},
        {"question": "big?", "answer": "1,250.50"},
    ]
    result = load_problems(str(write_jsonl(tmp_path / "mine.jsonl", rows)))
    assert result.layout == "plain"
    assert [p.answer for p in result.problems] == [4.0, 0.5, 1250.5]
    assert [p.id for p in result.problems] == ["mine-0000", "half", "mine-0002"]
    assert {(p.steps, p.steps_source) for p in result.problems} == {(None, "unknown")}


def test_csv_with_question_and_answer_columns(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text('question,answer\n"If I have 3, and get 4?",7\nTen less one?,9\n')
    result = load_problems(str(path))
    assert result.layout == "plain"
    assert [(p.question, p.answer) for p in result.problems] == [
        ("If I have 3, and get 4?", 7.0),
        ("Ten less one?", 9.0),
    ]


# --- original study JSON -----------------------------------------------------------------


def test_study_json_takes_steps_as_given(tmp_path: Path) -> None:
    rows = [
        {"question": "q1", "answer": 18, "reasoning_steps": 2, "gsm8k_id": "test_0"},
        {"question": "q2", "answer": 3.5, "reasoning_steps": 5, "id": "custom"},
        {"question": "q3", "answer": "7", "reasoning_steps": "3"},
    ]
    path = tmp_path / "study.json"
    path.write_text(json.dumps(rows))
    result = load_problems(str(path))
    assert result.layout == "study"
    assert [(p.id, p.answer, p.steps, p.steps_source) for p in result.problems] == [
        ("gsm8k-test_0", 18.0, 2, "given"),
        ("custom", 3.5, 5, "given"),
        ("study-0002", 7.0, 3, "given"),
    ]


# --- bad input ---------------------------------------------------------------------------


GOOD_PLAIN = '{"question": "q", "answer": 1}'
GOOD_GSM8K = '{"question": "q", "answer": "<<1+1=2>>\\n#### 2"}'


@pytest.mark.parametrize(
    ("lines", "where", "field", "reason"),
    [
        ([GOOD_PLAIN, '{"question": "q2", '], "line 2", None, "not valid JSON"),
        ([GOOD_PLAIN, "[1, 2]"], "line 2", None, "not an object"),
        ([GOOD_PLAIN, '{"answer": 2}'], "line 2", "question", "missing"),
        ([GOOD_PLAIN, '{"question": " ", "answer": 2}'], "line 2", "question", "non-empty"),
        ([GOOD_PLAIN, '{"question": "q2"}'], "line 2", "answer", "missing"),
        ([GOOD_PLAIN, '{"question": "q2", "answer": "ten"}'], "line 2", "answer", "'ten' is not"),
        ([GOOD_PLAIN, '{"question": "q2", "answer": true}'], "line 2", "answer", "not a number"),
        ([GOOD_GSM8K, '{"question": "q2", "answer": "7"}'], "line 2", "answer", "'#### N'"),
        ([GOOD_GSM8K, '{"question": "q", "answer": "#### two"}'], "line 2", "answer", "'#### two'"),
        (
            [
                '{"question": "q", "answer": 1, "id": "a"}',
                '{"question": "q", "answer": 2, "id": "a"}',
            ],
            "line 2",
            "id",
            "duplicate id 'a' (first at",
        ),
    ],
)
def test_a_bad_jsonl_row_names_file_line_and_field(
    tmp_path: Path, lines: list[str], where: str, field: str | None, reason: str
) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ProblemDataError) as caught:
        load_problems(str(path))
    message = str(caught.value)
    assert f"{path}, {where}" in message
    if field:
        assert f"field {field!r}" in message
    assert reason in message
    assert "--skip-bad" in message
    assert isinstance(caught.value, ValueError)
    assert caught.value.row is not None and caught.value.row.field == field


def test_skip_bad_goes_on_and_reports_every_skipped_row(tmp_path: Path) -> None:
    lines = [
        json.dumps(JANET),
        "{broken",
        json.dumps({"question": "q", "answer": "#### nine"}),
        json.dumps(HOUSE),
        json.dumps({"answer": "#### 3"}),
    ]
    result = load_problems(str(write_jsonl(tmp_path / "test.jsonl", lines)), skip_bad=True)
    assert [p.answer for p in result.problems] == [18.0, 70000.0]
    assert [p.id for p in result.problems] == ["gsm8k-test-0000", "gsm8k-test-0003"]
    assert [(b.where.rsplit(", ", 1)[1], b.field) for b in result.skipped] == [
        ("line 2", None),
        ("line 3", "answer"),
        ("line 5", "question"),
    ]


def test_a_csv_row_with_the_wrong_number_of_fields_is_bad(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("question,answer\nfine,1\nIf I have 3, and get 4?,7\nshort\n")
    with pytest.raises(ProblemDataError, match=r"mine.csv, line 3: has 3 fields but the header"):
        load_problems(str(path))
    result = load_problems(str(path), skip_bad=True)
    assert len(result.problems) == 1
    assert [b.reason.split(" but")[0] for b in result.skipped] == ["has 3 fields", "has 1 fields"]


def test_a_csv_without_the_needed_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("prompt,answer\nq,1\n")
    with pytest.raises(ProblemDataError, match=r"mine.csv, line 1: .*missing 'question'"):
        load_problems(str(path), skip_bad=True)


def test_a_study_row_with_bad_steps_is_bad(tmp_path: Path) -> None:
    path = tmp_path / "study.json"
    path.write_text(json.dumps([{"question": "q", "answer": 1, "reasoning_steps": 0}]))
    with pytest.raises(ProblemDataError, match=r"item 1, field 'reasoning_steps'"):
        load_problems(str(path))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": "q"}', "top level is a JSON dict, not a list"),
        ('[{"question": "q", "answer": 1},\n oops]', "line 2: not valid JSON"),
        ("[]", "no rows found"),
    ],
)
def test_a_bad_json_file_is_refused_as_a_whole(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "study.json"
    path.write_text(content)
    with pytest.raises(ProblemDataError, match=message):
        load_problems(str(path), skip_bad=True)


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(ProblemDataError, match="no rows found"):
        load_problems(str(path))


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"question": "caf\xe9", "answer": 1}\n')
    with pytest.raises(ProblemDataError, match="not UTF-8"):
        load_problems(str(path))


@pytest.mark.parametrize("spec", ["missing.jsonl", "", "data.txt", "folder"])
def test_unknown_specs_and_missing_files_list_the_accepted_forms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.txt").write_text("question,answer\n")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ProblemDataError) as caught:
        load_problems(spec)
    assert "Accepted --data forms: synthetic" in str(caught.value)
    assert "hf:OWNER/NAME" in str(caught.value)
    assert ".jsonl, .csv or .json" in str(caught.value)


def test_accepted_forms_names_every_source_kind() -> None:
    forms = accepted_forms()
    assert "synthetic[:SPLIT]" in forms and "hf:" in forms and ".csv" in forms


# --- Hugging Face Hub --------------------------------------------------------------------


def test_hub_without_datasets_points_to_the_jsonl_route(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ProblemDataError) as caught:
        load_problems("hf:openai/gsm8k:test")
    message = str(caught.value)
    assert "thoughtscope[hub]" in message
    assert "grade_school_math/data/test.jsonl" in message


def fake_datasets(load_dataset: Any) -> types.ModuleType:
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset  # type: ignore[attr-defined]
    return module


def test_hub_offline_points_to_the_jsonl_route(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(offline))
    with pytest.raises(ProblemDataError, match=r"could not load openai/gsm8k .*test.jsonl"):
        load_problems("hf:openai/gsm8k")


def test_hub_rows_become_problems_with_gsm8k_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def load_dataset(name: str, config: str | None, split: str) -> list[dict[str, str]]:
        calls.append((name, config, split))
        return [JANET, HOUSE]

    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(load_dataset))
    result = load_problems("hf:openai/gsm8k:test")
    assert calls == [("openai/gsm8k", "main", "test")]
    assert [(p.id, p.answer) for p in result.problems] == [
        ("gsm8k-test-0000", 18.0),
        ("gsm8k-test-0001", 70000.0),
    ]
    load_problems("hf:openai/gsm8k:train:config=socratic")
    assert calls[-1] == ("openai/gsm8k", "socratic", "train")


@pytest.mark.parametrize("spec", ["hf:", "hf:gsm8k", "hf:openai/gsm8k:test:extra"])
def test_bad_hub_specs_show_the_form(spec: str) -> None:
    with pytest.raises(ProblemDataError, match=r"hf:OWNER/NAME"):
        load_problems(spec)


# --- the real GSM8K test set -------------------------------------------------------------


@pytest.mark.skipif(not GSM8K_TEST.exists(), reason=f"GSM8K test set not found at {GSM8K_TEST}")
def test_the_whole_gsm8k_test_set_parses() -> None:
    result = load_problems(str(GSM8K_TEST))
    problems = result.problems
    assert len(problems) == 1319
    assert result.skipped == []
    assert len({p.id for p in problems}) == 1319
    assert problems[0].id == "gsm8k-test-0000" and problems[0].answer == 18.0
    assert problems[-1].id == "gsm8k-test-1318"
    for problem in problems:
        assert problem.solution is not None
        final = problem.solution.rsplit("####", 1)[1].strip().replace(",", "")
        assert problem.answer == float(final)
        if problem.steps_source == "annotations":
            assert problem.steps == problem.solution.count("<<")
    assert Counter(p.steps_source for p in problems) == {"annotations": 1301, "fallback:lines": 18}
    strata = Counter(DEFAULT_STRATA.label_for(p.steps) for p in problems)
    assert strata == {"1": 65, "2": 362, "3": 368, "4": 295, "5+": 229}
