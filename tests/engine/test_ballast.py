"""The ballast row (``RunOptions.ballast``): the last row of a batch can differ in its last
bit from an identical row elsewhere (on a CPU, elementwise kernels compute a tensor's last
elements on a scalar path); the ballast takes that place at every step, decoding
included, and its results never leave the runner."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from thoughtscope.engine.backend import expand_rows, retire_order, select_rows
from thoughtscope.engine.runner import BASELINE, Condition, Generation, Runner, RunOptions
from thoughtscope.engine.sites import LATENT, block
from thoughtscope.model import load_model
from thoughtscope.model.thought_model import ThoughtModel
from thoughtscope.problems.sources import load_problems

# The shipped toy model: its MLP width (336) leaves the last row of a batch with an odd
# number of rows on SiLU's scalar tail.
DATA = "synthetic:test:seed=13:n=5"


@pytest.fixture(scope="module")
def toy() -> ThoughtModel:
    return load_model("toy")


def _identity(hidden: torch.Tensor, context: object) -> torch.Tensor:
    return hidden


# Three conditions that must give the baseline's numbers bit for bit: 5 problems x 3
# conditions is an odd number of rows.
SAME = [
    BASELINE,
    Condition("empty"),
    Condition("identity-edit", {(block(2), 0): _identity, (LATENT, 3): _identity}),
]


def _differing(results: list[list[Generation]]) -> list[int]:
    """The problems with a condition whose numbers differ from the first condition's."""
    out = []
    for i, (base, *others) in enumerate(results):
        for other in others:
            assert base.hidden is not None and other.hidden is not None
            assert base.answer_logits is not None and other.answer_logits is not None
            same = (
                other.answer_ids == base.answer_ids
                and torch.equal(other.thoughts, base.thoughts)
                and torch.equal(other.hidden, base.hidden)
                and torch.equal(other.answer_logits, base.answer_logits)
                and torch.equal(other.target_logprobs["gold"], base.target_logprobs["gold"])
            )
            if not same:
                out.append(i)
                break
    return out


def _run(
    runner: Runner,
    questions: list[str],
    gold: list[list[int]],
    *,
    ballast: bool,
    fork: bool = True,
) -> list[list[Generation]]:
    options = RunOptions(
        max_new_tokens=8,
        batch_size=len(questions) * len(SAME),
        record_hidden=True,
        record_answer_logits=True,
        fork=fork,
        ballast=ballast,
    )
    return runner.run(questions, SAME, options, targets={"gold": gold})


@pytest.mark.parametrize("fork", [False, True])
def test_with_the_ballast_identical_rows_give_identical_numbers(
    toy: ThoughtModel, fork: bool
) -> None:
    problems = load_problems(DATA).problems
    questions = [p.question for p in problems]
    gold = [toy.answer_ids(p.answer) for p in problems]
    runner = Runner(toy)
    last = sorted(range(len(questions)), key=lambda i: len(questions[i]))[-1]
    # Without it, some problem's row differs from its own baseline row: without forking,
    # the problem whose rows are last while thinking (the longest question, last
    # condition); with forking, here, a row that retirement moved to the last place
    # while decoding.
    without = _differing(_run(runner, questions, gold, ballast=False, fork=fork))
    assert without == [last] if not fork else without != []
    assert _differing(_run(runner, questions, gold, ballast=True, fork=fork)) == []


def test_the_ballast_is_a_copy_of_the_longest_question_run_last(toy: ThoughtModel) -> None:
    # 4 problems x 3 conditions is an even number of rows (no tail on the last row), 5 x 3
    # with the copy of the longest is odd.
    problems = load_problems(DATA).problems[:4]
    questions = [p.question for p in problems]
    gold = [toy.answer_ids(p.answer) for p in problems]
    runner = Runner(toy)
    longest = max(range(len(questions)), key=lambda i: len(questions[i]))
    assert _differing(_run(runner, questions, gold, ballast=False, fork=False)) == []
    # Appending a copy of the longest question by hand moves the difference to the copy.
    asked, golds = [*questions, questions[longest]], [*gold, gold[longest]]
    by_hand = _run(runner, asked, golds, ballast=False, fork=False)
    assert _differing(by_hand) == [len(questions)]
    # The ballast does that inside the runner, and nothing of the copy comes back.
    with_ballast = _run(runner, questions, gold, ballast=True, fork=False)
    assert len(with_ballast) == len(questions)
    for mine, theirs in zip(with_ballast, by_hand, strict=False):
        for a, b in zip(mine, theirs, strict=True):
            assert a.problem == b.problem and a.condition == b.condition
            assert a.answer_ids == b.answer_ids and torch.equal(a.thoughts, b.thoughts)
            assert torch.equal(a.target_logprobs["gold"], b.target_logprobs["gold"])


def test_the_empty_condition_has_kl_exactly_zero_on_every_row(toy: ThoughtModel) -> None:
    problems = load_problems(DATA).problems
    questions = [p.question for p in problems]
    gold = {"gold": [toy.answer_ids(p.answer) for p in problems]}
    runner = Runner(toy)

    def kl(ballast: bool) -> list[float]:
        options = RunOptions(
            max_new_tokens=4,
            batch_size=len(questions) * len(SAME),
            kl_reference="empty",
            fork=False,
            ballast=ballast,
        )
        results = runner.run(questions, SAME, options, targets=gold)
        return [float(g.target_kl["gold"].abs().max()) for row in results for g in row]

    assert max(kl(ballast=False)) > 0.0  # the last row's KL to its own empty row
    assert kl(ballast=True) == [0.0] * len(questions) * len(SAME)


def test_ballast_results_never_leave_the_runner(toy: ThoughtModel) -> None:
    questions = [p.question for p in load_problems("synthetic:test:seed=12:n=7").problems]
    runner = Runner(toy)
    plain = RunOptions(max_new_tokens=8, batch_size=6)  # 3 batches of 2 or 3 problems
    ballasted = RunOptions(max_new_tokens=8, batch_size=6, ballast=True)
    conditions = [BASELINE, Condition("empty")]
    without = runner.run(questions, conditions, plain)
    with_it = runner.run(questions, conditions, ballasted)
    assert len(with_it) == len(questions)
    for i, (a, b) in enumerate(zip(without, with_it, strict=True)):
        assert [g.problem for g in b] == [i, i] and [g.condition for g in b] == [
            "baseline",
            "empty",
        ]
        assert [g.answer_ids for g in a] == [g.answer_ids for g in b]
    streamed = [i for i, _ in runner.stream(questions, conditions, ballasted)]
    assert sorted(streamed) == list(range(len(questions)))


def test_the_ballast_finishing_first_changes_no_answer(toy: ThoughtModel) -> None:
    # The longest question's answer is one token, others' two: its ballast copy finishes
    # first and stays the last row while the others decode on.
    problems = load_problems("synthetic:test:seed=13:n=9").problems
    questions = [p.question for p in problems]
    runner = Runner(toy)
    options = RunOptions(max_new_tokens=32, batch_size=9 * 3, record_answer_logits=True)
    without = runner.run(questions, SAME, options)
    lengths = [len(row[0].answer_ids) for row in without]
    longest = max(range(len(questions)), key=lambda i: len(questions[i]))
    assert lengths[longest] < max(lengths)
    with_it = runner.run(questions, SAME, RunOptions(**{**options.__dict__, "ballast": True}))
    for a, b in zip(without, with_it, strict=True):
        assert [g.answer_ids for g in a] == [g.answer_ids for g in b]
        assert all(g.finished for g in b)
    for base, *others in with_it:  # decoding kept every compared row off the last place
        for other in others:
            assert other.answer_logits is not None and base.answer_logits is not None
            assert torch.equal(other.answer_logits, base.answer_logits)


def test_retiring_rows_keeps_the_pinned_last_row_last() -> None:
    # The last row stays (even when done) and ends last; others as without the pin.
    done = torch.tensor([True, False, False, False, False])
    assert retire_order(done).tolist() == [4, 1, 2, 3]
    assert retire_order(done, pin_last=True).tolist() == [3, 1, 2, 4]
    done = torch.tensor([False, True, False, False, True, True])
    assert retire_order(done, pin_last=True).tolist() == [0, 3, 2, 5]
    assert retire_order(torch.tensor([True, True, True]), pin_last=True).tolist() == [2]
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        n = int(torch.randint(2, 12, (1,), generator=generator))
        done = torch.rand(n, generator=generator) < 0.4
        order = retire_order(done, pin_last=True)
        kept = (~done).nonzero().flatten().tolist()
        assert int(order[-1]) == n - 1
        assert sorted(order.tolist()) == sorted({*kept, n - 1})
        # Kept rows stay in place; a hole is filled from beyond, or by the row that
        # held the last place (which the pinned row takes).
        for place in range(len(order) - 1):
            if done[place]:
                assert int(order[place]) >= len(order) - 1
            else:
                assert int(order[place]) == place


def test_retiring_around_the_pinned_row_stays_in_the_reserved_storage() -> None:
    torch.manual_seed(0)
    done = torch.tensor([False, True, False, False, False, True, False])
    order = retire_order(done, pin_last=True)
    assert order.tolist() == [0, 4, 2, 3, 6]  # row 4 fills a hole, 6 moves to the end
    prefix = DynamicCache()
    prefix.update(torch.randn(7, 2, 3, 4), torch.randn(7, 2, 3, 4), 0)
    reserved = expand_rows(prefix, torch.arange(7), capacity=5)
    storage = reserved.layers[0]._keys  # type: ignore[union-attr]
    select_rows(reserved, order)
    assert reserved.layers[0]._keys is storage  # type: ignore[union-attr]  # in place
    assert torch.equal(reserved.layers[0].keys, prefix.layers[0].keys[order])  # type: ignore[index]


@pytest.mark.parametrize("hold", [BASELINE.name, None])
def test_the_ballast_leaves_soft_thinking_lengths_and_answers_alone(hold: str | None) -> None:
    from tests.model.test_soft_thinking import tiny_soft_thinker

    model = tiny_soft_thinker()  # rows stop thinking at different steps
    questions = [p.question for p in load_problems("synthetic:test:seed=13:n=8").problems]
    conditions = [
        BASELINE,
        Condition("latent-1", {(LATENT, 1): lambda h, c: torch.zeros_like(h)}),
        Condition("block-0", {(block(0), 0): lambda h, c: h * 2}),
    ]

    def run(ballast: bool) -> list[list[Generation]]:
        options = RunOptions(
            max_new_tokens=12,
            batch_size=len(questions) * len(conditions),
            record_hidden=True,
            hold_thoughts=hold,
            ballast=ballast,
        )
        return Runner(model).run(questions, conditions, options)

    without, with_it = run(False), run(True)
    counts = {len(g.thoughts) for row in without for g in row}
    assert len(counts) > 1  # ragged thought counts
    for a_row, b_row in zip(without, with_it, strict=True):
        for a, b in zip(a_row, b_row, strict=True):
            assert a.answer_ids == b.answer_ids and a.finished == b.finished
            assert a.thoughts.shape == b.thoughts.shape
            assert a.thoughts_capped == b.thoughts_capped
            assert torch.equal(a.thoughts, b.thoughts)
