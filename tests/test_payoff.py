"""Coin-settled payoffs, max P/L and breakevens against hand-computed values, in coin and in USD.

Index at entry S0 = 100 USD throughout (prices in coin per contract); each expected value below is
worked out by hand from the payoff definitions (call (S−K)^+/S coin, put (K−S)^+/S coin).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from qortcli.quant import payoff as P
from qortcli.quant.payoff import Leg

S0 = 100.0
INF = float("inf")


def call(k, side, price, **kw):
    return Leg(f"X-{k}-C", "call", k, None, side, kw.pop("size", 1.0), price, **kw)


def put(k, side, price, **kw):
    return Leg(f"X-{k}-P", "put", k, None, side, kw.pop("size", 1.0), price, **kw)


def hold(size=1.0):
    return Leg("X (held)", "underlying", 0.0, None, 1, size, 1.0)


def check(legs, *, prem_coin, max_profit_usd, max_loss_usd, be_usd, max_profit_coin, max_loss_coin, be_coin):
    m = P.strategy_metrics(legs, S0)
    assert m["net_premium_coin"] == pytest.approx(prem_coin, abs=1e-12)
    assert m["net_premium_usd"] == pytest.approx(prem_coin * S0, abs=1e-10)
    for key, want in (("max_profit_usd", max_profit_usd), ("max_loss_usd", max_loss_usd),
                      ("max_profit_coin", max_profit_coin), ("max_loss_coin", max_loss_coin)):
        extreme = m[key]
        if math.isinf(want):   # +inf for a profit, −inf for a loss: unbounded, no value (never ±inf)
            assert (want > 0) == key.startswith("max_profit"), key
            assert extreme.unbounded and extreme.value is None, key
        else:
            assert not extreme.unbounded, key
            assert extreme.value == pytest.approx(want, abs=1e-9), key
    assert m["breakevens_usd"] == pytest.approx(be_usd, abs=1e-9)
    assert m["breakevens_coin"] == pytest.approx(be_coin, abs=1e-9)
    # breakevens really are zeros, in their own unit
    if be_usd:
        assert np.allclose(P.pnl_usd(legs, np.array(be_usd), S0), 0, atol=1e-9)
    if be_coin:
        assert np.allclose(P.pnl_coin(legs, np.array(be_coin)), 0, atol=1e-12)
    # and the stated extremes bound a dense grid
    grid = np.geomspace(1, 10_000, 20001)
    if not math.isinf(max_profit_usd):
        assert P.pnl_usd(legs, grid, S0).max() <= max_profit_usd + 1e-9
    if not math.isinf(max_loss_usd):
        assert P.pnl_usd(legs, grid, S0).min() >= max_loss_usd - 1e-9
    if not math.isinf(max_profit_coin):
        assert P.pnl_coin(legs, grid).max() <= max_profit_coin + 1e-12
    if not math.isinf(max_loss_coin):
        assert P.pnl_coin(legs, grid).min() >= max_loss_coin - 1e-12
    return m


def test_per_contract_payoffs_coin_and_usd():
    s = np.array([50.0, 100.0, 125.0, 200.0])
    c = [call(100, 1, 0.0)]
    p = [put(100, 1, 0.0)]
    assert P.payoff_coin(c, s) == pytest.approx([0, 0, 25 / 125, 100 / 200])
    assert P.payoff_usd(c, s) == pytest.approx([0, 0, 25, 100])
    assert P.payoff_coin(p, s) == pytest.approx([50 / 50, 0, 0, 0])
    assert P.payoff_usd(p, s) == pytest.approx([50, 0, 0, 0])
    assert P.payoff_coin([hold(2.0)], s) == pytest.approx([2, 2, 2, 2])
    assert P.payoff_usd([hold(2.0)], s) == pytest.approx(2 * s)


def test_short_strangle():
    # sell 110 C @0.02, sell 90 P @0.03: credit 0.05 coin = 5 USD
    legs = [call(110, -1, 0.02), put(90, -1, 0.03)]
    m = check(legs, prem_coin=-0.05, max_profit_usd=5.0, max_loss_usd=-INF, be_usd=[85.0, 115.0],
              max_profit_coin=0.05, max_loss_coin=-INF, be_coin=[90 / 1.05, 110 / 0.95])
    # USD loss unbounded as S→∞, coin loss unbounded as S→0 (short put pays K/S − 1 coin)
    assert m.max_loss_usd.at_usd == INF and m.max_loss_coin.at_usd == 0.0
    # as S→∞ the coin P/L tends to 0.05 − 1 (bounded): checked on a far point
    assert P.pnl_coin(legs, np.array([1e9]))[0] == pytest.approx(-0.95, abs=1e-6)
    # USD P/L at S→0 is 5 − 90 (bounded in USD)
    assert P.pnl_usd(legs, np.array([1e-9]), S0)[0] == pytest.approx(-85.0, abs=1e-6)


def test_iron_condor():
    # buy 80 P @0.01, sell 90 P @0.03, sell 110 C @0.02, buy 120 C @0.008: credit 0.032
    legs = [put(80, 1, 0.01), put(90, -1, 0.03), call(110, -1, 0.02), call(120, 1, 0.008)]
    check(legs, prem_coin=-0.032, max_profit_usd=3.2, max_loss_usd=-6.8, be_usd=[86.8, 113.2],
          # coin: the put spread owes 10/S coin below 80 → unbounded as S→0; above 120 the call spread
          # owes only 10/S coin, so the coin P/L turns positive again past S = 10/0.032 = 312.5
          max_profit_coin=0.032, max_loss_coin=-INF, be_coin=[90 / 1.032, 110 / 0.968, 312.5])


def test_long_straddle():
    legs = [call(100, 1, 0.05), put(100, 1, 0.04)]
    m = check(legs, prem_coin=0.09, max_profit_usd=INF, max_loss_usd=-9.0, be_usd=[91.0, 109.0],
              max_profit_coin=INF, max_loss_coin=-0.09, be_coin=[100 / 1.09, 100 / 0.91])
    assert m.max_loss_usd.at_usd == 100.0 and m.max_loss_coin.at_usd == 100.0
    assert m.max_profit_usd.at_usd == INF and m.max_profit_coin.at_usd == 0.0


def test_long_strangle():
    legs = [call(110, 1, 0.02), put(90, 1, 0.03)]
    check(legs, prem_coin=0.05, max_profit_usd=INF, max_loss_usd=-5.0, be_usd=[85.0, 115.0],
          max_profit_coin=INF, max_loss_coin=-0.05, be_coin=[90 / 1.05, 110 / 0.95])


def test_bull_call_spread():
    # buy 100 C @0.05, sell 110 C @0.02: debit 0.03. In coin the spread pays 10/S above 110, so the
    # best coin outcome is at S = 110 (10/110 − 0.03) and the coin P/L is negative again past 1000/3.
    legs = [call(100, 1, 0.05), call(110, -1, 0.02)]
    m = check(legs, prem_coin=0.03, max_profit_usd=7.0, max_loss_usd=-3.0, be_usd=[103.0],
              max_profit_coin=10 / 110 - 0.03, max_loss_coin=-0.03, be_coin=[100 / 0.97, 10 / 0.03])
    assert m.max_profit_coin.at_usd == 110.0


def test_bear_put_spread():
    # buy 100 P @0.05, sell 90 P @0.02: debit 0.03; below 90 the spread pays 10/S coin (unbounded at S→0)
    legs = [put(100, 1, 0.05), put(90, -1, 0.02)]
    check(legs, prem_coin=0.03, max_profit_usd=7.0, max_loss_usd=-3.0, be_usd=[97.0],
          max_profit_coin=INF, max_loss_coin=-0.03, be_coin=[100 / 1.03])


def test_risk_reversal():
    # sell 90 P @0.03, buy 110 C @0.02: credit 0.01
    legs = [put(90, -1, 0.03), call(110, 1, 0.02)]
    m = check(legs, prem_coin=-0.01, max_profit_usd=INF, max_loss_usd=-89.0, be_usd=[89.0],
              max_profit_coin=1.01, max_loss_coin=-INF, be_coin=[90 / 1.01])
    assert m.max_loss_usd.at_usd == 0.0          # USD worst case S→0: −90 + 1
    assert m.max_profit_coin.at_usd == INF        # coin best case approached as S→∞: 1 + 0.01


def test_covered_call():
    # hold 1 coin (bought at 1 coin = 100 USD), sell 110 C @0.02
    legs = [hold(), call(110, -1, 0.02)]
    m = check(legs, prem_coin=0.98, max_profit_usd=12.0, max_loss_usd=-98.0, be_usd=[98.0],
              max_profit_coin=0.02, max_loss_coin=-0.98, be_coin=[110 / 0.98])
    assert m["option_premium_coin"] == pytest.approx(-0.02) and m["option_premium_usd"] == pytest.approx(-2.0)
    assert m.max_loss_coin.at_usd == INF and m.max_loss_usd.at_usd == 0.0


def test_protective_put():
    legs = [hold(), put(90, 1, 0.03)]
    check(legs, prem_coin=1.03, max_profit_usd=INF, max_loss_usd=-13.0, be_usd=[103.0],
          max_profit_coin=INF, max_loss_coin=-0.03, be_coin=[90 / 1.03])


def test_sizes_scale_linearly():
    one = P.strategy_metrics([call(110, -1, 0.02), put(90, -1, 0.03)], S0)
    two = P.strategy_metrics([call(110, -1, 0.02, size=2.5), put(90, -1, 0.03, size=2.5)], S0)
    assert two.max_profit_usd.value == pytest.approx(2.5 * one.max_profit_usd.value)
    assert two["breakevens_usd"] == pytest.approx(one["breakevens_usd"])


def test_coin_and_usd_breakevens_differ_unless_valued_at_expiry():
    """The brief's claim "the coin P/L has the same roots" holds for pnl_coin·S (a coin account valued at
    expiry) but not for the USD P/L of a trader who converts the premium at entry."""
    legs = [call(100, 1, 0.05), put(100, 1, 0.04)]
    s = np.linspace(50, 200, 1001)
    be_usd, be_coin = P.breakevens_usd(legs, S0), P.breakevens_coin(legs)
    assert be_usd != pytest.approx(be_coin)
    coin_account_usd = P.pnl_coin(legs, s) * s
    sign_changes = s[1:][np.sign(coin_account_usd[1:]) != np.sign(coin_account_usd[:-1])]
    assert sign_changes == pytest.approx(be_coin, abs=0.16)
    # zero premium: the two coincide
    free = [call(100, 1, 0.0), put(90, -1, 0.0)]
    assert P.breakevens_usd(free, S0) == pytest.approx(P.breakevens_coin(free))


def _b76_call_coin(f, k, t, vol):
    sd = vol * math.sqrt(t)
    d1 = (math.log(f / k) + 0.5 * sd * sd) / sd
    return (f * norm.cdf(d1) - k * norm.cdf(d1 - sd)) / f


def test_calendar_values_the_back_leg_with_black76():
    t_left = 30 / 365
    legs = [call(100, -1, 0.03), call(100, 1, 0.05, t_left_years=t_left, iv=0.5)]
    # at S = K the front call expires worthless, the back call is worth F(2N(σ√t/2) − 1)/F coin
    back_at_k = 2 * norm.cdf(0.5 * 0.5 * math.sqrt(t_left)) - 1
    assert back_at_k == pytest.approx(_b76_call_coin(100, 100, t_left, 0.5))
    assert P.pnl_coin(legs, np.array([100.0]))[0] == pytest.approx(back_at_k - 0.02, abs=1e-12)
    assert P.pnl_usd(legs, np.array([130.0]), S0)[0] == pytest.approx(
        130 * _b76_call_coin(130, 100, t_left, 0.5) - 30 - 2.0, abs=1e-9)
    m = P.strategy_metrics(legs, S0)
    # USD: f(S) = C_back(S) − (S − K)^+ − 2 rises below K (dC/dS > 0) and falls above (N(d1) − 1 < 0)
    assert m.max_profit_usd.value == pytest.approx(100 * back_at_k - 2.0, abs=1e-6)
    assert m.max_profit_usd.at_usd == pytest.approx(100.0, rel=1e-4)
    # worst case: both tails lose the debit (2 USD), approached as S→0 and S→∞
    assert m.max_loss_usd.value == pytest.approx(-2.0, abs=1e-3) and not m.max_loss_usd.unbounded
    assert len(m["breakevens_usd"]) == 2
    assert np.allclose(P.pnl_usd(legs, np.array(m["breakevens_usd"]), S0), 0, atol=1e-7)
    assert np.allclose(P.pnl_coin(legs, np.array(m["breakevens_coin"])), 0, atol=1e-9)
    lo, hi = m["breakevens_usd"]
    assert lo < 100 < hi


def test_net_greeks_sum_side_times_size():
    legs = [call(110, -1, 0.02, size=2.0), put(90, 1, 0.03), hold(0.5)]
    greeks = [{"delta": 0.3, "gamma": 1e-4, "vega": 20.0, "theta": -5.0},
              {"delta": -0.2, "gamma": 2e-4, "vega": 15.0, "theta": -4.0}, None]
    g = P.net_greeks(legs, greeks)
    assert g.delta == pytest.approx(-2 * 0.3 - 0.2 + 0.5)
    assert g.gamma_fwd_usd == pytest.approx(-2e-4 + 2e-4)
    assert g.vega_fwd_usd == pytest.approx(-40 + 15)
    assert g.theta_fwd_usd == pytest.approx(10 - 4)
    assert g.delta_coin is None  # not supplied on the option legs


def test_rn_cdf_flat_smile_is_lognormal_and_skewed_matches_finite_differences():
    f, t = 100.0, 0.1
    k = np.array([70.0, 90.0, 100.0, 120.0])
    flat = P.rn_cdf(k, f, t, lambda kk: np.full_like(kk, 0.6), lambda kk: np.zeros_like(kk))
    sd = 0.6 * math.sqrt(t)
    d2 = (np.log(f / k) - 0.5 * sd * sd) / sd
    assert flat == pytest.approx(norm.cdf(-d2), abs=1e-9)

    def smile(kk):
        return 0.5 + 0.4 * np.log(kk / f) ** 2 - 0.1 * np.log(kk / f)

    def smile_slope(kk):  # dσ/d ln K, analytically
        return 0.8 * np.log(kk / f) - 0.1

    def undiscounted_call(kk):
        return np.array([_b76_call_coin(f, x, t, smile(np.array([x]))[0]) * f for x in np.atleast_1d(kk)])

    h = 1e-3
    fd_cdf = 1 + (undiscounted_call(k + h) - undiscounted_call(k - h)) / (2 * h)
    assert P.rn_cdf(k, f, t, smile, smile_slope) == pytest.approx(fd_cdf, abs=1e-6)


def test_probability_of_profit_short_strangle_flat_vol():
    legs = [call(110, -1, 0.02), put(90, -1, 0.03)]
    f, t, vol = 100.0, 30 / 365, 0.5
    flat, zero = (lambda kk: np.full_like(kk, vol)), (lambda kk: np.zeros_like(kk))
    result = P.probability_of_profit(legs, S0, f, t, flat, dvol_dk_fn=zero)
    assert result.reason == "ok"
    pop = result.value
    sd = vol * math.sqrt(t)

    def cdf(x):
        return norm.cdf((math.log(x / f) + 0.5 * sd * sd) / sd)

    assert pop == pytest.approx(cdf(115.0) - cdf(85.0), abs=1e-9)
    long_pop = P.probability_of_profit([call(110, 1, 0.02), put(90, 1, 0.03)], S0, f, t, flat,
                                       dvol_dk_fn=zero).value
    assert long_pop == pytest.approx(1 - pop, abs=1e-9)


def test_payoff_grid_shapes_and_values():
    legs = [call(110, -1, 0.02), put(90, -1, 0.03)]
    g = P.payoff_grid(legs, S0, 100.0, 0.5, 1.5, 11)
    assert g["s_usd"][0] == 50.0 and g["s_usd"][-1] == 150.0 and len(g["pnl_usd"]) == 11
    assert g["pnl_usd"][5] == pytest.approx(5.0) and g["pnl_coin"][5] == pytest.approx(0.05)
    assert g["pnl_usd"][0] == pytest.approx(5 - 40) and g["pnl_coin"][0] == pytest.approx(0.05 - (90 / 50 - 1))


def test_leg_validation():
    with pytest.raises(ValueError):
        Leg("x", "call", 100, None, 2, 1, 0.1)
    with pytest.raises(ValueError):
        Leg("x", "straddle", 100, None, 1, 1, 0.1)
    with pytest.raises(ValueError):
        Leg("x", "call", 100, None, 1, 1, 0.1, t_left_years=0.1)


def test_pop_is_never_nan_without_a_reason():
    """Slip: POP used to be NaN with no reason when the smile had no vol or the expiry had come."""
    legs = [call(110, -1, 0.02), put(90, -1, 0.03)]
    zero = lambda kk: np.zeros_like(kk)  # noqa: E731
    no_vol = P.probability_of_profit(legs, S0, 100.0, 30 / 365, lambda kk: np.full_like(kk, np.nan), dvol_dk_fn=zero)
    assert math.isnan(no_vol.value) and no_vol.reason == "no_distribution"
    expired = P.probability_of_profit(legs, S0, 100.0, 0.0, lambda kk: np.full_like(kk, 0.5), dvol_dk_fn=zero)
    assert math.isnan(expired.value) and expired.reason == "expired"
    with pytest.raises(ValueError, match="slope"):   # a smile without its slope is refused, not flattened
        P.probability_of_profit(legs, S0, 100.0, 30 / 365, lambda kk: np.full_like(kk, 0.5))


def test_rn_cdf_on_a_linear_mark_smile_matches_finite_differences_of_the_call_price():
    """The marks' smile (vols linear in ln K/F) with its analytic slope gives −∂C/∂K between strikes."""
    from qortcli.quant.smile import MarkSmile

    f, t = 100.0, 0.1
    sm = MarkSmile([80.0, 90.0, 100.0, 110.0, 125.0], [0.70, 0.62, 0.55, 0.52, 0.53], f)
    k = np.array([85.0, 95.0, 104.0, 118.0])          # between quoted strikes: the smile is smooth there
    h = 1e-4

    def undiscounted_call(kk):
        return np.array([_b76_call_coin(f, x, t, float(sm.vol(x))) * f for x in kk])

    fd_cdf = 1 + (undiscounted_call(k + h) - undiscounted_call(k - h)) / (2 * h)
    assert P.rn_cdf(k, f, t, sm.vol, sm.dvol_dk) == pytest.approx(fd_cdf, abs=1e-6)
    # outside the quoted strikes the smile is flat: the lognormal CDF at the edge vol
    sd = 0.53 * math.sqrt(t)
    assert P.rn_cdf(np.array([150.0]), f, t, sm.vol, sm.dvol_dk)[0] == pytest.approx(
        norm.cdf((math.log(150 / f) + 0.5 * sd * sd) / sd), abs=1e-12)


def test_net_vega_beside_spot_usd_premiums_is_spot_usd():
    """Slip: the net vega printed beside spot-USD premiums was Deribit's forward-USD vega. The spot-USD vega is
    Σ side·size·vega_coin·index, which differs from Σ side·size·vega (forward-USD) by the factor index/forward."""
    from qortcli.quant import black76

    index, forwards = 90_000.0, np.array([90_400.0, 92_100.0])     # two expiries of a calendar
    strikes, t, vol = np.array([90_000.0, 90_000.0]), np.array([7 / 365, 35 / 365]), np.array([0.45, 0.48])
    g = black76.greeks(forwards, strikes, t, vol, True, days_per_year=365.0)
    per_leg = [{"delta": g.delta[i], "gamma": g.gamma[i], "vega": g.vega[i], "theta": g.theta[i]} for i in range(2)]
    legs = [call(90_000, -1, 0.02), call(90_000, 1, 0.04)]
    net = P.net_greeks(legs, per_leg, index_usd=index, forwards_usd=forwards)
    q = np.array([-1.0, 1.0])
    assert net.vega_fwd_usd == pytest.approx(q @ g.vega)
    assert net.vega_coin == pytest.approx(q @ (g.vega / forwards))
    assert net.vega_spot_usd == pytest.approx(q @ (g.vega_coin * index), rel=1e-12)
    assert net.theta_spot_usd == pytest.approx(q @ (g.theta_coin * index), rel=1e-12)
    assert abs(net.vega_spot_usd - net.vega_fwd_usd) > 1e-3 * abs(net.vega_fwd_usd)
