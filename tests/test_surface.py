"""SVI surfaces on real Deribit chains (the 2026-03-13 book summary and the 28 January 2026 snapshots):
fit quality and arbitrage, plus the helpers (implied_vol_at, prob_above, 25Δ, 30-day, calendar) checked
against hand computations, finite differences and Deribit's own published greeks."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from qortcli.quant import black76, smile
from qortcli.quant import surface as sf
from qortcli.quant import svi
from qortcli.timeutils import parse_instrument

FIXTURES = Path(__file__).parent / "fixtures"
BOOK = FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json"
SNAPSHOTS = sorted(FIXTURES.glob("deribit_options_snapshot_202601*.csv"))
YEAR_S = 365.0 * 86400.0


def book_chain() -> pd.DataFrame:
    """The book summary as a chain frame (mark_iv percent → fraction, ACT/365 from creation time)."""
    rows = pd.DataFrame(json.loads(BOOK.read_text())["result"])
    taken = pd.to_datetime(rows["creation_timestamp"].max(), unit="ms", utc=True)
    parsed = [parse_instrument(n) for n in rows["instrument_name"]]
    expiry = pd.to_datetime([p.expiry for p in parsed], utc=True)
    return pd.DataFrame({"expiry": expiry, "t_years": (expiry - taken).total_seconds() / YEAR_S,
                         "strike": [p.strike for p in parsed], "option_type": [p.option_type for p in parsed],
                         "forward": rows["underlying_price"].astype(float), "iv": rows["mark_iv"].astype(float) / 100,
                         "mark_price": rows["mark_price"].astype(float)})


def csv_chains(path: Path) -> dict[str, pd.DataFrame]:
    """One chain frame per currency of a January snapshot CSV (ACT/365 from the snapshot time)."""
    raw = pd.read_csv(path)
    taken = pd.to_datetime(raw["timestamp"], utc=True).max()
    expiry = pd.to_datetime(raw["expiry_datetime"], utc=True)
    frame = pd.DataFrame({"expiry": expiry, "t_years": (expiry - taken).dt.total_seconds() / YEAR_S,
                          "strike": raw["strike"], "option_type": raw["option_type"], "forward": raw["underlying"],
                          "iv": raw["implied_volatility"], "mark_price": raw["mark_price"], "vega": raw["vega"],
                          "delta": raw["delta"], "currency": raw["currency"]})
    return {cur: grp.reset_index(drop=True) for cur, grp in frame.groupby("currency")}


@lru_cache(maxsize=1)
def book_surface() -> dict:
    return sf.fit_surface(book_chain(), days_per_year=365.0)


def otm_quotes_above(chain: pd.DataFrame, min_mark_coin: float) -> pd.Series:
    """Per expiry: OTM quotes (median forward) with a positive vol and a mark of at least `min_mark_coin`."""
    fwd = chain.groupby("expiry")["forward"].transform("median")
    call = chain["option_type"].str.startswith("c")
    otm = np.where(call, chain["strike"] >= fwd, chain["strike"] < fwd)
    ok = otm & (chain["iv"] > 0) & (chain["mark_price"] >= min_mark_coin) & (chain["t_years"] > 0)
    return ok.groupby(chain["expiry"]).sum()


def check_chain(chain: pd.DataFrame, label: str) -> list[float]:
    """Fit a chain, assert its acceptance properties, return the per-expiry RMSEs."""
    result = sf.fit_surface(chain, days_per_year=365.0)
    by_expiry = {s["expiry"]: s for s in result["slices"]}
    # every expiry with ≥ 5 OTM quotes worth more than a tick (by Deribit's own coin mark) is fitted
    counts = otm_quotes_above(chain, 1.2e-4)
    for expiry, n in counts.items():
        if n >= 5:
            assert by_expiry[expiry]["params"] is not None, f"{label} {expiry}: {n} OTM quotes but no fit"
    rmses = []
    dense = np.linspace(-3.0, 3.0, 3001)
    for s in result["slices"]:
        if s["params"] is None:
            assert s["n_points"] < 5 and "insufficient_quotes" in s["flags"] and s["points"]
            continue
        assert s["butterfly"]["ok"], f"{label} {s['expiry']}: butterfly arbitrage {s['butterfly']}"
        assert (svi.svi_g(dense, s["params"]) >= -svi.G_TOL).all(), f"{label} {s['expiry']}: g < 0 on [-3, 3]"
        p = s["params"]
        assert p["b"] >= 0 and abs(p["rho"]) < 1 and p["sigma"] > 0
        assert svi.min_total_variance(p["a"], p["b"], p["rho"], p["sigma"]) >= 0
        # RMSE recomputed here from the stored points (weight > 0 = fitted)
        pts = np.array(s["points"])
        used = pts[pts[:, 3] > 0]
        model = np.sqrt(svi.svi_total_variance(used[:, 0], *p.values()) / s["t_years"])
        rmse = float(np.sqrt(np.mean((model - used[:, 1]) ** 2)) * 100)
        assert rmse == pytest.approx(s["rmse_vol_points"], rel=1e-9)
        rmses.append(rmse)
    assert result["diagnostics"]["butterfly"]["ok"]
    return rmses


def test_book_summary_fits_within_acceptance():
    rmses = check_chain(book_chain(), "book 2026-03-13")
    assert len(rmses) == 12                       # all 12 expiries have enough quotes
    assert np.median(rmses) <= 1.0 and max(rmses) <= 3.0


@pytest.mark.slow
def test_every_january_snapshot_fits_within_acceptance():
    assert len(SNAPSHOTS) == 28
    rmses: list[float] = []
    worst = {}
    for path in SNAPSHOTS:
        for cur, chain in csv_chains(path).items():
            r = check_chain(chain, f"{path.name} {cur}")
            worst[(path.name, cur)] = max(r)
            rmses += r
    assert len(worst) == 56
    assert np.median(rmses) <= 1.0, np.median(rmses)
    assert max(rmses) <= 3.0, max(worst.items(), key=lambda kv: kv[1])


def test_vega_weights_use_deribits_vega_definition():
    chain = csv_chains(SNAPSHOTS[0])["BTC"]
    chain = chain[chain["t_years"] > 0.01]
    vega = black76.vega_per_unit_vol(chain["forward"], chain["strike"], chain["t_years"], chain["iv"]) / 100
    # Deribit publishes vega = F φ(d1) √T / 100 (USD per vol point); ticker greeks lag the marks a little
    np.testing.assert_allclose(vega, chain["vega"], rtol=0.03, atol=0.05)


def test_delta_25_strikes_solve_black76_forward_delta():
    res = book_surface()
    fitted = [s for s in res["slices"] if s["params"]]
    for s in fitted:
        t, p = s["t_years"], s["params"]
        for key, target in (("k_call25_svi", 0.25), ("k_put25_svi", -0.25)):
            k = s[key]
            w = svi.svi_total_variance(k, *p.values())
            d1 = -k / np.sqrt(w) + np.sqrt(w) / 2
            delta = norm.cdf(d1) if target > 0 else norm.cdf(d1) - 1
            assert delta == pytest.approx(target, abs=1e-9)
        vol = lambda k: np.sqrt(svi.svi_total_variance(k, *p.values()) / t)   # noqa: E731
        assert s["atm_iv_svi"] == pytest.approx(vol(0.0), rel=1e-12)
        assert s["rr25_svi"] == pytest.approx(vol(s["k_call25_svi"]) - vol(s["k_put25_svi"]), abs=1e-12)
        assert s["bf25_svi"] == pytest.approx((vol(s["k_call25_svi"]) + vol(s["k_put25_svi"])) / 2 - vol(0.0), abs=1e-12)
    # independently: the 25Δ strikes of the market's own smile (linear in k between marks) solved with
    # brentq on the Black-76 delta give a risk reversal within a vol point of the fitted one
    for s in (x for x in fitted if x["t_years"] > 0.05):
        pts = np.array(s["points"])
        pts = pts[pts[:, 3] > 0]
        sqrt_t = np.sqrt(s["t_years"])

        def market(k, pts=pts):
            return np.interp(k, pts[:, 0], pts[:, 1])

        def call_delta(k, market=market, sqrt_t=sqrt_t):
            sd = market(k) * sqrt_t
            return norm.cdf(-k / sd + sd / 2)

        kc = brentq(lambda k: call_delta(k) - 0.25, 0.0, pts[-1, 0])
        kp = brentq(lambda k: call_delta(k) - 0.75, pts[0, 0], 0.0)
        assert s["rr25_svi"] == pytest.approx(market(kc) - market(kp), abs=0.01), s["expiry"]
        assert s["k_call25_svi"] == pytest.approx(kc, abs=0.02) and s["k_put25_svi"] == pytest.approx(kp, abs=0.02)


def test_implied_vol_at_reproduces_slices_and_interpolates_total_variance_linearly():
    res = book_surface()
    fitted = [s for s in res["slices"] if s["params"]]
    s1, s2 = fitted[6], fitted[7]
    strikes = np.array([50_000.0, 70_000.0, 90_000.0])
    for s in (s1, s2):
        k = np.log(strikes / s["forward"])
        expect = np.sqrt(svi.svi_total_variance(k, *s["params"].values()) / s["t_years"])
        np.testing.assert_allclose(sf.implied_vol_at(res, strikes, s["forward"], s["t_years"]), expect, rtol=1e-12)
    # halfway in T at fixed k: the average of the two slices' total variances
    t_mid = (s1["t_years"] + s2["t_years"]) / 2
    fwd = 71_000.0
    k = np.log(strikes / fwd)
    w_mid = (svi.svi_total_variance(k, *s1["params"].values()) + svi.svi_total_variance(k, *s2["params"].values())) / 2
    np.testing.assert_allclose(sf.implied_vol_at(res["slices"], strikes, fwd, t_mid), np.sqrt(w_mid / t_mid), rtol=1e-12)
    # scalar in, scalar out; beyond the last expiry the vol at fixed k stays flat
    last = fitted[-1]
    v_last = sf.implied_vol_at(res, 80_000.0, last["forward"], last["t_years"])
    assert isinstance(v_last, float)
    assert sf.implied_vol_at(res, 80_000.0, last["forward"], 2 * last["t_years"]) == pytest.approx(v_last)


def test_prob_above_is_minus_the_strike_derivative_of_the_call_price():
    res = book_surface()
    fwd, t = 72_000.0, 0.15                                                      # between two expiries

    def call(strike):
        vol = sf.implied_vol_at(res, strike, fwd, t)
        sd = vol * np.sqrt(t)
        d1 = (np.log(fwd / strike) + sd * sd / 2) / sd
        return fwd * norm.cdf(d1) - strike * norm.cdf(d1 - sd)

    strikes = np.array([40_000.0, 60_000.0, 72_000.0, 90_000.0, 130_000.0])
    h = 1.0
    fd = -(call(strikes + h) - call(strikes - h)) / (2 * h)
    np.testing.assert_allclose(sf.prob_above(strikes, fwd, t, res), fd, atol=2e-6)
    p = sf.prob_above(np.linspace(20_000, 300_000, 200), fwd, t, res)
    assert (np.diff(p) <= 1e-12).all() and p[0] > 0.99 and p[-1] < 0.02
    # the skew matters: with a negative RR the digital is above the flat-vol N(d2) at the money
    vol = sf.implied_vol_at(res, fwd, fwd, t)
    assert sf.prob_above(fwd, fwd, t, res) > norm.cdf(-vol * np.sqrt(t) / 2)


def test_calendar_report_finds_a_constructed_violation():
    early = {"expiry": "E1", "t_years": 0.1, "params": {"a": 0.01, "b": 0.1, "rho": -0.3, "m": 0.0, "sigma": 0.1}}
    late = {"expiry": "E2", "t_years": 0.2, "params": {"a": 0.02, "b": 0.05, "rho": -0.3, "m": 0.0, "sigma": 0.1}}
    rep = sf.calendar_report([early, late])
    k = sf.CALENDAR_K
    drop = svi.svi_total_variance(k, *early["params"].values()) - svi.svi_total_variance(k, *late["params"].values())
    assert not rep["ok"] and rep["violations"][0]["expiry_after"] == "E2"
    for lo, hi in rep["violations"][0]["k_ranges"]:
        inside = (k >= lo) & (k <= hi)
        assert (drop[inside] > 0).all()
    assert (drop[(k < rep["violations"][0]["k_ranges"][0][0])] <= sf.CAL_TOL).all()
    assert rep["violations"][0]["max_drop"] == pytest.approx(drop.max())
    assert sf.calendar_report([early, {**late, "params": {**early["params"], "a": 0.02}}])["ok"]
    # without quotes nothing is "within quoted strikes"; with quotes on [−0.2, 0.3] the quoted part is clipped
    assert rep["violations"][0]["quoted_k_ranges"] == [] and rep["ok_in_quoted_range"]
    pts = [[x, 0.5, 0.0, 1.0] for x in np.linspace(-0.2, 0.3, 11)]
    rep2 = sf.calendar_report([{**early, "points": pts}, {**late, "points": pts}])
    quoted = rep2["violations"][0]["quoted_k_ranges"]
    assert quoted and not rep2["ok_in_quoted_range"]
    assert all(-0.2 - 1e-12 <= lo <= hi <= 0.3 + 1e-12 for lo, hi in quoted)
    inside = (k >= -0.2) & (k <= 0.3)
    assert (drop[inside] > 0).any() == bool(quoted)


def test_thirty_day_vols_by_hand():
    res = book_surface()
    fitted = [s for s in res["slices"] if s["params"]]
    t = np.array([s["t_years"] for s in fitted])
    w_atm = np.array([svi.svi_total_variance(0.0, *s["params"].values()) for s in fitted])
    t30 = 30 / 365
    assert t[0] < t30 < t[-1]
    by_hand = np.sqrt(np.interp(t30, t, w_atm) / t30)
    assert res["diagnostics"]["atm_iv_30d_svi"]["vol"] == pytest.approx(by_hand, rel=1e-12)
    assert not res["diagnostics"]["atm_iv_30d_svi"]["extrapolated"]
    assert 0.2 < res["diagnostics"]["vs_vol_30d_svi"]["vol"] < 1.0


def test_variance_swap_vol_of_a_flat_smile_is_the_flat_vol():
    for t in (1 / 365, 0.25, 2.0):
        flat = [{"expiry": "X", "t_years": t, "params": {"a": 0.5**2 * t, "b": 0.0, "rho": 0.0, "m": 0.0, "sigma": 0.1}}]
        assert smile.variance_swap_vols(flat)[0] == pytest.approx(0.5, rel=2e-5)
    # and a skewed smile has a variance-swap vol above its ATM vol (the wings add variance)
    res = book_surface()
    for row in res["diagnostics"]["term_structure"]:
        assert row["vs_vol_svi"] > row["atm_iv_svi"]


def test_sparse_expiry_is_flagged_and_bad_vols_counted():
    chain = book_chain()
    expiry = chain["expiry"].max()
    sparse = chain[(chain["expiry"] != expiry) | (chain["strike"].isin([60_000, 70_000, 80_000, 90_000]))].copy()
    sparse.loc[sparse.index[:7], "iv"] = [np.nan, 0.0, -0.1, np.nan, 0.0, np.nan, np.nan]
    sparse.loc[sparse.index[7], "forward"] = np.nan                     # a row without a forward
    res = sf.fit_surface(sparse, days_per_year=365.0)
    assert res["counts"]["skipped_bad_vol"] == 7 and res["counts"]["skipped_bad_row"] == 1
    last = res["slices"][-1]
    assert last["params"] is None and "insufficient_quotes" in last["flags"]
    assert 0 < len(last["points"]) < 5 and all(len(p) == 4 for p in last["points"])
    assert res["diagnostics"]["unfitted_expiries"] == [expiry]
    # the surface and its helpers ignore the unfitted slice
    assert sf.implied_vol_at(res, 70_000.0, 73_000.0, last["t_years"]) > 0


def test_surface_diagnostics_find_a_known_butterfly_arbitrage():
    """Axel Vogt's SVI slice (Gatheral & Jacquier 2014) has butterfly arbitrage; a surface made of it and
    an arbitrage-free slice must report it, with where it fails, and flag only that slice."""
    vogt = {"expiry": "VOGT", "t_years": 1.0,
            "params": {"a": -0.0410, "b": 0.1331, "rho": 0.3060, "m": 0.3586, "sigma": 0.4153}}
    fine = {"expiry": "FINE", "t_years": 0.5, "params": {"a": 0.02, "b": 0.1, "rho": -0.3, "m": 0.0, "sigma": 0.2}}
    built = sf.build_surface([fine, vogt], days_per_year=365.0)
    bfly = built["diagnostics"]["butterfly"]
    assert bfly["ok"] is False
    (failing,) = bfly["failing_expiries"]
    assert failing["expiry"] == "VOGT" and failing["g_min"] < 0 and failing["k_ranges"]
    for lo, hi in failing["k_ranges"]:
        ks = np.linspace(lo, hi, 50)
        assert (svi.svi_g(ks, vogt["params"]) < 0).all()
    by = {s["expiry"]: s for s in built["slices"]}
    assert "butterfly_arbitrage" in by["VOGT"]["flags"] and "butterfly_arbitrage" not in by["FINE"]["flags"]


def test_check_k_is_the_butterfly_grid_and_not_the_calendar_grid():
    """Slip: `fit_surface(check_k=...)` used to send the butterfly grid to the calendar check (and fit every
    slice on the default grid). The butterfly report of each slice must come from `check_k` (plus the
    vertex refinement of `svi.check_grid`), the calendar report from `calendar_k`."""
    chain = book_chain()
    coarse = np.linspace(-0.8, 0.8, 9)
    res = sf.fit_surface(chain, days_per_year=365.0, check_k=coarse)
    fitted = [s for s in res["slices"] if s["params"]]
    assert fitted
    for s in fitted:
        grid = svi.check_grid(coarse, s["params"])
        refined = s["butterfly"]["k_at_g_min"]
        # the minimum sits on the check grid or in its refinement between two grid neighbours
        assert grid[0] - 1e-12 <= refined <= grid[-1] + 1e-12, (s["expiry"], refined)
    # the calendar check used its own default grid: the same report as computed here on CALENDAR_K
    assert res["diagnostics"]["calendar"] == sf.calendar_report(fitted, sf.CALENDAR_K)
    default = sf.fit_surface(chain, days_per_year=365.0)
    assert [s["butterfly"]["k_at_g_min"] for s in fitted] != [
        s["butterfly"]["k_at_g_min"] for s in default["slices"] if s["params"]]
