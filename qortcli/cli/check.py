"""`qortcli check [--repair]`: integrity of every collection file and of the snapshot protocol; exit 1 while
damage remains."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from qortcli.cli.app import app
from qortcli.cli.common import DbOption, JsonOption, emit, fmt, handled, open_db, state


@app.command()
def check(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False,
          repair: bool = typer.Option(False, "--repair",
                                      help="Repair what can be: abandon dead runs, discard dead writers' pending "
                                           "snapshots, delete orphan documents, hide snapshots with missing documents, "
                                           "remove half-written model fields, rewrite count bookkeeping.")) -> None:
    """Check the store: the engine's integrity check of each collection file, complete snapshots whose documents
    are missing, documents of unknown snapshots, pending snapshots of dead writers, runs stuck "running" and
    snapshots a killed `price` left half-priced. Exit 1 while any of that remains (a damaged file: restore it
    from `qortcli backup`, see README).

    Example: qortcli check && qortcli check --repair
    """
    st = state(ctx, db, as_json)
    with handled(st):
        from qortcli.steps.check import run_check

        database = open_existing(st)
        try:
            summary = run_check(database, repair=repair)
        finally:
            database.close()
        emit(st, summary, _render)
        if not summary["ok"]:
            raise typer.Exit(1)


def open_existing(st):
    """The store to check or back up; an embedded store path that does not exist is an error (opening it
    would create an empty store and report it healthy)."""
    from pathlib import Path

    from qortcli.config import get_settings
    from qortcli.errors import StoreError
    from qortcli.store.connect import is_mongo_url

    url = st.db_url or get_settings().db_url
    if not is_mongo_url(url) and not Path(url).expanduser().is_dir():
        raise StoreError(f"no store at {url} (set QORT_DB or --db)")
    return open_db(st, migrate=False)


def _render(console, summary: dict) -> None:
    console.print(f"[bold]Store:[/] {escape(summary['store'])}")
    table = Table(title="Collections (engine integrity check)", title_justify="left")
    for col, justify in (("collection", "left"), ("documents", "right"), ("check", "left"), ("repaired", "left"),
                         ("file", "left")):
        table.add_column(col, justify=justify)
    for coll in summary["collections"]:
        if coll["problems"]:
            verdict = "[red]" + escape("; ".join(coll["problems"])) + "[/]"
        else:
            verdict = "[green]ok[/]" if coll["checked"] else "[yellow]not checked (server refused validate)[/]"
        table.add_row(coll["name"], fmt(coll["documents"]), verdict, escape("; ".join(coll["repaired"]) or "–"),
                      escape(coll["file"] or "–"))
    console.print(table)
    snaps = summary.get("snapshots") or {}
    if snaps:
        console.print(f"snapshots: {snaps.get('complete', 0)} complete, {snaps.get('pending', 0)} pending "
                      f"({snaps.get('stale_pending', 0)} of dead writers)", highlight=False)
    if summary["findings"]:
        found = Table(title="Findings", title_justify="left")
        for col in ("kind", "subject", "detail", "repair"):
            found.add_column(col)
        for f in summary["findings"]:
            if f["repaired"]:
                repaired = f"[green]{escape(f['repaired'])}[/]"
            else:
                repaired = "[red]not repaired[/]" if summary["repair"] else "[dim]--repair[/]"
            found.add_row(escape(f["kind"]), escape(f["subject"]), escape(f["detail"]), repaired)
        console.print(found)
    for note in summary.get("skipped") or []:
        console.print(f"[yellow]{escape(note)}[/]", highlight=False)
    left = summary["damage_remaining"]
    if left == 0:
        what = "repaired, no damage left" if summary["findings"] or summary["repair"] else "no damage found"
        console.print(f"[green]{what}[/] ({summary['seconds']:.1f} s)")
    else:
        hint = "" if summary["repair"] else "; `qortcli check --repair` repairs what can be"
        console.print(f"[red]{left} problem(s) remain[/]{hint}; a damaged file is restored from a backup "
                      "(README: Backup and restore)", highlight=False)
