"""Answering problems through the latents and scoring the answers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from tqdm.auto import tqdm

from thoughtscope.engine.runner import Runner, RunOptions
from thoughtscope.model.codi import CodiModel
from thoughtscope.problems import Problem, extract_number, is_clean, is_correct

CHUNK = 256
"""Problems handed to the runner at a time: results stream out, memory stays bounded."""


def answer_problems(
    model: CodiModel,
    problems: Sequence[Problem],
    *,
    batch_size: int = 32,
    max_new_tokens: int = 64,
    progress: bool = False,
) -> Iterator[dict[str, Any]]:
    """Yields one scored answer per problem, in input order.

    Each dict has ``id``, ``question``, ``expected``, ``steps``, ``output`` (decoded,
    special tokens skipped), ``predicted`` (number read from it, or ``None``),
    ``correct``, ``finished`` (stopped at ``<eos>``), ``clean`` (one well-formed number,
    :func:`~thoughtscope.problems.scoring.is_clean`) and ``n_tokens``.
    """
    runner = Runner(model)
    options = RunOptions(max_new_tokens=max_new_tokens, batch_size=batch_size)
    with tqdm(total=len(problems), disable=not progress, desc="answering", unit="problem") as bar:
        for start in range(0, len(problems), CHUNK):
            chunk = problems[start : start + CHUNK]
            results = runner.run([p.question for p in chunk], options=options)
            for problem, (generation,) in zip(chunk, results, strict=True):
                predicted = extract_number(generation.text)
                yield {
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
                }
            bar.update(len(chunk))
