"""Real inputs for the vol tests: Mario-SO daily bars and ATM IVs of the 28 recorded January 2026 chains."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd

from qortcli.quant import regime
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
    rows = []
    for path in sorted(FIXTURES.glob("deribit_options_snapshot_202601*.csv")):
        chain = pd.read_csv(path, usecols=["timestamp", "currency", "strike", "expiry_datetime", "underlying",
                                           "implied_volatility"])
        chain = chain[chain["currency"] == coin.upper()]
        taken = pd.to_datetime(chain["timestamp"], utc=True).max()
        t = (pd.to_datetime(chain["expiry_datetime"], utc=True) - taken).dt.total_seconds() / YEAR_S
        chain = chain.assign(t=t)[t > 0]
        ts, vols = [], []
        for tt, g in chain.groupby("t"):
            ts.append(tt)
            vols.append(regime.atm_iv(g["strike"], g["implied_volatility"], float(g["underlying"].median())))
        rows.append({"timestamp": taken, **{f"atm_iv_{d}d_marks": regime.constant_maturity_atm(ts, vols, d / 365.0)
                                            for d in (7, 30, 60, 90, 180)}})
    frame = pd.DataFrame(rows).set_index("timestamp").sort_index()
    frame["term_slope_marks"] = frame["atm_iv_90d_marks"] - frame["atm_iv_7d_marks"]
    return frame


def january_summaries(coin: str = "btc") -> pd.DataFrame:
    """Summary-like frame, one row per recorded chain (2026-01-05 … 01-11, ~4 a day): constant-maturity
    ATM IV from the marks at 7/30/60/90/180 days (regime.atm_iv, total variance linear in T) and the
    90 − 7 day term slope; index = snapshot time (UTC)."""
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
