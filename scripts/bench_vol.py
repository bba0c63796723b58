"""Benchmark: the `vol` computation on 7 years of BTC plus 214 daily IV points (`python scripts/bench.py vol [--step]`).

Inputs (real, from /work/shared/data; the bench says so and stops if they are absent):
  prices/Mario-SO_ohlcv/<coin>.csv   daily OHLC, the last `--years` (default 7) years
  deribit/daily/*.csv                214 whole-chain snapshots (2025-12-30 … 2026-07-31): per chain, the
                                     marks' summary fields computed as the surface step stores them
                                     (`qortcli.quant.smile.summary_stats`: constant-maturity ATM IV, RR25, BF25
                                     at 7/30/60/90/180 days, the term slope 90 d − 7 d; no SVI fit here).
Default: times the pure `qortcli.quant.vol.vol_report(prices, summaries)` (RV table, rolling RV, ranks, cone,
premium, today's forecasts and the rolling out-of-sample evaluation).
--step: builds an embedded store in a temporary directory — the prices through `collect prices --from-csv`
on a temporary copy of the last `--years` named BTC-USD.csv (as the importer wants), the 214 daily summaries
written by the summaries module (`qortcli.steps.summaries.write_summary`, marks only) from the same chain
frames — then times the whole step `qortcli.steps.vol.run_vol(db, currency)`: its reads
(`read.price_series`, `read.summary_series` by day), `vol_report`, the `vol_forecasts` upsert and the run
record. Figures are CPU seconds of this process (`time.process_time`, one core) against the 2 s target;
imports and the input build are reported apart. Prints the out-of-sample QLIKE/MSE table for HAR, GARCH,
GJR, naive and implied at 7 and 30 days.
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


def chain_frames(coin: str):
    """(snapshot id, time, chain frame) of each daily chain of `coin`: the real collector parses the CSV and
    the store's frame adapter builds the frame, as `collect` + `read.chain_at` would."""
    from qortcli.sources.deribit import chains_from_file
    from qortcli.steps.collect import option_documents
    from qortcli.store.frames import chain_frame
    from qortcli.store.ops import snapshot_id_for, to_plain

    folder = DATA / "deribit" / "daily"
    files = sorted(folder.glob("deribit_options_snapshot_*.csv"))
    if not files:
        raise SystemExit(f"bench vol: no daily chains in {folder}")
    for path in files:
        for chain in chains_from_file(path):
            if chain.currency != coin.upper():
                continue
            sid = snapshot_id_for(chain.currency, chain.timestamp)
            docs = [to_plain(d) for d in option_documents(chain.records, sid, chain.timestamp, chain.source)]
            yield sid, chain.timestamp, chain_frame(docs, chain.timestamp, snapshot_id=sid, currency=chain.currency)


def build_summaries(coin: str) -> pd.DataFrame:
    """One summary row per daily chain, computed as the surface step does (marks only: no surfaces fitted
    here): `smile.summary_stats` on each chain frame gives atm_iv_{T}d_marks, rr25/bf25 and the term slope."""
    from qortcli.quant import smile

    rows = []
    for _sid, ts, frame in chain_frames(coin):
        stats = smile.summary_stats(frame[frame["t_years"] > 0], None, TENORS, 365.0).fields()
        rows.append({"timestamp": ts, **{k: v for k, v in stats.items() if k != "term_structure"}})
    return pd.DataFrame(rows).set_index("timestamp").astype(float)


def build_store(root: Path, coin: str, years: float):
    """An embedded store at root/db with the coin's last `years` of prices (collect prices --from-csv on a
    temporary copy named <COIN>-USD.csv) and one summary per daily chain (the summaries module, marks only)."""
    from qortcli.steps.collect import run_collect_prices_csv
    from qortcli.steps.summaries import write_summary
    from qortcli.store import connect, ensure_schema, read

    source = DATA / "prices" / "Mario-SO_ohlcv" / f"{coin.lower()}.csv"
    if not source.exists():
        raise SystemExit(f"bench vol: {source} is absent (the shared Mario-SO price files are needed)")
    raw = pd.read_csv(source)
    days = pd.to_datetime(raw["Date"])
    keep = raw[days > days.max() - pd.Timedelta(days=round(years * 365.25))]
    folder = root / "prices"
    folder.mkdir(parents=True)
    keep.to_csv(folder / f"{coin.upper()}-USD.csv", index=False)     # the importer reads files by Yahoo symbol
    db = connect(str(root / "db"))
    ensure_schema(db)
    imported = run_collect_prices_csv(db, folder)
    n = 0
    for sid, ts, frame in chain_frames(coin):
        info = read.SnapshotInfo(sid, coin.upper(), ts, "snapshot_csv", {}, None)
        write_summary(db, read.Chain(info, frame), None)
        n += 1
    return db, imported["stored"], n


def headline(report) -> str:
    """The 30-day close-to-close RV and the 30-day ATM IV with its percentiles, one line."""
    rv30 = next(r for r in report.realised if r.estimator == "close_to_close" and r.window_days == 30)
    iv30 = report.ranks["atm_iv_30d"]
    return (f"  RV 30 d (close-to-close) {_fmt(rv30.vol)} on {rv30.n_returns} returns to {rv30.as_of.date()}; "
            f"30 d ATM IV (marks) {_fmt(report.iv_now.get(30))} on {report.iv_as_of.date()}: "
            + ", ".join(f"{r.lookback_days} d pct {_fmt(r.percentile, 2)} ({r.n_points} pts)" for r in iv30))


def print_scores(ev) -> None:
    print(f"  out-of-sample: origins {ev.eval_start.date()}…{ev.eval_end.date()}, refit every "
          f"{ev.refit_every_days} d ({len(ev.refit_days)} refits), training window "
          f"{ev.train_days if ev.train_days else 'expanding'} d; losses on annualised variance")
    print(f"  {'h':>3} {'model':8} {'n':>4} {'QLIKE':>8} {'MSE':>9} {'RMSE vol':>9} {'mean f':>7} {'mean RV':>7}")
    for sc in ev.scores:
        print(f"  {sc.horizon_days:>3} {sc.model:8} {sc.n:>4} {_fmt(sc.qlike):>8} {_fmt(sc.mse, 5):>9} "
              f"{_fmt(sc.rmse_vol):>9} {_fmt(sc.mean_forecast_vol, 3):>7} {_fmt(sc.mean_realised_vol, 3):>7}"
              + (f"  {sc.reason}" if sc.reason else ""))
    for h in ev.horizons:
        print(f"  best by QLIKE at {h} d: {ev.best(h)}; by MSE: {ev.best(h, 'mse')}")


def run_step_bench(args) -> int:
    """--step: the whole `vol` step on an embedded store (module docstring)."""
    import tempfile

    c0, w0 = time.process_time(), time.perf_counter()
    import arch  # noqa: F401  (the heaviest import, counted here)

    from qortcli.steps.vol import run_vol
    from qortcli.store import read
    import_cpu, import_wall = time.process_time() - c0, time.perf_counter() - w0

    with tempfile.TemporaryDirectory(prefix="qort-bench-vol-") as tmp:
        c0, w0 = time.process_time(), time.perf_counter()
        db, n_prices, n_summaries = build_store(Path(tmp), args.coin, args.years)
        build_cpu, build_wall = time.process_time() - c0, time.perf_counter() - w0
        try:
            summary = run_vol(db, currency=args.coin)                    # warm-up (first reads open the files)
            cpus, walls, reads = [], [], []
            for _ in range(max(1, args.repeat)):
                c0, w0 = time.process_time(), time.perf_counter()
                summary = run_vol(db, currency=args.coin)
                cpus.append(time.process_time() - c0)
                walls.append(time.perf_counter() - w0)
                c0 = time.process_time()
                read.price_series(db, args.coin.upper())
                read.summary_series(db, args.coin.upper(), resolution="day")
                reads.append(time.process_time() - c0)
            (result,) = summary.results
            doc = read.latest_vol(db, args.coin)
            stored = db["vol_forecasts"].count_documents({})
        finally:
            db.close()
    report = result.report
    print(f"vol --step: {args.coin} embedded store with {n_prices} daily bars {report.price_start.date()}…"
          f"{report.price_end.date()} (Mario-SO, collect prices --from-csv) and {n_summaries} daily summaries "
          f"{doc['summaries']['first'].date()}…{doc['summaries']['last'].date()} (summaries module)")
    print(f"  imports (arch, qortcli.steps.vol): CPU {import_cpu:.3f} s, wall {import_wall:.3f} s (not in the figure)")
    print(f"  store build (not timed): CPU {build_cpu:.3f} s, wall {build_wall:.3f} s")
    print(f"  stored {doc['_id']} ({stored} document(s) after {1 + len(cpus)} runs: re-runs replace)")
    print(headline(report))
    if report.evaluation is not None:
        print_scores(report.evaluation)
    else:
        print(f"  out-of-sample evaluation: {report.evaluation_reason}")
    for b in doc["best"]:
        print(f"  best {b['horizon_days']} d forecast (lowest QLIKE of har/garch/gjr/naive): {b['model']} "
              f"{_fmt(b['vol'])}" + (f" — {b['reason']}" if b["reason"] else ""))
    print(f"  run_vol (reads + vol_report + upsert + run record), CPU: best {min(cpus):.3f} s, median "
          f"{statistics.median(cpus):.3f} s; wall best {min(walls):.3f} s; of which the two reads CPU "
          f"{statistics.median(reads):.3f} s")
    verdict = "OK" if min(cpus) < TARGET_S else "SLOWER THAN TARGET"
    print(f"  {verdict}: one-core CPU best {min(cpus):.3f} s vs target < {TARGET_S} s")
    return 0


def _fmt(value, digits=4):
    return "n/a" if value is None else f"{value:.{digits}f}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py vol", description=__doc__.splitlines()[0])
    parser.add_argument("--coin", default="BTC", help="BTC or ETH")
    parser.add_argument("--years", type=float, default=7.0, help="years of daily prices (default 7)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up")
    parser.add_argument("--step", action="store_true",
                        help="time the whole vol step on an embedded store built from the shared data")
    args = parser.parse_args(argv)
    if args.step:
        return run_step_bench(args)

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
    print(headline(report))
    if ev is not None:
        print_scores(ev)
    else:
        print(f"  out-of-sample evaluation: {report.evaluation_reason}")
    print(f"  vol_report, CPU: best {min(cpus):.3f} s, median {statistics.median(cpus):.3f} s; "
          f"wall best {min(walls):.3f} s")
    verdict = "OK" if min(cpus) < TARGET_S else "SLOWER THAN TARGET"
    print(f"  {verdict}: one-core CPU best {min(cpus):.3f} s vs target < {TARGET_S} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
