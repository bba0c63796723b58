"""Real inputs for the vol tests: Mario-SO daily bars and ATM IVs of the 28 recorded January 2026 chains."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd

from qortcli.sources.yahoo import read_yahoo_csv
from qortcli.timeutils import BASES

from conftest import FIXTURES

MARIO = FIXTURES / "prices_mario"
YEAR_S = BASES["ACT/365"] * 86400.0


@lru_cache(maxsize=None)
def _bars(coin: str) -> pd.DataFrame:
    return read_yahoo_csv(MARIO / f"{coin.lower()}.csv").bars


def bars(coin: str = "btc") -> pd.DataFrame:
    """Daily OHLC (USD, UTC-day index) through the real Yahoo importer: what price_series returns."""
    return _bars(coin).copy()


@lru_cache(maxsize=None)
def _january_atm(coin: str) -> pd.DataFrame:
    from chain_fixtures import recorded_chain

    from qortcli.quant import smile

    rows = []
    for path in sorted(FIXTURES.glob("deribit_options_snapshot_202601*.csv")):
        frame = recorded_chain(coin.upper(), path.name)
        stats = smile.summary_stats(frame[frame["t_years"] > 0], None, (7, 30, 60, 90, 180), 365.0).fields()
        rows.append({"timestamp": frame.attrs["timestamp"],
                     **{k: v for k, v in stats.items() if k.startswith("atm_iv_") or k == "term_slope_marks"}})
    return pd.DataFrame(rows).set_index("timestamp").sort_index().astype(float)


def january_summaries(coin: str = "btc") -> pd.DataFrame:
    """Summary-like frame, one row per recorded chain (2026-01-05 … 01-11, ~4 a day): constant-maturity
    ATM IV from the marks at 7/30/60/90/180 days and the 90 − 7 day term slope, computed as the surface step's
    summaries are (`smile.summary_stats` on the store's chain frame); index = snapshot time (UTC)."""
    return _january_atm(coin).copy()


def reference_rolling_rv(frame: pd.DataFrame, window: int) -> pd.Series:
    """Independent close-to-close RV with pandas on the calendar: √(365 × mean r²) of the window's one-day
    returns (NaN when either close is missing), n/a unless ≥ ⌈0.6 × window⌉ are held."""
    close = frame["close"].asfreq("D")
    r2 = np.log(close / close.shift(1)) ** 2
    n = r2.rolling(window, min_periods=1).count()
    return np.sqrt(365 * r2.rolling(window, min_periods=1).sum() / n).where(n >= math.ceil(0.6 * window))


def finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[np.isfinite(a)]
