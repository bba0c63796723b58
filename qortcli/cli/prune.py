"""`qortcli prune`: apply the retention policy to stored option chains."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from qortcli.cli.app import app
from qortcli.cli.common import DbOption, JsonOption, emit, fmt, handled, open_db, state


@app.command()
def prune(ctx: typer.Context,
          dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed; change nothing.")] = False,
          db: DbOption = None, as_json: JsonOption = False) -> None:
    """Keep full option chains for [retention] full_chains_days (default 30), then one chain per currency per
    UTC day; summaries, surfaces, suggestions, books and runs are kept, and chains that open suggestions'
    tracking still needs are never removed. The worker runs it daily.

    Example: qortcli prune --dry-run
    """
    from qortcli.steps.prune import run_prune

    st = state(ctx, db, as_json)
    with handled(st):
        database = open_db(st, migrate=not dry_run, read_only=dry_run)
        emit(st, run_prune(database, dry_run=dry_run), _render)


def _render(console, summary: dict) -> None:
    what = "would remove" if summary["dry_run"] else "removed"
    table = Table(title=f"Retention: full chains for {summary['full_chains_days']:g} days, then one per day "
                        f"({what})", title_justify="left")
    for col in ("currency", "older than (UTC)", "tracking needs from", "snapshots", "documents", "daily kept"):
        table.add_column(col, justify="left" if col in ("currency", "older than (UTC)", "tracking needs from") else "right")
    for row in summary["currencies"]:
        table.add_row(row["currency"], fmt(row["cutoff"])[:16], fmt(row.get("protected_from"))[:16],
                      f"{row['snapshots']:,}", f"{row['documents']:,}", f"{row['kept_daily']:,}")
    console.print(table)
    console.print(f"{summary['snapshots']:,} snapshots ({summary['documents']:,} documents) {what} "
                  f"in {summary['seconds']:.2f} s")
