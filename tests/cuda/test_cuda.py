"""The engine on a CUDA device: the invariants the CPU suite checks, where the kernels
differ (cuBLAS, the device's softmax and reductions, bfloat16). Skipped without a GPU;
``bench/gpu_check.sh`` runs them on a lent one."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_codi
from thoughtscope.engine.backend import expand_rows, new_cache
from thoughtscope.engine.runner import BASELINE, Condition, EditContext, Runner, RunOptions
from thoughtscope.engine.sites import LATENT, block
from thoughtscope.model import load_model
from thoughtscope.problems import load_problems

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

CUDA = torch.device("cuda")


def _zero(hidden: torch.Tensor, context: EditContext) -> torch.Tensor:
    return torch.zeros_like(hidden)


def _identity(hidden: torch.Tensor, context: EditContext) -> torch.Tensor:
    return hidden


PREFIX = [BASELINE] + [
    Condition(f"zero@L1:{{0..{k}}}", {(block(1), p): _zero for p in range(k + 1)}) for k in range(6)
]


def _answers(results: list) -> list[list[list[int]]]:  # type: ignore[type-arg]
    return [[g.answer_ids for g in row] for row in results]


def test_the_empty_intervention_is_bit_identical_on_cuda(family: str, questions: list[str]) -> None:
    model = tiny_codi(family).to(CUDA)
    noop = Condition("identity", {(block(0), 2): _identity, (LATENT, 1): _identity})
    options = RunOptions(max_new_tokens=8, batch_size=64, record_hidden=True)
    results = Runner(model).run(questions, [BASELINE, Condition("empty"), noop], options)
    for base, *others in results:
        for other in others:
            assert other.answer_ids == base.answer_ids
            assert torch.equal(other.thoughts, base.thoughts)
            assert torch.equal(other.hidden, base.hidden)


def test_batched_answers_equal_one_at_a_time_on_cuda(family: str, questions: list[str]) -> None:
    runner = Runner(tiny_codi(family).to(CUDA))
    batched = runner.run(questions, PREFIX, RunOptions(max_new_tokens=8, batch_size=7 * 4))
    alone = [runner.run([q], PREFIX, RunOptions(max_new_tokens=8))[0] for q in questions]
    assert _answers(batched) == [[g.answer_ids for g in row] for row in alone]


def test_forking_changes_no_answer_on_cuda(family: str, questions: list[str]) -> None:
    runner = Runner(tiny_codi(family).to(CUDA))
    forked = runner.run(questions, PREFIX, RunOptions(max_new_tokens=8, fork=True))
    plain = runner.run(questions, PREFIX, RunOptions(max_new_tokens=8, fork=False))
    assert _answers(forked) == _answers(plain)


def test_the_reserved_cache_on_cuda_holds_what_a_growing_one_holds() -> None:
    torch.manual_seed(0)
    prefix = new_cache()
    keys, values = torch.randn(3, 2, 5, 4, device=CUDA), torch.randn(3, 2, 5, 4, device=CUDA)
    prefix.update(keys, values, 0)
    index = torch.tensor([0, 0, 2, 1], device=CUDA)
    reserved = expand_rows(prefix, index, capacity=6)
    plain = new_cache()
    plain.update(keys[index], values[index], 0)
    for _ in range(4):
        k, v = torch.randn(4, 2, 1, 4, device=CUDA), torch.randn(4, 2, 1, 4, device=CUDA)
        got, want = reserved.update(k, v, 0), plain.update(k, v, 0)
        filled = want[0].shape[2]
        assert torch.equal(got[0][:, :, :filled], want[0])
        assert not got[0][:, :, filled:].any() and not got[1][:, :, filled:].any()


def test_the_toy_answers_on_cuda_as_on_the_cpu() -> None:
    problems = load_problems("synthetic:test:seed=3:n=40").problems
    questions = [p.question for p in problems]
    options = RunOptions(max_new_tokens=12)
    on_cpu = Runner(load_model("toy")).run(questions, PREFIX, options)
    on_gpu = Runner(load_model("toy", device="cuda")).run(questions, PREFIX, options)
    # float32 on both (cuBLAS does not use TF32 for float32 products unless asked):
    # the trained toy's answers have wide margins, so rounding does not flip them.
    assert not torch.backends.cuda.matmul.allow_tf32
    assert _answers(on_gpu) == _answers(on_cpu)


def test_bfloat16_on_cuda_runs_and_mostly_agrees_with_float32() -> None:
    problems = load_problems("synthetic:test:seed=3:n=40").problems
    questions = [p.question for p in problems]
    options = RunOptions(max_new_tokens=12)
    full = _answers(Runner(load_model("toy", device="cuda")).run(questions, PREFIX, options))
    half_model = load_model("toy", device="cuda", dtype="bfloat16")
    half = _answers(Runner(half_model).run(questions, PREFIX, options))
    flat_full = [a for row in full for a in row]
    flat_half = [b for row in half for b in row]
    agree = sum(a == b for a, b in zip(flat_full, flat_half, strict=True)) / len(flat_full)
    assert agree >= 0.8, f"bfloat16 agrees with float32 on only {agree:.0%} of the answers"


def test_kl_to_the_baseline_is_computed_on_cuda(questions: list[str]) -> None:
    model = tiny_codi("llama").to(CUDA)
    targets = {"gold": [model.answer_ids(float(i * 7 + 3)) for i in range(len(questions))]}
    options = RunOptions(max_new_tokens=6, kl_reference=BASELINE.name)
    results = Runner(model).run(questions, PREFIX, options, targets=targets)
    for row in results:
        assert torch.equal(row[0].target_kl["gold"], torch.zeros_like(row[0].target_kl["gold"]))
        for gen in row:
            kl = gen.target_kl["gold"]
            assert kl.device.type == "cpu" and bool(torch.isfinite(kl).all())
    assert any(float(g.target_kl["gold"].sum()) > 0 for row in results for g in row[1:])
