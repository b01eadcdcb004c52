"""Forking: conditions share a problem's rows while their edits agree, with the same
results as running every condition in its own row from the start."""

from __future__ import annotations

import torch

from tests.conftest import tiny_codi
from thoughtscope.engine.latent import Branches
from thoughtscope.engine.runner import BASELINE, Condition, EditContext, Runner, RunOptions
from thoughtscope.engine.sites import BOT, LATENT, block


def _zero(hidden: torch.Tensor, context: EditContext) -> torch.Tensor:
    return torch.zeros_like(hidden)


def _half(hidden: torch.Tensor, context: EditContext) -> torch.Tensor:
    return hidden * 0.5


CONDITIONS = [
    BASELINE,
    Condition("zero@L1:{3}", {(block(1), 3): _zero}),
    Condition("zero@L1:{3,4}", {(block(1), 3): _zero, (block(1), 4): _half}),
    Condition("zero@latent:{1}", {(LATENT, 1): _zero}),
    Condition("zero@L0:{5}", {(block(0), 5): _zero}),
    Condition("exit-4", num_latent=4),
    Condition("empty"),
]


def test_branches_split_where_edits_first_differ() -> None:
    branches = Branches.start(CONDITIONS[:3], n_problems=2)
    assert branches.split(0) is None  # nobody edits thought 0: one row per problem
    # Rows are branch-major (row = branch * problems + problem); a fork appends the new
    # branch's rows, copied from its parent's, after the rows already there.
    index = branches.split(3)  # both ablations make the same edit (_zero) at thought 3
    assert branches.members == [[0], [1, 2]]
    assert index is not None and index.tolist() == [0, 1]  # branch 1 copies branch 0
    index = branches.split(4)  # only the second halves thought 4
    assert branches.members == [[0], [1], [2]]
    assert index is not None and index.tolist() == [2, 3]  # branch 2 copies branch 1
    # At the end, one row per condition and problem, condition-major: branches made in
    # the conditions' order are already there, so nothing moves.
    assert branches.per_condition().tolist() == [0, 1, 2, 3, 4, 5]
    # Conditions that never fork share a row, which the end copies.
    same_edit = [CONDITIONS[1], BASELINE, Condition("again", {(block(1), 3): _zero})]
    branches = Branches.start(same_edit, n_problems=2)
    branches.split(3)
    assert branches.members == [[0, 2], [1]]
    assert branches.per_condition().tolist() == [0, 1, 2, 3, 0, 1]


def test_edits_that_cannot_say_whether_they_are_equal_count_as_different() -> None:
    from dataclasses import dataclass

    from thoughtscope.engine.latent import same_edits

    @dataclass(frozen=True)
    class Replace:
        vector: torch.Tensor

        def __call__(self, hidden: torch.Tensor, context: EditContext) -> torch.Tensor:
            return self.vector.expand_as(hidden)

    a, b = Replace(torch.zeros(4)), Replace(torch.zeros(4))
    assert same_edits({LATENT: a}, {LATENT: a})
    assert not same_edits({LATENT: a}, {LATENT: b})  # tensor == is elementwise
    assert not same_edits({LATENT: a}, {block(0): a})
    assert same_edits({}, {})


def test_forking_changes_no_result_and_computes_fewer_rows(
    family: str, questions: list[str]
) -> None:
    model = tiny_codi(family, remove_eos=False)
    runner = Runner(model)
    targets = {"gold": [model.answer_ids(float(i)) for i in range(len(questions))]}
    computed = {}
    results = {}
    for fork in (True, False):
        counts = {"row_tokens": 0}

        def count(_module, _args, kwargs, counts=counts):
            shape = kwargs["inputs_embeds"].shape
            counts["row_tokens"] += shape[0] * shape[1]

        handle = model.decoder.register_forward_pre_hook(count, with_kwargs=True)
        options = RunOptions(max_new_tokens=8, batch_size=64, record_hidden=True, fork=fork)
        results[fork] = runner.run(questions, CONDITIONS, options, targets=targets)
        handle.remove()
        computed[fork] = counts["row_tokens"]
    assert computed[True] < computed[False]
    for forked, plain in zip(results[True], results[False], strict=True):
        for a, b in zip(forked, plain, strict=True):
            assert (a.condition, a.answer_ids) == (b.condition, b.answer_ids)
            torch.testing.assert_close(a.thoughts, b.thoughts, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(a.hidden, b.hidden, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(
                a.target_logprobs["gold"], b.target_logprobs["gold"], rtol=1e-5, atol=1e-5
            )


def test_an_edit_at_bot_forks_before_the_first_thought(questions: list[str]) -> None:
    model = tiny_codi("llama")
    conditions = [BASELINE, Condition("zero@L0:bot", {(block(0), BOT): _zero})]
    forked = Runner(model).run(questions[:4], conditions, RunOptions(max_new_tokens=6))
    plain = Runner(model).run(questions[:4], conditions, RunOptions(max_new_tokens=6, fork=False))
    assert [[g.answer_ids for g in row] for row in forked] == [
        [g.answer_ids for g in row] for row in plain
    ]
