"""`qortcli backup DIR`: a consistent online copy of the embedded store (writers may keep running)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from qortcli.cli.app import app
from qortcli.cli.common import (Column, CsvOption, DbOption, JsonOption, VerboseOption, emit, esc, fit_table, handled,
                                state)


@app.command()
def backup(ctx: typer.Context,
           destination: Path = typer.Argument(..., metavar="DIR", help="A new (or empty) folder for the copy."),
           db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0,
           csv: CsvOption = None) -> None:
    """Copy the embedded store into DIR while the worker and other commands keep writing: each collection file
    through SQLite's online backup API, snapshots first, so every snapshot complete in the copy has all its
    documents; what was still being written is left out. The copy is checked before this command ends.

    Restore: stop the writers, move the store folder aside, move DIR in its place, run `qortcli check`.

    --csv writes the files of the copy, one row per collection (documents copied, size in bytes).

    Example: qortcli backup ~/qortfolio-backups/$(date -u +%Y%m%dT%H%M%SZ)
    """
    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        from qortcli.cli.check import open_existing
        from qortcli.steps.check import run_backup

        database = open_existing(st)
        try:
            summary = run_backup(database, destination)
        finally:
            database.close()
        emit(st, summary, _render, file_rows, FILE_COLUMNS)
        if not summary["check"]["ok"]:
            raise typer.Exit(1)


#: `--csv`: one row per collection file written into the copy
FILE_COLUMNS = ("collection", "file", "documents", "bytes")


def file_rows(summary: dict) -> list[dict]:
    return [{k: f.get(k) for k in FILE_COLUMNS} for f in summary["files"]]


def _relative(file: str, destination: str) -> str:
    """A file of the copy named inside DIR (the whole path when it lies elsewhere)."""
    try:
        return str(Path(file).relative_to(destination))
    except ValueError:
        return file


def _render(console, summary: dict) -> None:
    cells = [[esc(f["collection"]), f"{f['documents']:,}", f"{f['bytes'] / 1e6:,.2f}",
              esc(_relative(f["file"], summary["destination"]))] for f in summary["files"]]
    columns = [Column("collection", "left"), Column("documents"), Column("MB"), Column("file in DIR", "left", priority=1)]
    console.print(fit_table(f"Backup of {esc(summary['store'])}", columns, cells))
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
