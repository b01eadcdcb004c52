"""Seeded percentile bootstrap for ratios of per-problem sums, many at once.

Every figure the statistics report is a ratio ``sum(numerator) / sum(denominator)`` over
the problems of a group: a rate (numerator 0/1, denominator 1 where the problem counts),
a mean of recorded values (denominator 1 where a value exists), a conditional rate
(denominator 1 on the conditioning subset), or a paired difference (numerator the
difference, denominator 1 where both sides exist). Writing them all this way lets one
bootstrap draw serve every figure of a group.

**Method.** Resample the group's problems with replacement ``n_boot`` times. A resample
is a vector of counts ``w`` (how often each problem was drawn), so its ratio is
``(w @ numerator) / (w @ denominator)``: one matrix product per chunk of resamples gives
every figure at once. Because every figure of a group uses the same resamples,
differences between figures (marginal steps, late minus early) are paired: the problem
drawn for one side is the problem drawn for the other. Resamples whose denominator is
0 (none of the drawn problems counts) are left out. The interval is the 2.5th and 97.5th
percentile of the resampled ratios (linear interpolation, :func:`numpy.percentile`).

**Seeding.** The generator is seeded from the user's seed and a fingerprint of *which*
problems form the group, so the same data and seed give the same intervals on any
machine, adding a condition does not move any other interval, and two views over the
same problems get identical draws.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["DEFAULT_LEVEL", "DEFAULT_N_BOOT", "RatioIntervals", "bootstrap_ratios", "group_seed"]

DEFAULT_N_BOOT = 2000
"""Bootstrap resamples per group unless told otherwise."""

DEFAULT_LEVEL = 0.95
"""Coverage of the percentile intervals."""

_CELLS_PER_CHUNK = 4_000_000
"""Resample-by-problem cells drawn at once; bounds memory for large groups."""


@dataclass(frozen=True)
class RatioIntervals:
    """Point estimates and percentile intervals of ``k`` ratios over one group.

    Attributes:
        estimate: ``sum(num) / sum(den)`` per ratio; NaN where the denominator is 0.
            Shape ``(k,)``.
        low, high: Interval bounds; NaN where no interval was computed. Shape ``(k,)``.
        support: Problems with a non-zero denominator, per ratio. Shape ``(k,)``.
    """

    estimate: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    support: NDArray[np.int64]


def group_seed(seed: int, problem_ids: Sequence[str]) -> np.random.SeedSequence:
    """A seed for one group: the user's seed and a CRC-32 of the group's problem ids."""
    fingerprint = zlib.crc32("\n".join(problem_ids).encode("utf-8"))
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, fingerprint, len(problem_ids)])


def _resample_counts(rng: np.random.Generator, n: int, m: int) -> NDArray[np.float64]:
    """``(m, n)`` draw counts: row ``r`` says how often each problem was drawn."""
    draws = rng.integers(0, n, size=(m, n))
    flat = (draws + (np.arange(m) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=m * n).reshape(m, n).astype(np.float64)


def _nan_quantile(values: NDArray[np.float64], q: float) -> NDArray[np.float64]:
    """Column-wise quantile ignoring NaN, numpy's default (linear) method, vectorised.

    Equals ``np.nanpercentile(values, 100 * q, axis=0)`` without its per-column loop;
    all-NaN columns give NaN.
    """
    ordered = np.sort(np.where(np.isnan(values), np.inf, values), axis=0)
    count = (~np.isnan(values)).sum(axis=0)
    position = q * np.maximum(count - 1, 0)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(count - 1, 0))
    columns = np.arange(values.shape[1])
    low, high = ordered[below, columns], ordered[above, columns]
    with np.errstate(invalid="ignore"):
        result = low + (high - low) * (position - below)
    result = np.where(high == low, low, result)  # no inf - inf when both ends agree
    return np.where(count > 0, result, np.nan)


def bootstrap_ratios(
    num: NDArray[np.float64],
    den: NDArray[np.float64],
    *,
    n_boot: int,
    seed: int | np.random.SeedSequence,
    level: float = DEFAULT_LEVEL,
) -> RatioIntervals:
    """Estimates and percentile bootstrap intervals of ``k`` ratios of column sums.

    Args:
        num: Per-problem numerators, shape ``(n, k)``; ignored where ``den`` is 0.
        den: Per-problem denominators (weights, usually 0/1), shape ``(n, k)``.
        n_boot: Resamples; 0 gives estimates without intervals.
        seed: Seed for the resampling (see :func:`group_seed`).
        level: Interval coverage, e.g. 0.95.

    Intervals are NaN for ratios supported by fewer than 2 problems: a single problem
    gives a zero-width interval that says nothing about uncertainty.
    """
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    if num.shape != den.shape or num.ndim != 2:
        raise ValueError(f"num and den must both be (n, k); got {num.shape} and {den.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    num = np.where(den != 0, num, 0.0)  # problems that do not count add nothing
    n, k = num.shape
    support = (den != 0).sum(axis=0).astype(np.int64)
    total = den.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = np.where(total != 0, num.sum(axis=0) / np.where(total != 0, total, 1), np.nan)
    low = np.full(k, np.nan)
    high = np.full(k, np.nan)
    wanted = support >= 2
    if n_boot <= 0 or n == 0 or not wanted.any():
        return RatioIntervals(estimate, low, high, support)

    # Identical denominator columns (the same "has a value" mask for many figures) are
    # multiplied once.
    den_w = den[:, wanted]
    first_of: dict[bytes, int] = {}
    den_index = np.array(
        [first_of.setdefault(den_w[:, k].tobytes(), len(first_of)) for k in range(den_w.shape[1])],
        dtype=np.int64,
    )
    keep = np.unique(den_index, return_index=True)[1]
    unique_den = den_w[:, keep]
    num_w = num[:, wanted]
    rng = np.random.default_rng(seed)
    ratios = np.empty((n_boot, num_w.shape[1]))
    chunk = max(1, _CELLS_PER_CHUNK // max(n, 1))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        counts = _resample_counts(rng, n, m)
        boot_num = counts @ num_w
        boot_den = (counts @ unique_den)[:, den_index]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios[start : start + m] = np.where(boot_den != 0, boot_num / boot_den, np.nan)
    tail = (1.0 - level) / 2.0
    low[wanted] = _nan_quantile(ratios, tail)
    high[wanted] = _nan_quantile(ratios, 1.0 - tail)
    return RatioIntervals(estimate, low, high, support)
