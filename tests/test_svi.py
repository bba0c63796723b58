"""Raw SVI: derivatives, Durrleman's g against call-price convexity, the constrained inner solve against
a general-purpose solver, parameter recovery, and the arbitrage-free fit of a known arbitrageable smile."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import norm

from qortcli.quant import svi

# Axel Vogt's raw SVI slice (Gatheral & Jacquier 2014, "Arbitrage-free SVI volatility surfaces", §5.1):
# a well-known smile with butterfly arbitrage, T = 1.
VOGT = {"a": -0.0410, "b": 0.1331, "rho": 0.3060, "m": 0.3586, "sigma": 0.4153}


def black_call_normalised(k, w):
    """Undiscounted Black call price / F at log-moneyness k and total variance w."""
    sd = np.sqrt(w)
    d1 = -k / sd + sd / 2
    return norm.cdf(d1) - np.exp(k) * norm.cdf(d1 - sd)


def test_derivatives_match_central_differences():
    p = (0.02, 0.15, -0.4, 0.05, 0.2)
    k = np.linspace(-1.5, 1.5, 61)
    h = 1e-5
    w, w1, w2 = svi.svi_derivatives(k, *p)
    wp, wm = svi.svi_total_variance(k + h, *p), svi.svi_total_variance(k - h, *p)
    np.testing.assert_allclose(w1, (wp - wm) / (2 * h), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(w2, (wp - 2 * w + wm) / h**2, rtol=1e-4, atol=1e-5)
    assert np.isclose(w.min(), svi.min_total_variance(p[0], p[1], p[2], p[4]), rtol=1e-3)


def test_vogt_smile_has_butterfly_arbitrage_and_call_prices_confirm_it():
    report = svi.butterfly_report(VOGT)
    assert not report["ok"]
    assert report["g_min"] < 0
    assert report["failing_k_ranges"], "where it fails must be reported"
    # independent check: call prices must be non-convex in strike somewhere inside the reported ranges
    lo, hi = report["failing_k_ranges"][0]
    strikes = np.linspace(np.exp(lo), np.exp(hi), 400)                     # F = 1
    calls = black_call_normalised(np.log(strikes), svi.svi_total_variance(np.log(strikes), *VOGT.values()))
    second = np.diff(calls, 2)
    assert second.min() < 0, "Durrleman g < 0 must mean a negative butterfly (concave call prices)"
    # and convex where g is comfortably positive (around the money)
    ks = np.linspace(-0.3, 0.1, 400)
    assert (svi.svi_g(ks, VOGT) > 0.1).all()
    strikes = np.exp(ks)
    c = black_call_normalised(ks, svi.svi_total_variance(ks, *VOGT.values()))
    slope = np.diff(c) / np.diff(strikes)
    assert (np.diff(slope) > 0).all()


def test_g_sign_matches_the_density_from_call_convexity():
    p = {"a": 0.03, "b": 0.2, "rho": -0.5, "m": 0.1, "sigma": 0.3}
    k = np.linspace(-1.0, 1.0, 2001)
    strikes = np.exp(k)
    calls = black_call_normalised(k, svi.svi_total_variance(k, *p.values()))
    # second derivative in K by finite differences on the nonuniform strike grid
    dK = np.diff(strikes)
    slope = np.diff(calls) / dK
    density = np.diff(slope) / ((dK[1:] + dK[:-1]) / 2)
    g = svi.svi_g(k[1:-1], p)
    assert (g > 0).all() and (density > 0).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inner_solve_matches_a_general_constrained_solver(seed):
    rng = np.random.default_rng(seed)
    k = np.sort(rng.uniform(-0.6, 0.5, 25))
    w = svi.svi_total_variance(k, 0.01, 0.2, -0.3, 0.05, 0.15) * (1 + 0.05 * rng.standard_normal(k.size))
    W = rng.uniform(0.2, 1.0, k.size)
    m = np.array([-0.2, 0.0, 0.1, 0.3])
    s = np.array([0.05, 0.1, 0.3, 0.02])
    a, b, rho, sse = svi._inner_solve(k, w, W, m, s)
    for j in range(m.size):
        y = (k - m[j]) / s[j]
        z = np.sqrt(y * y + 1)

        def f(t):
            return float(np.sum(W * (t[0] + t[1] * y + t[2] * z - w) ** 2))

        cons = [{"type": "ineq", "fun": lambda t: t[2] - t[1]},           # c ≥ d
                {"type": "ineq", "fun": lambda t: t[2] + t[1]},           # c ≥ −d
                {"type": "ineq", "fun": lambda t, j=j: svi.LEE_SLOPE_MAX * s[j] - t[2] - t[1]},
                {"type": "ineq", "fun": lambda t, j=j: svi.LEE_SLOPE_MAX * s[j] - t[2] + t[1]}]
        ref = min((minimize(f, x0, constraints=cons, method="SLSQP", options={"ftol": 1e-15, "maxiter": 500})
                   for x0 in ([np.mean(w), 0.0, 0.0], [0.0, 0.0, s[j]], [0.0, 0.5 * s[j], s[j]])),
                  key=lambda r: r.fun)
        assert sse[j] <= ref.fun * (1 + 1e-6) + 1e-14
        assert sse[j] == pytest.approx(f([a[j], rho[j] * b[j] * s[j], b[j] * s[j]]), rel=1e-5, abs=1e-14)
        assert b[j] >= 0 and abs(rho[j]) < 1 and b[j] * (1 + abs(rho[j])) <= svi.LEE_SLOPE_MAX + 1e-9


@pytest.mark.parametrize("true", [
    (0.02, 0.15, -0.4, 0.05, 0.2),          # equity-like skew
    (0.004, 0.05, 0.3, 0.02, 0.06),        # short-dated, call skew (crypto rallies)
    (0.15, 0.35, -0.1, -0.1, 0.5),          # long-dated, wide
])
def test_recovers_known_parameters_from_synthetic_points(true):
    k = np.linspace(-0.8, 0.6, 31)
    w = svi.svi_total_variance(k, *true)
    fit = svi.fit_svi(k, w)
    got = np.array(list(fit.params.values()))
    np.testing.assert_allclose(got, true, rtol=2e-3, atol=2e-4)
    assert fit.butterfly["ok"]
    # with a sparse, noisy right wing the fit still lands close in vol terms
    rng = np.random.default_rng(7)
    keep = np.r_[0:20, 22, 27, 30]
    noisy = w[keep] * (1 + 0.002 * rng.standard_normal(keep.size))
    fit2 = svi.fit_svi(k[keep], noisy)
    t = 0.5
    vol_true = np.sqrt(svi.svi_total_variance(k, *true) / t)
    vol_fit = np.sqrt(svi.svi_total_variance(k, *fit2.params.values()) / t)
    assert np.abs(vol_fit - vol_true).max() < 0.005                        # within half a vol point


def test_fit_to_an_arbitrageable_smile_returns_an_arbitrage_free_slice():
    k = np.linspace(-1.0, 1.5, 40)
    w = svi.svi_total_variance(k, *VOGT.values())
    fit = svi.fit_svi(k, w)
    assert fit.butterfly["ok"] and fit.butterfly["g_min"] >= -svi.G_TOL
    assert (svi.svi_g(np.linspace(-3, 3, 3001), fit.params) >= -svi.G_TOL).all()
    # ...while staying close to the data (within ~2 vol points at T = 1)
    vol_err = np.sqrt(svi.svi_total_variance(k, *fit.params.values())) - np.sqrt(w)
    assert np.abs(vol_err).max() < 0.02
    p = fit.params
    assert p["b"] >= 0 and abs(p["rho"]) < 1 and p["sigma"] > 0
    assert svi.min_total_variance(p["a"], p["b"], p["rho"], p["sigma"]) >= 0


def test_fit_rejects_too_few_points():
    with pytest.raises(ValueError, match="at least 5"):
        svi.fit_svi([0.0, 0.1, 0.2, 0.3], [0.1, 0.1, 0.1, 0.1])
