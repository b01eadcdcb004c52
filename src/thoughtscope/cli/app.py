"""The Typer application every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="thoughtscope",
    help="Causal interpretability for continuous-thought (CODI) reasoning models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class UsageError(typer.BadParameter):
    """A user-facing error: says what was wrong, where, and what to do."""
