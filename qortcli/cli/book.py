"""`qortcli book import|add|remove|list`: the trader's own positions in a named book."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from qortcli.cli.app import app
from qortcli.cli.common import CsvOption, DbOption, JsonOption, VerboseOption, emit, handled, open_db, state
from qortcli.cli.risk import Column, coin, fit, num, to_rich, usd
from qortcli.errors import UsageError

book_app = typer.Typer(
    help=("Your own positions, in a named book (default `main`) stored with its history of changes.\n\n"
          "Sizes are signed and in coin: options in coin contracts, a coin holding in coin, futures in coin at the "
          "entry price (converted to Deribit's USD contracts). Prices: coin per option, USD per coin for futures. "
          "Every instrument is checked against its currency's latest chain; a bad row stores nothing. "
          "--csv FILE (every subcommand) writes the book's positions after the command, one row each.\n\n"
          "Examples:\n\n"
          "  qortcli book import positions.json    (a recorded Deribit private/get_positions response)\n\n"
          "  qortcli book import positions.csv     (instrument,size,avg_price_coin; BTC,1.5 for coin held)\n\n"
          "  qortcli book add BTC-27MAR26-100000-C 2 --price 0.03\n\n"
          "  qortcli book add BTC-27MAR26 -0.5      (short 0.5 BTC of the March future at its mark)\n\n"
          "  qortcli book add --suggestion 'BTC-20260111T211857Z|short_strangle|20260130'\n\n"
          "  qortcli book remove BTC-27MAR26 && qortcli book list --book main"),
    no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(book_app, name="book")

BookOption = Annotated[str, typer.Option("--book", "-b", help="Book name (letters, digits, _ . -).")]


def _size(p: dict) -> str:
    if p.get("kind") == "future":
        return f"{p['size_usd']:,g} USD"
    return f"{p['size_coin']:,g} coin"


def _price(p: dict) -> str:
    if p.get("kind") == "option":
        return coin(p.get("entry_price_coin"))
    return usd(p.get("entry_price_usd")) if p.get("entry_price_usd") is not None else "–"


def _expiry(p: dict) -> str:
    if p.get("kind") == "spot":
        return "–"
    expiry = p.get("expiry")
    return "perpetual" if expiry is None else f"{expiry:%Y-%m-%d %H:%M}"


def position_columns() -> list[Column]:
    return [Column("instrument", lambda p: p["instrument"], 0, "left"), Column("kind", lambda p: p["kind"], 0, "left"),
            Column("size", _size, 0), Column("entry", _price, 0), Column("expiry (UTC)", _expiry, 1)]


#: `--csv`: the book's positions after the command (sizes signed: coin, futures also in USD contracts)
POSITION_COLUMNS = ("book", "revision", "instrument", "kind", "currency", "size_coin", "size_usd", "entry_price_coin",
                    "entry_price_usd", "expiry", "strike_usd", "option_type", "perpetual")


def position_rows(summary: dict) -> list[dict]:
    """One flat row per position of the book (raw numbers, as in --json)."""
    return [{"book": summary["book"], "revision": summary["revision"],
             **{k: p.get(k) for k in POSITION_COLUMNS[2:]}} for p in summary["positions"]]


def _render(console, summary: dict) -> None:
    width = min(console.width, 200)
    if summary.get("message"):
        console.print(escape(summary["message"]), highlight=False)
    for line in summary.get("skipped") or []:
        console.print(f"[dim]skipped (flat): {escape(line)}[/]", highlight=False)
    if summary["action"] in ("add", "add_suggestion"):
        rows = [{**c, "now": c["after"]} for c in summary["changes"]]
        console.print(to_rich(fit("changes", [
            Column("instrument", lambda r: r["instrument"], 0, "left"),
            Column("added", lambda r: f"{r['size']:,g} {'USD' if r['size_unit'] == 'usd' else 'coin'}", 0),
            Column("at", lambda r: coin(r["price"]) if r["price_unit"] == "coin" else usd(r["price"]), 0),
            Column("now", lambda r: "closed" if r["now"] is None else _size(r["now"]), 0),
            Column("realised coin", lambda r: num(r["realised_pnl_coin"]), 1)], rows, width)))
    title = f"book {summary['book']} · revision {summary['revision']} · {len(summary['positions'])} positions"
    console.print(to_rich(fit(title, position_columns(), list(summary["positions"]), width)))
    if summary["action"] == "list" and summary["history"]:
        console.print(to_rich(fit("history (latest last)", [
            Column("rev", lambda h: str(h.get("revision")), 0), Column("at (UTC)", lambda h: f"{h['at']:%Y-%m-%d %H:%M}", 0),
            Column("action", lambda h: str(h.get("action")), 0, "left"),
            Column("detail", lambda h: str(h.get("instrument") or h.get("file") or h.get("suggestion") or ""), 0, "left"),
            Column("positions", lambda h: str(h.get("positions_after")), 1)], list(summary["history"]), width)))


@book_app.command("import")
def import_(ctx: typer.Context,
            file: Annotated[Path, typer.Argument(help="A recorded Deribit private/get_positions response (.json: the "
                                                      "JSON-RPC envelope or its result list) or a positions CSV.")],
            book: BookOption = "main", db: DbOption = None, as_json: JsonOption = False,
            verbose: VerboseOption = 0, csv: CsvOption = None) -> None:
    """Replace the book's positions with a file's (re-importing the same file replaces, never duplicates).

    Example: qortcli book import positions.csv --book main
    """
    from qortcli.steps.book import run_book_import

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        summary = run_book_import(open_db(st), file, book=book)
        emit(st, summary.to_dict(), _render, position_rows, POSITION_COLUMNS)


@book_app.command("add", context_settings={"ignore_unknown_options": True})
def add(ctx: typer.Context,
        instrument: Annotated[Optional[str], typer.Argument(
            help="BTC-27MAR26-100000-C (option), BTC-27MAR26 or BTC-PERPETUAL (inverse future), BTC (coin held).")] = None,
        size: Annotated[Optional[float], typer.Argument(
            help="Signed size in coin (-2 sells two contracts; futures: coin at the entry price).")] = None,
        price: Annotated[Optional[float], typer.Option(
            "--price", help="Entry price: coin per option, USD per coin for a future (default: the latest mark).")] = None,
        suggestion: Annotated[Optional[str], typer.Option(
            "--suggestion", help="Add every leg of a stored suggestion (its id, from `qortcli suggest --json`).")] = None,
        book: BookOption = "main", db: DbOption = None, as_json: JsonOption = False,
            verbose: VerboseOption = 0, csv: CsvOption = None) -> None:
    """Net one position (or a stored suggestion's legs) into the book.

    Examples:

      qortcli book add BTC-27MAR26-100000-C 2 --price 0.03

      qortcli book add BTC 1.5

      qortcli book add --suggestion 'BTC-20260111T211857Z|short_strangle|20260130'
    """
    from qortcli.steps.book import run_book_add, run_book_add_suggestion

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        if suggestion is not None:
            if instrument is not None or size is not None or price is not None:
                raise UsageError("--suggestion adds a suggestion's legs: give no INSTRUMENT, SIZE or --price with it")
            summary = run_book_add_suggestion(open_db(st), suggestion, book=book)
        else:
            if instrument is None or size is None:
                raise UsageError("give INSTRUMENT and SIZE (e.g. `qortcli book add BTC-27MAR26-100000-C 2`) "
                                 "or --suggestion ID")
            if instrument.startswith("-"):
                raise UsageError(f"unknown option {instrument!r}")
            summary = run_book_add(open_db(st), instrument, size, price=price, book=book)
        emit(st, summary.to_dict(), _render, position_rows, POSITION_COLUMNS)


@book_app.command("remove")
def remove(ctx: typer.Context,
           instrument: Annotated[str, typer.Argument(help="The instrument to drop from the book.")],
           book: BookOption = "main", db: DbOption = None, as_json: JsonOption = False,
            verbose: VerboseOption = 0, csv: CsvOption = None) -> None:
    """Drop a position from the book.

    Example: qortcli book remove BTC-27MAR26-100000-C
    """
    from qortcli.steps.book import run_book_remove

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        emit(st, run_book_remove(open_db(st), instrument, book=book).to_dict(), _render, position_rows,
             POSITION_COLUMNS)


@book_app.command("list")
def list_(ctx: typer.Context, book: BookOption = "main",
          history: Annotated[int, typer.Option("--history", min=0, help="How many recent changes to show.")] = 10,
          db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0,
          csv: CsvOption = None) -> None:
    """Show the book's positions and its recent changes.

    Example: qortcli book list --book main --history 20
    """
    from qortcli.steps.book import run_book_list

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        emit(st, run_book_list(open_db(st), book=book, history=history).to_dict(), _render, position_rows,
             POSITION_COLUMNS)
