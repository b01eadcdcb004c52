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

    The storage ``(row capacity, heads, capacity, head dim)`` has room for more positions
    and, when asked, more rows than are filled. Each step writes one slice; ``keys`` /
    ``values`` are views of the filled part (the same numbers as a growing layer). Grows
    by doubling if a step ever needs more than was reserved. Forking appends rows in the
    spare row room (:meth:`append_rows`) without moving the rows already there; keeping
    some rows copies the filled positions only.

    Attention reads the *whole reserved width*, as with transformers' static cache:
    :meth:`update` returns the rows' storage at every position, and
    :meth:`get_mask_sizes` tells the model to build its mask that wide, so the positions
    not yet filled are masked out. Why: the filled part is a view whose rows are not
    packed, and torch's CPU batched matmul runs such a view about twice as long as the
    live rows' whole, packed storage, although that is wider (``bench/profile_engine.py``
    times both; ``docs/benchmarks.md``). Every position past the filled length is kept
    zero (zeroed when storage is made, and when positions are dropped), so a masked
    position adds exactly nothing and never carries another row's numbers.
    """

    def __init__(
        self,
        keys: Tensor,
        values: Tensor,
        capacity: int,
        row_capacity: int = 0,
        index: Tensor | None = None,
    ):
        """Storage holding ``keys``, ``values`` ``(rows, heads, length, head dim)``, or,
        with ``index`` ``(kept,)``, their rows ``index`` (copied straight into it)."""
        super().__init__()
        rows, heads, length, _ = keys.shape
        rows = rows if index is None else len(index)
        capacity = max(capacity, length)
        row_capacity = max(row_capacity, rows)
        self._keys = keys.new_empty((row_capacity, heads, capacity, keys.shape[-1]))
        self._values = values.new_empty((row_capacity, heads, capacity, values.shape[-1]))
        self._keys[:, :, length:].zero_()  # every position past the filled length is 0
        self._values[:, :, length:].zero_()
        if index is None:
            self._keys[:rows, :, :length] = keys
            self._values[:rows, :, :length] = values
        else:
            torch.index_select(keys, 0, index, out=self._keys[:rows, :, :length])
            torch.index_select(values, 0, index, out=self._values[:rows, :, :length])
        self._rows = rows
        self._length = length
        self.device = keys.device
        self.is_initialized = True
        self._expose()

    def _expose(self) -> None:
        self.keys = self._keys[: self._rows, :, : self._length]
        self.values = self._values[: self._rows, :, : self._length]

    def _width_for(self, new: int) -> int:
        """The reserved width after a step of ``new`` positions (grown if needed)."""
        end, capacity = self._length + new, self._keys.shape[2]
        return capacity if end <= capacity else max(end, 2 * capacity)

    def update(
        self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any
    ) -> tuple[Tensor, Tensor]:
        """Writes the step's keys and values ``(rows, heads, new, head dim)``; returns
        the rows' keys and values at every reserved position (past the filled length:
        zeros, which the mask hides)."""
        end = self._length + key_states.shape[-2]
        grow = self._width_for(key_states.shape[-2]) - self._keys.shape[2]
        if grow:
            self._keys = torch.nn.functional.pad(self._keys, (0, 0, 0, grow))
            self._values = torch.nn.functional.pad(self._values, (0, 0, 0, grow))
        self._keys[: self._rows, :, self._length : end] = key_states
        self._values[: self._rows, :, self._length : end] = value_states
        self._length = end
        self._expose()
        return self._keys[: self._rows], self._values[: self._rows]

    def get_mask_sizes(self, query_length: int, *args: Any) -> tuple[int, int]:
        """The mask's width for the next step of ``query_length`` positions: the reserved
        width that step's :meth:`update` returns (transformers asks before the step)."""
        return self._width_for(query_length), 0

    def get_seq_length(self, *args: Any, **kwargs: Any) -> int:
        return self._length

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes the negative number of tokens to remove")
        end = self._length
        self._length += tokens_to_remove
        # Keep every position past the filled length zero (see the class docstring).
        self._keys[:, :, self._length : end].zero_()
        self._values[:, :, self._length : end].zero_()
        self._expose()

    def _gather(self, storage: Tensor, filled: Tensor, indices: Tensor, rows: int) -> Tensor:
        """New storage with room for ``rows`` rows whose first ``len(indices)`` rows are
        ``filled[indices]`` (the filled positions only are copied)."""
        out = storage.new_empty((rows, *storage.shape[1:]))
        out[:, :, self._length :].zero_()
        torch.index_select(filled, 0, indices, out=out[: len(indices), :, : self._length])
        return out

    def batch_select_indices(self, indices: Tensor) -> None:
        """Keeps the rows ``indices`` ``(kept,)``. In place when every row that moves
        comes from at or beyond ``kept`` (e.g. finished rows' places filled from the
        end, :func:`retire_order`): only the moved rows are copied; else into new
        storage, copying the filled positions."""
        self.keep_rows(indices, _moves(indices, self._rows))

    def keep_rows(self, indices: Tensor, moves: tuple[Tensor, Tensor] | None) -> None:
        """:meth:`batch_select_indices` with ``moves`` (:func:`_moves`) worked out."""
        kept = len(indices)
        if moves is not None:
            moved, source = moves
            length = self._length
            for storage in (self._keys, self._values):
                filled = storage[:, :, :length]
                filled.index_copy_(0, moved, filled.index_select(0, source))
        else:
            self._keys = self._gather(self._keys, self.keys, indices, kept)  # type: ignore[arg-type]
            self._values = self._gather(self._values, self.values, indices, kept)  # type: ignore[arg-type]
        self._rows = kept
        self._expose()

    def append_rows(self, source: Tensor) -> None:
        """Appends copies of the rows ``source`` ``(new,)`` after the current rows."""
        end = self._rows + len(source)
        if end > self._keys.shape[0]:
            rows = max(end, 2 * self._keys.shape[0])
            every = torch.arange(self._rows, device=source.device)
            self._keys = self._gather(self._keys, self.keys, every, rows)  # type: ignore[arg-type]
            self._values = self._gather(self._values, self.values, every, rows)  # type: ignore[arg-type]
        length = self._length
        torch.index_select(self.keys, 0, source, out=self._keys[self._rows : end, :, :length])  # type: ignore[arg-type]
        torch.index_select(
            self.values,  # type: ignore[arg-type]
            0,
            source,
            out=self._values[self._rows : end, :, :length],
        )
        self._rows = end
        self._expose()


def expand_rows(cache: Cache, index: Tensor, capacity: int = 0, row_capacity: int = 0) -> Cache:
    """A new cache whose row ``i`` is row ``index[i]`` of ``cache`` (``index``:
    ``(rows,)``), with room reserved for ``capacity`` positions in all and for
    ``row_capacity`` rows (room for :func:`append_rows`)."""
    out = DynamicCache()
    out.layers = [
        ReservedLayer(*_keys_values(layer), capacity, row_capacity, index) for layer in cache.layers
    ]
    return out


def reserve_rows(cache: Cache, index: Tensor, capacity: int) -> None:
    """In place: row ``i`` becomes row ``index[i]`` (``(rows,)``, may repeat rows), in
    storage with room for ``capacity`` positions. Layer by layer, so the old storage is
    freed as the new one is made. Nothing is copied when the cache already is so (every
    layer reserved, with those rows in that order and room for ``capacity``)."""
    if all(
        isinstance(layer, ReservedLayer)
        and layer._keys.shape[2] >= capacity
        and layer.keys.shape[0] == len(index)  # type: ignore[union-attr]
        for layer in cache.layers
    ) and torch.equal(index, torch.arange(len(index), device=index.device)):
        return
    for layer_idx, layer in enumerate(cache.layers):
        keys, values = _keys_values(layer)
        cache.layers[layer_idx] = ReservedLayer(keys, values, capacity, index=index)
        del layer, keys, values


def append_rows(cache: Cache, source: Tensor) -> None:
    """In place: appends copies of the rows ``source`` ``(new,)`` after the cache's rows
    (a fork). Rows already there are not moved when the cache has room for more rows."""
    for layer in cache.layers:
        if isinstance(layer, ReservedLayer):
            layer.append_rows(source)
        else:
            keys, values = _keys_values(layer)
            layer.keys = torch.cat([keys, keys[source]])  # type: ignore[union-attr]
            layer.values = torch.cat([values, values[source]])  # type: ignore[union-attr]


def _keys_values(layer: Any) -> tuple[Tensor, Tensor]:
    """A cache layer's filled keys and values ``(rows, heads, length, head dim)``."""
    return layer.keys, layer.values


def retire_order(done: Tensor, *, pin_last: bool = False) -> Tensor:
    """The rows to keep when the rows ``done`` ``(rows,)`` (bool) retire, in an order
    that lets a reserved cache keep them in place: every kept row among the first
    ``kept`` stays where it is, and the places of finished rows there are filled with
    the kept rows from beyond (their order changes). Returns ``(kept,)`` indices.

    With ``pin_last``, the last row is kept whatever ``done`` says and stays the last
    row (a ballast row: :class:`thoughtscope.engine.runner.RunOptions`): it moves to the
    new last place, and the row that held that place, if kept, fills the hole the last
    row would have filled; every other row is placed as without ``pin_last``."""
    if pin_last:
        done = done.clone()
        done[-1] = False
        order = retire_order(done)
        last = len(done) - 1
        if int(order[-1]) != last:
            hole = int((order == last).nonzero()[0, 0])
            order[hole], order[-1] = order[-1].clone(), last
        return order
    alive = ~done
    kept = int(alive.sum())
    order = torch.arange(kept, device=done.device)
    holes = done[:kept].nonzero().flatten()
    order[holes] = alive[kept:].nonzero().flatten() + kept
    return order


def _moves(indices: Tensor, rows: int) -> tuple[Tensor, Tensor] | None:
    """For keeping rows ``indices`` ``(kept,)`` of ``rows``: the places
    that change and the rows moved there, when few rows move: every moved row comes from
    at or beyond ``kept``, except at most the row that held the last place (as
    :func:`retire_order` with ``pin_last`` moves it); the moved rows are read before any
    is written, so nothing is overwritten before it is read. Else ``None``. One host
    sync."""
    kept = len(indices)
    if kept > rows:
        return None
    moved = (indices != torch.arange(kept, device=indices.device)).nonzero().flatten()
    source = indices[moved]
    return (moved, source) if int((source < kept).sum()) <= 1 else None


def select_rows(cache: Cache, keep: Tensor) -> None:
    """Keeps only the rows at indices ``keep`` ``(rows,)``, in place (in the same storage
    when the rows allow it: :func:`retire_order`)."""
    layers = cache.layers
    if layers and all(isinstance(layer, ReservedLayer) for layer in layers):
        rows = _keys_values(layers[0])[0].shape[0]
        moves = _moves(keep, rows)  # worked out once for every layer
        for layer in layers:
            layer.keep_rows(keep, moves)  # type: ignore[union-attr]
        return
    cache.batch_select_indices(keep)


def drop_last(cache: Cache, positions: int) -> None:
    """Forgets the last ``positions`` positions of every row, in place."""
    if positions:
        cache.crop(-positions)
