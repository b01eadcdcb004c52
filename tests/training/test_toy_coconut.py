"""The toy Coconut model shipped inside the package reaches its bars: at least 60 % latent
accuracy on held-out synthetic problems, and at least 20 points lost with every thought
zeroed (the thoughts carry the reasoning)."""

from __future__ import annotations

import pytest

from thoughtscope.model import load_model, toy_model_path
from thoughtscope.model.families import CoconutModel
from thoughtscope.problems.synthetic import generate
from thoughtscope.training.evaluate import latent_accuracy, standard_conditions

pytestmark = pytest.mark.slow


def test_toy_coconut_reaches_its_bars() -> None:
    folder = toy_model_path("coconut")
    if not (folder / "thoughtscope.json").is_file():
        pytest.fail(f"the toy Coconut model is missing from {folder}")
    model = load_model("toy-coconut")
    assert isinstance(model, CoconutModel) and model.num_thoughts == 6
    problems = generate("test", 0, 300, style="compact")
    accuracy = latent_accuracy(model, problems, standard_conditions(model), batch_size=300)
    latent = accuracy["baseline"].percent()
    assert latent >= 60
    assert latent - accuracy["zero@latent:all"].percent() >= 20
