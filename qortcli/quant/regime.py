"""Market-regime measures for the strategy rules: ATM IV, its percentile, realised vol, term slope, skew.

Pure numpy/scipy, no I/O. Vols are fractions, times in years, prices in USD.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
from scipy.stats import percentileofscore


def atm_iv(strikes_usd, ivs, forward_usd: float) -> float:
    """Mark IV at K = F, linear in log-moneyness ln(K/F) over the strikes of one expiry (flat outside).

    Calls and puts of one strike share Deribit's mark IV; duplicates are averaged. NaN if no quote.
    """
    k = np.asarray(strikes_usd, dtype=float)
    v = np.asarray(ivs, dtype=float)
    ok = np.isfinite(k) & np.isfinite(v) & (k > 0) & (v > 0)
    if not ok.any():
        return float("nan")
    uk, inv = np.unique(k[ok], return_inverse=True)
    uv = np.bincount(inv, weights=v[ok]) / np.bincount(inv)
    return float(np.interp(0.0, np.log(uk / forward_usd), uv))


def constant_maturity_atm(t_years, atm_vols, target_t_years: float) -> float:
    """ATM vol at `target_t_years`, interpolating total variance σ²T linearly in T between the
    bracketing expiries (flat vol outside the listed range)."""
    t = np.asarray(t_years, dtype=float)
    v = np.asarray(atm_vols, dtype=float)
    ok = np.isfinite(t) & np.isfinite(v) & (t > 0)
    t, v = t[ok], v[ok]
    if t.size == 0:
        return float("nan")
    order = np.argsort(t)
    t, v = t[order], v[order]
    if target_t_years <= t[0]:
        return float(v[0])
    if target_t_years >= t[-1]:
        return float(v[-1])
    w = np.interp(target_t_years, t, v ** 2 * t)
    return float(np.sqrt(w / target_t_years))


def iv_at_delta(deltas, ivs, target_delta: float) -> float:
    """Mark IV at a forward delta (calls 0..1, puts −1..0), linear in delta between the quotes."""
    d = np.asarray(deltas, dtype=float)
    v = np.asarray(ivs, dtype=float)
    ok = np.isfinite(d) & np.isfinite(v) & (v > 0)
    if ok.sum() < 2:
        return float("nan")
    d, v = d[ok], v[ok]
    order = np.argsort(d)
    d, v = d[order], v[order]
    if not (d[0] <= target_delta <= d[-1]):
        return float("nan")
    return float(np.interp(target_delta, d, v))


def risk_reversal_butterfly(call_deltas, call_ivs, put_deltas, put_ivs, atm_vol: float, wing: float = 0.25) -> dict:
    """25-delta risk reversal RR = σ(25Δ call) − σ(25Δ put) and butterfly BF = (σc + σp)/2 − σ_ATM."""
    sc = iv_at_delta(call_deltas, call_ivs, wing)
    sp = iv_at_delta(put_deltas, put_ivs, -wing)
    return {"call_iv": sc, "put_iv": sp, "rr": sc - sp, "bf": 0.5 * (sc + sp) - atm_vol}


def percentile_rank(value: float, history) -> float:
    """Fraction (0..1) of `history` at or below `value` (mean of strict and weak ranks); NaN if empty."""
    h = np.asarray([x for x in history if x is not None and np.isfinite(x)], dtype=float)
    if h.size == 0 or not np.isfinite(value):
        return float("nan")
    return float(percentileofscore(h, value, kind="mean") / 100.0)


def realised_vol(dates, closes_usd, as_of: datetime, window_days: int = 30,
                 annualisation_days: float = 365.0) -> dict:
    """Close-to-close realised vol over the last `window_days` daily log returns dated ≤ `as_of`.

    σ = sample std (ddof 1) of ln(C_t/C_{t−1}) × √annualisation_days. Returns the dates the window
    covers (first close used, last close), the number of returns and how many days before `as_of` the
    window ends (`age_days`); rv is NaN with fewer than 2 returns.
    """
    ts = np.array([np.datetime64(d.astimezone(timezone.utc).replace(tzinfo=None), "s") for d in dates])
    c = np.asarray(closes_usd, dtype=float)
    cutoff = np.datetime64(as_of.astimezone(timezone.utc).replace(tzinfo=None), "s")
    keep = (ts <= cutoff) & np.isfinite(c) & (c > 0)
    ts, c = ts[keep], c[keep]
    order = np.argsort(ts)
    ts, c = ts[order][-(window_days + 1):], c[order][-(window_days + 1):]
    out = {"rv": float("nan"), "n_returns": max(len(c) - 1, 0), "window_days": window_days,
           "annualisation_days": annualisation_days, "start": None, "end": None, "age_days": None}
    if len(c) < 3:
        return out
    r = np.diff(np.log(c))
    start = ts[0].astype("datetime64[s]").astype(datetime).replace(tzinfo=timezone.utc)
    end = ts[-1].astype("datetime64[s]").astype(datetime).replace(tzinfo=timezone.utc)
    out.update(rv=float(np.std(r, ddof=1) * np.sqrt(annualisation_days)), start=start, end=end,
               age_days=(as_of - end).total_seconds() / 86400.0)
    return out
