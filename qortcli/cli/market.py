"""`qortcli market`: open interest by strike, put/call ratios, max pain, dealer gamma exposure and implied moves."""

from __future__ import annotations

from typing import Annotated, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from qortcli.cli.app import app
from qortcli.cli.common import (CellColumn, CsvOption, DbOption, JsonOption, VerboseOption, contracts, emit, fit_rows,
                                handled, open_db, state)
from qortcli.quant.dealer import DEFAULT_DEALER, DEALER_CONVENTIONS
from qortcli.timeutils import DEFAULT_BASIS

BAR_WIDTHS = (14, 10, 8, 6, 4)
BLOCKS = " ▏▎▍▌▋▊▉█"


@app.command()
def market(ctx: typer.Context,
           currency: Annotated[Optional[str], typer.Option(
               "--currency", "-c", help="Only this currency (default: every currency with a snapshot).")] = None,
           expiry: Annotated[Optional[str], typer.Option(
               "--expiry", "-e", help="One expiry, Deribit's code (e.g. 27MAR26); default: all expiries together.")
           ] = None,
           rows: Annotated[int, typer.Option(
               "--rows", min=0, help="Strikes in the OI table, nearest the spot first (0: all). --json has all.")
           ] = 24,
           dealer: Annotated[str, typer.Option(
               "--dealer", help=f"Dealer position convention for GEX: {', '.join(DEALER_CONVENTIONS)}.")
           ] = DEFAULT_DEALER,
           compare_hours: Annotated[float, typer.Option(
               "--compare-hours", min=0.1, help="Compare open interest with the snapshot this many hours earlier.")
           ] = 24.0,
           tolerance_hours: Annotated[float, typer.Option(
               "--tolerance-hours", min=0.0,
               help="Use that earlier snapshot only if taken at most this many hours before the moment "
                    "--compare-hours names (else no comparison).")] = 3.0,
           basis: Annotated[str, typer.Option(
               "--basis", help="Day count for t_years: ACT/365 (Deribit's) or ACT/365.25.")] = DEFAULT_BASIS,
           db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0,
           csv: CsvOption = None) -> None:
    """Positioning of the latest chain: open interest and volume by strike, put/call ratios, max pain, dealer gamma/delta exposure with the gamma flip, implied moves, and the OI change over the last 24 hours.

    Contracts are coin (1 contract = 1 coin); USD notional = contracts x spot index. Max pain is the settlement price minimising the holders' payout, with the coin-settled payoff (a call pays max(S-K,0)/S coin) and with the linear USD payoff. GEX is the USD change of the dealers' delta for a +1 % spot move, from mark IVs (sticky strike), by default with dealers long calls and short puts; the gamma flip is the spot level where net GEX changes sign. Implied move: the ATM straddle (strike nearest the forward) over the forward; 1-sigma range F*exp(+-IV*sqrt(T)). Nothing is written but the run record.

    --csv writes the by-expiry table, one row per currency and expiry, with each expiry's OI change (vols and moves as fractions, full precision); --json carries every table.

    Examples:

      qortcli market

      qortcli market --currency BTC --expiry 27MAR26

      qortcli market -c ETH --dealer short-all --json
    """
    from qortcli.steps.market import run_market

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        database = open_db(st)
        summary = run_market(database, currency=currency, expiry=expiry, basis=basis, dealer=dealer,
                             compare_hours=compare_hours, tolerance_hours=tolerance_hours)
        emit(st, summary.to_dict(), lambda console, view: render(console, view, rows), _rows,
             CSV_LEAD)


#: the identifying columns of `--csv` (then every field of the view's expiry rows, then the OI change)
CSV_LEAD = ("currency", "snapshot_id", "spot_usd", "expiry_code", "expiry")
CHANGE_FIELDS = ("oi_calls_before_coin", "oi_puts_before_coin", "oi_calls_change_coin", "oi_puts_change_coin",
                 "oi_change_coin", "oi_change_usd")


def _rows(view: dict) -> list[dict]:
    """The by-expiry table of every currency as flat rows (raw numbers; OI change empty without a comparison)."""
    out = []
    for cur in view["currencies"]:
        change = cur["change"]
        by_expiry = {r["expiry_code"]: r for r in (change or {}).get("by_expiry", [])}
        for row in cur["expiries"]:
            moved = by_expiry.get(row["expiry_code"], {})
            out.append({"currency": cur["currency"], "snapshot_id": cur["snapshot_id"], "spot_usd": cur["spot_usd"],
                        **row, "earlier_snapshot_id": change["earlier_snapshot_id"] if change else None,
                        **{k: moved.get(k) for k in CHANGE_FIELDS}})
    return out


# ----------------------------------------------------------------------------------------------- formatting

def _ok(value) -> bool:
    return value is not None and value == value


def _signed_coin(value) -> str:
    if not _ok(value):
        return "–"
    if value == 0:
        return "0"
    return ("+" if value > 0 else "") + contracts(value)


def _usd(value, signed: bool = False) -> str:
    """Compact USD: $15.47B, $537.2M, $12.3k."""
    if not _ok(value):
        return "–"
    sign = "-" if value < 0 else ("+" if signed and value > 0 else "")
    size = abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if size >= limit:
            return f"{sign}${size / limit:.{2 if suffix == 'B' else 1}f}{suffix}"
    return f"{sign}${size:,.0f}"


def _price(value) -> str:
    """A price or strike in USD, whole where it is: 92,000 · 3,125 · 88,217 · 12.50 · 0.5500."""
    if not _ok(value):
        return "–"
    if abs(value) >= 1000 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) >= 10 else f"{value:.4f}"


def _pct(value, digits: int = 1) -> str:
    return "–" if not _ok(value) else f"{100 * value:.{digits}f}%"


def _ratio(value) -> str:
    return "–" if not _ok(value) else f"{value:.2f}"


def _bar(value, top, width: int) -> str:
    """A horizontal bar of `value / top` × `width` cells, in eighths of a cell."""
    if not _ok(value) or not top or value <= 0 or width <= 0:
        return ""
    full, part = divmod(int(round(8 * width * min(value / top, 1.0))), 8)
    return "█" * full + (BLOCKS[part] if part else "")


# ----------------------------------------------------------------------------------------------- tables

def render(console: Console, view: dict, rows: int = 24) -> None:
    """Rich tables of the JSON view of `run_market` (`MarketSummary.to_dict()`): nothing shown is not in it."""
    console.print(f"[dim]GEX: {escape(view['dealer_note'])}; from mark IVs; {escape(view['basis'])}[/]",
                  highlight=False)
    for cur in view["currencies"]:
        _render_currency(console, cur, view, rows)


def _render_currency(console: Console, cur: dict, view: dict, rows: int) -> None:
    name = escape(cur["currency"])
    sel = cur["selected"]
    label = "all expiries" if cur["selection"] == "ALL" else escape(cur["selection"])
    console.print(f"\n[bold]{name}[/] {escape(cur['snapshot_id'])} · spot index {_price(cur['spot_usd'])} · "
                  f"{cur['n_options']} options" + (f" · {cur['n_expired']} expired left out" if cur["n_expired"] else "")
                  + (f" · {cur['n_without_greeks']} without a mark IV (no GEX)" if cur["n_without_greeks"] else ""),
                  highlight=False)
    console.print(_positioning(cur, sel, label))
    console.print(_levels(cur, sel, label))
    console.print(_expiries(console, cur))
    console.print(_strikes(console, cur, sel, label, rows))
    _changes(console, cur)


def _positioning(cur: dict, sel: dict, label: str) -> Table:
    table = Table(title=f"{escape(cur['currency'])} positioning · {label}", title_justify="left")
    for header in ("", "calls", "puts", "put/call"):
        table.add_column(header, justify="left" if not header else "right", no_wrap=True)
    table.add_row("open interest (coin)", contracts(sel["oi_calls_coin"]), contracts(sel["oi_puts_coin"]), _ratio(sel["pcr_oi"]))
    table.add_row("open interest (USD notional)", _usd(sel["oi_calls_usd"]), _usd(sel["oi_puts_usd"]), "")
    table.add_row("24 h volume (coin)", contracts(sel["volume_calls_coin"]), contracts(sel["volume_puts_coin"]),
                  _ratio(sel["pcr_volume"]))
    table.add_row("24 h volume (USD notional)", _usd(sel["volume_calls_usd"]), _usd(sel["volume_puts_usd"]), "")
    change = cur["change"]
    if change is not None:
        table.add_row(f"OI change vs {change['totals']['hours_between']:.1f} h ago (coin)",
                      _signed_coin(change["selected"]["oi_calls_change_coin"]),
                      _signed_coin(change["selected"]["oi_puts_change_coin"]), "")
    return table


def _levels(cur: dict, sel: dict, label: str) -> Table:
    table = Table(title=f"{escape(cur['currency'])} levels · {label}", title_justify="left")
    table.add_column("level", no_wrap=True)
    table.add_column("USD", justify="right", no_wrap=True)
    table.add_column("detail", no_wrap=True)
    table.add_row("spot index", _price(cur["spot_usd"]), "median of the snapshot's index prices")
    if _ok(sel.get("forward_usd")):
        table.add_row("forward", _price(sel["forward_usd"]), f"{sel['days']:.1f} days to expiry")
    table.add_row("max pain, coin payoff", _price(sel["max_pain_coin_payoff_usd"]),
                  f"holders get {contracts(sel['max_pain_payout_coin'])} coin ({sel['max_pain_coin_payoff_source']} search)")
    table.add_row("max pain, USD payoff", _price(sel["max_pain_usd_payoff_usd"]),
                  f"holders get {_usd(sel['max_pain_payout_usd'])} ({sel['max_pain_usd_payoff_source']} search)")
    table.add_row("gamma flip (marks)", _price(sel["gamma_flip_usd_marks"]),
                  f"net GEX {_usd(sel['gex_usd_per_pct_marks'], True)} per 1 % at spot" if _ok(sel["gamma_flip_usd_marks"])
                  else f"net GEX {_usd(sel['gex_usd_per_pct_marks'], True)} per 1 %: no sign change within the grid")
    table.add_row("delta exposure (marks)", _usd(sel["dex_usd_per_pct_marks"], True), "dealers' USD P/L per +1 % spot")
    if _ok(sel.get("implied_move_fraction_marks")):
        table.add_row("implied move (straddle)", f"±{_price(sel['implied_move_usd_marks'])}",
                      f"±{_pct(sel['implied_move_fraction_marks'], 2)} · {_price(sel['atm_strike_usd'])} straddle "
                      f"{sel['straddle_coin_marks']:.4f} coin")
        table.add_row("1σ range (ATM IV)", f"{_price(sel['one_sigma_low_usd_marks'])} – "
                      f"{_price(sel['one_sigma_high_usd_marks'])}",
                      f"IV {_pct(sel['atm_iv_marks'])} · ±{_pct(sel['one_sigma_fraction_marks'], 2)} log · F·exp(±σ√T)")
    return table


def _expiries(console: Console, cur: dict) -> Table:
    rows = cur["expiries"]
    columns: list[CellColumn] = [
        ("expiry", "left", 0, lambda r: escape(r["expiry_code"])),
        ("days", "right", 0, lambda r: f"{r['days']:.1f}"),
        ("OI calls", "right", 0, lambda r: contracts(r["oi_calls_coin"])),
        ("OI puts", "right", 0, lambda r: contracts(r["oi_puts_coin"])),
        ("P/C OI", "right", 0, lambda r: _ratio(r["pcr_oi"])),
        ("P/C vol", "right", 6, lambda r: _ratio(r["pcr_volume"])),
        ("max pain", "right", 0, lambda r: _price(r["max_pain_coin_payoff_usd"])),
        ("max pain $", "right", 5, lambda r: _price(r["max_pain_usd_payoff_usd"])),
        ("move ±%", "right", 0, lambda r: _pct(r["implied_move_fraction_marks"], 2)),
        ("move ±$", "right", 4, lambda r: _price(r["implied_move_usd_marks"])),
        ("1σ range", "right", 7, lambda r: f"{_price(r['one_sigma_low_usd_marks'])}–{_price(r['one_sigma_high_usd_marks'])}"),
        ("GEX /1%", "right", 3, lambda r: _usd(r["gex_usd_per_pct_marks"], True)),
        ("γ flip", "right", 2, lambda r: _price(r["gamma_flip_usd_marks"])),
    ]
    chosen = cur["selection"]
    return fit_rows(f"{escape(cur['currency'])} by expiry (max pain: coin payoff; moves, GEX: marks)",
                    columns, rows, styles=lambda r: "bold" if r["expiry_code"] == chosen else "",
                    width=console.width)


def _nearest(strikes: list[float], level) -> float | None:
    if not _ok(level) or not strikes:
        return None
    return min(strikes, key=lambda k: abs(k - level))


def _strikes(console: Console, cur: dict, sel: dict, label: str, rows: int) -> Table:
    every = cur["strikes"]
    active = [r for r in every if (r["oi_calls_coin"] or 0) + (r["oi_puts_coin"] or 0) > 0] or every
    shown = sorted(active, key=lambda r: abs(r["strike_usd"] - cur["spot_usd"]))
    shown = sorted(shown if rows == 0 else shown[:rows], key=lambda r: r["strike_usd"])
    strikes = [r["strike_usd"] for r in shown]
    marks: dict[float, list[str]] = {}
    same = sel["max_pain_coin_payoff_usd"] == sel["max_pain_usd_payoff_usd"]
    for text, level in (("max pain" if same else "max pain (coin)", sel["max_pain_coin_payoff_usd"]),
                        ("max pain (USD)", None if same else sel["max_pain_usd_payoff_usd"]),
                        ("spot", cur["spot_usd"]), ("fwd", sel.get("forward_usd")),
                        ("γ flip", sel["gamma_flip_usd_marks"])):
        k = _nearest(strikes, level)
        if k is not None:
            marks.setdefault(k, []).append(text)
    changes = {}
    if cur["change"] is not None:
        changes = {r["strike_usd"]: r for r in cur["change"]["strikes"]}
    top = max([max(r["oi_calls_coin"] or 0, r["oi_puts_coin"] or 0) for r in shown] or [0])
    caption = (f"{len(active) - len(shown)} more strikes with open interest (--rows 0 for all)"
               if len(shown) < len(active) else None)

    def delta(side):
        return lambda r: _signed_coin((changes.get(r["strike_usd"]) or {}).get(f"oi_{side}_change_coin"))

    table = None
    for bar in BAR_WIDTHS:
        columns: list[CellColumn] = [
            ("calls", "right", 0, lambda r, b=bar: f"[green]{_bar(r['oi_calls_coin'], top, b)}[/]"),
            ("OI C", "right", 0, lambda r: contracts(r["oi_calls_coin"])),
            *([("Δ C", "right", 4, delta("calls"))] if changes else []),      # the calls' change goes first
            ("strike", "right", 0, lambda r: _price(r["strike_usd"])),
            *([("Δ P", "right", 3, delta("puts"))] if changes else []),
            ("OI P", "right", 0, lambda r: contracts(r["oi_puts_coin"])),
            ("puts", "left", 0, lambda r, b=bar: f"[red]{_bar(r['oi_puts_coin'], top, b)}[/]"),
            ("GEX /1%", "right", 2, lambda r: _usd(r["gex_usd_per_pct_marks"], True)),
            ("level", "left", 0, lambda r: ", ".join(marks.get(r["strike_usd"], []))),
        ]
        table = fit_rows(f"{escape(cur['currency'])} open interest by strike (coin) · {label}", columns,
                         shown, caption, styles=lambda r: "bold" if r["strike_usd"] in marks else "",
                         width=console.width)
        if len(table.columns) == len(columns) or bar == BAR_WIDTHS[-1]:
            break
    return table


def _changes(console: Console, cur: dict) -> None:
    change = cur["change"]
    if change is None:
        console.print(f"[dim]OI change: {escape(cur['change_note'])}[/]", highlight=False)
        return
    t = change["totals"]
    console.print(f"OI change vs {escape(change['earlier_snapshot_id'])} ({t['hours_between']:.1f} h, all expiries): "
                  f"calls {_signed_coin(t['calls_added_coin'])} / {_signed_coin(t['calls_removed_coin'])}, puts "
                  f"{_signed_coin(t['puts_added_coin'])} / {_signed_coin(t['puts_removed_coin'])} coin "
                  f"(net {_usd(t['net_change_usd'], True)}); settled in between: {contracts(t['expired_calls_coin'])} calls, "
                  f"{contracts(t['expired_puts_coin'])} puts", highlight=False)
    top = change["top_instruments"]
    if not top:
        return
    columns: list[CellColumn] = [
        ("instrument", "left", 0, lambda r: escape(r["instrument"])),
        ("status", "left", 2, lambda r: escape(r["status"])),
        ("OI before", "right", 1, lambda r: contracts(r["oi_before_coin"])),
        ("OI now", "right", 0, lambda r: contracts(r["oi_coin"])),
        ("Δ OI", "right", 0, lambda r: _signed_coin(r["oi_change_coin"])),
    ]
    console.print(fit_rows(f"{escape(cur['currency'])} largest OI changes (coin)", columns, top, width=console.width))

