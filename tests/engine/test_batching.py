"""Automatic batch size, the reserved KV cache and streaming results batch by batch."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from tests.conftest import tiny_codi
from thoughtscope.engine.backend import (
    append_rows,
    expand_rows,
    reserve_rows,
    retire_order,
    select_rows,
)
from thoughtscope.engine.batching import (
    CPU_MAX_ROWS,
    auto_batch_size,
    check_batch_size,
    row_footprint,
    rows_that_fit,
)
from thoughtscope.engine.runner import BASELINE, Condition, Runner, RunOptions
from thoughtscope.engine.sites import LATENT


def test_rows_that_fit_divides_the_budget_and_clamps() -> None:
    assert rows_that_fit(1000, 100, cap=64) == 10
    assert rows_that_fit(1000, 100, cap=4) == 4
    assert rows_that_fit(50, 100, cap=64) == 1  # never zero rows


def test_a_row_grows_with_its_question_and_answer() -> None:
    model = tiny_codi("llama")
    short = row_footprint(model, prompt_length=10, new_tokens=8)
    long = row_footprint(model, prompt_length=100, new_tokens=64)
    assert long.kv_cache > short.kv_cache > 0
    assert long.total > short.total
    # Two blocks, 2 KV heads of width 8, float32: 2 * 2 * 2 * 8 * 4 bytes per position.
    # Prompt, <bot>, the thoughts, the closing ids (<eot> alone: remove_eos), the answer.
    positions = 10 + 1 + model.config.num_latent + 1 + 8
    assert short.kv_cache == 2 * 2 * 2 * 8 * 4 * positions


def test_conditions_share_the_cost_of_encoding_the_question() -> None:
    model = tiny_codi("gpt2")
    one = row_footprint(model, prompt_length=200, new_tokens=16, conditions=1)
    seven = row_footprint(model, prompt_length=200, new_tokens=16, conditions=7)
    assert seven.prompt < one.prompt
    assert seven.kv_cache == one.kv_cache


def test_auto_batch_size_fits_the_budget_and_the_cpu_cap() -> None:
    model = tiny_codi("llama")
    per_row = row_footprint(model, prompt_length=40, new_tokens=16, conditions=7).total
    fitted = auto_batch_size(
        model, prompt_length=40, new_tokens=16, conditions=7, budget=per_row * 5 + 1
    )
    assert fitted == 5
    huge = auto_batch_size(model, prompt_length=40, new_tokens=16, budget=2**50)
    assert huge == CPU_MAX_ROWS


@pytest.mark.parametrize("bad", [0, -3, 2.5, "big", True])
def test_bad_batch_sizes_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="batch size"):
        check_batch_size(bad)  # type: ignore[arg-type]


def test_auto_and_fixed_batch_sizes_give_the_same_answers(questions: list[str]) -> None:
    runner = Runner(tiny_codi("llama"))
    zero = Condition("zero@latent:{0}", {(LATENT, 0): lambda h, c: torch.zeros_like(h)})
    auto = runner.run(questions, [BASELINE, zero], RunOptions(max_new_tokens=8))
    fixed = runner.run(questions, [BASELINE, zero], RunOptions(max_new_tokens=8, batch_size=3))
    none = runner.run(questions, [BASELINE, zero], RunOptions(max_new_tokens=8, batch_size=None))
    ids = [[g.answer_ids for g in row] for row in auto]
    assert ids == [[g.answer_ids for g in row] for row in fixed]
    assert ids == [[g.answer_ids for g in row] for row in none]


def test_stream_yields_every_problem_once_batch_by_batch(questions: list[str]) -> None:
    runner = Runner(tiny_codi("gpt2"))
    options = RunOptions(max_new_tokens=6, batch_size=4)
    streamed = dict(runner.stream(questions, [BASELINE], options))
    assert sorted(streamed) == list(range(len(questions)))
    collected = runner.run(questions, [BASELINE], options)
    assert [streamed[i][0].answer_ids for i in range(len(questions))] == [
        row[0].answer_ids for row in collected
    ]
    assert not torch.is_inference_mode_enabled()  # the generator does not leak its mode


def test_reserved_cache_matches_a_growing_cache_even_past_its_reserve() -> None:
    torch.manual_seed(0)
    prefix = DynamicCache()
    keys, values = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)
    prefix.update(keys, values, 0)
    index = torch.tensor([0, 0, 2, 1])
    reserved = expand_rows(prefix, index, capacity=6)  # room for one step only
    plain = DynamicCache()
    plain.update(keys[index], values[index], 0)
    for _ in range(4):
        width, _ = reserved.get_mask_sizes(1, 0)  # asked before the step, as the model does
        k, v = torch.randn(4, 2, 1, 4), torch.randn(4, 2, 1, 4)
        got = reserved.update(k, v, 0)
        want = plain.update(k, v, 0)
        filled = want[0].shape[2]
        # Attention sees the whole reserved width: the filled positions, then zeros
        # (which the mask, as wide, hides).
        assert got[0].shape[2] == got[1].shape[2] == width >= filled
        assert torch.equal(got[0][:, :, :filled], want[0])
        assert torch.equal(got[1][:, :, :filled], want[1])
        assert not got[0][:, :, filled:].any() and not got[1][:, :, filled:].any()
    assert reserved.get_seq_length() == plain.get_seq_length() == 9
    reserved.crop(-2)
    plain.crop(-2)
    keep = torch.tensor([3, 1])
    reserved.batch_select_indices(keep)
    plain.batch_select_indices(keep)
    assert torch.equal(reserved.layers[0].keys, plain.layers[0].keys)
    assert torch.equal(reserved.layers[0].values, plain.layers[0].values)
    layer = reserved.layers[0]
    assert not layer._keys[:2, :, 7:].any() and not layer._values[:2, :, 7:].any()


def test_reserving_rows_in_place_equals_expanding_a_copy() -> None:
    torch.manual_seed(0)
    prefix = DynamicCache()
    for layer in range(2):
        prefix.update(torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4), layer)
    index = torch.tensor([2, 2, 0, 1, 1])  # rows may repeat: forking duplicates them
    copy = expand_rows(prefix, index, capacity=12)
    in_place = expand_rows(prefix, torch.arange(3), capacity=6)
    reserve_rows(in_place, index, capacity=12)
    for a, b in zip(copy.layers, in_place.layers, strict=True):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    k, v = torch.randn(5, 2, 1, 4), torch.randn(5, 2, 1, 4)
    assert torch.equal(copy.update(k, v, 0)[0], in_place.update(k, v, 0)[0])
    assert in_place.get_seq_length() == 6


def test_appending_rows_equals_expanding_a_copy_and_leaves_the_rows_in_place() -> None:
    torch.manual_seed(0)
    prefix = DynamicCache()
    for layer in range(2):
        prefix.update(torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4), layer)
    # Room for 4 rows: the first fork fits, the second grows the storage.
    forked = expand_rows(prefix, torch.arange(3), capacity=8, row_capacity=4)
    storage = forked.layers[0]._keys  # type: ignore[union-attr]
    append_rows(forked, torch.tensor([2]))
    assert forked.layers[0]._keys is storage  # type: ignore[union-attr]  # nothing moved
    append_rows(forked, torch.tensor([0, 3]))
    copy = expand_rows(prefix, torch.tensor([0, 1, 2, 2, 0, 2]), capacity=8)
    for a, b in zip(copy.layers, forked.layers, strict=True):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    k, v = torch.randn(6, 2, 1, 4), torch.randn(6, 2, 1, 4)
    assert torch.equal(copy.update(k, v, 0)[0], forked.update(k, v, 0)[0])
    forked.batch_select_indices(torch.tensor([5, 1]))  # keeps the filled positions only
    copy.batch_select_indices(torch.tensor([5, 1]))
    assert torch.equal(copy.layers[0].keys, forked.layers[0].keys)
    assert forked.get_seq_length() == 6
    plain = DynamicCache()  # a growing cache appends by copying
    plain.update(torch.randn(2, 2, 3, 4), torch.randn(2, 2, 3, 4), 0)
    want = plain.layers[0].keys[torch.tensor([0, 1, 1])]  # type: ignore[index]
    append_rows(plain, torch.tensor([1]))
    assert torch.equal(plain.layers[0].keys, want)


def test_retiring_rows_fills_their_places_from_the_end() -> None:
    done = torch.tensor([True, False, False, True, False, True, False])
    order = retire_order(done)
    assert order.tolist() == [4, 1, 2, 6]  # rows 1 and 2 stay, 4 and 6 move up
    torch.manual_seed(0)
    prefix = DynamicCache()
    prefix.update(torch.randn(7, 2, 3, 4), torch.randn(7, 2, 3, 4), 0)
    reserved = expand_rows(prefix, torch.arange(7), capacity=5)
    storage = reserved.layers[0]._keys  # type: ignore[union-attr]
    select_rows(reserved, order)  # as decoding retires rows
    assert reserved.layers[0]._keys is storage  # type: ignore[union-attr]  # in place
    assert torch.equal(reserved.layers[0].keys, prefix.layers[0].keys[order])  # type: ignore[index]


def test_keeping_freed_memory_applies_on_linux_and_can_be_repeated() -> None:
    import platform
    import sys

    from thoughtscope.engine.batching import keep_freed_memory

    applied = keep_freed_memory()
    assert keep_freed_memory() == applied
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert applied
