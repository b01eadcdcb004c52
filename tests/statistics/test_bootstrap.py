"""The seeded percentile bootstrap of ratios."""

from __future__ import annotations

import time

import numpy as np

from thoughtscope.statistics.bootstrap import _nan_quantile, bootstrap_ratios, group_seed


def _rates(values: list[float]) -> tuple[np.ndarray, np.ndarray]:
    num = np.array(values, dtype=float)[:, None]
    return num, np.ones_like(num)


def test_interval_contains_the_estimate_and_is_deterministic_for_a_seed() -> None:
    num, den = _rates([1, 0, 0, 1, 1, 0, 1, 1, 0, 1])
    first = bootstrap_ratios(num, den, n_boot=500, seed=7)
    again = bootstrap_ratios(num, den, n_boot=500, seed=7)
    assert first.estimate[0] == 0.6
    assert first.low[0] <= 0.6 <= first.high[0]
    assert first.low[0] < first.high[0]
    assert (first.low[0], first.high[0]) == (again.low[0], again.high[0])
    assert first.support[0] == 10
    values = np.random.default_rng(0).normal(size=(40, 1))
    one = bootstrap_ratios(values, np.ones_like(values), n_boot=500, seed=7)
    two = bootstrap_ratios(values, np.ones_like(values), n_boot=500, seed=8)
    assert (one.low[0], one.high[0]) != (two.low[0], two.high[0])


def test_ratio_uses_only_problems_with_a_denominator() -> None:
    num = np.array([[1.0], [0.0], [0.0], [1.0]])
    den = np.array([[1.0], [1.0], [0.0], [0.0]])  # only the first two count
    result = bootstrap_ratios(num, den, n_boot=200, seed=0)
    assert result.estimate[0] == 0.5
    assert result.support[0] == 2
    assert 0.0 <= result.low[0] <= result.high[0] <= 1.0


def test_fewer_than_two_problems_or_no_resamples_give_no_interval() -> None:
    num = np.array([[1.0, 0.0, 1.0]])
    den = np.array([[1.0, 0.0, 1.0]])
    result = bootstrap_ratios(num, den, n_boot=200, seed=0)
    assert result.estimate[0] == 1.0 and np.isnan(result.low[0])
    assert np.isnan(result.estimate[1]) and result.support[1] == 0
    empty = bootstrap_ratios(np.zeros((0, 2)), np.zeros((0, 2)), n_boot=200, seed=0)
    assert np.isnan(empty.estimate).all()
    disabled = bootstrap_ratios(*_rates([1, 0, 1]), n_boot=0, seed=0)
    assert disabled.estimate[0] == 2 / 3 and np.isnan(disabled.low[0])


def test_differences_of_identical_columns_are_paired_to_zero() -> None:
    rng = np.random.default_rng(1)
    x = (rng.random(50) < 0.4).astype(float)
    num = np.stack([x, x, x - x], axis=1)
    result = bootstrap_ratios(num, np.ones_like(num), n_boot=300, seed=3)
    assert result.low[0] == result.low[1] and result.high[0] == result.high[1]
    assert result.low[2] == result.high[2] == 0.0


def test_quantile_matches_numpy_nanpercentile() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(401, 20))
    values[rng.random(values.shape) < 0.3] = np.nan
    values[:, 5] = np.nan
    for q in (0.025, 0.5, 0.975):
        ours = _nan_quantile(values, q)
        expected = np.full(20, np.nan)
        keep = ~np.isnan(values).all(axis=0)
        expected[keep] = np.nanpercentile(values[:, keep], 100 * q, axis=0)
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def test_group_seed_depends_on_seed_and_problems() -> None:
    a = group_seed(0, ["p1", "p2"]).generate_state(2)
    assert (a == group_seed(0, ["p1", "p2"]).generate_state(2)).all()
    assert (a != group_seed(1, ["p1", "p2"]).generate_state(2)).any()
    assert (a != group_seed(0, ["p1", "p3"]).generate_state(2)).any()


def test_thousands_of_problems_and_hundreds_of_figures_stay_fast() -> None:
    rng = np.random.default_rng(0)
    num = (rng.random((3000, 300)) < 0.3).astype(float)
    start = time.perf_counter()
    result = bootstrap_ratios(num, np.ones_like(num), n_boot=2000, seed=0)
    assert time.perf_counter() - start < 10.0
    assert (result.low <= result.estimate).all() and (result.estimate <= result.high).all()
