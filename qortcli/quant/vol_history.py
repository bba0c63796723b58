"""History measures of volatility: rank and percentile of a series, the vol cone, the variance premium.

Pure numpy/pandas, no I/O. Vols are annualised fractions; RR25, BF25 and term slopes are vol
differences (fractions); time windows are calendar days; datetimes are tz-aware UTC.

Rank and percentile (`rank_percentile`), for any irregular series (5-minute or daily summaries):
    The current point is the last finite point at or before `as_of` (default: the last point); x is its
    value. The window W holds the finite points timed in (as_of − lookback_days, as_of] (current included);
    the history H is W without the current point.
        rank        = (x − min W) / (max W − min W)                       (0 = lowest, 1 = highest)
        percentile  = #{h ∈ H : h < x} / |H|                            (strict: ties are not below)
    Both need |W| ≥ min_points (default 20, at least 2), else they are None with
    "n/a: needs N points, has M"; a flat window (max = min) has no rank. Percentiles of 5-minute points
    weight each point equally; for one point per day use `daily_last` first. RR25, BF25 and the term slope
    go through the same function.

Vol cone (`vol_cone`): for each RV window w, the min, 25 %, 50 %, 75 % and max of the rolling w-day RV
    (overlapping windows, one value per day) over the `history_days` ending on `as_of`, with the current
    RV and the current IV of the matching tenor marked (and the fraction of cone values strictly below it).

Variance premium (`variance_premium`): IV − RV at matching tenors, both known on the same day: the h-day
    constant-maturity ATM IV of day d against the trailing h-day RV ending on d (and IV² − RV² in
    variance). It compares what options price for the next h days with what the last h days realised;
    the ex-post comparison (IV against the RV that followed) is the "implied" line of vol_forecast.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from qortcli.quant.realised import RollingRV

LOOKBACKS = (30, 90, 180, 365)
MIN_POINTS = 20
CONE_QUANTILES = (0.25, 0.5, 0.75)
CONE_HISTORY_DAYS = 365

_DAY = pd.Timedelta(days=1)


def _ts(value) -> datetime | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def _finite_series(series: pd.Series, what: str) -> pd.Series:
    if not isinstance(series, pd.Series):
        raise ValueError(f"{what} must be a pandas Series indexed by tz-aware UTC timestamps")
    if not isinstance(series.index, pd.DatetimeIndex):
        raise ValueError(f"{what} must be indexed by a DatetimeIndex, got {type(series.index).__name__}")
    if series.index.tz is None:
        raise ValueError(f"{what} index must be tz-aware UTC (got naive timestamps)")
    values = pd.to_numeric(series, errors="coerce").astype(float)
    values.index = series.index.tz_convert("UTC")
    values = values[np.isfinite(values.to_numpy())]
    return values.sort_index(kind="stable")


def _as_of(as_of, default) -> pd.Timestamp:
    if as_of is None:
        return default
    ts = pd.Timestamp(as_of)
    if ts.tz is None:
        raise ValueError(f"as_of must be tz-aware UTC, got naive {ts}")
    return ts.tz_convert("UTC")


def daily_last(series: pd.Series) -> pd.Series:
    """The last finite point of each UTC day of an irregular series, indexed by that day's UTC midnight."""
    values = _finite_series(series, "series")
    if values.empty:
        return values
    days = values.index.floor("D")
    out = values.groupby(days, sort=True).last()
    out.index = pd.DatetimeIndex(out.index, tz="UTC", name="day")
    return out.rename(series.name)


# ---------------------------------------------------------------------------------- rank, percentile


@dataclass(frozen=True)
class RankPercentile:
    """Rank and percentile of the current value of a series within one lookback (module docstring).

    value            the current point's value (None if the series has none at or before as_of)
    rank, percentile fractions 0..1, or None with `reason`
    n_points         points in the window, current included
    span_start/end   first and last point of the window (UTC)
    covers_lookback  the window's first point lies within a day of the lookback's start
    """

    lookback_days: int
    as_of: datetime | None
    value: float | None
    rank: float | None
    percentile: float | None
    n_points: int
    span_start: datetime | None
    span_end: datetime | None
    covers_lookback: bool
    min_points: int
    reason: str | None = None


def percentile_rank(value: float, history) -> float:
    """Fraction (0..1) of `history` at or below `value`, ties counted half (the mean of the strict and the
    weak rank: scipy's `percentileofscore(kind="mean")`); NaN when `history` has no finite point. The
    strategy rules' IV percentile (today's value counted in its own history); `rank_percentile` below is the
    strict form over a window, for `qortcli vol`."""
    from scipy.stats import percentileofscore

    h = np.asarray([x for x in history if x is not None and np.isfinite(x)], dtype=float)
    if h.size == 0 or value is None or not np.isfinite(value):
        return float("nan")
    return float(percentileofscore(h, value, kind="mean") / 100.0)


def rank_percentile(series: pd.Series, lookback_days: int, as_of=None, min_points: int = MIN_POINTS) -> RankPercentile:
    """Rank and percentile (fractions) of the last value at or before `as_of` among the points of the
    `lookback_days` calendar days ending on `as_of`; the definitions are in the module docstring."""
    values = _finite_series(series, "series")
    return _rank_percentile(values, int(lookback_days), as_of, int(min_points))


def rank_percentile_table(series: pd.Series, lookbacks: Iterable[int] = LOOKBACKS, as_of=None,
                          min_points: int = MIN_POINTS) -> tuple[RankPercentile, ...]:
    """`rank_percentile` for every lookback (days), validating the series once."""
    values = _finite_series(series, "series")
    return tuple(_rank_percentile(values, int(lb), as_of, int(min_points)) for lb in lookbacks)


def _rank_percentile(values: pd.Series, lookback: int, as_of, min_points: int) -> RankPercentile:
    if lookback < 1:
        raise ValueError(f"lookback must be at least 1 day, got {lookback}")
    if min_points < 2:
        raise ValueError(f"min_points must be at least 2 (a rank needs a history), got {min_points}")
    if values.empty:
        return RankPercentile(lookback, _ts(as_of), None, None, None, 0, None, None, False, min_points,
                              f"n/a: needs {min_points} points, has 0")
    times = values.index
    end = _as_of(as_of, times[-1])
    hi = int(times.searchsorted(end, side="right"))
    start = end - pd.Timedelta(days=lookback)
    lo = int(times.searchsorted(start, side="right"))
    window = values.to_numpy()[lo:hi]
    n = int(window.size)
    if n == 0:
        return RankPercentile(lookback, _ts(end), None, None, None, 0, None, None, False, min_points,
                              f"n/a: needs {min_points} points, has 0 in the {lookback} days to {end.date()}")
    x = float(window[-1])
    first, last = times[lo], times[hi - 1]
    covers = bool(first <= start + _DAY)
    common = dict(lookback_days=lookback, as_of=_ts(end), value=x, n_points=n, span_start=_ts(first),
                  span_end=_ts(last), covers_lookback=covers, min_points=min_points)
    if n < min_points:
        return RankPercentile(rank=None, percentile=None, reason=f"n/a: needs {min_points} points, has {n}", **common)
    history = window[:-1]
    percentile = float(np.count_nonzero(history < x) / history.size)
    lo_v, hi_v = float(window.min()), float(window.max())
    if hi_v == lo_v:
        return RankPercentile(rank=None, percentile=percentile,
                              reason=f"n/a: rank of a flat window (all {n} points = {x:g})", **common)
    return RankPercentile(rank=(x - lo_v) / (hi_v - lo_v), percentile=percentile, **common)


# ----------------------------------------------------------------------------------------- vol cone


@dataclass(frozen=True)
class ConeRow:
    """One window of the vol cone: distribution of its rolling RV (annualised fractions) over the history.

    n             rolling RV values in the history (overlapping windows, one per day)
    current_rv    the window's RV on the as-of day
    current_iv    the IV of the matching tenor given by the caller (None if none)
    iv_percentile fraction of the cone's values strictly below current_iv
    """

    window_days: int
    n: int
    min: float | None
    q25: float | None
    median: float | None
    q75: float | None
    max: float | None
    current_rv: float | None
    current_iv: float | None
    iv_percentile: float | None
    reason: str | None = None


@dataclass(frozen=True)
class VolCone:
    """The vol cone of one RV estimator over [history_start, history_end] (UTC days)."""

    estimator: str
    history_days: int | None
    history_start: datetime | None
    history_end: datetime | None
    rows: tuple[ConeRow, ...]


def vol_cone(rolling: RollingRV, iv_by_tenor: Mapping[int, float] | None = None,
             history_days: int | None = CONE_HISTORY_DAYS, as_of=None, min_values: int = MIN_POINTS) -> VolCone:
    """Min / 25 % / 50 % / 75 % / max of each window's rolling RV (annualised fractions, from
    `realised.rolling_realised_vol`) over the `history_days` calendar days ending on `as_of` (None: all
    days), with today's RV and the caller's IV per tenor (days → fraction, e.g. {30: 0.45}) marked."""
    vol = rolling.vol
    if vol.empty:
        raise ValueError("the rolling RV frame is empty")
    cal = vol.index
    end = _as_of(as_of, cal[-1])
    hi = int(cal.searchsorted(end, side="right"))
    lo = 0 if history_days is None else int(cal.searchsorted(end - pd.Timedelta(days=int(history_days)), side="right"))
    part = vol.iloc[lo:hi]
    ivs = {int(k): v for k, v in (iv_by_tenor or {}).items()}
    rows = []
    for w in vol.columns:
        vals = part[w].to_numpy()
        vals = vals[np.isfinite(vals)]
        cur = part[w].iloc[-1] if len(part) else np.nan
        cur_rv = float(cur) if np.isfinite(cur) else None
        iv = ivs.get(int(w))
        iv = float(iv) if iv is not None and np.isfinite(iv) else None
        if vals.size < min_values:
            rows.append(ConeRow(int(w), int(vals.size), None, None, None, None, None, cur_rv, iv, None,
                                f"n/a: needs {min_values} RV values, has {vals.size}"))
            continue
        q = np.quantile(vals, CONE_QUANTILES)
        rows.append(ConeRow(int(w), int(vals.size), float(vals.min()), float(q[0]), float(q[1]), float(q[2]),
                            float(vals.max()), cur_rv, iv,
                            None if iv is None else float(np.count_nonzero(vals < iv) / vals.size)))
    first = part.index[0] if len(part) else None
    last = part.index[-1] if len(part) else None
    return VolCone(rolling.estimator, history_days, _ts(first), _ts(last), tuple(rows))


# ---------------------------------------------------------------------------------- variance premium


@dataclass(frozen=True)
class PremiumRow:
    """IV − RV at one tenor on one day (fractions; variance in fraction²)."""

    tenor_days: int
    day: datetime | None
    iv: float | None
    rv: float | None
    premium_vol: float | None
    premium_variance: float | None
    reason: str | None = None


@dataclass(frozen=True)
class VariancePremium:
    """The variance premium now (one row per tenor) and its daily history.

    history  DataFrame (index: UTC days with an IV, columns: tenor in days) of IV − RV (fractions)
    """

    estimator: str
    now: tuple[PremiumRow, ...]
    history: pd.DataFrame


def variance_premium(iv_by_tenor: Mapping[int, pd.Series], rolling: RollingRV, as_of=None) -> VariancePremium:
    """IV − trailing RV at matching tenors (module docstring). `iv_by_tenor`: {tenor days: series of the
    constant-maturity ATM IV (fractions, tz-aware timestamps; reduced to the last point per UTC day)};
    `rolling`: `realised.rolling_realised_vol` with those tenors among its windows."""
    vol = rolling.vol
    now, hist = [], {}
    for tenor, series in iv_by_tenor.items():
        tenor = int(tenor)
        iv = daily_last(series)
        if tenor not in vol.columns:
            now.append(PremiumRow(tenor, None, None, None, None, None, f"n/a: no {tenor}-day RV window"))
            continue
        rv = vol[tenor].reindex(iv.index)
        hist[tenor] = iv - rv
        pos = -1
        if len(iv):
            pos = int(iv.index.searchsorted(_as_of(as_of, iv.index[-1]), side="right")) - 1
        if pos < 0:
            now.append(PremiumRow(tenor, None, None, None, None, None, "n/a: no IV on or before the as-of day"))
            continue
        day, i, r = iv.index[pos], float(iv.iloc[pos]), rv.iloc[pos]
        if not np.isfinite(r):
            now.append(PremiumRow(tenor, _ts(day), i, None, None, None,
                                  f"n/a: no {tenor}-day RV on {day.date()}"))
            continue
        r = float(r)
        now.append(PremiumRow(tenor, _ts(day), i, r, i - r, i * i - r * r))
    history = pd.DataFrame(hist) if hist else pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC"))
    return VariancePremium(rolling.estimator, tuple(now), history.sort_index())
