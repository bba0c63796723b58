"""`qortcli migrate`: apply schema migrations (collections, indexes) once each."""

from __future__ import annotations

import typer
from rich.table import Table

from qortcli.cli.app import app
from qortcli.cli.common import DbOption, JsonOption, emit, fmt, handled, open_db, state
from qortcli.steps.migrate import run_migrate


@app.command()
def migrate(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Create collections and indexes and apply numbered schema migrations; running it twice changes nothing.

    Example: qortcli migrate --db mongodb://localhost:27017
    """
    st = state(ctx, db, as_json)
    with handled(st):
        database = open_db(st, migrate=False)
        emit(st, run_migrate(database), _render)


def _render(console, summary: dict) -> None:
    console.print(f"[bold]Store:[/] {summary['store']}")
    table = Table(title="Schema migrations", title_justify="left")
    for col in ("#", "description", "status", "applied at"):
        table.add_column(col)
    for m in summary["migrations"]:
        colour = "green" if m["status"] == "applied now" else "dim"
        table.add_row(str(m["number"]), m["description"], f"[{colour}]{m['status']}[/]", fmt(m.get("applied_at")))
    console.print(table)
