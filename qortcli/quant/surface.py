"""Implied-volatility surfaces from SVI slices: fit a chain, interpolate, diagnose, and query.

Conventions (all pure numpy/scipy/pandas, no I/O):
- k = ln(K/F) with F the expiry's forward (the median of the rows' `forward` for that expiry);
  total implied variance w = σ² · T; vols are fractions; T (`t_years`) in years on the caller's basis,
  whose days per year (`days_per_year`, 365 for ACT/365) the 30-day figures need.
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
- Smile statistics of the fitted slices (ATM, 25Δ strikes and vols, RR25, BF25, the 30-day constant
  maturity ATM vol and variance-swap vol) come from `qortcli.quant.smile` (the "svi" variants); every
  stored name carries the suffix `_svi`.
- Checks: butterfly arbitrage on each slice's own dense grid (`check_k`, default `DENSE_K` widened to
  the data), calendar arbitrage between consecutive slices on `calendar_k` (default k ∈ [−1, 1], 401
  points: the surface's range). The two grids are separate arguments of `fit_surface`.
- Results are typed: `SliceFit` per expiry and `SurfaceFit` for the chain (read by field name like the
  stored document: `fit["slices"][0]["params"]`); `to_document()` gives the stored shape.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from qortcli.quant import black76, smile
from qortcli.quant.records import Record
from qortcli.quant.svi import (DENSE_K, PARAM_NAMES, _runs, butterfly_report, fit_svi, svi_derivatives,
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
CM_DAYS = 30.0                             # the constant maturity of the diagnostics (days)


@dataclass(frozen=True)
class SliceFit(Record):
    """One expiry's SVI fit (stored names; see docs/CONTRACTS.md "volatility_surfaces").

    expiry (as given, usually a UTC datetime), t_years (years), forward (USD, the expiry's median forward),
    params {a, b, rho, m, sigma} (raw SVI in total variance over k = ln(K/F); None when not fitted),
    rmse_vol_points / max_abs_error_vol_points (vol points on the fitted quotes), n_points (quotes fitted),
    n_below_tick, points [[k, iv, strike, weight]] (weight 0 = stored, not fitted), flags, butterfly
    report, fit_method; and the smile statistics of the fit (fractions, None until `build_surface`):
    atm_iv_svi, k_call25_svi, k_put25_svi (log-moneyness), call25_iv_svi, put25_iv_svi, rr25_svi, bf25_svi.
    """

    expiry: object
    t_years: float
    forward: float | None
    params: dict | None
    rmse_vol_points: float | None = None
    max_abs_error_vol_points: float | None = None
    n_points: int = 0
    n_below_tick: int = 0
    points: list = ()
    flags: tuple = ()
    butterfly: dict | None = None
    fit_method: str | None = None
    atm_iv_svi: float | None = None
    k_call25_svi: float | None = None
    k_put25_svi: float | None = None
    call25_iv_svi: float | None = None
    put25_iv_svi: float | None = None
    rr25_svi: float | None = None
    bf25_svi: float | None = None

    @classmethod
    def from_mapping(cls, doc) -> "SliceFit":
        """A slice from a stored slice document or any mapping (unknown keys ignored, missing ones default)."""
        if isinstance(doc, SliceFit):
            return doc
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in dict(doc).items() if k in names}
        values.setdefault("forward", None)
        values.setdefault("params", None)
        values["flags"] = tuple(values.get("flags") or ())
        values["points"] = list(values.get("points") or [])
        return cls(**values)

    def with_flag(self, flag: str) -> "SliceFit":
        return self if flag in self.flags else replace(self, flags=(*self.flags, flag))

    def to_document(self) -> dict:
        """The stored slice (flags and points as lists)."""
        return self.to_dict()


@dataclass(frozen=True)
class SurfaceFit(Record):
    """A chain's surface: `slices` (SliceFit, by t_years), `grid` ({k, t_years, total_variance,
    implied_vol} or None), `diagnostics` (dict, docs/CONTRACTS.md), `counts` (rows used and skipped)."""

    slices: tuple
    grid: dict | None
    diagnostics: dict
    counts: dict

    def to_document(self) -> dict:
        """{"slices": [...], "grid", "diagnostics", "counts"} as stored (plain dicts and lists)."""
        return {"slices": [s.to_document() for s in self.slices], "grid": self.grid,
                "diagnostics": dict(self.diagnostics), "counts": dict(self.counts)}


# --------------------------------------------------------------------------------------------------
# Chain → slices

REQUIRED = ("expiry", "t_years", "strike", "option_type", "forward", "iv")


def fit_chain(chain: pd.DataFrame, *, min_points: int = MIN_POINTS, weighting: str = "vega",
              check_k: np.ndarray | None = None) -> tuple[list[SliceFit], dict]:
    """Fit one SVI slice per expiry of an option chain; `check_k` is the butterfly check grid (None: [−3, 3]
    widened to the data ± 1).

    `chain` columns: expiry (any sortable label, usually a UTC datetime), t_years (years), strike (USD),
    option_type ("call"/"put"), forward (USD, per row; the expiry's median is used), iv (fraction);
    optional open_interest (used when `weighting="open_interest"`). Returns (slices sorted by t_years,
    counts {rows, skipped_bad_row, skipped_bad_vol, skipped_itm, expiries, fitted, points}); the slices'
    smile statistics are filled in by `build_surface`.
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
    slices.sort(key=lambda s: s.t_years)
    counts["expiries"] = len(slices)
    counts["fitted"] = sum(s.params is not None for s in slices)
    counts["points"] = int(sum(s.n_points for s in slices))
    return slices, counts


def _fit_expiry(expiry, grp: pd.DataFrame, min_points: int, weighting: str, check_k) -> SliceFit:
    t = float(grp["t_years"].iloc[0])
    forward = float(grp["forward_expiry"].iloc[0])
    k = grp["k"].to_numpy(dtype=float)
    iv = grp["iv"].to_numpy(dtype=float)
    strike = grp["strike"].to_numpy(dtype=float)
    # quotes worth less than one tick carry no vol information: stored with weight 0, not fitted
    usable = (black76.otm_price_over_forward(k, iv * iv * max(t, 0.0)) >= MIN_OTM_PRICE) if t > 0 else np.ones(k.size, bool)
    if weighting == "vega" and t > 0:
        raw = black76.vega_per_unit_vol(forward, strike, t, iv)
        weight = np.maximum(raw / raw.max(), VEGA_FLOOR) if raw.max() > 0 else np.ones_like(k)
    elif weighting == "open_interest" and "open_interest" in grp:
        oi = np.nan_to_num(pd.to_numeric(grp["open_interest"], errors="coerce").to_numpy(dtype=float))
        weight = np.maximum(oi / oi.max(), VEGA_FLOOR) if oi.max() > 0 else np.ones_like(k)
    else:
        weight = np.ones_like(k)
    weight = np.where(usable, weight, 0.0)
    base = SliceFit(expiry=expiry, t_years=t, forward=forward, params=None, n_points=int(usable.sum()),
                    n_below_tick=int((~usable).sum()), points=np.column_stack([k, iv, strike, weight]).tolist())
    if t <= 0:
        return base.with_flag("expired")
    if usable.sum() < min_points:
        return base.with_flag("insufficient_quotes")
    k, iv, weight = k[usable], iv[usable], weight[usable]
    w = iv * iv * t
    fit_weight = weight / (2.0 * iv * t) ** 2          # total-variance residual → vol residual
    fit = fit_svi(k, w, fit_weight, k_check=check_k)   # None: [−3, 3] widened to the data ± 1
    fitted_vol = np.sqrt(np.maximum(svi_total_variance(k, *fit.params.values()), 0.0) / t)
    err = (fitted_vol - iv) * 100.0
    out = replace(base, params=fit.params, rmse_vol_points=float(np.sqrt(np.mean(err * err))),
                  max_abs_error_vol_points=float(np.abs(err).max()), butterfly=fit.butterfly, fit_method=fit.method)
    if not fit.butterfly["ok"]:
        out = out.with_flag("butterfly_arbitrage")
    if out.rmse_vol_points > POOR_FIT_VOL_POINTS:
        out = out.with_flag("poor_fit")
    return out


# --------------------------------------------------------------------------------------------------
# Evaluating fitted slices

def _fitted(slices_or_doc) -> list:
    """The fitted slices (params not None) of a surface document, slice list or fit, sorted by t_years."""
    return smile.fitted_slices(slices_or_doc)


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

    The skew-aware digital of `qortcli.quant.black76.prob_above` (−∂C/∂K along the smile) on the SVI
    surface: w = w(k, T) and ∂w/∂k analytically from the SVI slices (interpolated linearly in T),
        P(S_T > K) = N(d2) − φ(d2) · ∂w/∂k / (2√w),   d2 = −k/√w − √w/2.
    `slices` is a surface document, slice list or fit; broadcasts; strike and forward in USD, t_years in
    years (≤ 0: the certain outcome 1{F > K}).
    """
    strike, forward, t = (np.asarray(x, dtype=float) for x in (strike, forward, t_years))
    k = np.log(strike / forward)
    w, w1 = total_variance_at(slices, k, np.maximum(t, 1e-12), with_slope=True)
    p = black76.prob_above(k, np.where(t > 0, w, 0.0), w1)
    p = np.asarray(p)
    return p if p.ndim else float(p)


# --------------------------------------------------------------------------------------------------
# Diagnostics

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


def build_surface(slices: Sequence, *, days_per_year: float, k_grid=GRID_K, n_t: int = GRID_N_T,
                  calendar_k=CALENDAR_K, counts: dict | None = None) -> SurfaceFit:
    """Grid, smile statistics and diagnostics of fitted slices (`SliceFit`s from `fit_chain`, or slice
    documents/mappings); returns a `SurfaceFit` with new slices (the inputs are not changed).

    Calendar arbitrage is checked on `calendar_k` (default k ∈ [−1, 1], 401 points: the surface's range);
    butterfly results come from each slice's own dense check (computed here for slices that lack one).
    Each fitted slice gains its SVI smile statistics (`qortcli.quant.smile.svi_expiry_stats`) and the flag
    "calendar_arbitrage" when it is the later expiry of a calendar violation inside the k range quoted in
    both expiries (violations that lie only in SVI extrapolation are listed in diagnostics.calendar but do
    not flag the slice). `days_per_year` is the basis of t_years (for the 30-day constant maturity).
    """
    slices = [SliceFit.from_mapping(s) for s in slices]
    for i, s in enumerate(slices):                      # slices built elsewhere: check them here
        if s.params is not None and s.t_years > 0 and not s.butterfly:
            s = replace(s, butterfly=butterfly_report(s.params))
            slices[i] = s if s.butterfly["ok"] else s.with_flag("butterfly_arbitrage")
    fitted = _fitted(slices)
    diagnostics: dict = {"n_slices": len(slices), "n_fitted": len(fitted),
                         "unfitted_expiries": [s.expiry for s in slices if s.params is None]}
    if not fitted:
        diagnostics.update(butterfly={"ok": None, "failing_expiries": []},
                           calendar={"ok": None, "ok_in_quoted_range": None, "violations": []},
                           term_structure=[], atm_iv_30d_svi=None, vs_vol_30d_svi=None)
        return SurfaceFit(slices=tuple(slices), grid=None, diagnostics=diagnostics, counts=dict(counts or {}))
    stats = smile.svi_expiry_stats(fitted)
    calendar = calendar_report(fitted, calendar_k)
    late = {str(v["expiry_after"]) for v in calendar["violations"] if v["quoted_k_ranges"]}
    by_id = {id(s): i for i, s in enumerate(slices)}
    for s, st in zip(fitted, stats):
        new = replace(s, atm_iv_svi=st.atm_iv, k_call25_svi=st.k_call25, k_put25_svi=st.k_put25,
                      call25_iv_svi=st.call25_iv, put25_iv_svi=st.put25_iv, rr25_svi=st.rr25, bf25_svi=st.bf25)
        if str(s.expiry) in late:
            new = new.with_flag("calendar_arbitrage")
        slices[by_id[id(s)]] = new
    fitted = _fitted(slices)
    ts = np.array([s.t_years for s in fitted], dtype=float)
    t_grid = np.linspace(ts[0], ts[-1], n_t) if ts.size > 1 else ts.copy()
    kk, tt = np.meshgrid(np.asarray(k_grid, dtype=float), t_grid)
    w = total_variance_at(fitted, kk, tt)
    rmse = np.array([np.nan if s.rmse_vol_points is None else s.rmse_vol_points for s in fitted], dtype=float)
    vs = smile.variance_swap_vols(fitted)
    atm30 = smile.constant_maturity(stats, [CM_DAYS], days_per_year)[0]
    vs30 = smile.vs_vol_at(fitted, CM_DAYS, days_per_year)
    diagnostics.update(
        rmse_vol_points=({"median": float(np.nanmedian(rmse)), "max": float(np.nanmax(rmse))}
                         if np.isfinite(rmse).any() else None),
        butterfly={"ok": all(s.butterfly["ok"] for s in fitted),
                   "failing_expiries": [{"expiry": s.expiry, "g_min": s.butterfly["g_min"],
                                         "k_ranges": s.butterfly["failing_k_ranges"]}
                                        for s in fitted if not s.butterfly["ok"]]},
        calendar=calendar,
        term_structure=[{"expiry": s.expiry, "t_years": s.t_years, "atm_iv_svi": s.atm_iv_svi, "rr25_svi": s.rr25_svi,
                         "bf25_svi": s.bf25_svi, "vs_vol_svi": float(v)} for s, v in zip(fitted, vs)],
        atm_iv_30d_svi={"vol": atm30.atm_iv, "t_years": atm30.t_years, "extrapolated": atm30.extrapolated},
        vs_vol_30d_svi={"vol": vs30.vol, "t_years": vs30.t_years, "extrapolated": vs30.extrapolated},
    )
    grid = {"k": np.asarray(k_grid, dtype=float).tolist(), "t_years": t_grid.tolist(),
            "total_variance": w.tolist(),
            "implied_vol": np.sqrt(np.maximum(w, 0.0) / tt).tolist()}
    return SurfaceFit(slices=tuple(slices), grid=grid, diagnostics=diagnostics, counts=dict(counts or {}))


def fit_surface(chain: pd.DataFrame, *, days_per_year: float, min_points: int = MIN_POINTS,
                weighting: str = "vega", check_k: np.ndarray | None = None, calendar_k=CALENDAR_K,
                k_grid=GRID_K, n_t: int = GRID_N_T) -> SurfaceFit:
    """`fit_chain` then `build_surface`: a `SurfaceFit` (slices, grid, diagnostics, counts).

    `check_k` is the butterfly check grid of every slice's fit (None: the data's range widened, see
    `fit_chain`); `calendar_k` the grid of the calendar check between slices; `days_per_year` the basis of
    the chain's t_years.
    """
    slices, counts = fit_chain(chain, min_points=min_points, weighting=weighting, check_k=check_k)
    return build_surface(slices, days_per_year=days_per_year, k_grid=k_grid, n_t=n_t, calendar_k=calendar_k,
                         counts=counts)


def slices_with_flags(slices: Iterable, flag: str) -> list:
    """The slices carrying `flag` (slices as given: t_years in years, forward in USD)."""
    return [s for s in slices if flag in (s.get("flags") or ())]
