"""`qortcli chain`: one expiry of the latest snapshot as a board, calls | strike | puts, fitted to the terminal."""

from __future__ import annotations

import math
from typing import Annotated, Any, Optional

import typer

from qortcli.cli.app import app
from qortcli.cli.common import (Column, CsvOption, DbOption, JsonOption, VerboseOption, contracts, emit, esc, fit_table,
                                handled, note, num, open_db, pct, state, usd)


@app.command()
def chain(ctx: typer.Context,
          currency: Annotated[Optional[str], typer.Option(
              "--currency", "-c", help="BTC, ETH, ... (default: the first currency the store has).")] = None,
          expiry: Annotated[Optional[str], typer.Option(
              "--expiry", "-e", help="Deribit's expiry code, e.g. 27MAR26 (default: the expiry nearest 30 days).")] = None,
          strikes: Annotated[str, typer.Option(
              "--strikes", "-n", metavar="N|all", help="The N strikes nearest the forward, or all.")] = "10",
          delta: Annotated[Optional[str], typer.Option(
              "--delta", metavar="LO:HI", help="Only strikes where the call's or the put's |delta| is in "
                                              "[LO, HI], e.g. 0.1:0.9.")] = None,
          min_oi: Annotated[float, typer.Option(
              "--min-oi", metavar="N", help="Only strikes whose calls + puts open interest is at least N "
                                            "contracts (coin).")] = 0.0,
          sort: Annotated[str, typer.Option(
              "--sort", metavar="strike|oi|volume|iv",
              help="Row order: strike (ascending), oi or volume (calls + puts, largest first), iv (mean mark IV, "
                   "highest first).")] = "strike",
          db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0, csv: CsvOption = None) -> None:
    """Show one expiry as a board: calls | strike | puts, from the latest complete snapshot (reads only).

    Per side: bid/ask/mark premiums in coin (as quoted) and in spot-USD (coin x spot index), bid/ask IV
    (Black-76, solved from the quotes on the forward) and Deribit's mark IV, delta (Black-76 forward delta
    from the mark IV), open interest and 24 h volume in contracts. In-the-money cells are shaded; the strike
    nearest the forward is bold. Narrow terminals drop the lesser columns (named under the table);
    --csv/--json carry every field (vols as fractions).

    Examples: qortcli chain · qortcli chain -c ETH -e 27MAR26 --strikes all ·
    qortcli chain --delta 0.1:0.9 --min-oi 100 --sort oi · qortcli chain --csv board.csv
    """
    from qortcli.config import get_settings
    from qortcli.steps.chain import run_chain

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        database = open_db(st, migrate=False, read_only=True)
        summary = run_chain(database, currency=currency, expiry=expiry, strikes=strikes, delta=delta,
                            min_oi=min_oi, sort=sort, basis=get_settings().pricing.day_count)
        if summary["stale"]:
            note(st, summary["stale"]["message"])
        emit(st, summary, _render, lambda s: s["rows"])


def _coin(value: Any) -> str:
    """A coin premium: 4 decimals (Deribit's tick), two significant digits below one tick."""
    if value is None or not math.isfinite(float(value)):
        return "–"
    x = float(value)
    if x >= 0.0001 or x == 0:
        return f"{x:.4f}"
    return f"{x:.{1 - math.floor(math.log10(x))}f}"


#: one side's columns from the strike outwards: (field, header, priority, formatter); priority 0 always shows
_SIDE = (("bid_coin", "bid\ncoin", 0, _coin), ("ask_coin", "ask\ncoin", 0, _coin),
         ("iv_mark", "IV\nmark", 1, lambda v: pct(v, 1)), ("delta", "delta", 2, lambda v: "–" if v is None or v != v else f"{v:.2f}"),
         ("mark_coin", "mark\ncoin", 3, _coin), ("open_interest_coin", "OI\ncoin", 4, contracts),
         ("iv_bid", "IV\nbid", 5, lambda v: pct(v, 1)), ("iv_ask", "IV\nask", 5, lambda v: pct(v, 1)),
         ("volume_coin", "vol 24h\ncoin", 6, contracts), ("bid_spot_usd", "bid\nUSD", 7, lambda v: usd(v)),
         ("ask_spot_usd", "ask\nUSD", 7, lambda v: usd(v)), ("mark_spot_usd", "mark\nUSD", 8, lambda v: usd(v)))


def _render(console, s: dict) -> None:
    calls = list(reversed(_SIDE))
    columns = ([Column(h, priority=p, group=f) for f, h, p, _ in calls] + [Column("strike\nUSD", priority=0)]
               + [Column(h, priority=p, group=f) for f, h, p, _ in _SIDE])
    cells = []
    for r in s["rows"]:
        itm_call = bool(r["itm_call"])

        def side(prefix: str, order, itm: bool) -> list[str]:
            return [f"[on grey23]{fmt(r[f'{prefix}_{f}'])}[/]" if itm else fmt(r[f"{prefix}_{f}"])
                    for f, _h, _p, fmt in order]

        strike = usd(r["strike_usd"], 0)
        if r["strike_usd"] == s["atm_strike_usd"]:
            strike = f"[bold yellow]{strike}[/]"
        cells.append(side("call", calls, itm_call) + [strike] + side("put", _SIDE, not itm_call))
    days = s["t_days"]
    title = (f"[bold]{esc(s['currency'])} {esc(s['expiry'])}[/] calls | strike | puts · forward "
             f"{usd(s['forward_usd'])} USD · spot {usd(s['index_usd'])} USD · T {num(s['t_years'], 3)} y "
             f"({days:.1f} d) · {s['strikes_shown']} of {s['strikes_listed']} strikes")
    caption = (f"snapshot {s['snapshot_id']} ({s['timestamp']:%Y-%m-%d %H:%M} UTC) · USD premiums = coin x spot "
               f"index · IV bid/ask from the quotes, IV mark Deribit's, delta from the mark IV (Black-76, forward) · "
               f"shaded: in the money · expiries: {' '.join(s['expiries'])}")
    if not s["rows"]:
        console.print(title, highlight=False)
        console.print("no strike passes the filters " + esc(_filters(s["filters"])), highlight=False)
        return
    console.print(fit_table(title, columns, cells, caption=caption))


def _filters(f: dict) -> str:
    parts = [f"--strikes {f['strikes']}"]
    if f["delta"]:
        parts.append(f"--delta {f['delta'][0]:g}:{f['delta'][1]:g}")
    if f["min_oi_coin"]:
        parts.append(f"--min-oi {f['min_oi_coin']:g}")
    return "(" + " ".join(parts) + ")"
