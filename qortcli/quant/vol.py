"""The whole `vol` computation in one pure call: realised vol, history ranks, cone, premium, forecasts.

Pure numpy/pandas/arch, no I/O. `vol_report(prices, summaries)` takes the OHLC frame of one coin
(`qortcli.store.read.price_series`: tz-aware UTC day index, open/high/low/close in USD) and its
snapshot summaries (`qortcli.store.read.summary_series`, any resolution: columns such as
atm_iv_30d_marks, rr25_30d_marks, bf25_30d_marks, term_slope_marks; vols as fractions) and returns
typed results; a step stores them and a door renders them. Every IV-derived figure names its source:
`source="marks"` reads the `*_marks` columns (constant-maturity ATM IV from Deribit's mark IVs),
`"svi"` the `*_svi` ones (from the fitted surface). Realised vols are close-to-close unless stated.
The definitions are in `realised`, `vol_history` and `vol_forecast`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

import pandas as pd

from qortcli.quant import realised as rv
from qortcli.quant import vol_forecast as vf
from qortcli.quant import vol_history as vh

IV_TENORS = (7, 30, 60, 90, 180)            # the summaries' constant-maturity tenors (days)
SOURCES = ("marks", "svi")


def history_columns(source: str = "marks") -> dict[str, str]:
    """{measure: summary column} ranked over the lookbacks: 30-day ATM IV, RR25, BF25, term slope."""
    if source not in SOURCES:
        raise ValueError(f"unknown IV source {source!r}; use one of {', '.join(SOURCES)}")
    return {"atm_iv_30d": f"atm_iv_30d_{source}", "rr25_30d": f"rr25_30d_{source}",
            "bf25_30d": f"bf25_30d_{source}", "term_slope": f"term_slope_{source}"}


@dataclass(frozen=True)
class VolReport:
    """Everything `qortcli vol` shows for one coin (see the module docstring for units and sources).

    realised     RV per estimator × window, ending on the last price day
    rolling      rolling close-to-close RV (for the cone, the premium and charts of RV over time)
    ranks        {measure: rank/percentile per lookback} for atm_iv_30d, rr25_30d, bf25_30d, term_slope
    iv_now       {tenor days: the latest constant-maturity ATM IV} and its day `iv_as_of`
    cone         the vol cone with iv_now marked
    premium      IV − RV at matching tenors (now and history)
    forecasts    today's forecasts (origin: the last price day)
    evaluation   the rolling out-of-sample scores, or None with `evaluation_reason`
    """

    source: str
    price_start: datetime
    price_end: datetime
    realised: tuple[rv.RealisedVol, ...]
    rolling: rv.RollingRV
    ranks: dict[str, tuple[vh.RankPercentile, ...]]
    iv_now: dict[int, float]
    iv_as_of: datetime | None
    cone: vh.VolCone
    premium: vh.VariancePremium
    forecasts: tuple[vf.Forecast, ...]
    evaluation: vf.ForecastEvaluation | None
    evaluation_reason: str | None = None


def _column(summaries: pd.DataFrame | None, name: str) -> pd.Series | None:
    if summaries is None or name not in summaries.columns:
        return None
    return pd.to_numeric(summaries[name], errors="coerce").astype(float)


def vol_report(prices: pd.DataFrame, summaries: pd.DataFrame | None = None, source: str = "marks",
               windows: Iterable[int] = rv.RV_WINDOWS, lookbacks: Iterable[int] = vh.LOOKBACKS,
               horizons: Iterable[int] = vf.HORIZONS, min_points: int = vh.MIN_POINTS,
               cone_history_days: int | None = vh.CONE_HISTORY_DAYS,
               refit_every_days: int = vf.REFIT_EVERY_DAYS, train_days: int | None = vf.TRAIN_DAYS,
               eval_start=None, days_per_year: float = rv.DAYS_PER_YEAR) -> VolReport:
    """The full vol analysis of one coin: daily OHLC in USD plus (optionally) its summary series.

    Ranks use one point per UTC day (the day's last summary). The evaluation's origins start at the first
    day with an implied vol (or `eval_start`, or the last 365 days without summaries)."""
    columns = history_columns(source)
    windows = tuple(int(w) for w in windows)
    dv = rv.daily_variance(prices, "close_to_close")
    rolling = rv.rolling_from_variance(dv, windows, days_per_year)
    realised = rv.realised_vol_table(prices, windows, rv.ESTIMATORS, days_per_year=days_per_year)

    ranks: dict[str, tuple[vh.RankPercentile, ...]] = {}
    for measure, col in columns.items():
        series = _column(summaries, col)
        daily = vh.daily_last(series) if series is not None else pd.Series(
            dtype=float, index=pd.DatetimeIndex([], tz="UTC"))
        ranks[measure] = vh.rank_percentile_table(daily, lookbacks, min_points=min_points)

    iv_daily: dict[int, pd.Series] = {}
    for tenor in IV_TENORS:
        series = _column(summaries, f"atm_iv_{tenor}d_{source}")
        if series is not None:
            daily = vh.daily_last(series)
            if len(daily):
                iv_daily[tenor] = daily
    iv_as_of = max((s.index[-1] for s in iv_daily.values()), default=None)
    iv_now = {t: float(s.iloc[-1]) for t, s in iv_daily.items() if iv_as_of is not None and s.index[-1] == iv_as_of}

    cone = vh.vol_cone(rolling, iv_now, history_days=cone_history_days)
    premium = vh.variance_premium(iv_daily, rolling)
    implied = {h: iv_daily[h] for h in horizons if h in iv_daily}
    forecasts = vf.forecast_vol(prices, implied, horizons, train_days=train_days, days_per_year=days_per_year)
    evaluation, why = None, None
    try:
        evaluation = vf.evaluate_forecasts(prices, implied, horizons, eval_start=eval_start,
                                           refit_every_days=refit_every_days, train_days=train_days,
                                           days_per_year=days_per_year)
    except ValueError as exc:
        why = f"n/a: {exc}"
    cal = dv.calendar
    return VolReport(source, cal[0].to_pydatetime(), cal[-1].to_pydatetime(), realised, rolling, ranks, iv_now,
                     None if iv_as_of is None else iv_as_of.to_pydatetime(), cone, premium, forecasts,
                     evaluation, why)
