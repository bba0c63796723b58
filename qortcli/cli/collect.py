"""`qortcli collect deribit|prices|sample`: option chains and daily prices into the store."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from qortcli.cli.app import app
from qortcli.cli.common import (Column, CsvOption, DbOption, JsonOption, State, VerboseOption, emit, err_console, esc,
                                fit_table, fmt, handled, open_db, state)
from qortcli.errors import UsageError

collect_app = typer.Typer(
    help=("Collect Deribit option chains and daily crypto prices into the store.\n\n"
          "Examples:\n\n"
          "  qortcli collect sample                       # bundled real data, no network\n\n"
          "  qortcli collect deribit --currency BTC --currency ETH\n\n"
          "  qortcli collect deribit --from-file chain.json\n\n"
          "  qortcli collect deribit --from-file tests/fixtures/    # every chain file of a folder\n\n"
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
        label = esc(label)  # file names may hold "[" (rich markup)
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
                                    "response (.json), a whole-chain CSV (.csv) or a folder of them (other files "
                                    "in it are skipped with a note).")] = None,
            url: Annotated[Optional[str], typer.Option(
                "--url", help="Deribit API base URL (default: QORT_DERIBIT_URL, else https://www.deribit.com/api/v2).")] = None,
            replace: Annotated[bool, typer.Option(
                "--replace", help="With --from-file: replace a stored snapshot whose content differs (it is refused "
                                  "otherwise; the same content is always left as it is).")] = False,
            db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0, csv: CsvOption = None) -> None:
    """Store each currency's whole option chain as one atomic snapshot (live API or a recorded file).

    Rows that fail validation are skipped and counted by reason; rows with an unusable mark IV are kept
    and flagged. A folder import lists every file (stored / skipped / error) and exits 1 if any failed.
    A stored snapshot is never shrunk or unpriced by a re-import: the same content is "unchanged", a different
    one is refused unless --replace.
    --csv writes one row per snapshot stored.

    Example: qortcli collect deribit --currency BTC --currency ETH
    """
    from qortcli.steps.collect import run_collect_deribit, run_collect_file

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st, _render_options, _snapshot_rows):
        if from_file is not None and currency:
            raise UsageError("--currency applies to live collection; a --from-file chain carries its own currencies")
        if from_file is not None and url:
            raise UsageError("--url applies to live collection, not to --from-file")
        if replace and from_file is None:
            raise UsageError("--replace applies to --from-file imports (a live chain is always a new snapshot)")
        currencies = _currencies(currency)
        database = open_db(st)
        with _progress(st, "deribit") as progress:
            if from_file is not None:
                summary = run_collect_file(database, from_file, progress=progress, replace=replace)
            else:
                summary = run_collect_deribit(database, currencies or None, base_url=url, progress=progress)
        emit(st, summary, _render_options, _snapshot_rows)


def _currencies(values: list[str] | None) -> list[str]:
    """--currency values (repeated or comma-separated), upper-cased; a malformed one is a usage error."""
    import re

    out = [c.strip().upper() for value in (values or []) for c in value.replace(",", " ").split() if c.strip()]
    bad = [c for c in out if not re.fullmatch(r"[A-Z][A-Z0-9_]{1,11}", c)]
    if bad:
        raise UsageError(f"--currency {bad[0]!r} is not a currency code like BTC or ETH")
    return list(dict.fromkeys(out))


@collect_app.command("prices")
def prices(ctx: typer.Context,
           sector: Annotated[Optional[str], typer.Option("--sector", help="Only this sector (e.g. DeFi).")] = None,
           since: Annotated[Optional[str], typer.Option(
               "--since", help="First day YYYY-MM-DD when a symbol has nothing stored yet (default from settings).")] = None,
           from_csv: Annotated[Optional[Path], typer.Option(
               "--from-csv", help="Import Yahoo daily CSVs (file name = Yahoo symbol, e.g. BTC-USD.csv) "
                                  "from this directory instead of downloading.")] = None,
           db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0, csv: CsvOption = None) -> None:
    """Store daily OHLCV per coin of the sector taxonomy (yfinance, incremental) or from Yahoo CSVs.

    --csv writes one row per symbol stored.

    Example: qortcli collect prices --sector DeFi --since 2023-01-01
    """
    from qortcli.steps.collect import run_collect_prices, run_collect_prices_csv

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st, _render_prices, _symbol_rows):
        if from_csv is not None and (sector or since):
            raise UsageError("--sector/--since apply to downloads; --from-csv imports every file of the directory")
        database = open_db(st)
        with _progress(st, "prices") as progress:
            if from_csv is not None:
                summary = run_collect_prices_csv(database, from_csv, progress=progress)
            else:
                summary = run_collect_prices(database, sector=sector, since=since, progress=progress)
        emit(st, summary, _render_prices, _symbol_rows)


@collect_app.command("sample")
def sample(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0,
           csv: CsvOption = None) -> None:
    """Load the bundled real sample (a BTC+ETH Deribit chain of 2026-01-11 and 10 coins' daily prices),
    no network needed.

    --csv writes one row per option snapshot stored.

    Example: qortcli collect sample && qortcli status
    """
    from qortcli.steps.collect import run_collect_sample

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        database = open_db(st)
        with _progress(st, "sample") as progress:
            summary = run_collect_sample(database, progress=progress)
        emit(st, summary, _render_sample, lambda s: _snapshot_rows(s["options"]))


# --------------------------------------------------------------------------- rendering

def _snapshot_rows(summary: dict) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("skipped_examples",)} for row in summary["snapshots"]]


def _symbol_rows(summary: dict) -> list[dict]:
    return list(summary["symbols"])


def _reasons(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _render_options(console, summary: dict) -> None:
    files = summary.get("files") or []
    if len(files) > 1 or any(f["status"] != "stored" for f in files):
        colour = {"stored": "green", "skipped": "yellow", "error": "red"}
        console.print(fit_table(
            f"Files in {esc(summary['path'])}",
            [Column("file", "left"), Column("status", "left"), Column("snapshots", priority=2), Column("stored"),
             Column("note", "left", priority=1, wrap=True)],
            [[esc(f["file"]), f"[{colour.get(f['status'], 'white')}]{esc(f['status'])}[/]", str(len(f["snapshots"])),
              f"{f['stored']:,}", esc(f["note"])] for f in files]))
    rows = []
    for row in summary["snapshots"]:
        skipped = f"{row['skipped']:,}" + (f" ({esc(_reasons(row['skipped_by_reason']))})" if row["skipped_by_reason"] else "")
        flagged = f"{row.get('iv_flagged', 0):,}" + (f" ({esc(_reasons(row['iv_flagged_by_reason']))})"
                                                     if row.get("iv_flagged_by_reason") else "")
        rows.append([esc(row["snapshot_id"]), esc(row.get("status", "stored")), f"{row['instruments']:,}",
                     str(row["expiries"]), f"{row['stored']:,}", skipped, flagged, fmt(row["seconds"], 3)])
    if rows:
        console.print(fit_table("Option snapshots stored",
                                [Column("snapshot", "left"), Column("status", "left"), Column("instruments"),
                                 Column("expiries", priority=2),
                                 Column("stored"), Column("skipped rows"), Column("vol flagged", priority=1),
                                 Column("s", priority=3)], rows))
    sources = sorted({row["source"] for row in summary["snapshots"]})
    if sources:
        console.print(f"source: {esc(', '.join(sources))}" + (f" ({esc(summary['path'])})" if summary.get("path") else ""),
                      highlight=False)
    for row in summary["snapshots"]:
        for example in row.get("skipped_examples", [])[:3]:
            console.print(f"[yellow]skipped[/] {esc(row['currency'])} {esc(example)}", highlight=False)
    for row in summary["snapshots"]:
        if row.get("note"):
            console.print(f"{esc(row['snapshot_id'])}: {esc(row['note'])}", highlight=False)
    for failure in summary.get("failures") or []:
        console.print(f"[red]failed[/] {esc(failure)}", highlight=False)
    flagged = summary.get("iv_flagged", 0)
    console.print(f"{summary['stored']:,} documents stored, {summary['skipped']:,} rows skipped"
                  + (f", {flagged:,} rows kept with an unusable mark IV (no model fields)" if flagged else "")
                  + f" in {fmt(summary.get('seconds'), 3)} s", highlight=False)


def _render_prices(console, summary: dict) -> None:
    rows = [[esc(row["symbol"]), esc(row["yfinance_symbol"]), esc(row["sector"]), fmt(row["first_day"])[:10],
             fmt(row["last_day"])[:10], f"{row['stored']:,}", f"{row['skipped']:,}"] for row in summary["symbols"]]
    console.print(fit_table("Daily prices stored",
                            [Column("symbol", "left"), Column("yahoo", "left", priority=2),
                             Column("sector", "left", priority=1), Column("from", "left"), Column("to", "left"),
                             Column("stored"), Column("skipped")], rows))
    for symbol, message in summary.get("errors", {}).items():
        console.print(f"[yellow]not collected[/] {esc(symbol)}: {esc(message)}", highlight=False)
    if summary.get("up_to_date"):
        console.print(f"already up to date: {esc(', '.join(summary['up_to_date']))}", highlight=False)
    console.print(f"{summary['stored']:,} documents stored, {summary['skipped']:,} rows skipped "
                  f"in {fmt(summary.get('seconds'), 3)} s", highlight=False)


def _render_sample(console, summary: dict) -> None:
    _render_options(console, summary["options"])
    _render_prices(console, summary["prices"])
