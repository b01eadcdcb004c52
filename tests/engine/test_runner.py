"""The batched runner: batching invariance, hook points, recording, teacher forcing."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_codi
from thoughtscope.engine.lens import decode_states
from thoughtscope.engine.runner import BASELINE, Condition, EditContext, Runner, RunOptions
from thoughtscope.engine.sites import BOT, LATENT, block


def _ids(results, j: int = 0) -> list[list[int]]:
    return [row[j].answer_ids for row in results]


@pytest.mark.parametrize("remove_eos", [True, False])
def test_batched_answers_equal_one_at_a_time(
    family: str, remove_eos: bool, questions: list[str]
) -> None:
    model = tiny_codi(family, remove_eos=remove_eos)
    runner = Runner(model)
    options = RunOptions(max_new_tokens=16, batch_size=7)
    batched = runner.run(questions, options=options)
    single = [
        runner.run([q], options=RunOptions(max_new_tokens=16, batch_size=1))[0] for q in questions
    ]
    assert _ids(batched) == _ids(single)
    for b, s in zip(batched, single, strict=True):
        torch.testing.assert_close(b[0].thoughts, s[0].thoughts, rtol=1e-4, atol=1e-5)


def test_results_do_not_depend_on_batch_neighbours(questions: list[str]) -> None:
    runner = Runner(tiny_codi("llama"))
    alone = runner.run(questions[:1], options=RunOptions(max_new_tokens=16))
    crowded = runner.run(questions, options=RunOptions(max_new_tokens=16, batch_size=16))
    assert alone[0][0].answer_ids == crowded[0][0].answer_ids


def test_the_empty_intervention_is_bit_identical(family: str, questions: list[str]) -> None:
    model = tiny_codi(family)
    runner = Runner(model)
    options = RunOptions(max_new_tokens=12, batch_size=64, record_hidden=True)
    identity = lambda hidden, context: hidden  # noqa: E731
    empty = Condition("empty")
    noop = Condition("identity-edit", {(block(0), 2): identity, (LATENT, 1): identity})
    results = runner.run(questions, [BASELINE, empty, noop], options)
    for row in results:
        base = row[0]
        for other in row[1:]:
            assert other.answer_ids == base.answer_ids
            assert torch.equal(other.thoughts, base.thoughts)
            assert torch.equal(other.hidden, base.hidden)
    alone = runner.run(questions, [BASELINE], options)
    assert all(
        torch.equal(a[0].thoughts, r[0].thoughts) for a, r in zip(alone, results, strict=True)
    )


def test_block_edits_apply_per_row_at_one_position(questions: list[str]) -> None:
    model = tiny_codi("llama")
    runner = Runner(model)
    seen: list[EditContext] = []

    def zero(hidden: torch.Tensor, context: EditContext) -> torch.Tensor:
        seen.append(context)
        return torch.zeros_like(hidden)

    conditions = [BASELINE, Condition("zero@L1:{2}", {(block(1), 2): zero})]
    options = RunOptions(max_new_tokens=8, batch_size=32, record_hidden=True)
    results = runner.run(questions[:5], conditions, options)
    for row in results:
        base, edited = row[0].hidden, row[1].hidden
        # hidden: (positions [bot, 0..5, eot], layers + 1, d); position 2 is index 3.
        assert torch.all(edited[3, 2] == 0)
        assert torch.equal(edited[:3], base[:3])  # earlier steps untouched
        assert not torch.equal(edited[4], base[4])  # later thoughts see the change
    assert sorted(int(i) for c in seen for i in c.problems) == [0, 1, 2, 3, 4]
    assert all(c.site == block(1) and c.position == 2 for c in seen)


def test_latent_edits_replace_the_fed_back_thought(questions: list[str]) -> None:
    model = tiny_codi("gpt2")
    runner = Runner(model)
    cond = Condition("zero@latent:{0}", {(LATENT, 0): lambda h, c: torch.zeros_like(h)})
    results = runner.run(questions[:3], [BASELINE, cond], RunOptions(max_new_tokens=8))
    for base, edited in results:
        assert torch.all(edited.thoughts[0] == 0)
        assert not torch.equal(edited.thoughts[1], base.thoughts[1])


def test_bot_edits_are_allowed_at_block_sites_only() -> None:
    runner = Runner(tiny_codi("gpt2"))
    zero = lambda h, c: torch.zeros_like(h)  # noqa: E731
    runner.run(["q"], [Condition("bot", {(block(0), BOT): zero})], RunOptions(max_new_tokens=2))
    with pytest.raises(ValueError, match="latent site has no bot"):
        runner.run(["q"], [Condition("x", {(LATENT, BOT): zero})])
    with pytest.raises(ValueError, match="block 9 does not exist"):
        runner.run(["q"], [Condition("x", {(block(9), 0): zero})])
    with pytest.raises(ValueError, match="position 6 is outside"):
        runner.run(["q"], [Condition("x", {(block(0), 6): zero})])
    with pytest.raises(ValueError, match="unique"):
        runner.run(["q"], [BASELINE, BASELINE])


def test_early_exit_runs_fewer_thoughts(questions: list[str]) -> None:
    runner = Runner(tiny_codi("llama"))
    conditions = [BASELINE, *(Condition(f"exit@{k}", num_latent=k) for k in range(7))]
    results = runner.run(questions[:4], conditions, RunOptions(max_new_tokens=8))
    for row in results:
        assert [g.thoughts.shape[0] for g in row] == [6, 0, 1, 2, 3, 4, 5, 6]
        assert row[-1].answer_ids == row[0].answer_ids
    single = runner.run(
        questions[:1], [Condition("exit@2", num_latent=2)], RunOptions(max_new_tokens=8)
    )
    assert single[0][0].answer_ids == results[0][3].answer_ids


def test_recorded_states_match_the_thoughts(family: str) -> None:
    model = tiny_codi(family)
    (gen,) = Runner(model).run(["a=1;b=a+2;b=?"], options=RunOptions(record_hidden=True))[0:1][0]
    n_latent, n_layers = model.config.num_latent, model.num_layers
    assert gen.hidden.shape == (n_latent + 2, n_layers + 1, model.d_model)
    # The input at thought position k is thought k itself.
    torch.testing.assert_close(gen.hidden[1 : n_latent + 1, 0], gen.thoughts)
    # Thought k+1 is the projection of the normed last block output at position k.
    with torch.no_grad():
        last = model.final_norm(gen.hidden[1:n_latent, n_layers])
        torch.testing.assert_close(model.projection(last), gen.thoughts[1:], rtol=1e-4, atol=1e-5)


def test_teacher_forced_targets_match_the_greedy_logits(questions: list[str]) -> None:
    model = tiny_codi("llama", remove_eos=False)
    runner = Runner(model)
    options = RunOptions(max_new_tokens=6, record_answer_logits=True)
    greedy = runner.run(questions[:4], options=options)
    targets = {"own": [row[0].answer_ids for row in greedy], "gold": [model.answer_ids(7)] * 4}
    forced = runner.run(
        questions[:4],
        options=RunOptions(max_new_tokens=6, record_target_logits=True),
        targets=targets,
    )
    for g, f in zip(greedy, forced, strict=True):
        n = len(g[0].answer_ids)
        torch.testing.assert_close(
            f[0].target_logits["own"], g[0].answer_logits[:n], rtol=1e-4, atol=1e-4
        )
        assert f[0].target_logprobs["gold"].shape == (len(model.answer_ids(7)),)
        assert torch.all(f[0].target_logprobs["gold"] <= 0)
        assert f[0].answer_ids == g[0].answer_ids  # forcing restores the cache


def test_logit_lens_decodes_every_position_and_layer() -> None:
    model = tiny_codi("gpt2")
    (gen,) = Runner(model).run(["2+2?"], options=RunOptions(record_hidden=True))[0]
    states = decode_states(model, gen.hidden, top_k=3)
    assert len(states) == 8 * 3  # positions bot,0..5,eot x (input + 2 blocks)
    assert {s.position for s in states} == {"bot", "eot", *map(str, range(6))}
    assert {s.site for s in states} == {"input", "latent", "block:0", "block:1"}
    assert all(len(s.tokens) == 3 and s.probs == sorted(s.probs, reverse=True) for s in states)


def test_bfloat16_runs(questions: list[str]) -> None:
    model = tiny_codi("llama").to(torch.bfloat16)
    results = Runner(model).run(questions[:3], options=RunOptions(max_new_tokens=4))
    assert all(len(r[0].answer_ids) <= 4 for r in results)
