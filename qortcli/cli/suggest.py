"""`qortcli suggest`: rule-based option strategies with real legs, payoffs and a track record."""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer
from rich.panel import Panel
from rich.table import Table
from rich.console import Group
from rich.text import Text

from qortcli.cli.app import app
from qortcli.cli.common import DbOption, JsonOption, emit, fmt, handled, open_db, state


@app.command()
def suggest(ctx: typer.Context,
            currency: Annotated[Optional[str], typer.Option(
                "--currency", "-c", help="Only this currency (default: every currency with a snapshot).")] = None,
            expiry: Annotated[Optional[str], typer.Option(
                "--expiry", "-e", help="Expiry to trade, Deribit's code (e.g. 27MAR26). Default: the nearest "
                                       "with expiry_min_days..expiry_max_days (settings.toml, section suggest) to run.")] = None,
            top: Annotated[int, typer.Option("--top", min=0, help="At most this many rule-based suggestions "
                                                                   "per currency, strongest first.")] = 5,
            track: Annotated[bool, typer.Option(
                "--track", help="Instead of suggesting: mark every open past suggestion to market on each later "
                                "stored snapshot, settle expired ones, and print each one's P/L path.")] = False,
            snapshot: Annotated[Optional[str], typer.Option(
                "--snapshot", help="Suggest as of this stored snapshot id (e.g. BTC-20260105T041127Z) instead of "
                                   "the latest.")] = None,
            strategy: Annotated[Optional[list[str]], typer.Option(
                "--strategy", "-s", help="Also build this strategy even if no rule fired (repeatable); the names are "
                                         "those of the strategy registry (an unknown name lists them).")] = None,
            db: DbOption = None, as_json: JsonOption = False) -> None:
    """Suggest option strategies from the market regime, with concrete legs, premium, max P/L, breakevens, POP.

    The regime (30d ATM IV from the marks and its percentile over stored history, IV minus 30d realised vol,
    term-structure slope, 25Δ risk reversal from the marks; the SVI surface's figures beside them) is
    measured from the store; every rule's inputs and thresholds (settings
    section suggest) are printed. Legs come from the latest complete snapshot by delta targets; sells cross the
    bid, buys the ask. Suggestions are stored in strategy_suggestions; --track follows them.

    Examples: qortcli suggest --currency BTC --expiry 27MAR26 --top 3 · qortcli suggest --track ·
    qortcli suggest --json
    """
    from qortcli.steps.suggest import run_suggest, run_track

    st = state(ctx, db, as_json)
    with handled(st):
        database = open_db(st)
        if track:
            emit(st, run_track(database, currency=currency), _render_track)
        else:
            summary = run_suggest(database, currency=currency, expiry=expiry, top=top, snapshot_id=snapshot,
                                  strategies=strategy)
            emit(st, _for_json(summary) if st.as_json else summary, _render)


def _for_json(summary: dict) -> dict:
    """The summary without the bulky regime copies inside each suggestion (they sit once per currency)."""
    out = dict(summary)
    out["currencies"] = [{**c, "suggestions": [{k: v for k, v in s.items() if k != "regime"} for s in c["suggestions"]]}
                         for c in summary["currencies"]]
    return out


def _money(value, unbounded: bool, digits: int = 6) -> str:
    if unbounded:
        return "unbounded"
    return fmt(value, digits)


def _at(value) -> str:
    if value is None or (isinstance(value, float) and math.isinf(value)):   # stored None: the limit S→∞
        return " (S→∞)"
    if value == 0:
        return " (S→0)"
    return f" (S={fmt(value, 6)})"


def _render(console, summary: dict) -> None:
    for cur in summary["currencies"]:
        reg = cur["regime"]
        tenor = f"{reg.get('iv_tenor_days', 30):g}d"
        console.print(f"[bold]{cur['currency']}[/] snapshot {cur['snapshot_id']} · expiry {cur['expiry']} · "
                      f"ATM IV {tenor} (marks) {fmt(reg['atm_iv_marks'])} · RV30 {fmt(reg['rv_30d'])} "
                      f"({_dates(reg['rv_start'], reg['rv_end'])}) · term {reg.get('term_front_expiry')}→"
                      f"{reg.get('term_back_expiry')} {reg.get('term_shape')} (marks) · RR25 {cur['expiry']} (marks) "
                      f"{fmt(reg['rr25_marks'])} · BF25 (marks) {fmt(reg.get('bf25_marks'))}"
                      + (f" · ATM IV {tenor} (SVI) {fmt(reg['atm_iv_svi'])} · RR25 (SVI) {fmt(reg.get('rr25_svi'))} · "
                         f"BF25 (SVI) {fmt(reg.get('bf25_svi'))}" if reg.get("atm_iv_svi") is not None else ""),
                      highlight=False)
        rules = Table(title="Rules (inputs and thresholds from settings \\[suggest])", title_justify="left")
        for col in ("rule", "fired", "inputs", "threshold", "→ strategies"):
            rules.add_column(col)
        for r in cur["rules"]:
            mark = "[green]yes[/]" if r["fired"] else ("no" if r["evaluated"] else f"[yellow]n/a[/] {r['note']}")
            inputs = ", ".join(f"{k}={fmt(v) if not hasattr(v, 'strftime') else v.strftime('%Y-%m-%d')}"
                               for k, v in r["inputs"].items() if v is not None)
            rules.add_row(r["rule"], mark, inputs, ", ".join(f"{k}={fmt(v)}" for k, v in r["thresholds"].items()),
                          ", ".join(r["strategies"]))
        console.print(rules)
        if not cur["suggestions"]:
            console.print("  no rule fired: no suggestion (use --strategy NAME to build one anyway)")
        for s in cur["suggestions"]:
            console.print(_panel(s))
        for sk in cur["skipped"]:
            console.print(f"  [yellow]skipped[/] {sk['strategy']}: {sk['reason']}")


def _dates(a, b) -> str:
    if a is None:
        return "no price history"
    return f"{a:%Y-%m-%d}..{b:%Y-%m-%d}"


def _panel(s: dict) -> Panel:
    m = s["metrics"]
    legs = Table(show_edge=False)
    for col in ("instrument", "side", "size", "mark coin", "mark USD", "bid", "ask", "crossed", "IV", "delta"):
        legs.add_column(col, justify="right" if col not in ("instrument", "side") else "left")
    for r in s["legs"]:
        legs.add_row(r["instrument"], r["side"], fmt(r["size"]), fmt(r["mark_coin"]), fmt(r["mark_usd"], 7),
                     fmt(r["bid_coin"]), fmt(r["ask_coin"]),
                     f"{r['cross']} {fmt(r['price_coin'])}" if r["cross"] else "–", fmt(r["iv"]), fmt(r["delta"]))
    g = m["net_greeks"]
    lines = [
        f"option premium (crossed): {fmt(m['option_premium_coin'])} coin = {fmt(m['option_premium_usd'], 7)} USD "
        f"({'debit' if m['option_premium_coin'] > 0 else 'credit'}; at mark {fmt(m['option_premium_mark_coin'])} coin, "
        f"crossing costs {fmt(m['crossing_cost_usd'], 4)} USD)",
        f"max profit: {_money(m['max_profit_usd'], m['max_profit_usd_unbounded'])} USD{_at(m['max_profit_usd_at'])} · "
        f"{_money(m['max_profit_coin'], m['max_profit_coin_unbounded'])} coin{_at(m['max_profit_coin_at'])}",
        f"max loss:   {_money(m['max_loss_usd'], m['max_loss_usd_unbounded'])} USD{_at(m['max_loss_usd_at'])} · "
        f"{_money(m['max_loss_coin'], m['max_loss_coin_unbounded'])} coin{_at(m['max_loss_coin_at'])}",
        f"breakevens: USD P/L {', '.join(fmt(b, 7) for b in m['breakevens_usd']) or 'none'} · "
        f"coin P/L {', '.join(fmt(b, 7) for b in m['breakevens_coin']) or 'none'}",
        f"POP (risk-neutral): {fmt(m['pop'], 3) if m.get('pop') is not None else 'n/a (' + str(m.get('pop_reason')) + ')'}"
        f" · net delta {fmt(g.get('delta'))} · gamma {fmt(g.get('gamma_fwd_usd'))}/USD fwd · "
        f"vega {fmt(g.get('vega_spot_usd'))} spot-USD/vol pt (forward-USD {fmt(g.get('vega_fwd_usd'))}) · "
        f"theta {fmt(g.get('theta_spot_usd'))} spot-USD/day",
    ]
    if m.get("evaluation"):
        lines.append(f"evaluated {m['evaluation']}")
    why = Text("why: " + s["reasoning"], style="dim")
    title = (f"{s['currency']} {s['strategy']} · {s['expiry_code']} · score {fmt(s['score'], 3)}"
             + (" · requested" if s["requested"] else ""))
    return Panel(Group(legs, Text("\n".join(lines)), why), title=title, title_align="left")


def _render_track(console, summary: dict) -> None:
    console.print(f"[bold]Tracked[/] {summary['tracked']} open suggestion(s), {summary['settled']} settled now.")
    for s in summary["strategies"]:
        table = Table(title=f"{s['currency']} {s['strategy']} {s['expiry']} from {s['snapshot_id']} · {s['status']} · "
                            f"entry {fmt(s['entry_premium_coin'])} coin ({fmt(s['entry_premium_usd'], 7)} USD)",
                      title_justify="left")
        for col in ("time (UTC)", "snapshot", "index USD", "P/L coin", "P/L USD", "exit P/L USD", "missing"):
            table.add_column(col, justify="right" if col not in ("snapshot", "missing") else "left")
        for p in s["path"]:
            table.add_row(fmt(p["timestamp"]), p["snapshot_id"] or "settlement", fmt(p["index_usd"], 7),
                          fmt(p["pnl_coin"]), fmt(p["pnl_usd"], 6), fmt(p.get("exit_pnl_usd"), 6),
                          ", ".join(p["missing"]))
        if not s["path"]:
            table.add_row("–", "no later snapshot stored yet", "", "", "", "", "")
        table.caption = "P/L at the marks; exit P/L closing there (longs sold at the bid, shorts bought at the ask)"
        console.print(table)
        st = s.get("settlement")
        if st and st.get("pending"):
            console.print(f"  not settled: {st['reason']}")
        elif st:
            for code, d in st["deliveries"].items():
                console.print(f"  settled {code} at {fmt(d['price_usd'], 7)} USD: {d['method']} ({d['detail']})")
