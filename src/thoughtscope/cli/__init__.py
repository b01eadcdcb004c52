"""Command-line interface: a thin layer over the library API.

Each command lives in its own module and registers itself on :data:`app`.
"""

from __future__ import annotations

from thoughtscope.cli.app import app

# Command modules register on import.
from thoughtscope.cli import attention  # noqa: F401  # isort: skip
from thoughtscope.cli import compare  # noqa: F401  # isort: skip
from thoughtscope.cli import data  # noqa: F401  # isort: skip
from thoughtscope.cli import effects  # noqa: F401  # isort: skip
from thoughtscope.cli import importance  # noqa: F401  # isort: skip
from thoughtscope.cli import inference  # noqa: F401  # isort: skip
from thoughtscope.cli import patching  # noqa: F401  # isort: skip
from thoughtscope.cli import probe  # noqa: F401  # isort: skip
from thoughtscope.cli import report  # noqa: F401  # isort: skip
from thoughtscope.cli import stats  # noqa: F401  # isort: skip
from thoughtscope.cli import steering  # noqa: F401  # isort: skip
from thoughtscope.cli import table  # noqa: F401  # isort: skip
from thoughtscope.cli import train  # noqa: F401  # isort: skip


def main() -> None:
    """Entry point of the ``thoughtscope`` console script (and ``python -m thoughtscope``)."""
    app(prog_name="thoughtscope")
