#!/usr/bin/env python
"""Benchmark: value a 50-position book and fully revalue it on the 21 × 13 × 3 scenario grid
(`python scripts/bench.py risk`).

Input: the recorded 2026-01-11 21:18 UTC BTC chain of tests/fixtures (the bundled sample's), its SVI
surface fitted in-process, and a book of 50 real positions on it: 46 options spread over every expiry
(calls and puts, long and short, strikes around the forward), two dated futures, the perpetual and a coin
holding. Times `qortcli.quant.risk.value_book` (valuation, USD and coin greeks, account delta, greeks by
expiry and the full-revaluation grid) as process CPU time (`time.process_time`), median of `--repeat`
runs after one warm-up, against the 50 ms target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
CHAIN_FILE = "deribit_options_snapshot_20260111T211857Z.csv"
TARGET_S = 0.050


def book_of_50(chain: pd.DataFrame) -> pd.DataFrame:
    """46 options (every expiry, strikes nearest the forward, alternating sides), 3 futures, 1 coin holding."""
    rows = []
    by_expiry = [g.assign(dist=(g["strike_usd"] / g["forward_usd"] - 1).abs()).sort_values("dist")
                 for _, g in chain.groupby("expiry")]
    i = 0
    while len(rows) < 46:
        for group in by_expiry:
            if i < len(group) and len(rows) < 46:
                r = group.iloc[i]
                side = 1.0 if len(rows) % 2 == 0 else -1.0
                rows.append({"instrument": r["instrument"], "kind": "option", "size_coin": side * (1 + len(rows) % 3),
                             "size_usd": np.nan, "entry_price_coin": float(r["mark_coin"]) * 1.05,
                             "entry_price_usd": np.nan, "expiry": r["expiry"]})
        i += 1
    for name, size, price, expiry in (("BTC-27MAR26", -20_000.0, 93_900.0, "2026-03-27 08:00"),
                                      ("BTC-26JUN26", 5_000.0, 95_000.0, "2026-06-26 08:00"),
                                      ("BTC-PERPETUAL", 10_000.0, 92_800.0, None)):
        rows.append({"instrument": name, "kind": "future", "size_coin": np.nan, "size_usd": size,
                     "entry_price_coin": np.nan, "entry_price_usd": price,
                     "expiry": pd.Timestamp(expiry, tz="UTC") if expiry else pd.NaT})
    rows.append({"instrument": "BTC", "kind": "spot", "size_coin": 1.5, "size_usd": np.nan,
                 "entry_price_coin": np.nan, "entry_price_usd": np.nan, "expiry": pd.NaT})
    return pd.DataFrame(rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py risk", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21, help="timed runs after one warm-up")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    from chain_fixtures import recorded_chain

    from qortcli.quant.risk import GridSpec, value_book
    from qortcli.quant.surface import fit_surface
    from qortcli.timeutils import BASES

    chain = recorded_chain("BTC", CHAIN_FILE)
    surface = fit_surface(pd.DataFrame({"expiry": chain["expiry"], "t_years": chain["t_years"],
                                        "strike": chain["strike_usd"], "option_type": chain["option_type"],
                                        "forward": chain["forward_usd"], "iv": chain["mark_iv"]}),
                          days_per_year=BASES[chain.attrs["basis"]])
    book = book_of_50(chain)
    grid = GridSpec.linear()                           # −50 … +50 % × −30 … +30 vol points × now, +1 d, +7 d
    days = BASES[chain.attrs["basis"]]
    result = value_book(book, chain, surface, grid, days)        # warm-up
    walls, cpus = [], []
    for _ in range(max(1, args.repeat)):
        w0, c0 = time.perf_counter(), time.process_time()
        result = value_book(book, chain, surface, grid, days)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    H, V, M = grid.shape
    n_options = int((book["kind"] == "option").sum())
    worst = result.grid.worst["pnl_coin"]
    print(f"risk: {len(book)} positions ({n_options} options) on {chain.attrs['snapshot_id']}, grid {M} spot × {V} vol "
          f"× {H} horizons = {H * V * M} cells, {n_options * H * V * M:,} option revaluations per run")
    print(f"  worst P/L {worst.value:.4f} coin at spot {worst.spot_move:+.0%}, vol {100 * worst.vol_shift:+.0f} pts, "
          f"+{worst.horizon_days:g} d; account delta {result.account.usd_value_delta_coin_with_collateral:.3f} coin")
    print(f"  value_book CPU: median {1e3 * statistics.median(cpus):.1f} ms, best {1e3 * min(cpus):.1f} ms; "
          f"wall median {1e3 * statistics.median(walls):.1f} ms ({len(cpus)} runs)")
    verdict = "OK" if statistics.median(cpus) < TARGET_S else "SLOWER THAN TARGET"
    print(f"  {verdict}: median CPU {1e3 * statistics.median(cpus):.1f} ms vs target < {1e3 * TARGET_S:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
