"""The Typer application every command module registers on, and its one error style."""

from __future__ import annotations

from typing import IO, Any, NoReturn

import typer

app = typer.Typer(
    name="thoughtscope",
    help="Causal interpretability for continuous-thought (CODI) reasoning models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain errors: one line that a user can read and a script can grep.
    rich_markup_mode=None,
)


class UsageError(typer.BadParameter):
    """Bad input: prints one line, ``Error: OPTION: what was wrong and what to do``, and
    exits with code 2."""

    def show(self, file: IO[Any] | None = None) -> None:
        hint = self.param_hint if isinstance(self.param_hint, str) else None
        message = " ".join(self.message.split())
        prefix = f"{hint}: " if hint and not message.startswith(hint) else ""
        typer.echo(f"Error: {prefix}{message}", err=True)


def fail(message: str, option: str | None = None) -> NoReturn:
    """Stops the command with a one-line error naming ``option`` (exit code 2)."""
    raise UsageError(message, param_hint=option)
