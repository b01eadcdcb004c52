"""The toy model shipped inside the package reaches its quality bars."""

from __future__ import annotations

import pytest

from thoughtscope.model import load_model, toy_model_path
from thoughtscope.problems.synthetic import generate
from thoughtscope.training.evaluate import latent_accuracy, standard_conditions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def accuracy():
    if not (toy_model_path() / "thoughtscope.json").is_file():
        pytest.fail("the toy model is missing from src/thoughtscope/toy/model")
    model = load_model("toy")
    problems = generate("test", 0, 300, style="compact")
    return latent_accuracy(model, problems, standard_conditions(model), batch_size=300)


def test_toy_is_a_small_six_thought_byte_model():
    model = load_model("toy")
    assert model.config.num_latent == 6
    assert model.config.base_vocab_size == 257
    assert sum(p.numel() for p in model.parameters()) < 5_000_000
    size = (toy_model_path() / "model.safetensors").stat().st_size
    assert size <= 20 * 1024 * 1024


def test_toy_student_reaches_its_bars(accuracy):
    student = accuracy["baseline"]
    assert student.percent() >= 60
    assert student.percent_of([1, 2]) >= 85
    # A real difficulty gradient: long chains are harder than short ones.
    assert student.percent_of([5, 6]) < student.percent_of([3, 4]) < student.percent_of([1, 2])


@pytest.mark.parametrize("condition", ["zero@latent:all", "zero@L1:all", "zero@L2:all"])
def test_zeroing_all_thoughts_costs_at_least_30_points(accuracy, condition):
    assert accuracy["baseline"].percent() - accuracy[condition].percent() >= 30
