"""Every detail of transformers' KV cache the engine depends on, in one place.

* the name of the cache argument of a decoder's ``forward`` (``cache`` in transformers
  5.x, ``past_key_values`` before);
* a cache whose layers write into storage reserved up front (:class:`ReservedLayer`):
  transformers' ``DynamicLayer`` concatenates at every step, copying the whole cache of
  every layer once per generated token, and transformers has no public way to reserve;
* fanning a cache out to rows (one question's cache shared by its conditions),
  keeping some rows, dropping the last positions, sharing a cache's tensors.

The reserved-cache equivalence test (``tests/engine/test_batching.py``) is this module's
contract: a reserved cache gives exactly the tensors a growing one gives.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

Cache = DynamicCache
"""The cache type the engine passes around."""

_CACHE_KEYWORD: dict[type, str] = {}


def cache_keyword(module: nn.Module) -> str:
    """The name of ``module.forward``'s cache argument (looked up once per class)."""
    kind = type(module)
    if kind not in _CACHE_KEYWORD:
        parameters = inspect.signature(module.forward).parameters
        _CACHE_KEYWORD[kind] = "cache" if "cache" in parameters else "past_key_values"
    return _CACHE_KEYWORD[kind]


def forward(
    module: nn.Module,
    cache: Cache,
    *,
    hidden_states: bool = False,
    **inputs: Any,
) -> Any:
    """Calls an HF decoder stack or causal LM with ``cache``, extended in place.

    ``inputs`` are the usual keyword arguments (``inputs_embeds`` or ``input_ids``,
    ``attention_mask``, ``position_ids``); ``hidden_states`` asks for every layer's output.
    """
    return module(
        use_cache=True,
        output_hidden_states=hidden_states,
        **{cache_keyword(module): cache},
        **inputs,
    )


def new_cache() -> Cache:
    """An empty cache that grows as the model writes to it."""
    return DynamicCache()


def shared(cache: Cache) -> Cache:
    """A new cache over the same key/value tensors: extending it leaves ``cache`` as is
    (and keeps gradients flowing to whatever produced them)."""
    out = DynamicCache()
    for layer_idx, layer in enumerate(cache.layers):
        out.update(layer.keys, layer.values, layer_idx)  # type: ignore[arg-type,union-attr]
    return out


class ReservedLayer(DynamicLayer):
    """A cache layer that writes new keys and values into storage reserved up front.

    Each step writes one slice, and ``keys`` / ``values`` are views of the filled part
    (the same numbers as a growing layer, so the same results). Grows by doubling if a
    step ever needs more than was reserved.
    """

    def __init__(self, keys: Tensor, values: Tensor, capacity: int):
        super().__init__()
        rows, heads, length, _ = keys.shape
        capacity = max(capacity, length)
        self._keys = keys.new_empty((rows, heads, capacity, keys.shape[-1]))
        self._values = values.new_empty((rows, heads, capacity, values.shape[-1]))
        self._keys[:, :, :length] = keys
        self._values[:, :, :length] = values
        self._length = length
        self.device = keys.device
        self.is_initialized = True
        self._expose()

    def _expose(self) -> None:
        self.keys = self._keys[:, :, : self._length]
        self.values = self._values[:, :, : self._length]

    def update(
        self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any
    ) -> tuple[Tensor, Tensor]:
        end = self._length + key_states.shape[-2]
        if end > self._keys.shape[2]:
            grow = max(end, 2 * self._keys.shape[2]) - self._keys.shape[2]
            self._keys = torch.nn.functional.pad(self._keys, (0, 0, 0, grow))
            self._values = torch.nn.functional.pad(self._values, (0, 0, 0, grow))
        self._keys[:, :, self._length : end] = key_states
        self._values[:, :, self._length : end] = value_states
        self._length = end
        self._expose()
        return self.keys, self.values  # type: ignore[return-value]

    def get_seq_length(self, *args: Any, **kwargs: Any) -> int:
        return self._length

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes the negative number of tokens to remove")
        self._length += tokens_to_remove
        self._expose()

    def batch_select_indices(self, indices: Tensor) -> None:
        self._keys = self._keys.index_select(0, indices)
        self._values = self._values.index_select(0, indices)
        self._expose()


def expand_rows(cache: Cache, index: Tensor, capacity: int = 0) -> Cache:
    """A new cache whose row ``i`` is row ``index[i]`` of ``cache`` (``index``:
    ``(rows,)``), with room reserved for ``capacity`` positions in all."""
    out = DynamicCache()
    out.layers = [
        ReservedLayer(layer.keys[index], layer.values[index], capacity)  # type: ignore[index,union-attr]
        for layer in cache.layers
    ]
    return out


def reserve_rows(cache: Cache, index: Tensor, capacity: int) -> None:
    """In place: row ``i`` becomes row ``index[i]`` (``(rows,)``, may repeat rows), in
    storage with room for ``capacity`` positions. Layer by layer, so the old storage is
    freed as the new one is made."""
    for layer_idx, layer in enumerate(cache.layers):
        keys, values = layer.keys[index], layer.values[index]  # type: ignore[index,union-attr]
        cache.layers[layer_idx] = ReservedLayer(keys, values, capacity)
        del layer, keys, values


def select_rows(cache: Cache, keep: Tensor) -> None:
    """Keeps only the rows at indices ``keep`` ``(rows,)``, in place."""
    cache.batch_select_indices(keep)


def drop_last(cache: Cache, positions: int) -> None:
    """Forgets the last ``positions`` positions of every row, in place."""
    if positions:
        cache.crop(-positions)
