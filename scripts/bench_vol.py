#!/usr/bin/env python
"""Benchmark: the pure `vol` computation on 7 years of BTC plus 214 daily IV points (`python scripts/bench.py vol`).

Inputs (real, from /work/shared/data; the bench says so and stops if they are absent):
  prices/Mario-SO_ohlcv/<coin>.csv   daily OHLC, the last `--years` (default 7) years
  deribit/daily/*.csv                214 whole-chain snapshots (2025-12-30 … 2026-07-31): per chain, the
                                     marks' summary fields computed as the surface step stores them
                                     (`qortcli.quant.smile.summary_stats`: constant-maturity ATM IV, RR25, BF25
                                     at 7/30/60/90/180 days, the term slope 90 d − 7 d; no SVI fit here).
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
    """One summary row per daily chain, computed as the surface step does (marks only: no surfaces fitted
    here): the real collector parses the CSV, the store's frame adapter builds the chain frame and
    `smile.summary_stats` gives atm_iv_{T}d_marks, rr25/bf25 and the term slope."""
    from qortcli.quant import smile
    from qortcli.sources.deribit import chains_from_file
    from qortcli.steps.collect import option_documents
    from qortcli.store.frames import chain_frame
    from qortcli.store.ops import snapshot_id_for, to_plain

    folder = DATA / "deribit" / "daily"
    files = sorted(folder.glob("deribit_options_snapshot_*.csv"))
    if not files:
        raise SystemExit(f"bench vol: no daily chains in {folder}")
    rows = []
    for path in files:
        for chain in chains_from_file(path):
            if chain.currency != coin.upper():
                continue
            sid = snapshot_id_for(chain.currency, chain.timestamp)
            docs = [to_plain(d) for d in option_documents(chain.records, sid, chain.timestamp, chain.source)]
            frame = chain_frame(docs, chain.timestamp)
            stats = smile.summary_stats(frame[frame["t_years"] > 0], None, TENORS, 365.0).fields()
            rows.append({"timestamp": chain.timestamp, **{k: v for k, v in stats.items() if k != "term_structure"}})
    return pd.DataFrame(rows).set_index("timestamp").astype(float)


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
