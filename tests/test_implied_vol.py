"""Implied volatility: round trips on a wide grid, no-arbitrage bounds, py_vollib and real marks."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qortcli.quant import black76 as b76
from qortcli.quant import implied_vol as iv

FIXTURES = Path(__file__).parent / "fixtures"


def _wide_grid():
    """Deep wings (K/F 0.2..5), T from 1 hour to 3 years, sigma 3 % .. 400 %, calls and puts."""
    F = 87_000.0
    rows = list(itertools.product(
        np.exp(np.linspace(np.log(0.2), np.log(5.0), 41)),                       # K / F
        [1 / 8760, 3 / 8760, 8 / 8760, 2 / 365, 30 / 365, 0.5, 3.0],            # T in years
        [0.03, 0.2, 0.5, 1.0, 2.0, 4.0],
        [True, False]))
    m, T, sigma, call = map(np.array, zip(*rows))
    return np.full(m.shape, F), F * m, T, sigma, call.astype(bool)


@pytest.mark.parametrize("unit,rate", [("coin", 0.0), ("usd", 0.0), ("coin", 0.04)])
def test_round_trip_on_a_wide_grid(unit, rate):
    F, K, T, sigma, call = _wide_grid()
    g = b76.greeks(F, K, T, sigma, call, rate, days_per_year=365.0)
    price = g["price_coin"] if unit == "coin" else g["price_usd"]
    res = iv.implied_vol(price, F, K, T, call, rate, unit=unit)
    assert res.sigma.shape == F.shape and res.reason.dtype.kind == "i"

    disc = np.exp(-rate * T)
    intrinsic = disc * np.maximum(np.where(call, F - K, K - F), 0.0)
    time_value = g["price_usd"] - intrinsic
    # vega not negligible: the price carries the volatility (time value >= 1e-8 of the price, and a 1 %
    # relative vol change moves the coin price by more than 1e-15 coin)
    informative = (time_value > 1e-8 * g["price_usd"]) & (g["vega_coin"] * sigma > 1e-15)
    assert informative.sum() > 1000
    assert np.all(res.reason[informative] == iv.OK), np.unique(res.reason[informative], return_counts=True)
    back = b76.price_coin(F, K, T, res.sigma, call, rate) if unit == "coin" else b76.price_usd(F, K, T, res.sigma, call, rate)
    rel = np.abs(back[informative] / price[informative] - 1)
    assert rel.max() < 1e-10, rel.max()
    # where vega is large relative to the price, the volatility itself comes back
    sharp = informative & (g["vega_coin"] * 100 * sigma > 1e-3 * g["price_coin"])
    assert np.max(np.abs(res.sigma[sharp] / sigma[sharp] - 1)) < 1e-9
    # everything else is either solved or NaN with a reason, never a wrong number
    solved = res.reason == iv.OK
    assert np.all(np.isfinite(res.sigma[solved])) and np.all(np.isnan(res.sigma[~solved]))
    back_all = back[solved]
    assert np.all(np.abs(back_all - price[solved]) <= 1e-10 * price[solved] + 1e-15 * np.where(unit == "coin", 1.0, F[solved]))


def test_short_expiry_atm_and_tiny_vols():
    F = np.full(6, 95_000.0)
    K = np.array([95_000.0, 95_000.0, 95_100.0, 94_900.0, 95_000.0, 120_000.0])
    T = np.array([600, 3600, 3600, 3600, 86400 * 365 * 2, 3600]) / (365 * 86400.0)
    sigma = np.array([0.4, 0.005, 0.6, 0.6, 5.0, 3.0])
    call = np.array([True, True, True, False, False, True])
    price = b76.price_coin(F, K, T, sigma, call)
    res = iv.implied_vol_coin(price, F, K, T, call)
    assert np.all(res.reason == iv.OK)
    np.testing.assert_allclose(res.sigma, sigma, rtol=1e-9)


def test_prices_outside_no_arbitrage_bounds_give_nan_and_a_reason():
    F, K, T = 90_000.0, 80_000.0, 0.1
    cases = {
        "non_positive_price": (0.0, True, T), "negative": (-1e-4, False, T),
        "below_intrinsic": (0.9 * (F - K) / F, True, T),      # ITM call under its intrinsic value
        "at_intrinsic": ((F - K) / F, True, T),
        "above_upper_bound": (1.0, True, T),                  # a call is worth less than one coin
        "put_above_strike": (1.01 * K / F, False, T),
        "expired": (0.2, True, 0.0), "negative_time": (0.2, True, -0.01),
        "nan": (np.nan, True, T), "inf": (np.inf, True, T),
    }
    price, call, t = map(np.array, zip(*cases.values()))
    res = iv.implied_vol(price, F, K, t, call.astype(bool))
    names = dict(zip(cases, [iv.reason_name(c) for c in res.reason]))
    assert names == {"non_positive_price": "non_positive_price", "negative": "non_positive_price",
                     "below_intrinsic": "below_intrinsic", "at_intrinsic": "below_intrinsic",
                     "above_upper_bound": "above_upper_bound", "put_above_strike": "above_upper_bound",
                     "expired": "expired", "negative_time": "expired", "nan": "missing_price",
                     "inf": "invalid_input"}
    assert np.all(np.isnan(res.sigma))
    assert list(res.reason_names()) == list(names.values())
    # bad forward / strike
    res = iv.implied_vol([0.1, 0.1], [0.0, 90_000.0], [80_000.0, -5.0], T, True)
    assert list(res.reason) == [iv.INVALID_INPUT] * 2
    with pytest.raises(ValueError):
        iv.implied_vol(0.1, F, K, T, True, unit="btc")


def test_agrees_with_py_vollib_implied_volatility():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from py_vollib.black.implied_volatility import implied_volatility

    rng = np.random.default_rng(3)
    n = 200
    F = rng.uniform(2_000, 110_000, n)
    K = F * np.exp(rng.normal(0, 0.3, n))
    T = rng.uniform(1 / 365, 1.5, n)
    sigma = rng.uniform(0.2, 1.5, n)
    call = rng.random(n) < 0.5
    usd = b76.price_usd(F, K, T, sigma, call)
    ours = iv.implied_vol_usd(usd, F, K, T, call)
    theirs = np.array([implied_volatility(p, f, k, 0.0, t, "c" if c else "p")
                       for p, f, k, t, c in zip(usd, F, K, T, call)])
    vega = b76.greeks(F, K, T, sigma, call, days_per_year=365.0)["vega"]
    sharp = vega * 100 * sigma > 1e-3 * usd
    assert sharp.sum() > n // 2
    np.testing.assert_allclose(ours.sigma[sharp], theirs[sharp], rtol=1e-8)


@pytest.mark.parametrize("name", ["deribit_options_snapshot_20260105T041127Z.csv",
                                  "deribit_options_snapshot_20260109T153326Z.csv"])
def test_real_marks_give_back_deribit_mark_iv(name):
    chain = pd.read_csv(FIXTURES / name)
    ts = pd.to_datetime(chain["timestamp"], utc=True, format="ISO8601")
    expiry = pd.to_datetime(chain["expiry_datetime"], utc=True, format="ISO8601")
    T = ((expiry - ts).dt.total_seconds() / (365 * 86400)).to_numpy()
    F, K = chain["underlying"].to_numpy(), chain["strike"].to_numpy()
    call = (chain["option_type"] == "call").to_numpy()
    mark, mark_iv = chain["mark_price"].to_numpy(), chain["implied_volatility"].to_numpy()
    res = iv.implied_vol_coin(mark, F, K, T, call)
    g = b76.greeks(F, K, T, mark_iv, call, days_per_year=365.0)
    # every positive mark inside the bounds is solved; zero marks are reported, not guessed
    assert np.all(res.reason[mark <= 0] == iv.NON_POSITIVE_PRICE)
    intrinsic_coin = np.maximum(np.where(call, F - K, K - F), 0.0) / F
    has_time_value = (mark > 0) & (mark > intrinsic_coin)
    assert np.all(res.reason[has_time_value] == iv.OK)
    # a few deep in-the-money marks sit at or under intrinsic value (rounded to the tick): flagged
    assert np.all(res.reason[(mark > 0) & ~has_time_value] == iv.BELOW_INTRINSIC)
    # consistency with the price-space check: where the mark is within half an IV tick (0.005 vol points)
    # times vega of the model price from mark_iv, the mark's implied vol is within half a tick of mark_iv
    # (up to the curvature in sigma), and where it is far outside, so is the implied vol
    sharp = has_time_value & (g["vega_coin"] > 1e-6)
    price_gap_ticks = np.abs(g["price_coin"] - mark) / (g["vega_coin"] * 100)   # in vol fractions
    iv_gap = np.abs(res.sigma - mark_iv)
    close = sharp & (price_gap_ticks <= 5e-5)
    far = sharp & (price_gap_ticks >= 2e-4)
    assert close.sum() > 100 and far.sum() > 10
    assert np.all(iv_gap[close] <= 5e-5 * 1.02)
    assert np.all(iv_gap[far] >= 5e-5)
    small = sharp & (price_gap_ticks < 1e-3)      # first order in sigma up to 0.1 vol point
    np.testing.assert_allclose(iv_gap[small], price_gap_ticks[small], rtol=0.02, atol=1e-7)


def test_table_and_asymptotic_guesses_reach_the_same_root():
    """The tabulated initial guess only saves iterations: both starts converge to the same total vol."""
    rng = np.random.default_rng(11)
    x = -np.concatenate([rng.uniform(1e-4, 0.1, 500), rng.uniform(0.1, 6.0, 500)])   # beyond the table too
    s_true = np.sqrt(-2 * x) * rng.uniform(0.05, 0.999, x.size)                        # lower region
    beta = b76.normalised_otm(x, s_true)
    fast, ok_fast = iv.solve_total_vol(beta, x)
    slow, ok_slow = iv.solve_total_vol(beta, x, guess="asymptotic", tol=1e-13)
    informative = beta > 1e-250
    assert ok_fast[informative].all() and ok_slow[informative].all()
    np.testing.assert_allclose(fast[informative], slow[informative], rtol=1e-11)
    np.testing.assert_allclose(b76.normalised_otm(x, fast)[informative], beta[informative], rtol=1e-10)
