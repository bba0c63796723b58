"""The Typer application and its global options (--db, --json, -v, --version)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from qortcli.cli.common import EXIT_USAGE, DbOption, JsonOption, State, VerboseOption, write_out


def _click_classes() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(ClickException classes, Abort classes): click's and the copy Typer vendors (typer._click)."""
    errors, aborts = [click.ClickException], [click.exceptions.Abort, typer.Abort]
    try:
        from typer._click import exceptions as vendored

        errors.append(vendored.ClickException)
    except ImportError:  # a Typer that uses click itself
        pass
    return tuple(errors), tuple(aborts)


CLICK_ERRORS, CLICK_ABORTS = _click_classes()


class QortGroup(TyperGroup):
    """Typer's group, but under --json a command-line error (bad option value, unknown command) is one
    JSON object on stderr, like every other error, with click's exit code (2)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode or "--json" not in argv:
            return super().main(args=argv, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=standalone_mode, **extra)
        try:
            code = super().main(args=argv, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                                **extra)
        except CLICK_ERRORS as exc:
            write_out(json.dumps({"error": exc.format_message(), "exit_code": exc.exit_code}), "stderr")
            sys.exit(exc.exit_code)
        except CLICK_ABORTS:
            write_out(json.dumps({"error": "aborted", "exit_code": 1}), "stderr")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=QortGroup,
    name="qortcli",
    help=("qortfolio: crypto options and portfolio analytics.\n\n"
          "Each command runs one pipeline step against the store (--db, else QORT_DB: a mongodb:// URL, "
          "or a directory for the embedded store, default ~/.qortfolio/db).\n\n"
          "Example: qortcli collect sample && qortcli price && qortcli surface && qortcli status"),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from qortcli import __version__

        typer.echo(f"qortcli {__version__}")
        raise typer.Exit(0)


VersionOption = Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                             help="Print the version and exit.")]


@app.callback()
def main_options(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False,
                 verbose: VerboseOption = 0, version: VersionOption = False) -> None:
    """Global options; --db, --json and -v may also be given after the command name."""
    ctx.obj = State(db_url=db, as_json=as_json, verbose=verbose)
    State.configure_logging(verbose)


__all__ = ["app", "QortGroup", "EXIT_USAGE"]
