"""Writing output files: atomically, durably, and with the permissions of every other output.

Every file thoughtscope writes whole (manifests, summaries, reports, tables, tensors,
checkpoints) goes through :func:`replacing`: it is written beside its final name, flushed
to disk, then renamed over it, so a reader (or a resumed run) sees the old file or the new
one, never half of one. ``safetensors`` writes through a private temporary file, so what it
saves is readable by its owner only (mode 0600); :func:`save_tensors` gives tensor files
the usual ``0666 & ~umask`` like JSON, CSV and HTML outputs. Append-only result files
(``results.jsonl``) are not written here: :mod:`thoughtscope.results.store` appends and
fsyncs them batch by batch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor

__all__ = ["replacing", "save_tensors", "write_json", "write_text"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` to write; when the block ends without an
    error the file is fsynced, given mode ``0666 & ~umask`` and renamed over ``path``;
    on an error it is removed and ``path`` is left as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        yield temporary
        _fsync(temporary)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with replacing(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data: Any, *, sort_keys: bool = False) -> Path:
    """Writes ``data`` as indented JSON (UTF-8, no NaN) to ``path`` atomically."""
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False, sort_keys=sort_keys)
    return write_text(path, text + "\n")


def save_tensors(
    tensors: dict[str, Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Saves ``tensors`` to ``path`` (safetensors) atomically, mode ``0666 & ~umask``."""
    with replacing(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
    return Path(path)
