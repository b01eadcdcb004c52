"""Paired significance tests of baseline vs condition correctness.

**Exact McNemar test.** Each problem is answered once without and once with the
intervention, so the two correctness outcomes are paired. Only discordant problems carry
information: ``b`` went right → wrong, ``c`` wrong → right. Under the null hypothesis
that the intervention does not change accuracy, each discordant problem is equally likely
to go either way, so ``b ~ Binomial(b + c, 1/2)``; the p-value is the two-sided exact
binomial p-value (:func:`scipy.stats.binomtest`). With no discordant problems the data
cannot speak against the null and ``p = 1``.

**Holm adjustment.** A run tests dozens of conditions; :func:`holm_adjust` gives
Holm-Bonferroni adjusted p-values (family-wise error control, valid under any
dependence between the tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from scipy.stats import binomtest

__all__ = ["McNemarResult", "holm_adjust", "mcnemar_exact"]


@dataclass(frozen=True)
class McNemarResult:
    """An exact McNemar test.

    Attributes:
        b: Problems right at baseline and wrong under the condition.
        c: Problems wrong at baseline and right under the condition.
        p_value: Two-sided exact binomial p-value of ``b`` out of ``b + c`` at 1/2.
    """

    b: int
    c: int
    p_value: float

    @property
    def discordant(self) -> int:
        """``b + c``: the problems whose correctness changed."""
        return self.b + self.c


def mcnemar_exact(b: int, c: int) -> McNemarResult:
    """The exact (binomial) McNemar test for ``b`` right→wrong and ``c`` wrong→right pairs."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be 0 or more, got b={b}, c={c}")
    return McNemarResult(b, c, _two_sided_p(b, c))


@lru_cache(maxsize=4096)
def _two_sided_p(b: int, c: int) -> float:
    # Runs test dozens of conditions per stratum; the same (b, c) recurs often.
    if b + c == 0:
        return 1.0
    return min(1.0, float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue))


def holm_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in input order; ``None`` entries are skipped."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
