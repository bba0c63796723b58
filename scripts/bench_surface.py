#!/usr/bin/env python
"""Benchmark: fit the SVI surface of a whole recorded BTC chain (`python scripts/bench.py surface`).

Default input: the 2026-03-13 Deribit book summary (964 BTC options, 12 expiries) from
tests/fixtures. Reports wall-clock and process CPU seconds per whole-chain fit (best and median of
`--repeat` runs, after one warm-up), against the 0.5 s target. Pass `--file` for another
book-summary JSON or a January snapshot CSV (its BTC rows).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "tests" / "fixtures" / "goodtrading_book_summary_BTC_option_20260313.json"
TARGET_S = 0.5
sys.path.insert(0, str(ROOT))
from qortcli.timeutils import BASES, DEFAULT_BASIS, SECONDS_PER_DAY  # noqa: E402

DAYS_PER_YEAR = BASES[DEFAULT_BASIS]
YEAR_S = DAYS_PER_YEAR * SECONDS_PER_DAY


def load_chain(path: Path, currency: str = "BTC") -> pd.DataFrame:
    """A chain frame (expiry, t_years on the default basis, strike, option_type, forward, iv) from a recorded file."""
    from qortcli.timeutils import parse_instrument

    if path.suffix == ".json":
        body = json.loads(path.read_text())
        rows = pd.DataFrame(body["result"] if isinstance(body, dict) else body)
        taken = pd.to_datetime(rows["creation_timestamp"].max(), unit="ms", utc=True)
        parsed = [parse_instrument(n) for n in rows["instrument_name"]]
        expiry = pd.to_datetime([p.expiry for p in parsed], utc=True)
        return pd.DataFrame({"expiry": expiry, "t_years": (expiry - taken).total_seconds() / YEAR_S,
                             "strike": [p.strike for p in parsed], "option_type": [p.option_type for p in parsed],
                             "forward": rows["underlying_price"].astype(float),
                             "iv": rows["mark_iv"].astype(float) / 100})
    raw = pd.read_csv(path)
    raw = raw[raw["currency"] == currency]
    taken = pd.to_datetime(raw["timestamp"], utc=True).max()
    expiry = pd.to_datetime(raw["expiry_datetime"], utc=True)
    return pd.DataFrame({"expiry": expiry, "t_years": (expiry - taken).dt.total_seconds() / YEAR_S,
                         "strike": raw["strike"], "option_type": raw["option_type"], "forward": raw["underlying"],
                         "iv": raw["implied_volatility"]})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py surface", description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT, help="recorded chain (book summary .json or snapshot .csv)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs after one warm-up")
    args = parser.parse_args(argv)

    from qortcli.quant.surface import fit_surface

    chain = load_chain(args.file)
    result = fit_surface(chain, days_per_year=DAYS_PER_YEAR)     # warm-up (imports, caches)
    walls, cpus = [], []
    for _ in range(max(1, args.repeat)):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fit_surface(chain, days_per_year=DAYS_PER_YEAR)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    d = result["diagnostics"]
    rmse = [s["rmse_vol_points"] for s in result["slices"] if s["params"]]
    print(f"surface: {args.file.name}: {len(chain)} options, {d['n_slices']} expiries, {d['n_fitted']} fitted, "
          f"{sum(s['n_points'] for s in result['slices'])} OTM points")
    print(f"  RMSE (vol pts) median {np.median(rmse):.3f}, max {max(rmse):.3f}; butterfly ok: {d['butterfly']['ok']}; "
          f"calendar ok: {d['calendar']['ok']}; polished slices: "
          f"{sum('polish' in (s['fit_method'] or '') for s in result['slices'])}")
    print(f"  whole-chain fit, wall: best {min(walls):.3f} s, median {statistics.median(walls):.3f} s "
          f"(target < {TARGET_S} s)")
    print(f"  whole-chain fit, CPU:  best {min(cpus):.3f} s, median {statistics.median(cpus):.3f} s "
          f"(one process, single-threaded numpy expected; wall > CPU means the machine is busy)")
    verdict = "OK" if min(cpus) < TARGET_S else "SLOWER THAN TARGET"
    print(f"  {verdict}: one-core CPU best {min(cpus):.3f} s vs target {TARGET_S} s "
          f"(wall best {min(walls):.3f} s{'' if min(walls) < TARGET_S else ', machine busy'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
