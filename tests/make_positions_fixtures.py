"""Build tests/fixtures/deribit_get_positions_20260111T211857Z.json and positions_20260105.csv (run by hand:
`PYTHONPATH=. python tests/make_positions_fixtures.py`). Not a test; documented in tests/fixtures/SOURCES.md.

A `private/get_positions` response in the shape of Deribit's API reference example (the JSON-RPC envelope,
one object per position with the documented fields), for a book of real instruments traded at the real
quotes of the recorded 2026-01-05 04:11 UTC chain (options bought at the ask, sold at the bid; futures at
that chain's forward of their expiry, the perpetual at its spot index) and marked on the recorded
2026-01-11 21:18 UTC chain (mark_price, index_price, Deribit's published delta/vega × size). Fields the
exchange derives from the account itself (margins, leverage, liquidation price, funding) are left out.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from chain_fixtures import FIXTURES, recorded_chain

ENTRY = "deribit_options_snapshot_20260105T041127Z.csv"
MARK = "deribit_options_snapshot_20260111T211857Z.csv"
OPTIONS = [("BTC-27MAR26-100000-C", 2.0), ("BTC-30JAN26-85000-P", -3.0), ("BTC-16JAN26-92000-C", -1.0),
           ("BTC-27FEB26-80000-P", 1.5), ("ETH-27MAR26-3500-C", 10.0)]
FUTURES = [("BTC-27MAR26", -20000.0), ("BTC-PERPETUAL", 10000.0)]
FLAT = "BTC-23JAN26"


def _row(chain, name):
    return chain.loc[chain["instrument"] == name].iloc[0]


def build() -> tuple[dict, list[list[str]]]:
    entry = {c: recorded_chain(c, ENTRY) for c in ("BTC", "ETH")}
    mark = {c: recorded_chain(c, MARK) for c in ("BTC", "ETH")}
    result, rows = [], [["instrument", "size", "avg_price_coin"]]
    for name, size in OPTIONS:
        cur = name.split("-")[0]
        e, m = _row(entry[cur], name), _row(mark[cur], name)
        price = float(e["ask_coin"] if size > 0 else e["bid_coin"])
        index = float(np.median(mark[cur]["index_usd"]))
        pnl = size * (float(m["mark_coin"]) - price)
        result.append({"average_price": price, "average_price_usd": round(price * float(e["index_usd"]), 2),
                       "delta": round(size * float(m["delta_deribit"]), 5), "direction": "buy" if size > 0 else "sell",
                       "floating_profit_loss": round(pnl, 8), "floating_profit_loss_usd": round(pnl * index, 2),
                       "index_price": index, "instrument_name": name, "kind": "option",
                       "mark_price": float(m["mark_coin"]), "realized_profit_loss": 0.0, "size": size,
                       "total_profit_loss": round(pnl, 8), "vega": round(size * float(m["vega_deribit"]), 5)})
        rows.append([name, f"{size:g}", f"{price:g}"])
    for name, size in FUTURES:
        cur = name.split("-")[0]
        e_chain, m_chain = entry[cur], mark[cur]
        index = float(np.median(m_chain["index_usd"]))
        if name.endswith("PERPETUAL"):
            price, mark_price = float(np.median(e_chain["index_usd"])), index
        else:
            price = float(e_chain.loc[e_chain["forward_index"] == name, "forward_usd"].median())
            mark_price = float(m_chain.loc[m_chain["forward_index"] == name, "forward_usd"].median())
        pnl = size * (1.0 / price - 1.0 / mark_price)
        result.append({"average_price": price, "delta": round(size / mark_price, 9),
                       "direction": "buy" if size > 0 else "sell", "floating_profit_loss": round(pnl, 9),
                       "index_price": index, "instrument_name": name, "kind": "future", "mark_price": mark_price,
                       "realized_profit_loss": 0.0, "size": size, "size_currency": round(size / mark_price, 9),
                       "total_profit_loss": round(pnl, 9)})
        rows.append([name, f"{size / price:.6f}", f"{price:g}"])     # the CSV sizes futures in coin
    m_chain = mark["BTC"]
    result.append({"average_price": 0.0, "delta": 0.0, "direction": "zero", "floating_profit_loss": 0.0,
                   "index_price": float(np.median(m_chain["index_usd"])), "instrument_name": FLAT, "kind": "future",
                   "mark_price": float(m_chain.loc[m_chain["forward_index"] == FLAT, "forward_usd"].median()),
                   "realized_profit_loss": 0.0, "size": 0.0, "size_currency": 0.0, "total_profit_loss": 0.0})
    rows.append(["BTC", "1.5", ""])
    return {"jsonrpc": "2.0", "id": 2236, "result": result}, rows


if __name__ == "__main__":
    envelope, rows = build()
    (FIXTURES / "deribit_get_positions_20260111T211857Z.json").write_text(json.dumps(envelope, indent=2) + "\n")
    with open(FIXTURES / "positions_20260105.csv", "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    print("wrote", len(envelope["result"]), "positions and", len(rows) - 1, "CSV rows to", Path(FIXTURES))
