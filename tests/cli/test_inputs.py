"""Prompts longer than the model's context are refused (ids and lengths named) or, with
`--skip-long`, left out and listed, before anything runs; answers say whether they
finished and hold one clean number."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.conftest import GSM8K_TEST, tiny_codi
from thoughtscope.analyses.inputs import check_prompt_lengths, positions_after_question
from thoughtscope.cli import app
from thoughtscope.engine.runner import Runner, RunOptions
from thoughtscope.model import load_model
from thoughtscope.problems import Problem, load_problems


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def data_with_a_long_question(folder: Path) -> Path:
    path = folder / "mixed.jsonl"
    rows = [
        {"id": "short-1", "question": "a=2;b=a+3;b=?", "answer": 5},
        {"id": "huge", "question": "a=1;" * 25_000 + "a=?", "answer": 1},
        {"id": "short-2", "question": "a=4;b=a*2;b=?", "answer": 8},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_the_positions_a_run_needs_count_thoughts_closing_ids_and_answer_tokens() -> None:
    toy = load_model("toy")  # 6 thoughts, keeps <eos>: <bot> + 6 + <eot><eos> + (12 - 1)
    assert positions_after_question(toy, 12) == 1 + 6 + 2 + 11
    question = "a=2;b=a+3;b=?"
    check = check_prompt_lengths(toy, load_problems("synthetic:n=1").problems, max_new_tokens=12)
    assert check.limit == 256 and check.too_long == []
    assert len(toy.question_ids(question)) == len(question) + 1  # bytes, then <eos>


def test_the_check_draws_the_line_exactly_where_gpt2_positions_run_out() -> None:
    # GPT-2 has learned positions: one past n_positions is an IndexError in the engine.
    model = tiny_codi("gpt2")  # n_positions 512, remove_eos: <bot> + 6 + <eot> + 7 = 15
    fits, over = "a" * (512 - 15), "a" * (512 - 15 + 1)
    problems = [Problem(f"q{len(q)}", q, 1.0, None, "unknown", None, "") for q in (fits, over)]
    check = check_prompt_lengths(model, problems, max_new_tokens=8)
    assert [p.id for p in check.too_long] == ["q498"]
    assert check.too_long[0].positions == 513
    (result,) = Runner(model).run([fits], options=RunOptions(max_new_tokens=8))[0]
    assert len(result.answer_ids) == 8  # it ran to the last position allowed
    with pytest.raises(IndexError):
        Runner(model).run([over], options=RunOptions(max_new_tokens=8))


def test_a_100k_character_question_is_refused_fast_with_its_id_and_length(
    tmp_path: Path,
) -> None:
    out = tmp_path / "answers.jsonl"
    began = time.perf_counter()
    result = invoke("answer", "--data", str(data_with_a_long_question(tmp_path)), "--out", str(out))
    assert time.perf_counter() - began < 10
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert "\n" not in message
    assert message.startswith(
        "Error: --data: 1 of 3 problems are too long: huge (100004 question tokens, 100076 "
        "positions); the model reads at most 256 positions and each run needs 72 beyond the "
        "question"
    )
    assert "--skip-long" in message
    assert not out.exists()


def test_skip_long_leaves_them_out_lists_them_and_answers_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    data = str(data_with_a_long_question(tmp_path))
    result = invoke("answer", "--data", data, "--out", str(out), "--skip-long")
    assert result.exit_code == 0, result.output
    assert "skipped: 1 of 3 problems are too long: huge" in result.stderr
    assert "  huge (100004 question tokens, 100076 positions)" in result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["short-1", "short-2"]


def test_thoughts_refuses_them_too(tmp_path: Path) -> None:
    data = str(data_with_a_long_question(tmp_path))
    result = invoke("thoughts", "--data", data, "--out", str(tmp_path / "t.safetensors"))
    assert result.exit_code == 2
    assert "1 of 3 problems are too long: huge" in result.stderr
    assert not (tmp_path / "t.safetensors").exists()


@pytest.mark.skipif(
    not GSM8K_TEST.is_file(),
    reason=f"GSM8K test set not at {GSM8K_TEST} (set THOUGHTSCOPE_GSM8K to its test.jsonl)",
)
def test_gsm8k_questions_too_long_for_the_toy_model_are_counted() -> None:
    toy = load_model("toy")
    problems = load_problems(str(GSM8K_TEST)).problems
    counts = {
        n: len(check_prompt_lengths(toy, problems, max_new_tokens=n).too_long) for n in (1, 64)
    }
    # 1,319 questions; the toy reads 256 positions of bytes.
    assert counts == {1: 520, 64: 893}


def test_answer_rows_say_whether_they_finished_and_are_clean(tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    args = ["answer", "--data", "synthetic:test:seed=0:n=4", "--out", str(out)]
    assert invoke(*args, "--max-new-tokens", "12").exit_code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(row["finished"] and row["clean"] for row in rows)
    assert invoke(*args, "--max-new-tokens", "1", "--force").exit_code == 0
    cut = [json.loads(line) for line in out.read_text().splitlines()]
    # One token is not enough to reach <eos>: every answer is unfinished.
    assert not any(row["finished"] for row in cut)
