"""`qortcli suggest`: rule-based option strategies with real legs, payoffs and a track record."""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer
from rich.panel import Panel
from rich.console import Group
from rich.text import Text

from qortcli.cli.app import app
from qortcli.cli.common import (Column, CsvOption, DbOption, JsonOption, VerboseOption, coin, console, emit, esc,
                                fit_table, fmt, handled, note, num, open_db, pct, state, usd)



@app.command()
def suggest(ctx: typer.Context,
            currency: Annotated[Optional[str], typer.Option(
                "--currency", "-c", help="Only this currency (default: every currency with a snapshot).")] = None,
            expiry: Annotated[Optional[str], typer.Option(
                "--expiry", "-e", help="Expiry to trade, Deribit's code (e.g. 27MAR26). Default: the nearest "
                                       "with expiry_min_days..expiry_max_days (settings \\[suggest]) to run.")] = None,
            top: Annotated[int, typer.Option("--top", min=0, help="At most this many rule-based suggestions "
                                                                   "per currency, strongest first (0: only "
                                                                   "--strategy ones).")] = 5,
            track: Annotated[bool, typer.Option(
                "--track", help="Instead of suggesting: mark every open past suggestion to market on each later "
                                "stored snapshot, settle expired ones, and print each one's P/L path.")] = False,
            snapshot: Annotated[Optional[str], typer.Option(
                "--snapshot", help="Suggest as of this stored snapshot id (e.g. BTC-20260105T041127Z) instead of "
                                   "the latest (its expiries are judged as of its own time).")] = None,
            as_of_snapshot: Annotated[bool, typer.Option(
                "--as-of-snapshot", help="Judge expiries as of the latest snapshot's own time instead of now "
                                         "(recorded or old data, e.g. the bundled sample: a backtest, not a "
                                         "trade for today).")] = False,
            strategy: Annotated[Optional[list[str]], typer.Option(
                "--strategy", "-s", help="Also build this strategy even if no rule fired (repeatable); the names are "
                                         "those of the strategy registry (an unknown name lists them).")] = None,
            db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0, csv: CsvOption = None) -> None:
    """Suggest option strategies from the market regime, with concrete legs, premium, max P/L, breakevens, POP.

    The regime (30d ATM IV from the marks and its percentile over stored history, IV minus 30d realised vol,
    the best out-of-sample vol forecast of `qortcli vol`, term-structure slope, 25Δ risk reversal from the
    marks; the SVI surface's figures beside them) is measured from the store; every rule's inputs and
    thresholds (settings \\[suggest]) are printed. Legs come from the latest complete snapshot by delta targets;
    sells cross the bid, buys the ask; expiries that have already passed are never traded. Suggestions are
    stored in strategy_suggestions; --track follows them. Vols in percent (fractions in --json); --csv writes
    one row per leg (or per tracked point with --track).

    Examples: qortcli suggest --currency BTC --expiry 27MAR26 --top 3 · qortcli suggest --track ·
    qortcli suggest --json
    """
    from qortcli.errors import UsageError
    from qortcli.steps.suggest import run_suggest, run_track

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        if track and (expiry or snapshot or strategy or as_of_snapshot):
            raise UsageError("--track follows stored suggestions: --expiry, --snapshot, --as-of-snapshot and "
                             "--strategy do not apply")
        if snapshot and as_of_snapshot:
            raise UsageError("--snapshot already suggests as of that snapshot; drop --as-of-snapshot")
        database = open_db(st)
        if track:
            emit(st, run_track(database, currency=currency), _render_track, _track_rows)
        else:
            summary = run_suggest(database, currency=currency, expiry=expiry, top=top, snapshot_id=snapshot,
                                  strategies=strategy, as_of_snapshot=as_of_snapshot)
            for stale in summary.get("stale") or []:
                note(st, stale["message"])
            emit(st, _for_json(summary) if st.as_json else summary, _render, _leg_rows)


def _leg_rows(summary: dict) -> list[dict]:
    out = []
    for cur in summary["currencies"]:
        for s in cur["suggestions"]:
            for leg in s["legs"]:
                out.append({"currency": cur["currency"], "snapshot_id": cur["snapshot_id"], "strategy": s["strategy"],
                            "score": s["score"], **{k: v for k, v in leg.items() if not isinstance(v, dict)}})
    return out


def _track_rows(summary: dict) -> list[dict]:
    return [{"id": s["id"], "currency": s["currency"], "strategy": s["strategy"], "expiry": s["expiry"],
             "status": s["status"], **{k: v for k, v in p.items() if k != "missing"},
             "missing": ";".join(p.get("missing") or [])} for s in summary["strategies"] for p in s["path"]]


def _for_json(summary: dict) -> dict:
    """The summary without the bulky regime copies inside each suggestion (they sit once per currency)."""
    out = dict(summary)
    out["currencies"] = [{**c, "suggestions": [{k: v for k, v in s.items() if k != "regime"} for s in c["suggestions"]]}
                         for c in summary["currencies"]]
    return out


def _money(value, unbounded: bool, unit: str) -> str:
    if unbounded:
        return "unbounded"
    return usd(value) if unit == "usd" else coin(value)


def _at(value) -> str:
    if value is None or (isinstance(value, float) and math.isinf(value)):   # stored None: the limit S→∞
        return " (S→∞)"
    if value == 0:
        return " (S→0)"
    return f" (S={usd(value)})"


def _value(key: str, value) -> str:
    from qortcli.steps.suggest import _PERCENT_KEYS as VOL_KEYS  # rule inputs/thresholds shown in percent

    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d")
    if key in VOL_KEYS:
        return pct(value)
    return fmt(value)


def _render(console, summary: dict) -> None:
    for cur in summary["currencies"]:
        reg = cur["regime"]
        tenor = f"{reg.get('iv_tenor_days', 30):g}d"
        console.print(f"[bold]{esc(cur['currency'])}[/] snapshot {esc(cur['snapshot_id'])} · expiry {esc(cur['expiry'])} · "
                      f"ATM IV {tenor} (marks) {pct(reg['atm_iv_marks'])} · RV30 {pct(reg['rv_30d'])} "
                      f"({_dates(reg['rv_start'], reg['rv_end'])}) · term {esc(reg.get('term_front_expiry'))}→"
                      f"{esc(reg.get('term_back_expiry'))} {esc(reg.get('term_shape'))} (marks) · RR25 {esc(cur['expiry'])} "
                      f"(marks) {pct(reg['rr25_marks'])} · BF25 (marks) {pct(reg.get('bf25_marks'))}"
                      + (f" · ATM IV {tenor} (SVI) {pct(reg['atm_iv_svi'])} · RR25 (SVI) {pct(reg.get('rr25_svi'))} · "
                         f"BF25 (SVI) {pct(reg.get('bf25_svi'))}" if reg.get("atm_iv_svi") is not None else ""),
                      highlight=False)
        rows = []
        for r in cur["rules"]:
            mark = "[green]yes[/]" if r["fired"] else ("no" if r["evaluated"] else "[yellow]n/a[/]")
            inputs = ", ".join(f"{esc(k)}={_value(k, v)}" for k, v in r["inputs"].items() if v is not None)
            thresholds = ", ".join(f"{esc(k)}={_value(k, v)}" for k, v in r["thresholds"].items())
            rows.append([esc(r["rule"]), mark, thresholds, esc(", ".join(r["strategies"])), inputs, esc(r["note"])])
        console.print(fit_table("Rules (inputs and thresholds from settings \\[suggest]; vols in percent)",
                                [Column("rule", "left"), Column("fired", "left"), Column("threshold", "left", wrap=True),
                                 Column("→ strategies", "left", priority=1, wrap=True),
                                 Column("inputs", "left", priority=3, wrap=True),
                                 Column("note", "left", priority=2, wrap=True)], rows))
        if not cur["suggestions"]:
            if cur.get("top", 1) == 0 and not any(s.get("requested") for s in cur["suggestions"]):
                console.print("  --top 0: no rule-based suggestion asked for (add --strategy NAME to build one)")
            elif any(r["fired"] for r in cur["rules"]):
                console.print("  rules fired, but no strategy could be built on this snapshot (see skipped below)")
            else:
                console.print("  no rule fired: no suggestion (use --strategy NAME to build one anyway)")
        for s in cur["suggestions"]:
            console.print(_panel(s))
        for sk in cur["skipped"]:
            console.print(f"  [yellow]skipped[/] {esc(sk['strategy'])}: {esc(sk['reason'])}", highlight=False)


def _dates(a, b) -> str:
    if a is None:
        return "no price history"
    return f"{a:%Y-%m-%d}..{b:%Y-%m-%d}"


def _panel(s: dict) -> Panel:
    m = s["metrics"]
    legs = fit_table(None, [Column("instrument", "left"), Column("side", "left"), Column("size coin", priority=4),
                            Column("mark coin"), Column("mark USD", priority=3), Column("bid coin", priority=2),
                            Column("ask coin", priority=2), Column("crossed coin"), Column("IV"),
                            Column("delta", priority=1)],
                     [[esc(r["instrument"]), esc(r["side"]), num(r["size"]), coin(r["mark_coin"]), usd(r["mark_usd"]),
                       coin(r["bid_coin"]), coin(r["ask_coin"]),
                       f"{esc(r['cross'])} {coin(r['price_coin'])}" if r["cross"] else "–", pct(r["iv"]),
                       num(r["delta"], 3)] for r in s["legs"]],
                     width=console.width - 4, show_edge=False)
    g = m["net_greeks"]
    lines = [
        f"option premium (crossed): {coin(m['option_premium_coin'])} coin = {usd(m['option_premium_usd'])} spot-USD "
        f"({'debit' if m['option_premium_coin'] > 0 else 'credit'}; at mark {coin(m['option_premium_mark_coin'])} coin, "
        f"crossing costs {usd(m['crossing_cost_usd'])} USD)",
        f"max profit: {_money(m['max_profit_usd'], m['max_profit_usd_unbounded'], 'usd')} USD{_at(m['max_profit_usd_at'])} · "
        f"{_money(m['max_profit_coin'], m['max_profit_coin_unbounded'], 'coin')} coin{_at(m['max_profit_coin_at'])}",
        f"max loss:   {_money(m['max_loss_usd'], m['max_loss_usd_unbounded'], 'usd')} USD{_at(m['max_loss_usd_at'])} · "
        f"{_money(m['max_loss_coin'], m['max_loss_coin_unbounded'], 'coin')} coin{_at(m['max_loss_coin_at'])}",
        f"breakevens: USD P/L {', '.join(usd(b) for b in m['breakevens_usd']) or 'none'} · "
        f"coin P/L {', '.join(usd(b) for b in m['breakevens_coin']) or 'none'} (index USD)",
        f"POP (risk-neutral): {pct(m['pop'], 1) if m.get('pop') is not None else 'n/a (' + esc(m.get('pop_reason')) + ')'}"
        f" · net delta {num(g.get('delta'))} · gamma {num(g.get('gamma_fwd_usd'))}/USD fwd · "
        f"vega {usd(g.get('vega_spot_usd'))} spot-USD/vol pt (forward-USD {usd(g.get('vega_fwd_usd'))}) · "
        f"theta {usd(g.get('theta_spot_usd'))} spot-USD/day",
    ]
    if m.get("evaluation"):
        lines.append(f"evaluated {m['evaluation']}")
    why = Text("why: " + s["reasoning"], style="dim")
    title = (f"{esc(s['currency'])} {esc(s['strategy'])} · {esc(s['expiry_code'])} · score {num(s['score'], 3)}"
             + (" · requested" if s["requested"] else ""))
    return Panel(Group(legs, Text("\n".join(lines)), why), title=title, title_align="left")


def _render_track(console, summary: dict) -> None:
    console.print(f"[bold]Tracked[/] {summary['tracked']} open suggestion(s), {summary['settled']} settled now.")
    for s in summary["strategies"]:
        rows = [[fmt(p["timestamp"]), esc(p["snapshot_id"] or "settlement"), usd(p["index_usd"]), coin(p["pnl_coin"]),
                 usd(p["pnl_usd"]), usd(p.get("exit_pnl_usd")), esc(", ".join(p["missing"]))] for p in s["path"]]
        if not s["path"]:
            rows.append(["–", "no later snapshot stored yet", "", "", "", "", ""])
        console.print(fit_table(
            f"{esc(s['currency'])} {esc(s['strategy'])} {esc(s['expiry'])} from {esc(s['snapshot_id'])} · {esc(s['status'])} · "
            f"entry {coin(s['entry_premium_coin'])} coin ({usd(s['entry_premium_usd'])} USD)",
            [Column("time (UTC)", "left"), Column("snapshot", "left", priority=2), Column("index USD"),
             Column("P/L coin"), Column("P/L USD"), Column("exit P/L USD", priority=3),
             Column("missing", "left", priority=1)], rows))
        console.print("  P/L at the marks; exit P/L closing there (longs sold at the bid, shorts bought at the ask)",
                      highlight=False)
        st = s.get("settlement")
        if st and st.get("pending"):
            console.print(f"  not settled: {esc(st['reason'])}", highlight=False)
        elif st:
            for code, d in st["deliveries"].items():
                console.print(f"  settled {esc(code)} at {usd(d['price_usd'])} USD: {esc(d['method'])} ({esc(d['detail'])})",
                              highlight=False)
