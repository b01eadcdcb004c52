"""Random streams that give the same draws on every machine and Python version.

Python promises that ``random.Random(seed).random()`` produces the same sequence across
versions for an integer seed, but makes no such promise for ``randrange``, ``choice``,
``shuffle`` or ``sample``. So the generator and the sampler draw integers and shuffles
from ``random()`` here, and derive the integer seed from a SHA-256 of a descriptive key
(never ``hash()``, which is salted per process).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["SeededStream"]

T = TypeVar("T")


class SeededStream:
    """A reproducible stream of draws keyed by a string such as ``"sample|7|stratum=3"``."""

    def __init__(self, key: str) -> None:
        seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
        self._random = random.Random(seed)

    def below(self, n: int) -> int:
        """A uniform integer in ``0..n-1`` (``n`` must be positive)."""
        return min(int(self._random.random() * n), n - 1)

    def choice(self, items: Sequence[T]) -> T:
        """A uniformly chosen element of a non-empty sequence."""
        return items[self.below(len(items))]

    def shuffled(self, items: Sequence[T]) -> list[T]:
        """A Fisher-Yates shuffled copy of ``items``."""
        out = list(items)
        for i in range(len(out) - 1, 0, -1):
            j = self.below(i + 1)
            out[i], out[j] = out[j], out[i]
        return out
