"""`qortcli price`: coin-settled Black-76 prices, greeks and implied vols of the latest snapshot."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from qortcli.cli.app import app
from qortcli.cli.common import (Column, CsvOption, DbOption, JsonOption, VerboseOption, coin, emit, esc, fit_table,
                                handled, note, num, open_db, pct, state, usd)
from qortcli.errors import UsageError

_JSON_FIELDS = ("instrument_name", "currency", "strike", "expiry", "option_type", "forward", "index_price", "t_years",
                "mark_price", "mark_iv", "bid_price", "ask_price", "model_price_coin", "model_price_usd", "iv_mark",
                "iv_bid", "iv_ask", "iv_mark_reason", "iv_flag", "delta", "gamma", "vega", "theta", "rho", "delta_coin",
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
              "--rows", min=0, help="Table rows per expiry, nearest the money (0: all). Not for --json/--csv.")] = 12,
          basis: Annotated[Optional[str], typer.Option(
              "--basis", help="Day count for t_years: ACT/365 (Deribit's) or ACT/365.25 "
                              "(default: settings \\[pricing] day_count).")] = None,
          db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0, csv: CsvOption = None) -> None:
    """Price the latest snapshot: coin-settled Black-76 prices, greeks and implied vols (written to the store).

    Prices every option of the latest complete snapshot from Deribit's mark_iv on the expiry's forward,
    solves implied vols from the mark/bid/ask coin prices and stores them under `model` on each
    options_data document. Rows whose mark IV is unusable get no model price or greeks (flagged).
    Tables: coin prices, vols in percent, greeks: delta, gamma (per USD), vega (USD per vol point),
    theta (USD per day); --json/--csv carry every field (vols as fractions) and the coin greeks.

    Examples: qortcli price --currency BTC --expiry 27MAR26 · qortcli price --check · qortcli price --json
    """
    from qortcli.steps.price import parse_expiry_code, run_price

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        if expiry is not None and check:
            raise UsageError("--expiry selects rows to show; --check reports on the whole snapshot")
        if expiry is not None:
            parse_expiry_code(expiry)  # a malformed code is refused before anything runs
        database = open_db(st)
        summary = run_price(database, currency=currency, check=check, basis=basis, expiry=expiry)
        for stale in summary["stale"]:
            note(st, stale["message"])
        if check:
            report = {k: v for k, v in summary.items() if k != "options"}
            emit(st, report, _render_check, _check_rows)
            return
        options = [{k: row.get(k) for k in _JSON_FIELDS} for row in summary["options"]]
        if st.as_json or st.csv_path:
            emit(st, options, lambda c, s: _render_tables(summary, summary["options"], rows))
        else:
            _render_tables(summary, summary["options"], rows)


def _check_rows(report: dict) -> list[dict]:
    return [{"currency": s["currency"], "snapshot_id": s["snapshot_id"],
             **{k: v for k, v in s["check"].items() if not isinstance(v, (list, dict))}} for s in report["snapshots"]]


def _render_tables(summary: dict, options: list[dict], rows: int) -> None:
    from qortcli.cli.common import console

    for snap in summary["snapshots"]:
        failures = "; ".join(f"{k}: " + ", ".join(f"{r}={n}" for r, n in v.items())
                             for k, v in snap["iv_failures"].items() if v) or "none"
        flagged = ", ".join(f"{k} {v}" for k, v in snap["iv_flagged"].items())
        console.print(f"[bold]{esc(snap['currency'])}[/] snapshot {esc(snap['snapshot_id'])} · {snap['priced']:,} options "
                      f"priced ({esc(summary['basis'])}) · IV not solved: {esc(failures)}"
                      + (f" · [yellow]no model fields (unusable mark IV): {esc(flagged)}[/]" if flagged else ""),
                      highlight=False)
    groups: dict[tuple, list[dict]] = {}
    for row in options:
        groups.setdefault((row["currency"], row["expiry"]), []).append(row)
    any_flag = any(r.get("iv_flag") for r in options)
    columns = [Column("instrument", "left"), Column("mark coin"), Column("model coin", priority=2),
               Column("mark IV"), Column("IV of mark", priority=4), Column("IV bid/ask", priority=1),
               Column("delta"), Column("gamma /USD", priority=5), Column("vega USD/pt", priority=3),
               Column("theta USD/d", priority=3), Column("delta p.a.", priority=6)]
    if any_flag:
        columns.append(Column("vol flag", "left", priority=1))
    for (cur, exp), group in sorted(groups.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        forward = group[0]["forward"] or 0.0
        nearest = sorted(group, key=lambda r: (abs((r["strike"] or 0) - forward), r["option_type"]))
        shown = nearest if rows == 0 else nearest[:rows]
        shown = sorted(shown, key=lambda r: (r["strike"] or 0.0, r["option_type"]))
        cells = []
        for r in shown:
            line = [esc(r["instrument_name"]), coin(r["mark_price"]), coin(r["model_price_coin"]), pct(r["mark_iv"]),
                    pct(r["iv_mark"]), f"{pct(r['iv_bid'])}/{pct(r['iv_ask'])}", num(r["delta"], 3),
                    num(r["gamma"], 3), usd(r["vega"]), usd(r["theta"]), num(r["delta_pa"], 3)]
            if any_flag:
                line.append(esc(r.get("iv_flag") or ""))
            cells.append(line)
        caption = f"{len(group) - len(shown)} more (use --rows 0 for all)" if len(group) > len(shown) else None
        console.print(fit_table(f"{esc(cur)} {esc(group[0]['expiry_code'])} · forward {usd(forward)} USD · "
                                f"T {num(group[0]['t_years'], 3)} y", columns, cells, caption=caption))


def _pct_or_dash(value) -> str:
    return "–" if value is None else f"{100 * value:.3f}%"


def _render_check(console, report: dict) -> None:
    rows = []
    for snap in report["snapshots"]:
        c = snap["check"]
        share = c.get("share_within")
        colour = "green" if share is not None and share >= 0.9 else "yellow"
        rows.append([esc(snap["snapshot_id"]), f"{c['n_checked']:,}/{c['n']:,}",
                     f"[{colour}]{share:.1%}[/]" if share is not None else "–",
                     num(c.get("median_abs_error_coin"), 3), _pct_or_dash(c.get("median_rel_error")),
                     num(c.get("worst_abs_error_coin"), 3), num(c.get("delta_median_abs_error"), 3),
                     _pct_or_dash(c.get("vega_median_rel_error"))])
    console.print(fit_table(f"Model (Black-76, {esc(report['basis'])}) vs the snapshot's own marks and greeks",
                            [Column("snapshot", "left"), Column("options"), Column("within tol."),
                             Column("med |err| coin", priority=2), Column("med rel err", priority=1),
                             Column("worst |err| coin", priority=3), Column("delta med |err|", priority=1),
                             Column("vega med rel err", priority=1)], rows))
    console.print("within tol.: |model price from mark_iv − mark_price| ≤ max(0.1 % of the mark, 0.005 vol points × "
                  "vega_coin); delta/vega against Deribit's published greeks where the snapshot has them.",
                  style="dim")
    for snap in report["snapshots"]:
        worst = snap["check"].get("worst") or []
        if not worst:
            continue
        cells = [[esc(w["name"] or str(w["index"])), coin(w["mark_price"]), coin(w["model_price_coin"]),
                  num(w["abs_error_coin"], 3), num(w["tolerance_coin"], 3), num(w["ratio"], 3)] for w in worst]
        console.print(fit_table(f"Worst instruments · {esc(snap['snapshot_id'])}",
                                [Column("instrument", "left"), Column("mark coin"), Column("model coin"),
                                 Column("|err| coin"), Column("tolerance coin", priority=1),
                                 Column("err / tol", priority=2)], cells))
