"""Performance and risk metrics of daily simple-return series with quantstats (pure: no I/O).

Every annualised figure uses `periods_per_year` periods a year, rf = 0; crypto trades every day, so the
caller passes its day-count basis' days per year (365 on ACT/365: `qortcli.timeutils.BASES`) and stores it:

    total_return   quantstats.stats.comp                      compounded, fraction
    cagr           quantstats.stats.cagr(periods=P)           fraction a year (years = observed days / P)
    volatility     quantstats.stats.volatility(periods=P)     annualised standard deviation, fraction
    sharpe         quantstats.stats.sharpe(periods=P)
    sortino        quantstats.stats.sortino(periods=P)
    calmar         quantstats.stats.calmar(periods=P)         CAGR / |max drawdown|
    omega          quantstats.stats.omega(periods=P)          threshold 0
    max_drawdown   quantstats.stats.max_drawdown               fraction, ≤ 0
    var_95         historical 1-day VaR at 95%: the 5% quantile of the returns (pandas linear
                   interpolation) — the threshold quantstats' historical CVaR uses; quantstats itself
                   has only the parametric VaR, stored beside it as var_95_parametric
                   (quantstats.stats.value_at_risk, confidence 0.95)
    cvar_95        quantstats.stats.conditional_value_at_risk(confidence=0.95, method="historical")
    days           number of daily returns, first/last their dates

VaR and CVaR are daily returns (negative = loss), not annualised. Whether a series is in-sample (the
weights fitted on the same window) or out-of-sample (walk-forward) is the caller's label to keep: see
`qortcli.quant.backtest`. The growth-of-1 curve is `qortcli.quant.backtest.equity_curve`.
"""

from __future__ import annotations

import math
import warnings

import pandas as pd

CONFIDENCE = 0.95
METRIC_NAMES = ("total_return", "cagr", "volatility", "sharpe", "sortino", "calmar", "omega",
                "max_drawdown", "var_95", "cvar_95", "var_95_parametric")


def _float(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def performance(returns: pd.Series, periods_per_year: float) -> dict:
    """The metrics above for one daily simple-return series (fractions; index = days), annualised with
    `periods_per_year`; None where undefined."""
    import quantstats as qs

    r = pd.Series(returns, dtype=float).dropna()
    if r.empty:
        raise ValueError("no returns to measure")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {
            "total_return": _float(qs.stats.comp(r)),
            "cagr": _float(qs.stats.cagr(r, periods=periods_per_year)),
            "volatility": _float(qs.stats.volatility(r, periods=periods_per_year)),
            "sharpe": _float(qs.stats.sharpe(r, periods=periods_per_year)),
            "sortino": _float(qs.stats.sortino(r, periods=periods_per_year)),
            "calmar": _float(qs.stats.calmar(r, periods=periods_per_year)),
            "omega": _float(qs.stats.omega(r, periods=periods_per_year)),
            "max_drawdown": _float(qs.stats.max_drawdown(r)),
            "var_95": _float(historical_var(r, CONFIDENCE)),
            "cvar_95": _float(qs.stats.conditional_value_at_risk(r, confidence=CONFIDENCE, method="historical")),
            "var_95_parametric": _float(qs.stats.value_at_risk(r, confidence=CONFIDENCE)),
        }
    out["days"] = int(len(r))
    out["first"] = pd.Timestamp(r.index[0]).date().isoformat() if isinstance(r.index, pd.DatetimeIndex) else None
    out["last"] = pd.Timestamp(r.index[-1]).date().isoformat() if isinstance(r.index, pd.DatetimeIndex) else None
    return out


def historical_var(returns: pd.Series, confidence: float = CONFIDENCE) -> float:
    """Historical 1-day VaR (a daily return, fraction): the (1 − confidence) quantile of the daily returns
    (negative = loss)."""
    return float(pd.Series(returns, dtype=float).dropna().quantile(1.0 - confidence))


def per_asset(returns: pd.DataFrame, periods_per_year: float) -> dict[str, dict]:
    """`performance` of each column (daily simple returns as fractions, annualised with `periods_per_year`)."""
    return {str(col): performance(returns[col], periods_per_year) for col in returns.columns}
