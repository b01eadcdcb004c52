"""KL to a reference condition, computed on the device, equals the CPU computation."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_codi
from thoughtscope.engine.runner import BASELINE, Condition, EditContext, Runner, RunOptions
from thoughtscope.engine.sites import LATENT, block


def _zero(hidden: torch.Tensor, context: EditContext) -> torch.Tensor:
    return torch.zeros_like(hidden)


def _cpu_kl(reference_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per token KL(reference ‖ row) from two ``(T, V)`` logit tensors."""
    ref = reference_logits.float().log_softmax(dim=-1)
    row = logits.float().log_softmax(dim=-1)
    return (ref.exp() * (ref - row)).sum(dim=-1)


CONDITIONS = [
    Condition("zero@L0:{1}", {(block(0), 1): _zero}),
    BASELINE,
    Condition("early-exit-2", num_latent=2),  # another group of rows
    Condition("zero@latent:{0,1}", {(LATENT, 0): _zero, (LATENT, 1): _zero}),
]


@pytest.mark.parametrize("reference", ["baseline", "early-exit-2"])
def test_target_kl_on_the_device_equals_the_cpu_computation(
    family: str, questions: list[str], reference: str
) -> None:
    model = tiny_codi(family)
    targets = {
        "gold": [model.answer_ids(float(i * 7 + 3)) for i in range(len(questions))],
        "short": [[model.config.eos_id] for _ in questions],
    }
    options = RunOptions(
        max_new_tokens=6, batch_size=5, record_target_logits=True, kl_reference=reference
    )
    results = Runner(model).run(questions, CONDITIONS, options, targets=targets)
    names = [c.name for c in CONDITIONS]
    for row in results:
        ref = row[names.index(reference)]
        for gen in row:
            for name, target in targets.items():
                kl = gen.target_kl[name]
                assert kl.dtype == torch.float32 and kl.device.type == "cpu"
                assert kl.shape == (len(target[gen.problem]),)
                want = _cpu_kl(ref.target_logits[name], gen.target_logits[name])
                torch.testing.assert_close(kl, want, rtol=1e-5, atol=1e-6)
        assert torch.equal(ref.target_kl["gold"], torch.zeros_like(ref.target_kl["gold"]))
        # Zeroing thoughts moves the distribution: not every KL is zero.
    assert any(float(r[0].target_kl["gold"].sum()) > 0 for r in results)


def test_no_reference_no_kl_and_an_unknown_reference_is_named(questions: list[str]) -> None:
    model = tiny_codi("llama")
    runner = Runner(model)
    targets = {"gold": [model.answer_ids(1.0) for _ in questions[:2]]}
    (row,) = runner.run(questions[:1], CONDITIONS, targets={"gold": targets["gold"][:1]})[:1]
    assert all(gen.target_kl == {} for gen in row)
    with pytest.raises(ValueError, match="kl_reference 'nope'"):
        runner.run(questions[:2], CONDITIONS, RunOptions(kl_reference="nope"), targets=targets)
