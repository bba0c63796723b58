"""`qortcli collect deribit|prices|sample`: option chains and daily prices into the store."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qortcli.cli.app import app
from qortcli.cli.common import DbOption, JsonOption, State, emit, err_console, fmt, handled, open_db, state

collect_app = typer.Typer(
    help=("Collect Deribit option chains and daily crypto prices into the store.\n\n"
          "Examples:\n\n"
          "  qortcli collect sample                       # bundled real data, no network\n\n"
          "  qortcli collect deribit --currency BTC --currency ETH\n\n"
          "  qortcli collect deribit --from-file chain.json\n\n"
          "  qortcli collect prices --sector DeFi --since 2023-01-01\n\n"
          "  qortcli collect prices --from-csv ./prices/"),
    no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(collect_app, name="collect")


@contextmanager
def _progress(st: State, what: str):
    """A rich progress bar on stderr (one task per currency/sector/file); silent with --json."""
    if st.as_json:
        yield None
        return
    bar = Progress(TextColumn(f"[bold]{what}[/] {{task.description}}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=err_console, transient=True)
    tasks: dict[str, int] = {}

    def update(label: str, done: int, total: int) -> None:
        if "" not in tasks:
            tasks[""] = bar.add_task(label, total=total)
        bar.update(tasks[""], description=label, completed=done, total=total)

    with bar:
        yield update


@collect_app.command("deribit")
def deribit(ctx: typer.Context,
            currency: Annotated[Optional[List[str]], typer.Option(
                "--currency", "-c", help="Currency to collect: repeat or comma-separate (default from settings: BTC,ETH).")] = None,
            from_file: Annotated[Optional[Path], typer.Option(
                "--from-file", help="Import a recorded chain instead of calling Deribit: a get_book_summary_by_currency "
                                    "response (.json), a whole-chain CSV (.csv) or a directory of them.")] = None,
            url: Annotated[Optional[str], typer.Option(
                "--url", envvar="QORT_DERIBIT_URL", help="Deribit API base URL.")] = None,
            db: DbOption = None, as_json: JsonOption = False) -> None:
    """Store each currency's whole option chain as one atomic snapshot (live API or a recorded file).

    Example: qortcli collect deribit --currency BTC --currency ETH
    """
    from qortcli.steps.collect import run_collect_deribit, run_collect_file

    st = state(ctx, db, as_json)
    with handled(st):
        if from_file is not None and currency:
            from qortcli.errors import UsageError

            raise UsageError("--currency applies to live collection; a --from-file chain carries its own currencies")
        currencies = [c.strip().upper() for value in (currency or []) for c in value.replace(",", " ").split() if c.strip()]
        database = open_db(st)
        with _progress(st, "deribit") as progress:
            if from_file is not None:
                summary = run_collect_file(database, from_file, progress=progress)
            else:
                summary = run_collect_deribit(database, currencies or None, base_url=url, progress=progress)
        emit(st, summary, _render_options)


@collect_app.command("prices")
def prices(ctx: typer.Context,
           sector: Annotated[Optional[str], typer.Option("--sector", help="Only this sector (e.g. DeFi).")] = None,
           since: Annotated[Optional[str], typer.Option(
               "--since", help="First day YYYY-MM-DD when a symbol has nothing stored yet (default from settings).")] = None,
           from_csv: Annotated[Optional[Path], typer.Option(
               "--from-csv", help="Import Yahoo daily CSVs (file name = Yahoo symbol, e.g. BTC-USD.csv) "
                                  "from this directory instead of downloading.")] = None,
           db: DbOption = None, as_json: JsonOption = False) -> None:
    """Store daily OHLCV per coin of the sector taxonomy (yfinance, incremental) or from Yahoo CSVs.

    Example: qortcli collect prices --sector DeFi --since 2023-01-01
    """
    from qortcli.steps.collect import run_collect_prices, run_collect_prices_csv

    st = state(ctx, db, as_json)
    with handled(st):
        if from_csv is not None and (sector or since):
            from qortcli.errors import UsageError

            raise UsageError("--sector/--since apply to downloads; --from-csv imports every file of the directory")
        database = open_db(st)
        with _progress(st, "prices") as progress:
            if from_csv is not None:
                summary = run_collect_prices_csv(database, from_csv, progress=progress)
            else:
                summary = run_collect_prices(database, sector=sector, since=since, progress=progress)
        emit(st, summary, _render_prices)


@collect_app.command("sample")
def sample(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Load the bundled real sample (a BTC+ETH Deribit chain of 2026-01-11 and 10 coins' daily prices),
    no network needed.

    Example: qortcli collect sample && qortcli status
    """
    from qortcli.steps.collect import run_collect_sample

    st = state(ctx, db, as_json)
    with handled(st):
        database = open_db(st)
        with _progress(st, "sample") as progress:
            summary = run_collect_sample(database, progress=progress)
        emit(st, summary, _render_sample)


# --------------------------------------------------------------------------- rendering

def _render_options(console, summary: dict) -> None:
    table = Table(title="Option snapshots stored", title_justify="left")
    for col in ("snapshot", "status", "instruments", "expiries", "stored", "skipped", "s"):
        table.add_column(col, justify="left" if col in ("snapshot", "status") else "right", no_wrap=col == "snapshot")
    for row in summary["snapshots"]:
        skipped = str(row["skipped"])
        if row["skipped_by_reason"]:
            skipped += " (" + ", ".join(f"{k} {v}" for k, v in row["skipped_by_reason"].items()) + ")"
        table.add_row(row["snapshot_id"], row.get("status", "stored"), str(row["instruments"]), str(row["expiries"]),
                      str(row["stored"]), skipped, fmt(row["seconds"], 3))
    console.print(table)
    sources = sorted({row["source"] for row in summary["snapshots"]})
    if sources:
        console.print(f"source: {', '.join(sources)}" + (f" ({summary['path']})" if summary.get("path") else ""),
                      highlight=False)
    for row in summary["snapshots"]:
        for example in row.get("skipped_examples", [])[:3]:
            console.print(f"[yellow]skipped[/] {row['currency']} {example}", highlight=False)
    for row in summary["snapshots"]:
        if row.get("note"):
            console.print(f"{row['snapshot_id']}: {row['note']}", highlight=False)
    console.print(f"{summary['stored']} documents stored, {summary['skipped']} rows skipped "
                  f"in {fmt(summary.get('seconds'), 3)} s")


def _render_prices(console, summary: dict) -> None:
    table = Table(title="Daily prices stored", title_justify="left")
    for col in ("symbol", "yahoo", "sector", "from", "to", "stored", "skipped"):
        table.add_column(col, justify="right" if col in ("stored", "skipped") else "left")
    for row in summary["symbols"]:
        table.add_row(row["symbol"], row["yfinance_symbol"], row["sector"],
                      fmt(row["first_day"])[:10], fmt(row["last_day"])[:10], str(row["stored"]), str(row["skipped"]))
    console.print(table)
    for symbol, message in summary.get("errors", {}).items():
        console.print(f"[yellow]not collected[/] {symbol}: {message}", highlight=False)
    if summary.get("up_to_date"):
        console.print(f"already up to date: {', '.join(summary['up_to_date'])}")
    console.print(f"{summary['stored']} documents stored, {summary['skipped']} rows skipped "
                  f"in {fmt(summary.get('seconds'), 3)} s")


def _render_sample(console, summary: dict) -> None:
    _render_options(console, summary["options"])
    _render_prices(console, summary["prices"])
