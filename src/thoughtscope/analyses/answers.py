"""Answering problems through the latents and scoring the answers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from tqdm.auto import tqdm

from thoughtscope.engine.runner import Generation, Runner, RunOptions
from thoughtscope.model.thought_model import ThoughtModel
from thoughtscope.problems import Problem, extract_number, is_clean, is_correct


def answer_problems(
    model: ThoughtModel,
    problems: Sequence[Problem],
    *,
    batch_size: int = 32,
    max_new_tokens: int = 64,
    progress: bool = False,
) -> Iterator[dict[str, Any]]:
    """Yields one scored answer per problem, in input order.

    Each dict has ``id``, ``question``, ``expected``, ``steps``, ``output`` (decoded,
    special tokens skipped), ``predicted`` (number read from it, or ``None``),
    ``correct``, ``finished`` (stopped at ``<eos>``) and ``n_tokens``.
    """
    runner = Runner(model)
    options = RunOptions(max_new_tokens=max_new_tokens, batch_size=batch_size)
    questions = [p.question for p in problems]
    # The runner yields problems batch by batch (grouped by length); hold each answer
    # only until every problem before it has been yielded.
    waiting: dict[int, Generation] = {}
    next_index = 0
    with tqdm(total=len(problems), disable=not progress, desc="answering", unit="problem") as bar:
        for index, (generation,) in runner.stream(questions, options=options):
            waiting[index] = generation
            while next_index in waiting:
                yield _scored(problems[next_index], waiting.pop(next_index))
                next_index += 1
                bar.update(1)


def _scored(problem: Problem, generation: Generation) -> dict[str, Any]:
    predicted = extract_number(generation.text)
    return {
        "id": problem.id,
        "question": problem.question,
        "expected": problem.to_dict()["answer"],
        "steps": problem.steps,
        "output": generation.text,
        "predicted": predicted,
        "correct": is_correct(predicted, problem.answer),
        "finished": generation.finished,
        "clean": is_clean(generation.text),
        "n_tokens": len(generation.answer_ids),
        "n_thoughts": int(generation.thoughts.shape[0]),
        "thoughts_capped": generation.thoughts_capped,
    }
