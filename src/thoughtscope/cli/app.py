"""The Typer application every command module registers on, and its one error style.

Every failure a user can cause ends in one line on stderr, never a traceback: usage
errors (:func:`fail`, exit code 2) name the option; anything else that escapes a command
(a damaged file, a full disk, Ctrl-C) is turned into one line by :class:`GuardedGroup`
(exit code 1, or 130 for an interruption). ``thoughtscope --debug COMMAND`` shows the
traceback instead.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

import thoughtscope


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


# ---------------------------------------------------------------------------------------
# What a running command is writing, so an interruption can say where it stopped
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamedOutput:
    """A file a command appends whole lines to, and how to continue after a stop."""

    path: Path
    resume: str  # e.g. "run the same command again to continue"

    def complete_rows(self) -> int:
        """Lines ended by a newline (a cut-off last line does not count)."""
        try:
            with self.path.open("rb") as handle:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        except OSError:
            return 0

    def describe(self) -> str:
        return f"{self.path} holds {self.complete_rows()} complete rows"


_streams: list[StreamedOutput] = []


def streaming_to(path: Path, *, resume: str) -> None:
    """Declares that the running command appends rows to ``path`` (for the messages on
    Ctrl-C or a full disk: where it stopped and how to continue)."""
    _streams.append(StreamedOutput(Path(path), resume))


def _where_it_stopped() -> str:
    if not _streams:
        return "no results had been written yet"
    return "; ".join(f"{s.describe()}; {s.resume}" for s in _streams)


def _one_line(error: BaseException) -> tuple[str, int]:
    """The message and exit code for an error that escaped a command."""
    if isinstance(error, KeyboardInterrupt):
        return f"Interrupted: {_where_it_stopped()}.", 130
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        target = f" writing {error.filename}" if error.filename else ""
        stopped = (
            f"the rows already written are safe: {_where_it_stopped()}"
            if _streams
            else "nothing was written"
        )
        return f"Error: the disk is full{target}; {stopped}; free some space first.", 1
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"Error: {where}{error.strerror}.", 1
    text = " ".join(str(error).split())
    if (
        isinstance(error, ValueError)
        and type(error).__module__.startswith("thoughtscope.")
        and text
    ):
        # thoughtscope's own input errors (bad files, damaged runs) carry their advice.
        return f"Error: {text}", 1
    return (
        f"Error: {type(error).__name__}: {text or 'no message'} (unexpected; rerun with "
        "`thoughtscope --debug ...` for the traceback and report it)",
        1,
    )


# Typer's own exits and usage errors (typer vendors click: its errors derive from
# TyperException) print themselves.
_COMMAND_LINE_EXITS = (typer.Exit, typer.Abort, typer.TyperException)


class GuardedGroup(TyperGroup):
    """Runs a command; turns whatever escapes it into one line unless ``--debug``."""

    def invoke(self, ctx: Any) -> Any:
        _streams.clear()
        try:
            return super().invoke(ctx)
        except _COMMAND_LINE_EXITS:
            raise
        except (Exception, KeyboardInterrupt) as error:
            if ctx.params.get("debug"):
                raise
            message, code = _one_line(error)
            typer.echo(message, err=True)
            raise typer.Exit(code) from None


app = typer.Typer(
    name="thoughtscope",
    help="Causal interpretability for continuous-thought reasoning models "
    "(CODI, Coconut, soft thinking).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain errors: one line that a user can read and a script can grep.
    rich_markup_mode=None,
    cls=GuardedGroup,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"thoughtscope {thoughtscope.__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show the full traceback when a command fails."),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Causal interpretability for continuous-thought reasoning models (CODI, Coconut,
    soft thinking)."""
