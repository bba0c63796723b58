"""`qortcli check [--repair]`: integrity of every collection file and of the snapshot protocol; exit 1 while
damage remains."""

from __future__ import annotations

import typer
from rich.markup import escape

from qortcli.cli.app import app
from qortcli.cli.common import (Column, CsvOption, DbOption, JsonOption, VerboseOption, emit, esc, fit_table, fmt,
                                handled, open_db, state)


@app.command()
def check(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0,
          csv: CsvOption = None,
          repair: bool = typer.Option(False, "--repair",
                                      help="Repair what can be: abandon dead runs, discard dead writers' pending "
                                           "snapshots, delete orphan documents, hide snapshots with missing documents, "
                                           "remove half-written model fields, rewrite count bookkeeping.")) -> None:
    """Check the store: the engine's integrity check of each collection file, complete snapshots whose documents
    are missing, documents of unknown snapshots, pending snapshots of dead writers, runs stuck "running" and
    snapshots a killed `price` left half-priced. Exit 1 while any of that remains (a damaged file: restore it
    from `qortcli backup`, see README).

    --csv writes the findings, one row per problem: each problem the engine found in a collection file (kind
    "collection") and each snapshot/run finding, with its repair (empty: not repaired). A healthy store: the
    header only.

    Example: qortcli check && qortcli check --repair
    """
    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        from qortcli.steps.check import run_check

        database = open_existing(st)
        try:
            summary = run_check(database, repair=repair)
        finally:
            database.close()
        emit(st, summary, _render, finding_rows, FINDING_COLUMNS)
        if not summary["ok"]:
            raise typer.Exit(1)


#: `--csv`: one row per problem found; `repaired` says what the repair did (empty: not repaired)
FINDING_COLUMNS = ("kind", "subject", "detail", "repaired", "file")


def finding_rows(summary: dict) -> list[dict]:
    """Every problem of the report: the collection files' (engine check), then the protocol findings."""
    rows = [{"kind": "collection", "subject": c["name"], "detail": problem,
             "repaired": "; ".join(c["repaired"]) or None, "file": c["file"]}
            for c in summary["collections"] for problem in c["problems"]]
    return rows + [{"kind": f["kind"], "subject": f["subject"], "detail": f["detail"], "repaired": f["repaired"],
                    "file": None} for f in summary["findings"]]


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
    rows = []
    for coll in summary["collections"]:
        if coll["problems"]:
            verdict = "[red]" + escape("; ".join(coll["problems"])) + "[/]"
        else:
            verdict = "[green]ok[/]" if coll["checked"] else "[yellow]not checked (server refused validate)[/]"
        documents = coll["documents"]
        rows.append([esc(coll["name"]), f"{documents:,}" if isinstance(documents, int) else fmt(documents), verdict,
                     escape("; ".join(coll["repaired"]) or "–"), escape(coll["file"] or "–")])
    console.print(fit_table("Collections (engine integrity check)",
                            [Column("collection", "left"), Column("documents"), Column("check", "left", wrap=True),
                             Column("repaired", "left", priority=1, wrap=True), Column("file", "left", priority=2)],
                            rows))
    snaps = summary.get("snapshots") or {}
    if snaps:
        console.print(f"snapshots: {snaps.get('complete', 0)} complete, {snaps.get('pending', 0)} pending "
                      f"({snaps.get('stale_pending', 0)} of dead writers)", highlight=False)
    if summary["findings"]:
        cells = []
        for f in summary["findings"]:
            if f["repaired"]:
                repaired = f"[green]{escape(f['repaired'])}[/]"
            else:
                repaired = "[red]not repaired[/]" if summary["repair"] else "[dim]--repair[/]"
            cells.append([escape(f["kind"]), escape(f["subject"]), escape(f["detail"]), repaired])
        console.print(fit_table("Findings", [Column("kind", "left"), Column("subject", "left"),
                                             Column("detail", "left", wrap=True), Column("repair", "left", wrap=True)],
                                cells))
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
