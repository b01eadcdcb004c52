"""``--normalise-question/--raw-question``: the CODI family's published question clean-up,
on by default and switchable from the command line."""

from __future__ import annotations

import pytest

from thoughtscope.cli.app import UsageError
from thoughtscope.cli.options import ModelChoice


def test_the_toy_normalises_questions_by_default_and_raw_question_turns_it_off() -> None:
    default = ModelChoice(model="toy").load()
    raw = ModelChoice(model="toy", normalise_question=False).load()
    question = "  a=3;b=a+2;b=?  "
    assert default.question_ids(question) == default.question_ids("a=3;b=a+2;b=?")
    assert raw.question_ids(question) != default.question_ids(question)
    assert raw.family.to_dict()["normalise_question"] is False


def test_the_question_rule_is_refused_for_a_family_that_has_none() -> None:
    with pytest.raises(UsageError, match="a CODI setting; this model's family is coconut"):
        ModelChoice(model="toy-coconut", normalise_question=True).load()
