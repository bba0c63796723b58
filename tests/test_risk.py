"""The pure risk core (`qortcli.quant.risk`) on a book of real instruments marked on the recorded
2026-01-11 21:18 UTC BTC chain, with the SVI surface fitted on that chain.

Reference oracles written here from the formulas, not from the code: Black-76 in plain Python
(`statistics.NormalDist`), raw SVI total variance from the stored parameters with linear-in-T
interpolation, the inverse-future coin value N(1/F_e − 1/F), and finite differences for the deltas.
"""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from chain_fixtures import FIXTURES, recorded_chain
from qortcli.quant import black76
from qortcli.quant import risk as qrisk
from qortcli.quant.surface import fit_surface
from qortcli.sources.positions import positions_from_get_positions
from qortcli.steps.book import positions_frame

N = NormalDist()
DAYS = 365.0


@pytest.fixture(scope="module")
def chain():
    return recorded_chain("BTC")


@pytest.fixture(scope="module")
def surface(chain):
    inputs = pd.DataFrame({"expiry": chain["expiry"], "t_years": chain["t_years"], "strike": chain["strike_usd"],
                           "option_type": chain["option_type"], "forward": chain["forward_usd"], "iv": chain["mark_iv"]})
    return fit_surface(inputs, days_per_year=365.0)


@pytest.fixture(scope="module")
def book():
    """The BTC positions of the recorded-shape get_positions fixture, plus 1.5 BTC held."""
    payload = json.loads((FIXTURES / "deribit_get_positions_20260111T211857Z.json").read_text())
    positions, flat = positions_from_get_positions(payload, "fixture")
    assert flat == ["fixture result[7] (BTC-23JAN26)"]
    frame = positions_frame([p for p in positions if p.currency == "BTC"])
    spot = pd.DataFrame([{"instrument": "BTC", "kind": "spot", "size_coin": 1.5, "size_usd": np.nan,
                          "entry_price_coin": np.nan, "entry_price_usd": np.nan, "expiry": pd.NaT}])
    return pd.concat([frame, spot], ignore_index=True)


@pytest.fixture(scope="module")
def result(book, chain, surface):
    return qrisk.value_book(book, chain, surface, qrisk.GridSpec.linear(), DAYS)


# ------------------------------------------------------------------------------------------ oracles

def b76_coin(F, K, T, sigma, call) -> float:
    """Black-76 undiscounted coin premium C(F)/F, plain Python."""
    s = sigma * math.sqrt(T)
    d1 = (math.log(F / K) + 0.5 * s * s) / s
    d2 = d1 - s
    usd = F * N.cdf(d1) - K * N.cdf(d2) if call else K * N.cdf(-d2) - F * N.cdf(-d1)
    return usd / F


def svi_vol(surface, k, T) -> float:
    """√(w(k, T)/T): raw SVI w = a + b(ρ(k−m) + √((k−m)² + σ²)) per fitted slice, linear in T between slices,
    w₁·T/T₁ before the first and w_N·T/T_N after the last."""
    slices = sorted((s for s in surface["slices"] if s["params"] is not None and s["t_years"] > 0),
                    key=lambda s: s["t_years"])

    def w(s):
        p = s["params"]
        return p["a"] + p["b"] * (p["rho"] * (k - p["m"]) + math.sqrt((k - p["m"]) ** 2 + p["sigma"] ** 2))

    ts = [s["t_years"] for s in slices]
    if T <= ts[0]:
        total = w(slices[0]) * T / ts[0]
    elif T >= ts[-1]:
        total = w(slices[-1]) * T / ts[-1]
    else:
        i = next(j for j in range(1, len(ts)) if ts[j] >= T)
        lam = (T - ts[i - 1]) / (ts[i] - ts[i - 1])
        total = (1 - lam) * w(slices[i - 1]) + lam * w(slices[i])
    return math.sqrt(total / T)


def legs(book, chain):
    """Each position with its chain terms (plain Python values)."""
    rows = chain.set_index("instrument")
    spot = float(np.median(chain["index_usd"]))
    out = []
    for p in book.to_dict("records"):
        if p["kind"] == "option":
            r = rows.loc[p["instrument"]]
            out.append({"kind": "option", "size": p["size_coin"], "entry": p["entry_price_coin"], "K": r["strike_usd"],
                        "F": r["forward_usd"], "T": r["t_years"], "sigma": r["mark_iv"], "call": bool(r["is_call"])})
        elif p["kind"] == "future":
            perpetual = pd.isna(p["expiry"])
            F = spot if perpetual else float(chain.loc[chain["forward_index"] == p["instrument"], "forward_usd"].median())
            T = math.inf if perpetual else (p["expiry"] - chain.attrs["timestamp"]).total_seconds() / (DAYS * 86400)
            out.append({"kind": "future", "N": p["size_usd"], "Fe": p["entry_price_usd"], "F": F, "T": T,
                        "perpetual": perpetual})
        else:
            out.append({"kind": "spot", "size": p["size_coin"]})
    return out, spot


def cell_pnl_coin(leg_list, spot, surface, x, v, h_days, min_vol=0.01) -> float:
    """The book's P/L since entry (coin) in one scenario, revalued leg by leg."""
    total = 0.0
    s_shock = spot * (1 + x)
    for leg in leg_list:
        if leg["kind"] == "option":
            F1, T1 = leg["F"] * (1 + x), leg["T"] - h_days / DAYS
            if T1 <= 0:
                value = (max(s_shock - leg["K"], 0.0) if leg["call"] else max(leg["K"] - s_shock, 0.0)) / s_shock
            else:
                smile = svi_vol(surface, math.log(leg["K"] / F1), T1) - svi_vol(surface, math.log(leg["K"] / leg["F"]), leg["T"])
                sigma = max(leg["sigma"] + smile + v, min_vol)
                value = b76_coin(F1, leg["K"], T1, sigma, leg["call"])
            total += leg["size"] * (value - leg["entry"])
        elif leg["kind"] == "future":
            F1 = s_shock if leg["perpetual"] or leg["T"] - h_days / DAYS <= 0 else leg["F"] * (1 + x)
            total += leg["N"] * (1 / leg["Fe"] - 1 / F1)
    return total


# ------------------------------------------------------------------------------------------ tests

def test_totals_are_the_sums_of_the_positions_and_expiries(result):
    positions = result.positions
    for name in qrisk.SUM_COLUMNS:
        assert getattr(result.totals, name) == pytest.approx(positions[name].sum(), rel=1e-13, abs=1e-15), name
        assert result.by_expiry[name].sum() == pytest.approx(positions[name].sum(), rel=1e-12, abs=1e-14), name
    assert result.by_expiry["positions"].sum() == len(positions)
    assert list(result.by_expiry["expiry_code"]) == ["16JAN26", "30JAN26", "27FEB26", "27MAR26", "PERPETUAL", "SPOT"]
    march = positions[positions["expiry_code"] == "27MAR26"]
    row = result.by_expiry.set_index("expiry_code").loc["27MAR26"]
    assert row["vega"] == pytest.approx(march["vega"].sum()) and row["positions"] == 2


def test_today_from_marks_each_position_by_an_independent_formula(book, chain, result):
    leg_list, spot = legs(book, chain)
    assert result.index_usd == spot
    for leg, row in zip(leg_list, result.positions.to_dict("records")):
        if leg["kind"] == "option":
            v = b76_coin(leg["F"], leg["K"], leg["T"], leg["sigma"], leg["call"])
            assert row["value_coin"] == pytest.approx(leg["size"] * v, rel=1e-10)
            assert row["pnl_coin"] == pytest.approx(leg["size"] * (v - leg["entry"]), rel=1e-9, abs=1e-12)
            s = leg["sigma"] * math.sqrt(leg["T"])
            d1 = (math.log(leg["F"] / leg["K"]) + 0.5 * s * s) / s
            assert row["delta"] == pytest.approx(leg["size"] * (N.cdf(d1) - (0 if leg["call"] else 1)), rel=1e-10)
            assert row["vol_source"] == "mark_iv" and row["model_coin"] == pytest.approx(v, rel=1e-10)
        elif leg["kind"] == "future":
            assert row["value_coin"] == pytest.approx(leg["N"] * (1 / leg["Fe"] - 1 / leg["F"]), rel=1e-12)
            assert row["delta_pa"] == pytest.approx(leg["N"] / leg["F"], rel=1e-12)      # Deribit's size_currency
            assert row["delta"] == pytest.approx(leg["N"] / leg["Fe"], rel=1e-12)
        else:
            assert (row["value_coin"], row["pnl_coin"], row["delta"], row["delta_pa"]) == (1.5, 0.0, 1.5, 0.0)
        # d(V·F)/dF = V + F dV/dF for every kind of position
        assert row["delta"] == pytest.approx(row["value_coin"] + row["delta_pa"], rel=1e-12, abs=1e-12)


def test_every_grid_cell_equals_a_leg_by_leg_revaluation(book, chain, surface, result):
    leg_list, spot = legs(book, chain)
    g = result.grid
    assert g.pnl_coin.shape == (3, 13, 21) and g.axes == ("horizon_days", "vol_shift", "spot_move")
    assert list(g.horizons_days) == [0, 1, 7] and g.spot_moves[0] == -0.5 and g.vol_shifts[-1] == pytest.approx(0.30)
    for h, days in enumerate(g.horizons_days):
        for j, v in enumerate(g.vol_shifts):
            for m, x in enumerate(g.spot_moves):
                expected = cell_pnl_coin(leg_list, spot, surface, x, v, days)
                assert g.pnl_coin[h, j, m] == pytest.approx(expected, rel=1e-9, abs=1e-9), (days, v, x)
    # the short 16JAN26 call expires inside the 7-day horizon: settled on its coin payoff there
    assert leg_list[2]["T"] * DAYS < 7 < leg_list[2]["T"] * DAYS + 7


def test_the_zero_shock_cell_is_todays_pnl(result):
    g = result.grid
    j, m = int(np.flatnonzero(g.vol_shifts == 0)[0]), int(np.flatnonzero(g.spot_moves == 0)[0])
    assert g.pnl_coin[0, j, m] == pytest.approx(result.totals.pnl_coin, rel=1e-12, abs=1e-15)
    assert g.pnl_usd[0, j, m] == pytest.approx(result.totals.pnl_usd, rel=1e-12, abs=1e-12)
    assert g.value_change_usd[0, j, m] == pytest.approx(0.0, abs=1e-8)


def test_coin_and_usd_agree_through_the_index(result):
    p, t, g = result.positions, result.totals, result.grid
    S = result.index_usd
    np.testing.assert_allclose(p["value_usd"], p["value_coin"] * S, rtol=1e-14)
    np.testing.assert_allclose(p["pnl_usd"], p["pnl_coin"] * S, rtol=1e-14)
    assert t.pnl_usd == pytest.approx(t.pnl_coin * S, rel=1e-12)
    np.testing.assert_allclose(g.spot_usd, S * (1 + g.spot_moves), rtol=1e-15)
    np.testing.assert_allclose(g.pnl_usd, g.pnl_coin * g.spot_usd[None, None, :], rtol=1e-14)
    worst = g.worst["pnl_coin"]
    assert worst.value == g.pnl_coin.min() and g.pnl_coin[worst.index] == worst.value
    assert worst.spot_usd == g.spot_usd[worst.index[2]] and worst.horizon_days == g.horizons_days[worst.index[0]]


def test_account_delta_with_and_without_collateral(result):
    a, p = result.account, result.positions
    assert a.collateral_coin == 1.5
    assert a.usd_value_delta_coin_with_collateral - a.usd_value_delta_coin == pytest.approx(1.5)
    assert a.usd_value_delta_coin == pytest.approx(p.loc[p["kind"] != "spot", "delta"].sum())
    assert a.usd_value_delta_usd_with_collateral == pytest.approx(a.usd_value_delta_coin_with_collateral * a.index_usd)
    assert a.coin_value_delta_coin == pytest.approx(p["delta_pa"].sum())
    # ∂U/∂S = W + S ∂W/∂S: the USD-value delta is the coin value plus the coin-value delta, collateral included
    assert a.usd_value_delta_coin_with_collateral == pytest.approx(result.totals.value_coin + a.coin_value_delta_coin)


def _flat_smile(vol: float, t_years: list[float]) -> dict:
    """A surface with the same flat smile (b = 0: w = a = vol² T) at every slice."""
    return {"slices": [{"t_years": t, "params": {"a": vol * vol * t, "b": 0.0, "rho": 0.0, "m": 0.0, "sigma": 0.1}}
                       for t in t_years]}


def test_deltas_match_finite_differences_of_the_full_revaluation(book, chain):
    """On a flat smile (sticky moneyness = constant vol at h = 0) a ±0.01 % spot bump of the grid must give
    the USD-value delta (with collateral) and the coin-value delta."""
    frame = chain.copy()
    frame["mark_iv"] = 0.45
    surface = _flat_smile(0.45, sorted(frame["t_years"].unique()))
    eps = 1e-4
    grid = qrisk.GridSpec(np.array([-eps, 0.0, eps]), np.array([0.0]), np.array([0.0]))
    r = qrisk.value_book(book, frame, surface, grid, DAYS)
    S = r.index_usd
    change = r.grid.value_change_usd[0, 0]
    usd_delta = (change[2] - change[0]) / (2 * eps * S)
    assert usd_delta == pytest.approx(r.account.usd_value_delta_coin_with_collateral, rel=1e-6)
    pnl = r.grid.pnl_coin[0, 0]
    assert (pnl[2] - pnl[0]) / (2 * eps) == pytest.approx(r.account.coin_value_delta_coin, rel=1e-6)
    assert r.account.coin_value_delta_per_usd == pytest.approx(r.positions["delta_coin"].sum(), rel=1e-12)


def test_one_long_call_matches_black76_exactly(chain, surface):
    row = chain.loc[chain["instrument"] == "BTC-27MAR26-100000-C"].iloc[0]
    book = pd.DataFrame([{"instrument": row["instrument"], "kind": "option", "size_coin": 1.0, "size_usd": np.nan,
                          "entry_price_coin": 0.05, "entry_price_usd": np.nan, "expiry": row["expiry"]}])
    r = qrisk.value_book(book, chain, surface, days_per_year=DAYS)
    args = (row["forward_usd"], row["strike_usd"], row["t_years"], row["mark_iv"], True)
    ref = black76.greeks(*args, days_per_year=DAYS)
    out = r.positions.iloc[0]
    assert out["value_coin"] == black76.price_coin(*args) == r.totals.value_coin
    assert out["delta"] == ref["delta"] and out["delta_pa"] == ref["delta_pa"] and out["vega"] == ref["vega"]
    assert out["theta_coin"] == ref["theta_coin"] and out["pnl_coin"] == black76.price_coin(*args) - 0.05


def test_spot_futures_and_perpetual_without_options_need_no_surface(chain):
    book = pd.DataFrame([
        {"instrument": "BTC-PERPETUAL", "kind": "future", "size_coin": np.nan, "size_usd": 10_000.0,
         "entry_price_coin": np.nan, "entry_price_usd": 90_000.0, "expiry": pd.NaT},
        {"instrument": "BTC-26JUN26", "kind": "future", "size_coin": np.nan, "size_usd": -5_000.0,
         "entry_price_coin": np.nan, "entry_price_usd": 93_000.0, "expiry": pd.Timestamp("2026-06-26 08:00", tz="UTC")},
        {"instrument": "BTC-3APR26", "kind": "future", "size_coin": np.nan, "size_usd": 1_000.0,
         "entry_price_coin": np.nan, "entry_price_usd": 91_000.0, "expiry": pd.Timestamp("2026-04-03 08:00", tz="UTC")}])
    r = qrisk.value_book(book, chain, None, days_per_year=DAYS)
    p = r.positions.set_index("instrument")
    assert p.loc["BTC-PERPETUAL", "forward_usd"] == r.index_usd
    assert p.loc["BTC-26JUN26", "forward_source"] == "future"
    # 3 APR 2026 has no series: ln(F/S) interpolated in T between 27MAR26 and 26JUN26
    ts = chain.groupby("expiry").agg(t=("t_years", "first"), f=("forward_usd", "median"))
    t = (pd.Timestamp("2026-04-03 08:00", tz="UTC") - chain.attrs["timestamp"]).total_seconds() / (DAYS * 86400)
    lo, hi = ts[ts["t"] < t].iloc[-1], ts[ts["t"] > t].iloc[0]
    lam = (t - lo["t"]) / (hi["t"] - lo["t"])
    basis = (1 - lam) * math.log(lo["f"] / r.index_usd) + lam * math.log(hi["f"] / r.index_usd)
    assert p.loc["BTC-3APR26", "forward_usd"] == pytest.approx(r.index_usd * math.exp(basis), rel=1e-12)
    assert p.loc["BTC-3APR26", "forward_source"] == "interpolated"
    assert (r.positions["vega"] == 0).all() and np.ptp(r.grid.pnl_coin, axis=1).max() == 0   # no vol exposure


def test_expired_legs_unknown_options_and_a_missing_surface_are_clear_errors(chain, surface):
    base = {"size_coin": 1.0, "size_usd": np.nan, "entry_price_coin": 0.01, "entry_price_usd": np.nan}
    listed = pd.DataFrame([{**base, "instrument": "BTC-27MAR26-100000-C", "kind": "option",
                            "expiry": pd.Timestamp("2026-03-27 08:00", tz="UTC")}])
    with pytest.raises(ValueError, match="volatility surface is needed"):
        qrisk.value_book(listed, chain, None)
    unknown = listed.assign(instrument="BTC-27MAR26-101000-C")
    with pytest.raises(ValueError, match="BTC-27MAR26-101000-C is not in the BTC-20260111T211857Z chain"):
        qrisk.value_book(unknown, chain, surface)
    later = chain.copy()
    later.attrs = dict(chain.attrs)
    later["t_years"] = later["t_years"] - 3.0 / DAYS       # the same chain 3 days later: 12JAN26..14JAN26 expired
    expired = listed.assign(instrument="BTC-13JAN26-90000-C", expiry=pd.Timestamp("2026-01-13 08:00", tz="UTC"))
    with pytest.raises(ValueError, match="option BTC-13JAN26-90000-C has expired"):
        qrisk.value_book(expired, later, surface)
    future = pd.DataFrame([{"instrument": "BTC-9JAN26", "kind": "future", "size_coin": np.nan, "size_usd": 100.0,
                            "entry_price_coin": np.nan, "entry_price_usd": 90_000.0,
                            "expiry": pd.Timestamp("2026-01-09 08:00", tz="UTC")}])
    with pytest.raises(ValueError, match="future BTC-9JAN26 has expired"):
        qrisk.value_book(future, chain, None)


def test_grid_spec_from_settings_values_and_its_checks():
    spec = qrisk.GridSpec.linear(-0.2, 0.2, 5, -10, 10, 3, (0, 2), 0.05)
    assert list(spec.spot_moves) == [-0.2, -0.1, 0.0, 0.1, 0.2] and list(spec.vol_shifts) == [-0.1, 0.0, 0.1]
    assert spec.shape == (2, 3, 5) and spec.min_vol == 0.05
    assert list(qrisk.GridSpec.linear().spot_moves).count(0.0) == 1          # 0 is exactly on the default grid
    for bad in ({"spot_min": -1.5}, {"spot_steps": 0}, {"spot_steps": 2.5}, {"vol_min_points": 40},
                {"horizons_days": (-1,)}, {"min_vol": 0.0}):
        with pytest.raises(ValueError):
            qrisk.GridSpec.linear(**bad)


def test_vol_floor_and_a_vol_shift_move_the_grid_the_right_way(book, chain, surface):
    """More vol helps a long-vega book's P/L at fixed spot and horizon; a −30-point shift floors at min_vol."""
    long_vega = book[book["instrument"] == "BTC-27MAR26-100000-C"]
    r = qrisk.value_book(long_vega, chain, surface, days_per_year=DAYS)
    m = int(np.flatnonzero(r.grid.spot_moves == 0)[0])
    assert np.all(np.diff(r.grid.pnl_coin[0, :, m]) > 0)
    low = qrisk.value_book(long_vega, chain, surface, qrisk.GridSpec.linear(0, 0, 1, -60, -60, 1, (0,), 0.05), DAYS)
    row = chain.loc[chain["instrument"] == "BTC-27MAR26-100000-C"].iloc[0]
    floor = long_vega["size_coin"].iloc[0] * (b76_coin(row["forward_usd"], row["strike_usd"], row["t_years"], 0.05, True)
                                              - long_vega["entry_price_coin"].iloc[0])
    assert low.grid.pnl_coin[0, 0, 0] == pytest.approx(floor, rel=1e-9)
