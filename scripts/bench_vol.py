#!/usr/bin/env python
"""Benchmark: the pure `vol` computation on 7 years of BTC plus 214 daily IV points (`python scripts/bench.py vol`).

Inputs (real, from /work/shared/data; the bench says so and stops if they are absent):
  prices/Mario-SO_ohlcv/<coin>.csv   daily OHLC, the last `--years` (default 7) years
  deribit/daily/*.csv                214 whole-chain snapshots (2025-12-30 … 2026-07-31): per chain, the
                                     constant-maturity ATM IV from the marks at 7/30/60/90/180 days
                                     (`qortcli.quant.regime.atm_iv` per expiry, total variance linear in T
                                     between expiries), the term slope 90 d − 7 d, and RR25/BF25 at 30 days
                                     (per expiry from Deribit's published deltas with `regime.risk_reversal_butterfly`,
                                     linear in T between the two expiries around 30 days) — a stand-in for
                                     the summaries the `surface` step stores.
Timed: `qortcli.quant.vol.vol_report(prices, summaries)` (RV table, rolling RV, ranks, cone, premium,
today's forecasts and the rolling out-of-sample evaluation) in CPU seconds of this process
(`time.process_time`, one core) against the 2 s target; imports and the IV build are reported apart.
Prints the out-of-sample QLIKE/MSE table for HAR, GARCH, GJR, naive and implied at 7 and 30 days.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from qortcli.timeutils import BASES

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/work/shared/data")
TARGET_S = 2.0
SECONDS_PER_YEAR = BASES["ACT/365"] * 86400.0   # ACT/365, as the chains are priced
TENORS = (7, 30, 60, 90, 180)


def load_prices(coin: str, years: float) -> pd.DataFrame:
    path = DATA / "prices" / "Mario-SO_ohlcv" / f"{coin.lower()}.csv"
    if not path.exists():
        raise SystemExit(f"bench vol: {path} is absent (the shared Mario-SO price files are needed)")
    raw = pd.read_csv(path)
    frame = raw.rename(columns=str.lower).set_index("date")
    frame.index = pd.to_datetime(frame.index, utc=True)
    frame = frame.sort_index()
    return frame[frame.index > frame.index[-1] - pd.Timedelta(days=round(years * 365.25))]


def build_summaries(coin: str) -> pd.DataFrame:
    """One summary-like row per daily chain: ATM IV at the tenors, term slope, RR25/BF25 at 30 days (marks)."""
    from qortcli.quant import regime

    folder = DATA / "deribit" / "daily"
    files = sorted(folder.glob("deribit_options_snapshot_*.csv"))
    if not files:
        raise SystemExit(f"bench vol: no daily chains in {folder}")
    cols = ["timestamp", "currency", "strike", "expiry_datetime", "underlying", "implied_volatility",
            "option_type", "delta"]
    rows = []
    for path in files:
        chain = pd.read_csv(path, usecols=cols)
        chain = chain[chain["currency"] == coin.upper()]
        taken = pd.to_datetime(chain["timestamp"], utc=True).max()
        expiry = pd.to_datetime(chain["expiry_datetime"], utc=True)
        chain = chain.assign(t=(expiry - taken).dt.total_seconds() / SECONDS_PER_YEAR)
        chain = chain[chain["t"] > 0]
        ts, atm, rr, bf = [], [], [], []
        for t, g in chain.groupby("t"):
            a = regime.atm_iv(g["strike"], g["implied_volatility"], float(g["underlying"].median()))
            calls, puts = g[g["option_type"] == "call"], g[g["option_type"] == "put"]
            s = regime.risk_reversal_butterfly(calls["delta"], calls["implied_volatility"], puts["delta"],
                                               puts["implied_volatility"], a)
            ts.append(t), atm.append(a), rr.append(s["rr"]), bf.append(s["bf"])
        row = {"timestamp": taken}
        for tenor in TENORS:
            row[f"atm_iv_{tenor}d_marks"] = regime.constant_maturity_atm(ts, atm, tenor / 365.0)
        row["term_slope_marks"] = row["atm_iv_90d_marks"] - row["atm_iv_7d_marks"]
        t, r, b = np.array(ts), np.array(rr), np.array(bf)
        ok = np.isfinite(r) & np.isfinite(b)
        row["rr25_30d_marks"] = float(np.interp(30 / 365.0, t[ok], r[ok])) if ok.any() else np.nan
        row["bf25_30d_marks"] = float(np.interp(30 / 365.0, t[ok], b[ok])) if ok.any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("timestamp")


def _fmt(value, digits=4):
    return "n/a" if value is None else f"{value:.{digits}f}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py vol", description=__doc__.splitlines()[0])
    parser.add_argument("--coin", default="BTC", help="BTC or ETH")
    parser.add_argument("--years", type=float, default=7.0, help="years of daily prices (default 7)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up")
    args = parser.parse_args(argv)

    c0, w0 = time.process_time(), time.perf_counter()
    import arch  # noqa: F401  (the heaviest import, counted here)

    from qortcli.quant.vol import vol_report
    import_cpu, import_wall = time.process_time() - c0, time.perf_counter() - w0

    prices = load_prices(args.coin, args.years)
    c0 = time.process_time()
    summaries = build_summaries(args.coin)
    build_cpu = time.process_time() - c0

    report = vol_report(prices, summaries)                      # warm-up
    cpus, walls = [], []
    for _ in range(max(1, args.repeat)):
        c0, w0 = time.process_time(), time.perf_counter()
        report = vol_report(prices, summaries)
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)

    ev = report.evaluation
    print(f"vol: {args.coin} {len(prices)} daily bars {prices.index[0].date()}…{prices.index[-1].date()} "
          f"(Mario-SO), {len(summaries)} daily chains {summaries.index[0].date()}…{summaries.index[-1].date()}")
    print(f"  imports (arch, qortcli.quant.vol): CPU {import_cpu:.3f} s, wall {import_wall:.3f} s (not in the figure)")
    print(f"  IV points from the 214 chains (bench input, not timed): CPU {build_cpu:.3f} s")
    rv30 = next(r for r in report.realised if r.estimator == "close_to_close" and r.window_days == 30)
    iv30 = report.ranks["atm_iv_30d"]
    print(f"  RV 30 d (close-to-close) {_fmt(rv30.vol)} on {rv30.n_returns} returns to {rv30.as_of.date()}; "
          f"30 d ATM IV (marks) {_fmt(report.iv_now.get(30))} on {report.iv_as_of.date()}: "
          + ", ".join(f"{r.lookback_days} d pct {_fmt(r.percentile, 2)} ({r.n_points} pts)" for r in iv30))
    if ev is not None:
        print(f"  out-of-sample: origins {ev.eval_start.date()}…{ev.eval_end.date()}, refit every "
              f"{ev.refit_every_days} d ({len(ev.refit_days)} refits), training window "
              f"{ev.train_days if ev.train_days else 'expanding'} d; losses on annualised variance")
        print(f"  {'h':>3} {'model':8} {'n':>4} {'QLIKE':>8} {'MSE':>9} {'RMSE vol':>9} {'mean f':>7} {'mean RV':>7}")
        for s in ev.scores:
            print(f"  {s.horizon_days:>3} {s.model:8} {s.n:>4} {_fmt(s.qlike):>8} {_fmt(s.mse, 5):>9} "
                  f"{_fmt(s.rmse_vol):>9} {_fmt(s.mean_forecast_vol, 3):>7} {_fmt(s.mean_realised_vol, 3):>7}"
                  + (f"  {s.reason}" if s.reason else ""))
        for h in ev.horizons:
            print(f"  best by QLIKE at {h} d: {ev.best(h)}; by MSE: {ev.best(h, 'mse')}")
    else:
        print(f"  out-of-sample evaluation: {report.evaluation_reason}")
    print(f"  vol_report, CPU: best {min(cpus):.3f} s, median {statistics.median(cpus):.3f} s; "
          f"wall best {min(walls):.3f} s")
    verdict = "OK" if min(cpus) < TARGET_S else "SLOWER THAN TARGET"
    print(f"  {verdict}: one-core CPU best {min(cpus):.3f} s vs target < {TARGET_S} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
