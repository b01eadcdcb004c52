"""Writing safetensors files with the permissions of every other output.

``safetensors`` writes through a private temporary file, so what it saves is readable by
its owner only (mode 0600), while JSON, CSV and HTML outputs get the usual 0666 minus the
umask (0644 with the common umask 022). A model folder or a thoughts file that a
colleague cannot read is a surprise; :func:`save_tensors` gives them the same mode.
"""

from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import save_file
from torch import Tensor

__all__ = ["save_tensors"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_tensors(
    tensors: dict[str, Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Saves ``tensors`` to ``path`` (safetensors) with mode ``0666 & ~umask``."""
    target = Path(path)
    save_file(tensors, str(target), metadata=metadata)
    os.chmod(target, 0o666 & ~_umask())
    return target
