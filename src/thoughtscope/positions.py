"""How thoughtscope writes latent positions: the one definition every layer uses.

``bot`` is the step whose input is the start marker (CODI's ``<bot>``), ``0 … N-1`` the
continuous thoughts (position 0 is the first thought fed back, not the ``bot`` step),
``eot`` the step whose input is the closing marker. In code they are integers: ``BOT`` =
-1, ``EOT`` = -2, thoughts 0…N-1. See ``docs/concepts.md``.
"""

from __future__ import annotations

__all__ = ["BOT", "EOT", "Position", "position_name"]

Position = int

BOT: Position = -1
"""The ``bot`` position, as an integer (thoughts are 0…N-1)."""
EOT: Position = -2
"""The ``eot`` position, as an integer (recorded only)."""


def position_name(position: Position) -> str:
    """``bot``, ``eot`` or the thought index as a string: the one way positions are
    written in names, files and reports."""
    if position == BOT:
        return "bot"
    if position == EOT:
        return "eot"
    return str(position)
