"""`qortcli prune`: apply the retention policy to stored option chains."""

from __future__ import annotations

from typing import Annotated

import typer

from qortcli.cli.app import app
from qortcli.cli.common import (Column, CsvOption, DbOption, JsonOption, VerboseOption, emit, esc, fit_table, handled,
                                minute, open_db, state)


@app.command()
def prune(ctx: typer.Context,
          dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed; change nothing.")] = False,
          db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0, csv: CsvOption = None) -> None:
    """Keep full option chains for [retention] full_chains_days (default 30), then one chain per currency per
    UTC day; summaries, surfaces, suggestions, books and runs are kept, and chains that open suggestions'
    tracking still needs are never removed. The worker runs it daily.

    --csv writes one row per currency: the snapshots (and their options_data documents) removed, or that
    would be with --dry-run, and the daily chains kept.

    Example: qortcli prune --dry-run
    """
    from qortcli.steps.prune import run_prune

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        database = open_db(st, migrate=not dry_run, read_only=dry_run)
        emit(st, run_prune(database, dry_run=dry_run), _render, _rows, CSV_COLUMNS)


#: `--csv`: per currency; `snapshots` / `documents` are what was (dry_run: would be) removed
CSV_COLUMNS = ("currency", "dry_run", "full_chains_days", "cutoff", "protected_from", "snapshots", "documents",
               "kept_daily")


def _rows(summary: dict) -> list[dict]:
    return [{"currency": r["currency"], "dry_run": summary["dry_run"], "full_chains_days": summary["full_chains_days"],
             **{k: r.get(k) for k in CSV_COLUMNS[3:]}} for r in summary["currencies"]]


def _render(console, summary: dict) -> None:
    what = "would remove" if summary["dry_run"] else "removed"
    columns = [Column("currency", "left"), Column("older than\n(UTC)", "left"),
               Column("tracking needs\nfrom (UTC)", "left", priority=2), Column("snapshots"), Column("documents"),
               Column("daily\nkept", priority=1)]
    cells = [[esc(r["currency"]), minute(r["cutoff"]), minute(r.get("protected_from")), f"{r['snapshots']:,}",
              f"{r['documents']:,}", f"{r['kept_daily']:,}"] for r in summary["currencies"]]
    console.print(fit_table(f"Retention: full chains for {summary['full_chains_days']:g} days, then one per day "
                            f"({what})", columns, cells))
    console.print(f"{summary['snapshots']:,} snapshots ({summary['documents']:,} documents) "
                  f"{'would be removed' if summary['dry_run'] else 'removed'} in {summary['seconds']:.2f} s")
