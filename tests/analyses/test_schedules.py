"""Schedules give the right position sets, and conditions are named by what they change."""

from __future__ import annotations

import pytest

from thoughtscope.analyses.interventions import condition_name, parse_schedules, plan_conditions
from thoughtscope.engine.sites import BOT, LATENT, block


def sets(text: str, n: int = 4) -> list[tuple[int, ...]]:
    return [s for spec in parse_schedules(text, n) for s in spec.position_sets]


def test_prefix_ablates_zero_to_i_minus_one_for_i_from_one_to_n() -> None:
    assert sets("prefix") == [(0,), (0, 1), (0, 1, 2), (0, 1, 2, 3)]


def test_suffix_ablates_i_to_n_minus_one() -> None:
    assert sets("suffix") == [(0, 1, 2, 3), (1, 2, 3), (2, 3), (3,)]


def test_single_keep_one_and_all() -> None:
    assert sets("single") == [(0,), (1,), (2,), (3,)]
    assert sets("keep-one") == [(1, 2, 3), (0, 2, 3), (0, 1, 3), (0, 1, 2)]
    assert sets("all") == [(0, 1, 2, 3)]


def test_early_exit_stops_after_k_thoughts_for_k_from_zero_to_n() -> None:
    (spec,) = parse_schedules("early-exit", 4)
    assert spec.is_early_exit
    assert spec.position_sets == ((0,), (1,), (2,), (3,), (4,))


def test_explicit_sets_in_braces_or_after_positions_colon() -> None:
    specs = parse_schedules("prefix,{3,1},positions:0,2,single,{},{bot,0}", 4)
    assert [(s.name, s.text) for s in specs] == [
        ("prefix", "prefix"),
        ("positions", "{3,1}"),
        ("positions", "{0,2}"),
        ("single", "single"),
        ("positions", "{}"),
        ("positions", "{bot,0}"),
    ]
    assert specs[1].position_sets == ((1, 3),)
    assert specs[4].position_sets == ((),)
    assert specs[5].position_sets == ((BOT, 0),)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("prefx", "unknown schedule 'prefx'"),
        ("{0,4}", "position '4' is out of range"),
        ("positions:9", "position '9' is out of range"),
        ("{0,1", "unclosed"),
        ("prefix,,single", "empty item"),
    ],
)
def test_bad_schedules_name_the_option_and_the_item(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="--schedule") as error:
        parse_schedules(text, 4)
    assert fragment in str(error.value)


def test_condition_names_say_what_changes() -> None:
    assert condition_name("zero", str(block(8)), (0, 1, 2)) == "zero@block:8:{0,1,2}"
    assert condition_name("zero", str(LATENT), (0,)) == "zero@latent:{0}"
    assert condition_name("noise", str(block(0)), (BOT, 0)) == "noise@block:0:{bot,0}"


def test_a_set_several_schedules_ask_for_is_run_once_with_all_of_them() -> None:
    specs = plan_conditions([block(1)], parse_schedules("prefix,single,early-exit", 3), ["zero"])
    names = [c.name for c in specs]
    assert names == [
        "zero@block:1:{0}",
        "zero@block:1:{0,1}",
        "zero@block:1:{0,1,2}",
        "zero@block:1:{1}",
        "zero@block:1:{2}",
        "exit@0",
        "exit@1",
        "exit@2",
        "exit@3",
    ]
    assert specs[0].schedules == ("prefix", "single")
    assert specs[5].site == "" and specs[5].num_latent == 0 and specs[5].positions == ()
