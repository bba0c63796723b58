#!/usr/bin/env python
"""Speed of `optimize` on the 10 recorded assets' 2020-08-20…2023-03-31 history (tests/fixtures/prices).

    python scripts/bench.py optimize [--repeat 5] [--model hrp] [--with-store]

Prints, separately: the one-off imports (riskfolio-lib, quantstats), and per repeat the model fit on the
aligned returns (closes → returns → weights), the quantstats metrics of the portfolio and the 10 assets,
and their sum. `--with-store` also seeds an embedded store with `collect prices --from-csv` (the window's
CSV rows) and times the whole `run_optimize` step, whose store read is reported on its own.
Target (issue #6): HRP on these 10 assets in < 2 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRICES = ROOT / "tests" / "fixtures" / "prices"
MIN_HISTORY_DAYS = 365   # the optimize settings' default: a year of daily returns per asset
FIRST, LAST = "2020-08-20", "2023-03-31"


def read_closes():
    import pandas as pd

    closes = {}
    for path in sorted(PRICES.glob("*-USD.csv")):
        frame = pd.read_csv(path, parse_dates=["Date"]).set_index("Date")
        closes[path.stem.split("-")[0]] = frame["Close"].loc[FIRST:LAST]
    return pd.DataFrame(closes)


def _seed_store(directory: Path) -> Path:
    from qortcli.steps.collect import run_collect_prices_csv
    from qortcli.store import connect, ensure_schema

    csv_dir = directory / "csv"
    csv_dir.mkdir()
    for path in sorted(PRICES.glob("*-USD.csv")):
        lines = path.read_text().splitlines(keepends=True)
        (csv_dir / path.name).write_text(lines[0] + "".join(l for l in lines[1:] if FIRST <= l[:10] <= LAST))
    store = directory / "db"
    db = connect(str(store))
    ensure_schema(db)
    run_collect_prices_csv(db, csv_dir)
    db.close()
    return store


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py optimize", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--model", default="hrp")
    parser.add_argument("--risk-measure", default="MV")
    parser.add_argument("--with-store", action="store_true", help="also time run_optimize on an embedded store")
    args = parser.parse_args(argv)

    clock = time.perf_counter()
    import quantstats  # noqa: F401
    import riskfolio  # noqa: F401

    from qortcli.quant import allocation as qa
    from qortcli.quant import backtest as qb
    from qortcli.quant import metrics as qm
    from qortcli.quant import returns as qr
    from qortcli.timeutils import BASES, DEFAULT_BASIS

    periods = BASES[DEFAULT_BASIS]

    imports = time.perf_counter() - clock
    print(f"imports (riskfolio-lib, quantstats, once per process): {imports:.2f} s")

    closes = read_closes()
    fits, measures, totals = [], [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        panel = qr.daily_returns(closes, min_history_days=MIN_HISTORY_DAYS)
        weights = qa.optimize_weights(panel.returns, args.model, args.risk_measure)
        t1 = time.perf_counter()
        qm.performance(qb.fixed_weight_returns(panel.returns, weights), periods)
        qm.per_asset(panel.returns, periods)
        t2 = time.perf_counter()
        fits.append(t1 - t0)
        measures.append(t2 - t1)
        totals.append(t2 - t0)
    n_days, n_assets = panel.returns.shape
    print(f"{args.model} ({args.risk_measure}) on {n_assets} assets × {n_days} daily returns "
          f"({panel.returns.index[0].date()}…{panel.returns.index[-1].date()}), {args.repeat} repeats:")
    for label, values in (("returns + fit", fits), ("quantstats metrics (portfolio + 10 assets)", measures),
                          ("fit + metrics", totals)):
        print(f"  {label:45s} median {statistics.median(values):.3f} s   max {max(values):.3f} s")
    print(f"  weights: " + ", ".join(f"{a} {w:.4f}" for a, w in weights.sort_values(ascending=False).items()))
    verdict = "OK" if statistics.median(totals) < 2.0 else "SLOWER THAN"
    print(f"target < 2 s for fit + metrics: {verdict} ({statistics.median(totals):.3f} s median)")

    if args.with_store:
        from qortcli.steps.optimize import load_closes, run_optimize
        from qortcli.store import connect

        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            store = _seed_store(Path(tmp))
            print(f"seeding an embedded store with collect prices --from-csv: {time.perf_counter() - t0:.2f} s")
            db = connect(str(store))
            t0 = time.perf_counter()
            summary = run_optimize(db, model=args.model, risk_measure=args.risk_measure)
            step = time.perf_counter() - t0
            t0 = time.perf_counter()
            load_closes(db)
            read = time.perf_counter() - t0
            db.close()
        print(f"run_optimize on the embedded store (first run in the process): {step:.2f} s; "
              f"reading price_data alone, again afterwards: {read:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
