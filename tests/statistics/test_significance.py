"""Exact McNemar tests and Holm adjustment on tables worked out by hand."""

from __future__ import annotations

import pytest

from thoughtscope.statistics.significance import holm_adjust, mcnemar_exact


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (0, 5, 0.0625),  # 2 * (1/2)^5
        (5, 0, 0.0625),
        (1, 9, 0.021484375),  # 2 * (1 + 10) / 1024
        (2, 8, 0.109375),  # 2 * (1 + 10 + 45) / 1024
        (3, 3, 1.0),
        (0, 1, 1.0),
    ],
)
def test_mcnemar_p_value_is_the_two_sided_exact_binomial(b: int, c: int, p: float) -> None:
    result = mcnemar_exact(b, c)
    assert (result.b, result.c, result.discordant) == (b, c, b + c)
    assert result.p_value == pytest.approx(p, abs=1e-12)


def test_mcnemar_without_discordant_pairs_gives_p_one() -> None:
    assert mcnemar_exact(0, 0).p_value == 1.0


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        mcnemar_exact(-1, 2)


def test_holm_adjusts_in_input_order_and_skips_missing() -> None:
    # sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> kept monotone at 0.06
    assert holm_adjust([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert holm_adjust([0.6, 0.9]) == [1.0, 1.0]
    assert holm_adjust([]) == []
