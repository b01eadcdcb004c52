"""Each ablation kind puts what it says at the site, seen through the runner's recorded
activations (``hidden[position + 1, layer index]``; layer index 0 is the input, i.e. the
thought itself, and L+1 is block L's output)."""

from __future__ import annotations

import torch

from thoughtscope.analyses.interventions import (
    ABLATIONS,
    AblationResources,
    DonorActivations,
    compute_means,
    donor_indices,
    noise_direction,
)
from thoughtscope.engine.runner import BASELINE, Condition, EditContext, Runner, RunOptions
from thoughtscope.engine.sites import LATENT, Site, block
from thoughtscope.model import CodiModel

RECORD = RunOptions(max_new_tokens=2, batch_size=64, record_hidden=True)


def ablate(kind: str, site: Site, positions: list[int], resources: AblationResources) -> Condition:
    build = ABLATIONS[kind].build
    edits = {(site, p): build(site, p, resources) for p in positions}
    return Condition(f"{kind}@{site}:{positions}", edits)


def run(model: CodiModel, questions: list[str], *conditions: Condition) -> list[list]:
    return Runner(model).run(questions, [BASELINE, *conditions], RECORD)


def test_zero_gives_zeros_at_the_block_output_and_at_the_thought(
    tiny_model: CodiModel, questions: list[str]
) -> None:
    resources = AblationResources(problem_ids=[str(i) for i in range(len(questions))])
    results = run(
        tiny_model,
        questions,
        ablate("zero", block(1), [0, 2], resources),
        Condition("zero-latent", {(LATENT, 3): ABLATIONS["zero"].build(LATENT, 3, resources)}),
    )
    for _, zero_block, zero_latent in results:
        assert torch.all(zero_block.hidden[1, 2] == 0) and torch.all(zero_block.hidden[3, 2] == 0)
        assert not torch.all(zero_block.hidden[2, 2] == 0)  # position 1 untouched
        assert torch.all(zero_latent.thoughts[3] == 0)
        assert torch.all(zero_latent.hidden[4, 0] == 0)  # the input at position 3


def test_mean_is_the_mean_of_recorded_baseline_activations(
    tiny_model: CodiModel, questions: list[str]
) -> None:
    baseline = Runner(tiny_model).run(questions, [BASELINE], RECORD)
    expected = torch.stack([row[0].hidden for row in baseline]).mean(dim=0)
    means = compute_means(
        tiny_model, questions, [str(i) for i in range(len(questions))], batch_size=2
    )
    torch.testing.assert_close(means.hidden, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(means.at(block(2), 4), expected[5, 3])
    torch.testing.assert_close(means.pooled(LATENT), expected[1:7, 0].mean(dim=0))

    resources = AblationResources(problem_ids=list("abcde"), values={"means": means})
    results = run(
        tiny_model,
        questions,
        ablate("mean", block(2), [4], resources),
        ablate("mean-pooled", LATENT, [1], resources),
    )
    for _, mean, pooled in results:
        torch.testing.assert_close(mean.hidden[5, 3], expected[5, 3], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(pooled.thoughts[1], expected[1:7, 0].mean(dim=0))


def test_noise_keeps_the_norm_and_is_seeded_per_problem_whatever_the_batch(
    tiny_model: CodiModel, questions: list[str]
) -> None:
    ids = [f"p{i}" for i in range(len(questions))]
    site = block(3)
    resources = AblationResources(problem_ids=ids, seed=7)
    full = run(tiny_model, questions, ablate("noise", site, [2], resources))
    for i, (baseline, noised) in enumerate(full):
        before = baseline.hidden[3, 4]  # block 3 at thought 2, as the baseline had it
        after = noised.hidden[3, 4]
        torch.testing.assert_close(after.norm(), before.norm())
        direction = noise_direction(7, ids[i], site, 2, tiny_model.d_model)
        torch.testing.assert_close(after, direction / direction.norm() * before.norm())

    # The same problems in another order and grouping get the same noise.
    order = [3, 0, 4]
    subset = AblationResources(problem_ids=[ids[i] for i in order], seed=7)
    part = Runner(tiny_model).run(
        [questions[i] for i in order],
        [ablate("noise", site, [2], subset)],
        RunOptions(max_new_tokens=2, batch_size=1, record_hidden=True),
    )
    for row, i in zip(part, order, strict=True):
        torch.testing.assert_close(row[0].hidden, full[i][1].hidden, rtol=1e-5, atol=1e-5)

    other_seed = AblationResources(problem_ids=ids, seed=8)
    edit = ABLATIONS["noise"].build(site, 2, other_seed)
    hidden = full[0][0].hidden[3, 4][None]
    context = EditContext(site, 2, torch.tensor([0]), "noise")
    assert not torch.allclose(edit(hidden, context), full[0][1].hidden[3, 4][None])


def test_patch_puts_the_donors_activation_there(
    tiny_model: CodiModel, questions: list[str]
) -> None:
    baseline = Runner(tiny_model).run(questions, [BASELINE], RECORD)
    donors_of = [(i + 1) % len(questions) for i in range(len(questions))]
    donors = DonorActivations(torch.stack([baseline[d][0].hidden for d in donors_of]))
    resources = AblationResources(problem_ids=list("abcde"), values={"donors": donors})
    results = run(
        tiny_model,
        questions,
        ablate("patch", block(0), [1], resources),
        ablate("patch", LATENT, [0, 5], resources),
    )
    for i, (_, patched_block, patched_latent) in enumerate(results):
        donor = baseline[donors_of[i]][0]
        torch.testing.assert_close(patched_block.hidden[2, 1], donor.hidden[2, 1])
        torch.testing.assert_close(patched_latent.thoughts[0], donor.thoughts[0])
        torch.testing.assert_close(patched_latent.thoughts[5], donor.thoughts[5])


def test_donor_is_the_next_problem_with_a_different_answer() -> None:
    assert donor_indices([1.0, 1.0, 2.0, 3.0]) == [2, 2, 3, 0]


def test_edits_of_one_kind_site_and_position_compare_equal_so_prefix_conditions_share_rows(
    tiny_model: CodiModel,
) -> None:
    from thoughtscope.analyses.interventions import bind
    from thoughtscope.engine.runner import Runner, RunOptions
    from thoughtscope.results.conditions import ConditionSpec

    resources = AblationResources(problem_ids=["a", "b"])
    specs = [
        ConditionSpec(f"zero@block:1:{{{p}}}", ("prefix",), "zero", "block:1", p)
        for p in [(0,), (0, 1), (0, 1, 2)]
    ]
    conditions = [bind(spec, resources) for spec in specs]
    first = [c.edits[next(iter(c.edits))] for c in conditions]
    assert first[0] == first[1] == first[2]
    other = bind(specs[0], AblationResources(problem_ids=["a", "b"]))
    assert other.edits[next(iter(other.edits))] != first[0]  # other resources: not shared

    runner = Runner(tiny_model)
    questions = ["1+2=?", "what is 3*4?"]
    forked = runner.run(questions, conditions, RunOptions(max_new_tokens=4, fork=True))
    apart = runner.run(questions, conditions, RunOptions(max_new_tokens=4, fork=False))
    for row_f, row_a in zip(forked, apart, strict=True):
        assert [g.answer_ids for g in row_f] == [g.answer_ids for g in row_a]
