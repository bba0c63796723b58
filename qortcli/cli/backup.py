"""`qortcli backup DIR`: a consistent online copy of the embedded store (writers may keep running)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from qortcli.cli.app import app
from qortcli.cli.common import DbOption, JsonOption, emit, handled, state


@app.command()
def backup(ctx: typer.Context,
           destination: Path = typer.Argument(..., metavar="DIR", help="A new (or empty) folder for the copy."),
           db: DbOption = None, as_json: JsonOption = False) -> None:
    """Copy the embedded store into DIR while the worker and other commands keep writing: each collection file
    through SQLite's online backup API, snapshots first, so every snapshot complete in the copy has all its
    documents; what was still being written is left out. The copy is checked before this command ends.

    Restore: stop the writers, move the store folder aside, move DIR in its place, run `qortcli check`.

    Example: qortcli backup ~/qortfolio-backups/$(date -u +%Y%m%dT%H%M%SZ)
    """
    st = state(ctx, db, as_json)
    with handled(st):
        from qortcli.cli.check import open_existing
        from qortcli.steps.check import run_backup

        database = open_existing(st)
        try:
            summary = run_backup(database, destination)
        finally:
            database.close()
        emit(st, summary, _render)
        if not summary["check"]["ok"]:
            raise typer.Exit(1)


def _render(console, summary: dict) -> None:
    table = Table(title=f"Backup of {escape(summary['store'])}", title_justify="left")
    for col, justify in (("collection", "left"), ("documents", "right"), ("MB", "right"), ("file", "left")):
        table.add_column(col, justify=justify)
    for f in summary["files"]:
        table.add_row(f["collection"], str(f["documents"]), f"{f['bytes'] / 1e6:.2f}", escape(f["file"]))
    console.print(table)
    out = summary["left_out"]
    if out.get("pending_snapshots") or out.get("later_snapshots"):
        console.print(f"left out (still being written when copied): {out['pending_snapshots']} pending and "
                      f"{out['later_snapshots']} later snapshot(s), {out['documents']} documents", highlight=False)
    check = summary["check"]
    if check["ok"]:
        console.print(f"[green]backup checked[/]: {escape(summary['destination'])} ({summary['seconds']:.1f} s); "
                      "restore: stop writers, move it in place of the store, run `qortcli check`")
    else:
        console.print(f"[red]the copy has {check['damage_remaining']} problem(s)[/]: run `qortcli check "
                      f"--db {escape(summary['destination'])}`", highlight=False)
