"""The CODI objective: sequences, padding masks and agreement with the runner."""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import tiny_model
from thoughtscope.engine.runner import Runner
from thoughtscope.problems.scoring import extract_number
from thoughtscope.training.data import IGNORE, collate, encode_problem, steps_text
from thoughtscope.training.objective import LossWeights, codi_loss, codi_losses


def test_sequences_follow_the_codi_layout(problems):
    model = tiny_model(remove_eos=False)
    problem = next(p for p in problems if p.steps == 2)
    example = encode_problem(model, problem, bare_steps=True)
    c, tok = model.config, model.tokenizer
    assert example.question == [*tok(problem.question)["input_ids"], c.eos_id]
    answer = tok(str(int(problem.answer)))["input_ids"]
    steps = tok(steps_text(problem, bare=True))["input_ids"]
    assert example.teacher == [*steps, c.eos_id, *answer, c.eos_id]
    assert example.student == [c.eot_id, c.eos_id, *answer, c.eos_id]
    # Distillation reads the token right before the answer in both passes: the <eos>.
    assert example.teacher[example.teacher_answer - 1] == c.eos_id
    assert example.student[example.student_answer - 1] == c.eos_id
    assert extract_number(model.decode(answer)) == problem.answer


def test_steps_text_keeps_or_drops_brackets(problems):
    problem = next(p for p in problems if p.steps == 2)
    assert steps_text(problem, bare=False).count("<<") == 2
    bare = steps_text(problem, bare=True)
    assert "<<" not in bare and len(bare.split(" ")) == 2


def test_student_labels_cover_only_the_answer(problems):
    model = tiny_model(remove_eos=True)
    example = encode_problem(model, problems[0], bare_steps=True)
    batch = collate([example], model.config.pad_id)
    labels = batch.student_labels[0]
    targets = [int(x) for x in labels if x != IGNORE]
    assert targets == example.student[example.student_answer :]


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_padded_batch_gives_each_example_its_unpadded_loss(family, problems):
    model = tiny_model(family).eval()  # GPT-2 has dropout
    chosen = [next(p for p in problems if p.steps == s) for s in (1, 3, 2)]
    examples = [encode_problem(model, p, bare_steps=False) for p in chosen]
    together = codi_losses(model, collate(examples, model.config.pad_id))
    for row, example in enumerate(examples):
        alone = codi_losses(model, collate([example], model.config.pad_id))
        for name in ("teacher", "question", "student", "distill"):
            got, want = getattr(together, name)[row], getattr(alone, name)[0]
            assert torch.allclose(got, want, atol=1e-5), (name, row)


@pytest.mark.parametrize("remove_eos", [False, True])
def test_student_pass_is_the_runners_protocol(remove_eos, problems):
    """The student's answer loss equals the runner's teacher-forced log-likelihood."""
    model = tiny_model(remove_eos=remove_eos).eval()
    chosen = problems[:4]
    examples = [encode_problem(model, p, bare_steps=True) for p in chosen]
    with torch.no_grad():
        parts = codi_losses(model, collate(examples, model.config.pad_id))
    targets = {"gold": [model.answer_ids(p.answer) for p in chosen]}
    results = Runner(model).run([p.question for p in chosen], targets=targets)
    for row, result in enumerate(results):
        runner_nll = -result[0].target_logprobs["gold"].mean()
        assert torch.allclose(parts.student[row], runner_nll, atol=1e-4)  # type: ignore[index]


def test_teacher_only_skips_the_student(problems):
    model = tiny_model()
    batch = collate([encode_problem(model, p, bare_steps=True) for p in problems[:4]], 256)
    parts = codi_losses(model, batch, student=False)
    assert parts.student is None and parts.distill is None
    total, logged = codi_loss(parts, LossWeights(question=0.5))
    expected = parts.teacher.mean() + 0.5 * parts.question.mean()
    assert torch.allclose(total, expected) and "student" not in logged


def test_distillation_is_zero_when_student_matches_teacher():
    from thoughtscope.training.objective import distillation

    states = [torch.randn(3, 8) * 1e-3 for _ in range(2)]
    assert torch.equal(distillation(states, states), torch.zeros(3))
    # Scale-free: tiny states give the same loss as unit-sized ones.
    other = [s + 1e-3 for s in states]
    big = distillation([s * 1e3 for s in other], [s * 1e3 for s in states])
    assert torch.allclose(distillation(other, states), big, rtol=1e-4)


def _student_loss_written_out(model, example) -> torch.Tensor:
    """The student pass as the CODI training code writes it, one example, no padding:
    HF's own cache and ``hidden_states``; question, ``<bot>``, N projected thoughts, then
    ``<eot> [eos] answer [eos]`` teacher-forced; cross-entropy over the answer tokens."""
    lm, c = model.lm, model.config
    out = lm(input_ids=torch.tensor([example.question]), use_cache=True)
    cache = out.past_key_values
    inputs = lm.get_input_embeddings()(torch.tensor([[c.bot_id]]))
    for _ in range(c.num_latent + 1):
        out = lm(
            inputs_embeds=inputs, past_key_values=cache, use_cache=True, output_hidden_states=True
        )
        cache = out.past_key_values
        inputs = model.projection(out.hidden_states[-1][:, -1:])
    out = lm(input_ids=torch.tensor([example.student]), past_key_values=cache, use_cache=True)
    first = example.student_answer - 1
    logits = out.logits[0, first:-1]
    labels = torch.tensor(example.student[first + 1 :])
    return torch.nn.functional.cross_entropy(logits.float(), labels)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("remove_eos", [False, True])
def test_student_loss_equals_the_codi_loop_written_out(family, remove_eos, problems):
    """The objective's student pass (the engine's latent loop) gives the loss of the
    CODI training loop written out plainly, example by example."""
    model = tiny_model(family, remove_eos=remove_eos).eval()
    for problem in problems[:3]:
        example = encode_problem(model, problem, bare_steps=True)
        with torch.no_grad():
            parts = codi_losses(model, collate([example], model.config.pad_id))
            want = _student_loss_written_out(model, example)
        assert parts.student is not None
        assert abs(float(parts.student[0]) - float(want)) < 1e-6
