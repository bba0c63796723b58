"""Daily returns with the project's one gap rule, and realised volatility from daily OHLC bars.

Pure numpy/pandas, no I/O. Prices in USD, time in calendar days (annualised with `days_per_year`,
default 365.0 = ACT/365: crypto trades every calendar day), vols as fractions (0.52, never 52).

Input
    An OHLC frame indexed by a tz-aware UTC daily DatetimeIndex (UTC midnights, one row per day, any
    order), columns `open, high, low, close` in USD — what `qortcli.store.read.price_series` returns.
    A day with no positive close is a *missing day*. Naive timestamps, times other than midnight and a
    repeated day are errors (ValueError naming the first offending label).

The gap rule (one rule for every daily return of the project)
    The calendar is every UTC day from the first to the last close. The one-day return dated d runs from
    the close of d − 1 to the close of d. When d − 1 has no close, the return of d spans a gap
    (ln C_d / C_s over k = d − s > 1 days): it is *not* a one-day return and is **dropped** — never
    bridged, forward-filled or rescaled — and counted (`dropped_returns`, `n_gap_returns`). A missing
    day itself has no return either. So a single missing day removes two returns (its own and the next
    day's). Dropping is unbiased for the per-day variance of a random walk (every kept term is a true
    one-day return) and costs little (the Mario-SO BTC file: 9 missing days in 4,357 → 18 returns).
    Range estimators use each observed bar on its own (open → close within the day), so the day after a
    gap keeps its bar; a missing day has none.

Estimators (per-day variance contributions, not annualised)
    close_to_close  r_d² with r_d = ln(C_d / C_{d−1}) a one-day return (zero-mean: the realised variance
                    of variance swaps and of HAR; no sample mean is subtracted).
    parkinson       ln(H/L)² / (4 ln 2)                                     (Parkinson 1980)
    garman_klass    ½ ln(H/L)² − (2 ln 2 − 1) ln(C/O)²                      (Garman & Klass 1980)
    A bar is unusable for the range estimators (dropped and counted as `n_bad_bars`) when a price is
    missing or H < max(O, C) or L > min(O, C): a bar that does not contain its own open and close was
    not captured over the whole day. Range estimators assume a full 24 h bar with O = previous close;
    bars captured part-way through the day (the Mario-SO file in 2025-05…07 and 2026-06) make them
    read low, which close-to-close does not.

Windows
    A window of w days ending on day t is the calendar days t − w + 1 … t: it holds at most w
    observations (returns dated in it, or bars). RV = √(days_per_year × mean of the per-day variances it
    holds). It needs at least max(2, ⌈min_coverage × w⌉) observations (default min_coverage 0.6; a
    one-day window needs its one), else it is n/a and says "n/a: needs N returns, has M" (bars for the
    range estimators). The forward window of origin t is t + 1 … t + h (the h-day realised variance a
    forecast made at the close of t predicts); it is n/a while any of it lies beyond the last day of data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Literal

import numpy as np
import pandas as pd

from qortcli.timeutils import BASES, DEFAULT_BASIS

DAYS_PER_YEAR = BASES[DEFAULT_BASIS]  # crypto trades every calendar day: ACT/365
RV_WINDOWS = (7, 14, 30, 60, 90, 180)
ESTIMATORS = ("close_to_close", "parkinson", "garman_klass")
MIN_COVERAGE = 0.6

_LN2 = math.log(2.0)


# ----------------------------------------------------------------------------------------- validation


def _utc_days(index, what: str) -> pd.DatetimeIndex:
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"{what} must be indexed by a DatetimeIndex of UTC days, got {type(index).__name__}")
    if index.tz is None:
        raise ValueError(f"{what} index must be tz-aware UTC days (got naive timestamps)")
    idx = index.tz_convert("UTC")
    off = idx != idx.normalize()
    if off.any():
        raise ValueError(f"{what} index must be UTC midnights (one label per day); {idx[off][0]} is not")
    dup = idx.duplicated()
    if dup.any():
        raise ValueError(f"{what} index repeats the day {idx[dup][0].date()}")
    return idx


def _price_frame(prices: pd.DataFrame, columns: Iterable[str], what: str = "prices") -> pd.DataFrame:
    """Numeric USD columns on the full UTC calendar from the first to the last positive close."""
    if not isinstance(prices, pd.DataFrame):
        raise ValueError(f"{what} must be a DataFrame with columns {', '.join(columns)}")
    columns = list(columns)
    missing = [c for c in columns if c not in prices.columns]
    if missing:
        raise ValueError(f"{what} lack column(s) {', '.join(missing)}")
    idx = _utc_days(prices.index, what)
    frame = prices[columns].apply(pd.to_numeric, errors="coerce").astype(float)
    frame.index = idx
    frame = frame.sort_index()
    frame = frame.where(frame > 0)          # zero / negative is not a price
    observed = frame.index[frame["close"].notna().to_numpy()]
    if len(observed) == 0:
        raise ValueError(f"{what} hold no positive close")
    calendar = pd.date_range(observed[0], observed[-1], freq="D", tz="UTC", name="day")
    frame = frame.reindex(calendar)
    no_close = frame["close"].isna()
    frame.loc[no_close, :] = np.nan         # a day without a close is a missing day, bar and all
    return frame


def _as_datetime(ts) -> datetime | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(ts).to_pydatetime()


def _as_of_position(calendar: pd.DatetimeIndex, as_of) -> int:
    """Position of the last calendar day ≤ as_of (a tz-aware instant); −1 if before the calendar."""
    if as_of is None:
        return len(calendar) - 1
    ts = pd.Timestamp(as_of)
    if ts.tz is None:
        raise ValueError(f"as_of must be tz-aware UTC, got naive {ts}")
    ts = ts.tz_convert("UTC")
    return int(calendar.searchsorted(ts, side="right")) - 1


def required_observations(window_days: int, min_coverage: float = MIN_COVERAGE) -> int:
    """Observations a window of `window_days` needs: max(2, ⌈min_coverage × window_days⌉), or 1 for a
    one-day window (the HAR daily term)."""
    if window_days < 1:
        raise ValueError(f"window must be at least 1 day, got {window_days}")
    if not 0.0 < min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
    return min(window_days, max(2, math.ceil(min_coverage * window_days - 1e-9)))


# ------------------------------------------------------------------------------------------- returns


@dataclass(frozen=True)
class DailyReturns:
    """One-day returns under the gap rule (module docstring).

    returns          DataFrame on the UTC calendar (tz UTC) spanning every column's closes, one column per
                     asset; fractions (log or simple, `kind`); NaN = no one-day return that day.
    missing_days     {column: calendar days without a close between its first and last close}
    dropped_returns  {column: returns that spanned a gap and were dropped}
    """

    kind: str
    returns: pd.DataFrame
    missing_days: dict[str, int]
    dropped_returns: dict[str, int]


def one_day_returns(closes: pd.Series | pd.DataFrame, kind: Literal["log", "simple"] = "log") -> DailyReturns:
    """Daily returns (fractions) of closes in USD under the project's gap rule: only close d − 1 → close d
    counts; a return spanning a missing day is dropped and counted, never bridged.

    `closes`: a Series or a wide DataFrame (one column per asset) indexed by tz-aware UTC days; NaN or
    non-positive = no close. `kind` "log" gives ln(C_d/C_{d−1}), "simple" C_d/C_{d−1} − 1.
    """
    if kind not in ("log", "simple"):
        raise ValueError(f"kind must be 'log' or 'simple', got {kind!r}")
    if isinstance(closes, pd.Series):
        closes = closes.to_frame(closes.name if closes.name is not None else "close")
    if not isinstance(closes, pd.DataFrame) or closes.shape[1] == 0:
        raise ValueError("closes must be a Series or a DataFrame with at least one column")
    idx = _utc_days(closes.index, "closes")
    frame = closes.apply(pd.to_numeric, errors="coerce").astype(float)
    frame.index = idx
    frame = frame.sort_index()
    frame = frame.where(frame > 0)
    observed = frame.index[frame.notna().any(axis=1).to_numpy()]
    if len(observed) == 0:
        raise ValueError("closes hold no positive price")
    calendar = pd.date_range(observed[0], observed[-1], freq="D", tz="UTC", name="day")
    frame = frame.reindex(calendar)
    values = frame.to_numpy()
    prev = np.vstack([np.full((1, values.shape[1]), np.nan), values[:-1]])
    if kind == "log":
        out = np.log(values) - np.log(prev)
    else:
        out = values / prev - 1.0
    have = np.isfinite(values)
    seen_before = np.maximum.accumulate(have, axis=0)
    seen_before = np.vstack([np.zeros((1, values.shape[1]), dtype=bool), seen_before[:-1]])
    after_gap = have & ~np.isfinite(prev) & seen_before       # a close whose previous close is days back
    last_seen = np.maximum.accumulate(have[::-1], axis=0)[::-1]
    inside = seen_before & last_seen                            # strictly after the first close, up to the last
    missing = ~have & inside
    names = [str(c) for c in frame.columns]
    return DailyReturns(kind=kind, returns=pd.DataFrame(out, index=calendar, columns=frame.columns),
                        missing_days=dict(zip(names, missing.sum(axis=0).astype(int).tolist())),
                        dropped_returns=dict(zip(names, after_gap.sum(axis=0).astype(int).tolist())))


# ---------------------------------------------------------------------------------- per-day variance


@dataclass(frozen=True)
class DailyVariance:
    """Per-day variance contributions of one estimator on the UTC calendar (daily, not annualised).

    variance   Series (index: UTC calendar days), NaN where the day contributes nothing
    missing    bool Series: the day has no close
    gap        bool Series: the day's close-to-close return spans a gap and was dropped (close_to_close)
    bad_bar    bool Series: the day's bar is unusable for a range estimator (parkinson, garman_klass)
    returns    close_to_close only: the signed one-day log returns (variance = returns²); else None
    """

    estimator: str
    variance: pd.Series
    missing: pd.Series
    gap: pd.Series
    bad_bar: pd.Series
    returns: pd.Series | None = None

    @property
    def calendar(self) -> pd.DatetimeIndex:
        return self.variance.index


def daily_variance(prices: pd.DataFrame, estimator: str = "close_to_close") -> DailyVariance:
    """Per-day variance (unannualised, in ln-price units²) of `estimator` (see ESTIMATORS) from daily OHLC
    in USD, on the UTC calendar, under the gap rule of the module docstring."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; use one of {', '.join(ESTIMATORS)}")
    if estimator == "close_to_close":
        frame = _price_frame(prices, ["close"])
        rets = one_day_returns(frame["close"], "log")
        r = rets.returns.iloc[:, 0].reindex(frame.index)
        missing = frame["close"].isna()
        prev_missing = missing.shift(1, fill_value=False)
        gap = ~missing & prev_missing
        false = pd.Series(False, index=frame.index)
        return DailyVariance(estimator, r * r, missing, gap, false, r)
    frame = _price_frame(prices, ["open", "high", "low", "close"])
    o, h, lo, c = (frame[k].to_numpy() for k in ("open", "high", "low", "close"))
    missing = np.isnan(c)
    with np.errstate(invalid="ignore"):
        bad = ~missing & (np.isnan(o) | np.isnan(h) | np.isnan(lo)
                          | (h < np.fmax(o, c)) | (lo > np.fmin(o, c)))
        hl = np.log(h / lo)
        if estimator == "parkinson":
            var = hl * hl / (4.0 * _LN2)
        else:
            co = np.log(c / o)
            var = 0.5 * hl * hl - (2.0 * _LN2 - 1.0) * co * co
    var = np.where(missing | bad, np.nan, var)
    idx = frame.index
    return DailyVariance(estimator, pd.Series(var, index=idx), pd.Series(missing, index=idx),
                         pd.Series(False, index=idx), pd.Series(bad, index=idx))


# --------------------------------------------------------------------------------- window arithmetic


def _prefix(values: np.ndarray) -> np.ndarray:
    out = np.zeros(values.size + 1)
    np.cumsum(values, out=out[1:])
    return out


def _trailing(values: np.ndarray, window: int) -> np.ndarray:
    """Sum over positions (i − window, i] for every i (windows cut at the start of the array)."""
    s = _prefix(values)
    hi = np.arange(1, values.size + 1)
    return s[hi] - s[np.maximum(hi - window, 0)]


def _forward(values: np.ndarray, horizon: int) -> np.ndarray:
    """Sum over positions (i, i + horizon]; NaN where the window runs past the end."""
    s = _prefix(values)
    i = np.arange(values.size)
    out = np.full(values.size, np.nan)
    ok = i + horizon <= values.size - 1
    out[ok] = s[i[ok] + horizon + 1] - s[i[ok] + 1]
    return out


def _window_parts(dv: DailyVariance):
    v = dv.variance.to_numpy()
    have = np.isfinite(v)
    return np.where(have, v, 0.0), have.astype(float)


def trailing_variance(dv: DailyVariance, window_days: int, days_per_year: float = DAYS_PER_YEAR,
                      min_coverage: float = MIN_COVERAGE) -> tuple[pd.Series, pd.Series]:
    """Annualised variance (fraction²) of the trailing window (t − w, t] for every day t, and the number of
    observations each window holds; NaN where it holds fewer than `required_observations`."""
    vals, cnt = _window_parts(dv)
    total, n = _trailing(vals, window_days), _trailing(cnt, window_days)
    need = required_observations(window_days, min_coverage)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(n >= need, days_per_year * total / n, np.nan)
    idx = dv.calendar
    return pd.Series(var, index=idx), pd.Series(n.astype(int), index=idx)


def forward_variance(dv: DailyVariance, horizon_days: int, days_per_year: float = DAYS_PER_YEAR,
                     min_coverage: float = MIN_COVERAGE) -> pd.Series:
    """Annualised realised variance (fraction²) over (t, t + h] for every origin t: the target of an h-day
    forecast made at the close of t. NaN when the window runs past the data or is under-covered."""
    vals, cnt = _window_parts(dv)
    total, n = _forward(vals, horizon_days), _forward(cnt, horizon_days)
    need = required_observations(horizon_days, min_coverage)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(np.isfinite(n) & (n >= need), days_per_year * total / n, np.nan)
    return pd.Series(var, index=dv.calendar)


# ------------------------------------------------------------------------------------- realised vol


@dataclass(frozen=True)
class RealisedVol:
    """Realised vol of one estimator over one calendar window ending on `as_of` (a UTC day).

    vol            annualised fraction (√(days_per_year × mean per-day variance)); None when n/a
    n_returns      observations the window holds (returns for close_to_close, bars for range estimators)
    n_missing_days days of the window without a close
    n_gap_returns  close-to-close returns in the window dropped because they spanned a gap
    n_bad_bars     bars of the window unusable for the range estimator
    span_start/end first and last day whose observation is used (a return dated d runs close d−1 → d)
    reason         None, or "n/a: needs N returns (bars), has M" / why there is no window
    """

    estimator: str
    window_days: int
    as_of: datetime | None
    vol: float | None
    n_returns: int
    n_missing_days: int
    n_gap_returns: int
    n_bad_bars: int
    span_start: datetime | None
    span_end: datetime | None
    days_per_year: float
    reason: str | None = None


def _window_at(dv: DailyVariance, pos: int, window: int, days_per_year: float, min_coverage: float) -> RealisedVol:
    cal = dv.calendar
    if pos < 0:
        return RealisedVol(dv.estimator, window, None, None, 0, 0, 0, 0, None, None, days_per_year,
                           "n/a: no prices on or before the as-of day")
    lo = max(pos - window + 1, 0)
    v = dv.variance.to_numpy()[lo:pos + 1]
    have = np.isfinite(v)
    n = int(have.sum())
    need = required_observations(window, min_coverage)
    used = cal[lo:pos + 1][have]
    vol = float(math.sqrt(days_per_year * v[have].mean())) if n >= need else None
    unit = "returns" if dv.estimator == "close_to_close" else "bars"
    reason = None if vol is not None else f"n/a: needs {need} {unit}, has {n}"
    return RealisedVol(dv.estimator, window, _as_datetime(cal[pos]), vol, n,
                       int(dv.missing.to_numpy()[lo:pos + 1].sum()), int(dv.gap.to_numpy()[lo:pos + 1].sum()),
                       int(dv.bad_bar.to_numpy()[lo:pos + 1].sum()),
                       _as_datetime(used[0]) if n else None, _as_datetime(used[-1]) if n else None,
                       days_per_year, reason)


def realised_vol(prices: pd.DataFrame, window_days: int = 30, estimator: str = "close_to_close", as_of=None,
                 days_per_year: float = DAYS_PER_YEAR, min_coverage: float = MIN_COVERAGE) -> RealisedVol:
    """Annualised realised vol (fraction) of daily OHLC in USD over the `window_days` calendar days ending on
    the last day ≤ `as_of` (tz-aware; default: the last day of data)."""
    dv = daily_variance(prices, estimator)
    return _window_at(dv, _as_of_position(dv.calendar, as_of), int(window_days), days_per_year, min_coverage)


def realised_vol_table(prices: pd.DataFrame, windows: Iterable[int] = RV_WINDOWS,
                       estimators: Iterable[str] = ESTIMATORS, as_of=None, days_per_year: float = DAYS_PER_YEAR,
                       min_coverage: float = MIN_COVERAGE) -> tuple[RealisedVol, ...]:
    """`realised_vol` for every estimator × window (estimator-major order), sharing one pass per estimator."""
    out = []
    for est in estimators:
        dv = daily_variance(prices, est)
        pos = _as_of_position(dv.calendar, as_of)
        out.extend(_window_at(dv, pos, int(w), days_per_year, min_coverage) for w in windows)
    return tuple(out)


@dataclass(frozen=True)
class RollingRV:
    """Rolling realised vol of one estimator for several windows, on the UTC calendar.

    vol        DataFrame (index: UTC days, columns: window in days) of annualised fractions; NaN where the
               window holds too few observations
    n_returns  DataFrame of the same shape: observations each window holds
    """

    estimator: str
    vol: pd.DataFrame
    n_returns: pd.DataFrame
    days_per_year: float
    min_coverage: float


def rolling_realised_vol(prices: pd.DataFrame, windows: Iterable[int] = RV_WINDOWS,
                         estimator: str = "close_to_close", days_per_year: float = DAYS_PER_YEAR,
                         min_coverage: float = MIN_COVERAGE) -> RollingRV:
    """Annualised realised vol (fraction) of every trailing calendar window ending on every day, for each
    window in `windows` (vectorised prefix sums; the window rule of the module docstring)."""
    dv = daily_variance(prices, estimator)
    return rolling_from_variance(dv, windows, days_per_year, min_coverage)


def rolling_from_variance(dv: DailyVariance, windows: Iterable[int] = RV_WINDOWS,
                          days_per_year: float = DAYS_PER_YEAR, min_coverage: float = MIN_COVERAGE) -> RollingRV:
    """`rolling_realised_vol` from per-day variances already computed (`daily_variance`)."""
    vols, counts = {}, {}
    for w in windows:
        var, n = trailing_variance(dv, int(w), days_per_year, min_coverage)
        vols[int(w)], counts[int(w)] = np.sqrt(var), n
    return RollingRV(dv.estimator, pd.DataFrame(vols), pd.DataFrame(counts), days_per_year, min_coverage)
