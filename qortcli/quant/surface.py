"""Implied-volatility surfaces from SVI slices: fit a chain, interpolate, diagnose, and query.

Conventions (all pure numpy/scipy/pandas, no I/O):
- k = ln(K/F) with F the expiry's forward (the median of the rows' `forward` for that expiry);
  total implied variance w = σ² · T; vols are fractions; T (`t_years`) in years (ACT/365 upstream).
- Quotes used: out-of-the-money marks only — calls with K ≥ F, puts with K < F — with a finite,
  positive implied vol. Rows with NaN/zero/negative vols are skipped and counted.
- Weighting (documented choice): **vega**. Each quote's squared *vol* error is weighted by its Black-76
  vega F φ(d1) √T (per unit vol, at the quote's own vol), normalised to the expiry's largest vega and
  floored at `VEGA_FLOOR` so that sparse far wings still pull on the fit. Vega weights price-space
  accuracy where the options are most sensitive (near the money); open interest was rejected because
  it is zero on many listed strikes and lumpy on the others. The total-variance residual is converted
  to vol space with the weight 1/(2σT)² (Δσ ≈ Δw / (2σT)), so the fit minimises weighted vol error.
- Usable quotes: an OTM quote whose Black-76 value at its own vol is below `MIN_OTM_PRICE` × F
  (≈ 0.0001 coin, Deribit's minimum tick) carries no vol information — e.g. a 4-hour 35%-OTM put
  marked at 1e-43 coin — and is stored with weight 0 but not fitted.
- Expiries with fewer than `MIN_POINTS` usable OTM quotes keep their raw points, get the flag
  "insufficient_quotes" and no fit.
- Surface across expiries: total variance linear in T at fixed k between fitted slices (this keeps
  calendar monotonicity wherever the slices have it); before the first slice w(k, T) = w₁(k)·T/T₁ and
  after the last w(k, T) = w_N(k)·T/T_N (constant implied vol at fixed k).
- 25-delta strikes use the Black-76 forward delta without premium adjustment (Deribit's published
  delta): call N(d1) = 0.25, put N(d1) − 1 = −0.25, d1 = −k/√w + √w/2 with w from the fitted smile.
  RR25 = σ(25Δ call) − σ(25Δ put); BF25 = (σ(25Δ call) + σ(25Δ put))/2 − σ_ATM, ATM = the forward (k = 0).
- 30-day constant maturity: the ATM-forward total variance interpolated linearly in T at T = 30/365
  (`atm_vol_30d`), and, closer to Deribit's DVOL (a VIX-style 30-day variance-swap rate), the
  model-free variance 2∫ OTM(k) e^{−k} dk / F of each fitted smile interpolated the same way
  (`vs_vol_30d`).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.integrate import trapezoid
from scipy.special import ndtr, ndtri

from qortcli.quant.svi import (DENSE_K, PARAM_NAMES, butterfly_report, fit_svi, svi_derivatives,
                               svi_total_variance)

MIN_POINTS = 5
VEGA_FLOOR = 0.10
MIN_OTM_PRICE = 1e-4                 # OTM value / F below this (≈ one 0.0001-coin Deribit tick): not fitted
POOR_FIT_VOL_POINTS = 3.0
CAL_TOL = 1e-10                      # w_{i+1}(k) < w_i(k) − CAL_TOL counts as calendar arbitrage
GRID_K = np.linspace(-1.0, 1.0, 41)
GRID_N_T = 25
CHECK_K = DENSE_K                   # dense k grid of the butterfly check ([−2, 2] widened to the data)
CALENDAR_K = np.linspace(-1.0, 1.0, 401)   # calendar check on the surface's k range
DAYS_PER_YEAR = 365.0


def _phi(x):
    return np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


def black76_vega(forward, strike, t_years, vol):
    """Black-76 vega, undiscounted, per unit of vol (USD per 1.00 vol if F, K in USD): F φ(d1) √T."""
    forward, strike, t_years, vol = (np.asarray(x, dtype=float) for x in (forward, strike, t_years, vol))
    sd = vol * np.sqrt(t_years)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (np.log(forward / strike) + 0.5 * sd * sd) / sd
    return forward * _phi(d1) * np.sqrt(t_years)


def black76_otm_normalised(k, w):
    """Undiscounted OTM option price divided by F at log-moneyness k, total variance w (put for k < 0)."""
    k, w = np.asarray(k, dtype=float), np.asarray(w, dtype=float)
    sd = np.sqrt(np.maximum(w, 1e-300))
    d1 = -k / sd + 0.5 * sd
    d2 = d1 - sd
    call = ndtr(d1) - np.exp(k) * ndtr(d2)
    put = np.exp(k) * ndtr(-d2) - ndtr(-d1)
    return np.where(k < 0, put, call)


# --------------------------------------------------------------------------------------------------
# Chain → slices

REQUIRED = ("expiry", "t_years", "strike", "option_type", "forward", "iv")


def fit_chain(chain: pd.DataFrame, *, min_points: int = MIN_POINTS, weighting: str = "vega",
              check_k: np.ndarray | None = None) -> dict:
    """Fit one SVI slice per expiry of an option chain.

    `chain` columns: expiry (any sortable label, usually a UTC datetime), t_years (years), strike (USD),
    option_type ("call"/"put"), forward (USD, per row; the expiry's median is used), iv (fraction);
    optional open_interest (used when `weighting="open_interest"`). Returns
    {"slices": [slice, ...] sorted by t_years, "counts": {...}} where each slice is a dict:
    expiry, t_years, forward, params ({a, b, rho, m, sigma} or None), rmse_vol_points,
    max_abs_error_vol_points, n_points, points ([[k, iv, strike, weight], ...]), flags, butterfly,
    fit_method.
    """
    missing = [c for c in REQUIRED if c not in chain.columns]
    if missing:
        raise ValueError(f"chain lacks columns {missing}")
    if weighting not in ("vega", "open_interest", "equal"):
        raise ValueError(f"unknown weighting {weighting!r}: use vega, open_interest or equal")
    df = chain.copy()
    num = {c: pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) for c in ("strike", "forward", "t_years")}
    bad_row = ~(np.isfinite(num["strike"]) & (num["strike"] > 0) & np.isfinite(num["forward"])
                & (num["forward"] > 0) & np.isfinite(num["t_years"]))
    iv = pd.to_numeric(df["iv"], errors="coerce").to_numpy(dtype=float)
    bad_vol = (~np.isfinite(iv) | (iv <= 0)) & ~bad_row
    counts = {"rows": int(len(df)), "skipped_bad_row": int(bad_row.sum()), "skipped_bad_vol": int(bad_vol.sum())}
    keep = ~(bad_vol | bad_row)
    df = df.loc[keep].copy()
    iv = iv[keep]
    df["iv"] = iv
    df["forward_expiry"] = df.groupby("expiry")["forward"].transform("median")
    strike = df["strike"].to_numpy(dtype=float)
    fwd = df["forward_expiry"].to_numpy(dtype=float)
    is_call = df["option_type"].astype(str).str.lower().str.startswith("c").to_numpy()
    otm = np.where(is_call, strike >= fwd, strike < fwd)
    counts["skipped_itm"] = int((~otm).sum())
    df = df.loc[otm].copy()
    df["k"] = np.log(df["strike"].to_numpy(dtype=float) / df["forward_expiry"].to_numpy(dtype=float))
    # a strike quoted twice (should not happen for OTM) keeps its first quote
    df = df.sort_values(["t_years", "k"]).drop_duplicates(["expiry", "k"])

    slices = []
    for expiry, grp in df.groupby("expiry", sort=False):
        slices.append(_fit_expiry(expiry, grp, min_points, weighting, check_k))
    slices.sort(key=lambda s: s["t_years"])
    counts["expiries"] = len(slices)
    counts["fitted"] = sum(s["params"] is not None for s in slices)
    counts["points"] = int(sum(s["n_points"] for s in slices))
    return {"slices": slices, "counts": counts}


def _fit_expiry(expiry, grp: pd.DataFrame, min_points: int, weighting: str, check_k) -> dict:
    t = float(grp["t_years"].iloc[0])
    forward = float(grp["forward_expiry"].iloc[0])
    k = grp["k"].to_numpy(dtype=float)
    iv = grp["iv"].to_numpy(dtype=float)
    strike = grp["strike"].to_numpy(dtype=float)
    # quotes worth less than one tick carry no vol information: stored with weight 0, not fitted
    usable = (black76_otm_normalised(k, iv * iv * max(t, 0.0)) >= MIN_OTM_PRICE) if t > 0 else np.ones(k.size, bool)
    if weighting == "vega" and t > 0:
        raw = black76_vega(forward, strike, t, iv)
        weight = np.maximum(raw / raw.max(), VEGA_FLOOR) if raw.max() > 0 else np.ones_like(k)
    elif weighting == "open_interest" and "open_interest" in grp:
        oi = np.nan_to_num(pd.to_numeric(grp["open_interest"], errors="coerce").to_numpy(dtype=float))
        weight = np.maximum(oi / oi.max(), VEGA_FLOOR) if oi.max() > 0 else np.ones_like(k)
    else:
        weight = np.ones_like(k)
    weight = np.where(usable, weight, 0.0)
    base = {"expiry": expiry, "t_years": t, "forward": forward, "n_points": int(usable.sum()),
            "n_below_tick": int((~usable).sum()),
            "points": np.column_stack([k, iv, strike, weight]).tolist(), "params": None,
            "rmse_vol_points": None, "max_abs_error_vol_points": None, "flags": [], "butterfly": None,
            "fit_method": None}
    if t <= 0:
        base["flags"].append("expired")
        return base
    if usable.sum() < min_points:
        base["flags"].append("insufficient_quotes")
        return base
    k, iv, weight = k[usable], iv[usable], weight[usable]
    w = iv * iv * t
    fit_weight = weight / (2.0 * iv * t) ** 2          # total-variance residual → vol residual
    fit = fit_svi(k, w, fit_weight, k_check=check_k)   # None: [−3, 3] widened to the data ± 1
    fitted_vol = np.sqrt(np.maximum(svi_total_variance(k, *fit.params.values()), 0.0) / t)
    err = (fitted_vol - iv) * 100.0
    base.update(params=fit.params, rmse_vol_points=float(np.sqrt(np.mean(err * err))),
                max_abs_error_vol_points=float(np.abs(err).max()), butterfly=fit.butterfly,
                fit_method=fit.method)
    if not fit.butterfly["ok"]:
        base["flags"].append("butterfly_arbitrage")
    if base["rmse_vol_points"] > POOR_FIT_VOL_POINTS:
        base["flags"].append("poor_fit")
    return base


# --------------------------------------------------------------------------------------------------
# Evaluating fitted slices

def _fitted(slices_or_doc) -> list[dict]:
    """The fitted slices (params not None) of a surface document or slice list, sorted by t_years."""
    slices = slices_or_doc.get("slices", []) if isinstance(slices_or_doc, dict) else list(slices_or_doc)
    fitted = [s for s in slices if s.get("params") is not None and s.get("t_years", 0) > 0]
    return sorted(fitted, key=lambda s: s["t_years"])


def _param_matrix(fitted: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(t_years (N,), params (N, 5)) of fitted slices."""
    t = np.array([s["t_years"] for s in fitted], dtype=float)
    p = np.array([[s["params"][n] for n in PARAM_NAMES] for s in fitted], dtype=float).reshape(-1, 5)
    return t, p


def total_variance_at(slices_or_doc, k, t_years, with_slope: bool = False):
    """Total implied variance w(k, T) of the surface (and ∂w/∂k with `with_slope`); broadcasts k, T.

    Linear in T between fitted slices at fixed k; w₁(k)·T/T₁ before the first slice and
    w_N(k)·T/T_N after the last (constant vol at fixed k). Raises ValueError if nothing is fitted.
    """
    fitted = _fitted(slices_or_doc)
    if not fitted:
        raise ValueError("the surface has no fitted slice")
    ts, p = _param_matrix(fitted)
    k, t = np.broadcast_arrays(np.asarray(k, dtype=float), np.asarray(t_years, dtype=float))
    shape = k.shape
    k, t = k.ravel(), t.ravel()
    w_all, w1_all, _ = svi_derivatives(k[None, :], *(p[:, i, None] for i in range(5)))   # (N, n)
    n_s = ts.size
    if n_s == 1:
        lo = hi = np.zeros(k.size, dtype=int)
        lam = np.zeros(k.size)
    else:
        hi = np.clip(np.searchsorted(ts, t, side="left"), 1, n_s - 1)
        lo = hi - 1
        lam = (t - ts[lo]) / (ts[hi] - ts[lo])
    cols = np.arange(k.size)
    inside = (t >= ts[0]) & (t <= ts[-1])
    interp = (1 - lam) * w_all[lo, cols] + lam * w_all[hi, cols]
    interp1 = (1 - lam) * w1_all[lo, cols] + lam * w1_all[hi, cols]
    before, after = t < ts[0], t > ts[-1]
    scale = np.where(before, t / ts[0], np.where(after, t / ts[-1], 1.0))
    edge = np.where(before, 0, n_s - 1)
    w = np.where(inside, interp, scale * w_all[edge, cols])
    w1 = np.where(inside, interp1, scale * w1_all[edge, cols])
    if with_slope:
        return w.reshape(shape), w1.reshape(shape)
    return w.reshape(shape)


def implied_vol_at(surface_doc_or_slices, strike, forward, t_years):
    """Implied vol (fraction) of the stored surface at `strike` (USD) for an expiry with `forward` (USD)
    and `t_years` (years > 0); broadcasts over array inputs.

    Uses the stored SVI params: k = ln(K/F), total variance interpolated linearly in T at fixed k
    between fitted slices (constant vol at fixed k outside them). NaN where t_years ≤ 0 or the
    surface gives w ≤ 0.
    """
    strike, forward, t = (np.asarray(x, dtype=float) for x in (strike, forward, t_years))
    k = np.log(strike / forward)
    w = total_variance_at(surface_doc_or_slices, k, np.maximum(t, 1e-12))
    with np.errstate(invalid="ignore", divide="ignore"):
        vol = np.sqrt(np.where((w > 0) & (t > 0), w, np.nan) / np.where(t > 0, t, np.nan))
    return vol if vol.ndim else float(vol)


def prob_above(strike, forward, t_years, slices):
    """Risk-neutral probability that the underlying ends above `strike` at `t_years`: P(S_T > K).

    Method: P = −∂C/∂K (undiscounted, rate 0) of the Black-76 price *along the smile*, taken
    analytically from the SVI slope: with w = w(k, T), d2 = −k/√w − √w/2,
        P(S_T > K) = N(d2) − φ(d2) · ∂w/∂k / (2√w),
    i.e. the flat-vol digital N(d2) corrected by the skew term (vega × ∂σ/∂K). `slices` is a surface
    document or slice list; broadcasts; strike and forward in USD, t_years in years.
    """
    strike, forward, t = (np.asarray(x, dtype=float) for x in (strike, forward, t_years))
    k = np.log(strike / forward)
    w, w1 = total_variance_at(slices, k, np.maximum(t, 1e-12), with_slope=True)
    sd = np.sqrt(np.maximum(w, 1e-300))
    d2 = -k / sd - 0.5 * sd
    p = np.clip(ndtr(d2) - _phi(d2) * w1 / (2.0 * sd), 0.0, 1.0)
    p = np.where(t > 0, p, (forward > strike).astype(float))
    return p if p.ndim else float(p)


# --------------------------------------------------------------------------------------------------
# Diagnostics

def smile_stats(fitted: Sequence[dict]) -> list[dict]:
    """Per fitted slice: atm_vol, the 25Δ call/put log-moneyness and vols, rr25 and bf25 (fractions).

    25Δ strikes solve the Black-76 forward delta on the fitted smile by vectorised bisection on
    k ∈ [−5, 5] (d1 decreasing in k); NaN when not bracketed.
    """
    if not fitted:
        return []
    ts, p = _param_matrix(fitted)
    cols = [p[:, i] for i in range(5)]
    w_atm = svi_total_variance(0.0, *cols)
    out = {"atm_vol": np.sqrt(np.maximum(w_atm, 0) / ts)}
    for name, target in (("call25", ndtri(0.25)), ("put25", ndtri(0.75))):
        lo, hi = np.full(ts.size, -5.0), np.full(ts.size, 5.0)

        def d1(kk):
            w = np.maximum(svi_total_variance(kk, *cols), 1e-300)
            return -kk / np.sqrt(w) + 0.5 * np.sqrt(w)

        ok = (d1(lo) >= target) & (d1(hi) <= target)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            above = d1(mid) > target
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        kk = 0.5 * (lo + hi)
        vol = np.sqrt(np.maximum(svi_total_variance(kk, *cols), 0) / ts)
        out[f"k_{name}"] = np.where(ok, kk, np.nan)
        out[f"vol_{name}"] = np.where(ok, vol, np.nan)
    out["rr25"] = out["vol_call25"] - out["vol_put25"]
    out["bf25"] = 0.5 * (out["vol_call25"] + out["vol_put25"]) - out["atm_vol"]
    return [{key: float(v[i]) for key, v in out.items()} for i in range(ts.size)]


def _quoted_range(s: dict) -> tuple[float, float]:
    """The k range of a slice's fitted quotes (weight > 0), or (nan, nan) without points."""
    pts = np.asarray(s.get("points") or [], dtype=float).reshape(-1, 4)
    used = pts[pts[:, 3] > 0, 0] if pts.size else np.array([])
    return (float(used.min()), float(used.max())) if used.size else (np.nan, np.nan)


def calendar_report(fitted: Sequence[dict], k_grid=CALENDAR_K) -> dict:
    """Calendar arbitrage between consecutive fitted slices: w_{i+1}(k) < w_i(k) on `k_grid`.

    Returns {ok, ok_in_quoted_range, violations: [{expiry_before, expiry_after, k_ranges,
    quoted_k_ranges, max_drop}]}: `k_ranges` where it fails on the grid, `quoted_k_ranges` the part
    inside the k range quoted (and fitted) in both expiries — the rest is SVI extrapolation —
    and max_drop the largest w_i − w_{i+1} (total variance).
    """
    from qortcli.quant.svi import _runs

    if len(fitted) < 2:
        return {"ok": True, "ok_in_quoted_range": True, "violations": []}
    ts, p = _param_matrix(fitted)
    kg = np.asarray(k_grid, dtype=float)
    w = svi_total_variance(kg[None, :], *(p[:, i, None] for i in range(5)))
    drop = w[:-1] - w[1:]                                  # > 0 where the later expiry has less variance
    ranges = [_quoted_range(s) for s in fitted]
    violations = []
    for i in np.flatnonzero((drop > CAL_TOL).any(axis=1)):
        bad = drop[i] > CAL_TOL
        lo = max(ranges[i][0], ranges[i + 1][0])
        hi = min(ranges[i][1], ranges[i + 1][1])
        quoted = bad & (kg >= lo) & (kg <= hi) if np.isfinite(lo) and np.isfinite(hi) else np.zeros_like(bad)
        violations.append({"expiry_before": fitted[i]["expiry"], "expiry_after": fitted[i + 1]["expiry"],
                           "k_ranges": _runs(kg, bad), "quoted_k_ranges": _runs(kg, quoted),
                           "max_drop": float(drop[i].max())})
    return {"ok": not violations, "ok_in_quoted_range": not any(v["quoted_k_ranges"] for v in violations),
            "violations": violations}


def variance_swap_vols(fitted: Sequence[dict]) -> np.ndarray:
    """Model-free (VIX-style) fair variance-swap vol of each fitted smile: √(2/T ∫ OTM(k)/F e^{−k} dk).

    Trapezoid rule on k ∈ ±20 ATM standard deviations (4001 points) per slice.
    """
    if not fitted:
        return np.array([])
    ts, p = _param_matrix(fitted)
    cols = [p[:, i, None] for i in range(5)]
    sd_atm = np.sqrt(np.maximum(svi_total_variance(0.0, *cols), 1e-12))          # (N, 1)
    kg = sd_atm * np.linspace(-20.0, 20.0, 4001)[None, :]                        # ±20 ATM sd, per slice
    w = np.maximum(svi_total_variance(kg, *cols), 1e-300)
    integrand = black76_otm_normalised(kg, w) * np.exp(-kg)
    var_t = 2.0 * trapezoid(integrand, kg, axis=1)
    return np.sqrt(var_t / ts)


def constant_maturity(ts: np.ndarray, total_var: np.ndarray, days: float = 30.0) -> dict:
    """Vol at `days`/365 years from total variances at `ts`, linear in T (flat vol outside)."""
    target = days / DAYS_PER_YEAR
    if ts.size == 0:
        return {"vol": None, "t_years": target, "extrapolated": True}
    if target <= ts[0]:
        w = total_var[0] * target / ts[0]
    elif target >= ts[-1]:
        w = total_var[-1] * target / ts[-1]
    else:
        w = np.interp(target, ts, total_var)
    return {"vol": float(np.sqrt(max(w, 0.0) / target)), "t_years": target,
            "extrapolated": bool(target < ts[0] or target > ts[-1])}


def build_surface(slices: list[dict], *, k_grid=GRID_K, n_t: int = GRID_N_T, check_k=CALENDAR_K) -> dict:
    """Grid and diagnostics of fitted slices (from `fit_chain`); annotates the slices in place.

    Calendar arbitrage is checked on `check_k` (default k ∈ [−1, 1], 401 points: the surface's range);
    butterfly results come from each slice's own dense check. Returns
    {"grid": {k, t_years, total_variance, implied_vol}, "diagnostics": {...}}. Each fitted
    slice gains atm_vol, rr25, bf25 (fractions) and the flag "calendar_arbitrage" when it is the later
    expiry of a calendar violation inside the k range quoted in both expiries (violations that lie
    only in SVI extrapolation are listed in diagnostics.calendar but do not flag the slice).
    """
    fitted = _fitted(slices)
    diagnostics: dict = {"n_slices": len(slices), "n_fitted": len(fitted),
                         "unfitted_expiries": [s["expiry"] for s in slices if s.get("params") is None]}
    if not fitted:
        diagnostics.update(butterfly={"ok": None, "failing_expiries": []}, calendar={"ok": None, "ok_in_quoted_range": None,
                                                                                 "violations": []},
                           term_structure=[], atm_vol_30d=None, vs_vol_30d=None)
        return {"grid": None, "diagnostics": diagnostics}
    for s in fitted:                                    # slices built elsewhere: check them here
        if not s.get("butterfly"):
            s["butterfly"] = butterfly_report(s["params"])
            s.setdefault("flags", [])
            if not s["butterfly"]["ok"] and "butterfly_arbitrage" not in s["flags"]:
                s["flags"].append("butterfly_arbitrage")
        s.setdefault("flags", [])
    stats = smile_stats(fitted)
    for s, st in zip(fitted, stats):
        s.update(atm_vol=st["atm_vol"], rr25=st["rr25"], bf25=st["bf25"], k_call25=st["k_call25"],
                 k_put25=st["k_put25"])
    calendar = calendar_report(fitted, check_k)
    late = {str(v["expiry_after"]) for v in calendar["violations"] if v["quoted_k_ranges"]}
    for s in fitted:
        if str(s["expiry"]) in late and "calendar_arbitrage" not in s["flags"]:
            s["flags"].append("calendar_arbitrage")
    ts, _ = _param_matrix(fitted)
    t_grid = np.linspace(ts[0], ts[-1], n_t) if ts.size > 1 else ts.copy()
    kk, tt = np.meshgrid(np.asarray(k_grid, dtype=float), t_grid)
    w = total_variance_at(fitted, kk, tt)
    rmse = np.array([s.get("rmse_vol_points", np.nan) for s in fitted], dtype=float)
    vs = variance_swap_vols(fitted)
    atm_w = np.array([st["atm_vol"] ** 2 for st in stats]) * ts
    diagnostics.update(
        rmse_vol_points=({"median": float(np.nanmedian(rmse)), "max": float(np.nanmax(rmse))}
                         if np.isfinite(rmse).any() else None),
        butterfly={"ok": all(s["butterfly"]["ok"] for s in fitted),
                   "failing_expiries": [{"expiry": s["expiry"], "g_min": s["butterfly"]["g_min"],
                                         "k_ranges": s["butterfly"]["failing_k_ranges"]}
                                        for s in fitted if not s["butterfly"]["ok"]]},
        calendar=calendar,
        term_structure=[{"expiry": s["expiry"], "t_years": s["t_years"], "atm_vol": st["atm_vol"],
                         "rr25": st["rr25"], "bf25": st["bf25"], "vs_vol": float(v)}
                        for s, st, v in zip(fitted, stats, vs)],
        atm_vol_30d=constant_maturity(ts, atm_w, 30.0),
        vs_vol_30d=constant_maturity(ts, vs * vs * ts, 30.0),
    )
    grid = {"k": np.asarray(k_grid, dtype=float).tolist(), "t_years": t_grid.tolist(),
            "total_variance": w.tolist(),
            "implied_vol": np.sqrt(np.maximum(w, 0.0) / tt).tolist()}
    return {"grid": grid, "diagnostics": diagnostics}


def fit_surface(chain: pd.DataFrame, **kwargs) -> dict:
    """`fit_chain` then `build_surface`: {"slices", "grid", "diagnostics", "counts"}."""
    fit_kwargs = {k: kwargs.pop(k) for k in ("min_points", "weighting") if k in kwargs}
    fitted = fit_chain(chain, **fit_kwargs)
    built = build_surface(fitted["slices"], **kwargs)
    return {"slices": fitted["slices"], "grid": built["grid"], "diagnostics": built["diagnostics"],
            "counts": fitted["counts"]}


def slices_with_flags(slices: Iterable[dict], flag: str) -> list[dict]:
    """The slices carrying `flag`."""
    return [s for s in slices if flag in s.get("flags", [])]
