"""`qortcli status`: the store in use, counts per collection, latest snapshots and last runs."""

from __future__ import annotations

import typer
from rich.table import Table

from qortcli.cli.app import app
from qortcli.cli.common import CsvOption, DbOption, JsonOption, VerboseOption, emit, esc, fmt, handled, open_db, state


@app.command()
def status(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0,
           csv: CsvOption = None,
           runs: int = typer.Option(10, "--runs", min=0, help="How many recent runs to list.")) -> None:
    """Show the store in use, document counts, the latest complete snapshot per currency and recent runs.

    Read-only. --csv writes the document counts per collection.

    Example: qortcli status --json
    """
    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        database = open_db(st, migrate=False)
        from qortcli.steps.status import run_status   # the store's readers (pandas) only when status runs

        emit(st, run_status(database, runs=runs), _render, _rows)


def _rows(summary: dict) -> list[dict]:
    return [{"collection": name, "documents": n} for name, n in summary["counts"].items()]


def _render(console, summary: dict) -> None:
    console.print(f"[bold]Store:[/] {esc(summary['store'])}")
    counts = Table(title="Documents per collection", title_justify="left")
    counts.add_column("collection")
    counts.add_column("documents", justify="right")
    for name, n in summary["counts"].items():
        counts.add_row(esc(name), f"{n:,}")
    console.print(counts)

    snaps = Table(title="Latest complete snapshots", title_justify="left")
    for col in ("currency", "snapshot", "taken at (UTC)", "instruments", "priced"):
        snaps.add_column(col, justify="right" if col in ("instruments", "priced") else "left")
    for snap in summary["latest_snapshots"]:
        snaps.add_row(esc(snap["currency"]), esc(snap["snapshot_id"]), fmt(snap["timestamp"]),
                      fmt(snap.get("instruments", "–")), _pricing(snap))
    if not summary["latest_snapshots"]:
        snaps.add_row("–", "no snapshot yet: run `qortcli collect sample` or `qortcli collect deribit`", "", "", "")
    console.print(snaps)

    for extra in summary.get("sections", []):
        table = Table(title=esc(extra["title"]), title_justify="left")
        # a column with nothing in any of several rows (no worker run yet: no last status) is left out (a lone
        # placeholder row keeps its columns); the first column never wraps
        rows = extra["rows"]
        keep = [i for i, _ in enumerate(extra["columns"])
                if i == 0 or len(rows) < 2 or any(row[i] not in (None, "") for row in rows)]
        for i in keep:
            table.add_column(esc(extra["columns"][i]), no_wrap=i == 0)
        for row in extra["rows"]:
            table.add_row(*[fmt(row[i]) for i in keep])
        console.print(table)

    runs = Table(title="Last runs", title_justify="left")
    for col in ("step", "trigger", "started (UTC)", "seconds", "status", "counts / error"):
        runs.add_column(col, justify="right" if col == "seconds" else "left")
    for run in summary["last_runs"]:
        status = run["status"]
        colour = {"ok": "green", "failed": "red", "missed": "yellow", "running": "cyan", "abandoned": "magenta",
                  "timeout": "red", "interrupted": "yellow"}.get(status, "white")
        detail = run.get("error") or ", ".join(f"{k}={v}" for k, v in (run.get("counts") or {}).items())
        runs.add_row(esc(run["step"]), esc(run.get("trigger") or ""), fmt(run.get("started_at")),
                     fmt(run.get("seconds")), f"[{colour}]{esc(status)}[/]", esc(detail))
    if not summary["last_runs"]:
        runs.add_row("–", "", "", "", "", "no runs recorded yet")
    console.print(runs)


def _pricing(snap: dict) -> str:
    """"priced 650 (ACT/365)", "unpriced", or a red "partial 300 of 650": a price run stopped half-way."""
    state = snap.get("pricing")
    if state == "priced":
        return f"[green]priced[/] {snap.get('priced')} ({esc(str(snap.get('priced_basis')))})"
    if state == "partial":
        return (f"[red]partial[/] {snap.get('priced')} of {snap.get('instruments')} "
                "(`qortcli price` prices it again; `qortcli check`)")
    return "[yellow]unpriced[/]" if state == "unpriced" else str(snap.get("priced", "–"))
