"""qortcli.quant.metrics: quantstats metrics at 365 periods (ACT/365), checked by hand and against quantstats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qortcli.quant import backtest as qb
from qortcli.quant import metrics as qm

PRICES = Path(__file__).parent / "fixtures" / "prices"


@pytest.fixture(scope="module")
def btc() -> pd.Series:
    close = pd.read_csv(PRICES / "BTC-USD.csv", parse_dates=["Date"]).set_index("Date")["Close"]
    return (close / close.shift(1) - 1).loc["2020-08-21":"2023-03-31"]


def test_metrics_by_hand(btc):
    m = qm.performance(btc, 365)
    r = btc.to_numpy()
    n = len(r)
    growth = np.cumprod(1 + r)
    assert m["days"] == n == 953 and m["first"] == "2020-08-21" and m["last"] == "2023-03-31"
    assert m["total_return"] == pytest.approx(growth[-1] - 1, rel=1e-10)
    assert m["cagr"] == pytest.approx(growth[-1] ** (365 / n) - 1, rel=1e-10)
    assert m["volatility"] == pytest.approx(r.std(ddof=1) * np.sqrt(365), rel=1e-10)
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(365), rel=1e-10)
    downside = np.sqrt((r[r < 0] ** 2).sum() / n)
    assert m["sortino"] == pytest.approx(r.mean() / downside * np.sqrt(365), rel=1e-10)
    peak = np.maximum.accumulate(np.concatenate([[1.0], growth]))
    max_dd = (np.concatenate([[1.0], growth]) / peak - 1).min()
    assert m["max_drawdown"] == pytest.approx(max_dd, rel=1e-10)
    assert m["calmar"] == pytest.approx(m["cagr"] / abs(max_dd), rel=1e-10)
    assert m["omega"] == pytest.approx(r[r > 0].sum() / -r[r < 0].sum(), rel=1e-10)
    var = np.percentile(r, 5)  # numpy's linear interpolation = pandas quantile
    assert m["var_95"] == pytest.approx(var, rel=1e-12)
    assert m["cvar_95"] == pytest.approx(r[r <= var].mean(), rel=1e-12)
    assert m["cvar_95"] < m["var_95"] < 0
    # BTC fell from its Nov 2021 top of ~67.6k to ~15.8k in Nov 2022: a drawdown of about −77%
    assert -0.78 < m["max_drawdown"] < -0.76


def test_metrics_equal_quantstats_own_functions(btc):
    import quantstats as qs

    m = qm.performance(btc, 365)
    assert m["total_return"] == pytest.approx(qs.stats.comp(btc), rel=1e-12)
    assert m["cagr"] == pytest.approx(qs.stats.cagr(btc, periods=365), rel=1e-12)
    assert m["volatility"] == pytest.approx(qs.stats.volatility(btc, periods=365), rel=1e-12)
    assert m["sharpe"] == pytest.approx(qs.stats.sharpe(btc, periods=365), rel=1e-12)
    assert m["sortino"] == pytest.approx(qs.stats.sortino(btc, periods=365), rel=1e-12)
    assert m["calmar"] == pytest.approx(qs.stats.calmar(btc, periods=365), rel=1e-12)
    assert m["omega"] == pytest.approx(qs.stats.omega(btc, periods=365), rel=1e-12)
    assert m["max_drawdown"] == pytest.approx(qs.stats.max_drawdown(btc), rel=1e-12)
    assert m["cvar_95"] == pytest.approx(qs.stats.conditional_value_at_risk(btc, confidence=0.95,
                                                                            method="historical"), rel=1e-12)
    assert m["var_95_parametric"] == pytest.approx(qs.stats.value_at_risk(btc, confidence=0.95), rel=1e-12)
    # 365, not quantstats' default 252, is what was used
    assert m["sharpe"] != pytest.approx(qs.stats.sharpe(btc), rel=1e-3)


def test_undefined_metrics_are_none_and_empty_is_an_error():
    up = pd.Series([0.01, 0.02, 0.005], index=pd.date_range("2022-01-01", periods=3))
    m = qm.performance(up, 365)
    assert m["omega"] is None and m["sortino"] is None  # no losing day
    assert m["max_drawdown"] == 0.0
    with pytest.raises(ValueError):
        qm.performance(pd.Series([], dtype=float), 365)


def test_equity_curve_compounds():
    r = pd.Series([0.1, -0.5, 0.2])
    assert np.allclose(qb.equity_curve(r), [1.1, 0.55, 0.66])
