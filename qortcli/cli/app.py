"""The Typer application and its global options (--db, --json, -v)."""

from __future__ import annotations

import typer

from qortcli.cli.common import DbOption, JsonOption, State, VerboseOption

app = typer.Typer(
    name="qortcli",
    help=("qortfolio: crypto options and portfolio analytics.\n\n"
          "Each command runs one pipeline step against the store (QORT_DB or --db: a mongodb:// URL, "
          "or a directory for the embedded store, default ~/.qortfolio/db).\n\n"
          "Example: qortcli collect sample && qortcli price && qortcli surface && qortcli status"),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main_options(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False,
                 verbose: VerboseOption = 0) -> None:
    """Global options; they may also be given after the command name."""
    ctx.obj = State(db_url=db, as_json=as_json, verbose=verbose)
    State.configure_logging(verbose)
