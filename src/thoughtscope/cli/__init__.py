"""Command-line interface: a thin layer over the library API.

Each command lives in its own module and registers itself on :data:`app`.
"""

from __future__ import annotations

from thoughtscope.cli.app import app

# Command modules register on import.
from thoughtscope.cli import data  # noqa: E402,F401  # isort: skip
from thoughtscope.cli import importance  # noqa: E402,F401  # isort: skip
from thoughtscope.cli import inference  # noqa: E402,F401  # isort: skip
from thoughtscope.cli import report  # noqa: E402,F401  # isort: skip
from thoughtscope.cli import stats  # noqa: E402,F401  # isort: skip
from thoughtscope.cli import train  # noqa: E402,F401  # isort: skip


def main() -> None:
    """Entry point of the ``thoughtscope`` console script."""
    app()
