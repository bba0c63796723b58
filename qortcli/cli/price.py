"""`qortcli price`: coin-settled Black-76 prices, greeks and implied vols of the latest snapshot."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from qortcli.cli.app import app
from qortcli.cli.common import DbOption, JsonOption, emit, fmt, handled, open_db, state
from qortcli.errors import UsageError

_JSON_FIELDS = ("instrument_name", "currency", "strike", "expiry", "option_type", "forward", "index_price", "t_years",
                "mark_price", "mark_iv", "bid_price", "ask_price", "model_price_coin", "model_price_usd", "iv_mark",
                "iv_bid", "iv_ask", "iv_mark_reason", "delta", "gamma", "vega", "theta", "rho", "delta_coin",
                "delta_pa", "gamma_coin", "vega_coin", "theta_coin")


@app.command()
def price(ctx: typer.Context,
          currency: Annotated[Optional[str], typer.Option(
              "--currency", "-c", help="Only this currency (default: every currency with a snapshot).")] = None,
          check: Annotated[bool, typer.Option(
              "--check", help="Print the accuracy report instead: model price from mark_iv vs mark_price "
                              "(within max(0.1 %, half an IV tick x vega)), and Deribit's delta/vega.")] = False,
          expiry: Annotated[Optional[str], typer.Option(
              "--expiry", "-e", help="Only show this expiry, Deribit's code (e.g. 27MAR26).")] = None,
          rows: Annotated[int, typer.Option(
              "--rows", min=0, help="Table rows per expiry, nearest the money first (0: all). Not for --json.")] = 12,
          basis: Annotated[str, typer.Option(
              "--basis", help="Day count for t_years: ACT/365 (Deribit's) or ACT/365.25.")] = "ACT/365",
          db: DbOption = None, as_json: JsonOption = False) -> None:
    """Price the latest snapshot: coin-settled Black-76 prices, greeks and implied vols (written to the store).

    Prices every option of the latest complete snapshot from Deribit's mark_iv on the expiry's forward,
    solves implied vols from the mark/bid/ask coin prices and stores them under `model` on each
    options_data document. Vols are fractions; coin prices in BTC/ETH per option; greeks: delta, gamma (per
    USD), vega (USD per vol point), theta (USD per day), rho (USD per 1 %), and the coin greeks delta_coin,
    delta_pa, gamma_coin, vega_coin, theta_coin.

    Examples: qortcli price --currency BTC --expiry 27MAR26 · qortcli price --check · qortcli price --json
    """
    from qortcli.steps.price import filter_expiry, run_price

    st = state(ctx, db, as_json)
    with handled(st):
        if expiry is not None and check:
            raise UsageError("--expiry selects rows to show; --check reports on the whole snapshot")
        database = open_db(st)
        summary = run_price(database, currency=currency, check=check, basis=basis)
        if check:
            report = {k: v for k, v in summary.items() if k != "options"}
            emit(st, report, _render_check)
            return
        options = summary["options"]
        if expiry is not None:
            options = filter_expiry(options, expiry)
        if st.as_json:
            emit(st, [{k: row.get(k) for k in _JSON_FIELDS} for row in options], lambda c, s: None)
        else:
            _render_tables(summary, options, rows)


def _render_tables(summary: dict, options: list[dict], rows: int) -> None:
    from qortcli.cli.common import console

    for snap in summary["snapshots"]:
        failures = "; ".join(f"{k}: " + ", ".join(f"{r}={n}" for r, n in v.items())
                             for k, v in snap["iv_failures"].items() if v) or "none"
        console.print(f"[bold]{snap['currency']}[/] snapshot {snap['snapshot_id']} · {snap['priced']} options priced "
                      f"({summary['basis']}) · IV not solved: {failures}", highlight=False)
    groups: dict[tuple, list[dict]] = {}
    for row in options:
        groups.setdefault((row["currency"], row["expiry"]), []).append(row)
    for (cur, exp), group in sorted(groups.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        forward = group[0]["forward"]
        group = sorted(group, key=lambda r: (abs((r["strike"] or 0) - (forward or 0)), r["option_type"]))
        shown = group if rows == 0 else group[:rows]
        table = Table(title=f"{cur} {group[0]['expiry_code']} · forward {fmt(forward, 7)} · "
                            f"T {fmt(group[0]['t_years'], 3)} y", title_justify="left")
        table.add_column("instrument", no_wrap=True)
        for col in ("mark", "model", "mark_iv", "iv_mark", "iv bid/ask", "delta", "gamma", "vega", "theta",
                    "delta_pa"):
            table.add_column(col, justify="right", no_wrap=True)
        for r in shown:
            table.add_row(r["instrument_name"], fmt(r["mark_price"]), fmt(r["model_price_coin"]),
                          _pct(r["mark_iv"]), _pct(r["iv_mark"]), f"{_pct(r['iv_bid'])}/{_pct(r['iv_ask'])}",
                          fmt(r["delta"], 3), fmt(r["gamma"], 3), fmt(r["vega"], 4), fmt(r["theta"], 4),
                          fmt(r["delta_pa"], 3))
        if len(group) > len(shown):
            table.caption = f"{len(group) - len(shown)} more (use --rows 0 for all)"
        console.print(table)


def _pct(vol) -> str:
    return "–" if vol is None or vol != vol else f"{100 * vol:.2f}%"


def _render_check(console, report: dict) -> None:
    table = Table(title=f"Model (Black-76, {report['basis']}) vs the snapshot's own marks and greeks",
                  title_justify="left")
    table.add_column("snapshot", no_wrap=True)
    for col in ("options", "within tol.", "med |err| coin", "med rel err", "worst |err| coin", "delta med |err|",
                "vega med rel err"):
        table.add_column(col, justify="right")
    for snap in report["snapshots"]:
        c = snap["check"]
        share = c.get("share_within")
        colour = "green" if share is not None and share >= 0.9 else "yellow"
        table.add_row(snap["snapshot_id"], f"{c['n_checked']}/{c['n']}",
                      f"[{colour}]{share:.1%}[/]" if share is not None else "–",
                      fmt(c.get("median_abs_error_coin"), 3), _pct_or_dash(c.get("median_rel_error")),
                      fmt(c.get("worst_abs_error_coin"), 3), fmt(c.get("delta_median_abs_error"), 3),
                      _pct_or_dash(c.get("vega_median_rel_error")))
    console.print(table)
    console.print("within tol.: |model price from mark_iv − mark_price| ≤ max(0.1 % of the mark, 0.005 vol points × "
                  "vega_coin); delta/vega against Deribit's published greeks where the snapshot has them.",
                  style="dim")
    for snap in report["snapshots"]:
        worst = snap["check"].get("worst") or []
        if not worst:
            continue
        t = Table(title=f"Worst instruments · {snap['snapshot_id']}", title_justify="left")
        t.add_column("instrument", no_wrap=True)
        for col in ("mark", "model coin", "|err| coin", "tolerance", "err / tol"):
            t.add_column(col, justify="right")
        for w in worst:
            t.add_row(w["name"] or str(w["index"]), fmt(w["mark_price"]), fmt(w["model_price_coin"]),
                      fmt(w["abs_error_coin"], 3), fmt(w["tolerance_coin"], 3), fmt(w["ratio"], 3))
        console.print(t)


def _pct_or_dash(value) -> str:
    return "–" if value is None else f"{100 * value:.3f}%"
