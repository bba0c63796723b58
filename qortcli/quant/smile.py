"""Smile statistics, "from marks" and "from the SVI fit": ATM IV, 25Δ strikes and vols, RR25, BF25,
constant maturity at any tenor, the term structure, and the per-snapshot summary record.

Every figure here says where it comes from: ``source`` is "marks" (Deribit's mark IVs of one snapshot) or
"svi" (the fitted SVI slices of that snapshot's surface); the two are both legitimate and differ (the SVI
smile is a least-squares fit through the OTM marks, so its 25Δ vols smooth the marks' kinks), so a name
never drops the source.

Conventions (pure numpy/pandas; vols are fractions, times in years on the caller's day-count basis,
``days_per_year`` is that basis' days per year, strikes and forwards in USD, ``k = ln(K/F)``):

- Delta convention (both sources): Deribit's forward delta N(d1) without premium adjustment -- call
  N(d1) = 0.25, put N(d1) − 1 = −0.25 (`qortcli.quant.black76.forward_delta`).
- ATM is the forward (k = 0). RR25 = σ(25Δ call) − σ(25Δ put); BF25 = (σ(25Δ call) + σ(25Δ put))/2 − σ_ATM.
- From marks (`marks_expiry_stats`, input the chain frame of `qortcli.store.frames`: columns expiry,
  expiry_code, t_years, expiry_forward_usd, strike_usd, is_call, mark_iv, delta, delta_deribit, forward_usd):
  ATM IV = the mark IVs (call and put of a strike averaged) linear in k at k = 0 -- None when the forward
  lies outside the quoted strikes; the 25Δ vols and log-moneyness are linear in delta between the calls
  (puts) bracketing ±0.25 -- None when ±0.25 is not bracketed. Deltas: the pricing step's Black-76 delta
  (``delta``), else Deribit's published one (``delta_deribit``), else Black-76 from the row's mark IV on
  its own forward.
- From SVI (`svi_expiry_stats`, input the fitted slices of a surface: expiry, t_years, forward, params):
  ATM IV = √(w(0)/T); the 25Δ log-moneyness solves the forward delta on the fitted smile (d1 =
  −k/√w + √w/2, vectorised bisection on k ∈ [−5, 5], None when not bracketed).
- Constant maturity (`constant_maturity`, the same rule for both sources): at tenor T the ATM total
  variance σ²T is linear in T between the two listed expiries bracketing T, flat vol outside the listed
  range (``extrapolated``); the 25Δ call and put vols are interpolated the same way *at fixed delta* (their
  total variances linear in T), and RR25/BF25 at T are built from the three interpolated vols.
- Variance-swap vol (SVI only): the model-free fair variance 2/T ∫ OTM(k)/F e^{−k} dk of each fitted
  smile, interpolated to a tenor like ATM (`variance_swap_vols`, `vs_vol_at`); DVOL-like at 30 days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.integrate import trapezoid

from qortcli.quant import black76
from qortcli.quant.records import Record
from qortcli.quant.svi import PARAM_NAMES, svi_total_variance

MARKS, SVI = "marks", "svi"
WING_DELTA = 0.25
TERM_SLOPE_DAYS = (7.0, 90.0)        # term slope = ATM IV at 90 days − ATM IV at 7 days
VS_TENOR_DAYS = 30.0                 # the variance-swap vol of the summaries (DVOL-like)


def _opt(x) -> float | None:
    """A finite float, else None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _nan(x) -> float:
    return float("nan") if x is None else float(x)


# --------------------------------------------------------------------------------------------- records

@dataclass(frozen=True)
class ExpiryStats(Record):
    """One expiry's smile statistics from one ``source`` ("marks" or "svi"). Vols are fractions,
    ``k_*`` log-moneyness ln(K/F), ``strike_*_usd`` USD, ``t_years`` years; None where undefined."""

    source: str
    expiry: object
    expiry_code: str | None
    t_years: float
    forward_usd: float
    atm_iv: float | None
    k_call25: float | None
    k_put25: float | None
    strike_call25_usd: float | None
    strike_put25_usd: float | None
    call25_iv: float | None
    put25_iv: float | None
    rr25: float | None
    bf25: float | None
    n_quotes: int


@dataclass(frozen=True)
class ConstantMaturity(Record):
    """Smile statistics at one constant maturity from one ``source`` (see the module docstring for the
    interpolation): vols are fractions; ``extrapolated`` when the tenor lies outside the listed expiries."""

    source: str
    tenor_days: float
    t_years: float
    atm_iv: float | None
    call25_iv: float | None
    put25_iv: float | None
    rr25: float | None
    bf25: float | None
    extrapolated: bool


@dataclass(frozen=True)
class TermPoint(Record):
    """One listed expiry of the term structure, both sources side by side (vols as fractions)."""

    expiry: object
    expiry_code: str | None
    t_years: float
    forward_usd: float | None
    atm_iv_marks: float | None
    atm_iv_svi: float | None
    rr25_marks: float | None
    rr25_svi: float | None
    bf25_marks: float | None
    bf25_svi: float | None


@dataclass(frozen=True)
class SummaryStats(Record):
    """The smile part of a per-snapshot summary (docs/CONTRACTS.md "snapshot_summaries").

    `fields()` gives the flat field names of the contract: for T in ``tenors_days``
    ``atm_iv_{T}d_marks``, ``atm_iv_{T}d_svi``, ``rr25_{T}d_marks/_svi``, ``bf25_{T}d_marks/_svi``, then
    ``vs_vol_30d_svi``, ``term_slope_marks``, ``term_slope_svi`` (ATM IV 90 d − 7 d) and ``term_structure``
    (a list of `TermPoint` dicts); the same names read as attributes (``stats.atm_iv_30d_marks``) and
    items. SVI figures are None without a fitted surface (``has_surface`` False).
    """

    days_per_year: float
    tenors_days: tuple
    has_surface: bool
    constant_maturity_marks: tuple
    constant_maturity_svi: tuple
    vs_vol_30d_svi: float | None
    term_slope_marks: float | None
    term_slope_svi: float | None
    term_structure: tuple

    def fields(self) -> dict:
        """The flat contract fields (plain values)."""
        out: dict = {}
        for source, points in ((MARKS, self.constant_maturity_marks), (SVI, self.constant_maturity_svi)):
            by_tenor = {p.tenor_days: p for p in points}
            for tenor in self.tenors_days:
                p = by_tenor.get(float(tenor))
                for name in ("atm_iv", "rr25", "bf25"):
                    out[f"{name}_{tenor_label(tenor)}_{source}"] = getattr(p, name) if p is not None else None
        out.update(vs_vol_30d_svi=self.vs_vol_30d_svi, term_slope_marks=self.term_slope_marks,
                   term_slope_svi=self.term_slope_svi, term_structure=[t.to_dict() for t in self.term_structure])
        return out

    def __getattr__(self, name: str):
        if name.startswith(("atm_iv_", "rr25_", "bf25_")):
            fields = self.fields()
            if name in fields:
                return fields[name]
        raise AttributeError(name)

    def __getitem__(self, name: str):
        if name in self.keys():
            return getattr(self, name)
        return self.fields()[name]


def tenor_label(days: float) -> str:
    """"30d" for a tenor of 30 days (integers without a decimal point)."""
    days = float(days)
    return f"{int(days)}d" if days.is_integer() else f"{days:g}d"


# --------------------------------------------------------------------------------------------- primitives

def atm_iv_from_quotes(strikes_usd, ivs, forward_usd: float) -> float | None:
    """Mark IV at the forward (k = 0), linear in log-moneyness ln(K/F) between the quoted strikes of one
    expiry; quotes of one strike (its call and put) are averaged. None without a quote on each side of the
    forward (no extrapolation). Strikes and forward in USD, vols as fractions."""
    k = np.asarray(strikes_usd, dtype=float)
    v = np.asarray(ivs, dtype=float)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(k) & np.isfinite(v) & (k > 0) & (v > 0)
    if not ok.any() or not (forward_usd > 0):
        return None
    uk, inv = np.unique(k[ok], return_inverse=True)
    uv = np.bincount(inv, weights=v[ok]) / np.bincount(inv)
    x = np.log(uk / forward_usd)
    if x[0] > 0 or x[-1] < 0:
        return None
    return float(np.interp(0.0, x, uv))


def vol_at_delta(deltas, values, target_delta: float) -> float | None:
    """A quantity (a vol, or a log-moneyness) at a forward delta (calls 0..1, puts −1..0), linear in delta
    between the quotes; None when fewer than two quotes or the target is not bracketed."""
    d = np.asarray(deltas, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(d) & np.isfinite(v)
    if ok.sum() < 2:
        return None
    d, v = d[ok], v[ok]
    order = np.argsort(d, kind="stable")
    d, v = d[order], v[order]
    if not (d[0] <= target_delta <= d[-1]):
        return None
    return float(np.interp(target_delta, d, v))


def interpolate_total_variance(t_years, vols, target_t_years: float) -> tuple[float | None, bool]:
    """(vol, extrapolated) at `target_t_years` from vols (fractions) at listed `t_years` (years): total
    variance σ²T linear in T between the bracketing expiries, flat vol outside the listed range."""
    t = np.asarray(t_years, dtype=float)
    v = np.asarray(vols, dtype=float)
    ok = np.isfinite(t) & np.isfinite(v) & (t > 0) & (v >= 0)
    t, v = t[ok], v[ok]
    if t.size == 0 or not (target_t_years > 0):
        return None, True
    order = np.argsort(t)
    t, v = t[order], v[order]
    outside = bool(target_t_years < t[0] or target_t_years > t[-1])
    if target_t_years <= t[0]:
        return float(v[0]), outside
    if target_t_years >= t[-1]:
        return float(v[-1]), outside
    w = np.interp(target_t_years, t, v * v * t)
    return float(np.sqrt(w / target_t_years)), False


class MarkSmile:
    """One expiry's mark smile as a function of strike: vols (fractions) linear in k = ln(K/F) between the
    quoted strikes (a strike's call and put averaged), flat outside; `dvol_dk` is its analytic slope
    dσ/dk (piecewise constant; at a quoted strike the mean of the two neighbouring slopes; 0 outside)."""

    def __init__(self, strikes_usd, ivs, forward_usd: float):
        k = np.asarray(strikes_usd, dtype=float)
        v = np.asarray(ivs, dtype=float)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(k) & np.isfinite(v) & (k > 0) & (v > 0)
        if not ok.any():
            raise ValueError("the expiry has no quote with a positive mark IV: no smile")
        uk, inv = np.unique(k[ok], return_inverse=True)
        self.forward_usd = float(forward_usd)
        self.k = np.log(uk / self.forward_usd)
        self.vols = np.bincount(inv, weights=v[ok]) / np.bincount(inv)
        self.slopes = np.diff(self.vols) / np.diff(self.k) if self.k.size > 1 else np.zeros(0)

    def vol(self, strikes_usd) -> np.ndarray:
        """σ(K) (fraction) at strikes in USD."""
        return np.interp(np.log(np.asarray(strikes_usd, dtype=float) / self.forward_usd), self.k, self.vols)

    def dvol_dk(self, strikes_usd) -> np.ndarray:
        """dσ/dk (fraction per unit of log-moneyness) at strikes in USD."""
        x = np.atleast_1d(np.log(np.asarray(strikes_usd, dtype=float) / self.forward_usd))
        out = np.zeros(x.shape)
        if self.slopes.size == 0:
            return out
        inside = (x > self.k[0]) & (x < self.k[-1])
        seg = np.clip(np.searchsorted(self.k, x, side="right") - 1, 0, self.slopes.size - 1)
        out[inside] = self.slopes[seg[inside]]
        node = np.isin(x, self.k[1:-1])
        if node.any():
            j = np.searchsorted(self.k, x[node])
            out[node] = 0.5 * (self.slopes[j - 1] + self.slopes[j])
        return out


# --------------------------------------------------------------------------------------------- from marks

def _chain_deltas(chain: pd.DataFrame) -> np.ndarray:
    """Forward deltas of the chain's rows: the model's, else Deribit's, else Black-76 on the row's mark IV."""
    n = len(chain)
    delta = chain["delta"].to_numpy(dtype=float) if "delta" in chain else np.full(n, np.nan)
    if "delta_deribit" in chain:
        delta = np.where(np.isfinite(delta), delta, chain["delta_deribit"].to_numpy(dtype=float))
    missing = ~np.isfinite(delta)
    if missing.any():
        fwd = chain["forward_usd"] if "forward_usd" in chain else chain["expiry_forward_usd"]
        with np.errstate(all="ignore"):
            computed = black76.forward_delta(fwd.to_numpy(dtype=float), chain["strike_usd"].to_numpy(dtype=float),
                                             chain["t_years"].to_numpy(dtype=float),
                                             chain["mark_iv"].to_numpy(dtype=float),
                                             chain["is_call"].to_numpy(dtype=bool))
        delta = np.where(missing, computed, delta)
    return delta


REQUIRED_MARK_COLUMNS = ("expiry", "t_years", "expiry_forward_usd", "strike_usd", "is_call", "mark_iv")


def marks_expiry_stats(chain: pd.DataFrame, wing_delta: float = WING_DELTA) -> list[ExpiryStats]:
    """Per unexpired listed expiry of a chain frame (`qortcli.store.frames`), the smile statistics from the
    marks (module docstring), sorted by time to expiry. ValueError naming missing columns."""
    missing = [c for c in REQUIRED_MARK_COLUMNS if c not in chain.columns]
    if missing:
        raise ValueError(f"chain frame lacks columns {missing} (see qortcli.store.frames)")
    if chain.empty:
        return []
    delta = _chain_deltas(chain)
    frame = pd.DataFrame({"expiry": chain["expiry"].to_numpy(), "t": chain["t_years"].to_numpy(dtype=float),
                          "f": chain["expiry_forward_usd"].to_numpy(dtype=float),
                          "strike": chain["strike_usd"].to_numpy(dtype=float),
                          "call": chain["is_call"].to_numpy(dtype=bool), "iv": chain["mark_iv"].to_numpy(dtype=float),
                          "delta": delta,
                          "code": chain["expiry_code"].to_numpy() if "expiry_code" in chain else None})
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["k"] = np.log(frame["strike"] / frame["f"])
        frame.loc[~(frame["iv"] > 0), "iv"] = np.nan
    out = []
    for expiry, g in frame.groupby("expiry", sort=False):
        t = float(np.nanmedian(g["t"]))
        f = float(np.nanmedian(g["f"]))
        if not (t > 0) or not (f > 0):
            continue
        atm = atm_iv_from_quotes(g["strike"], g["iv"], f)
        calls, puts = g[g["call"]], g[~g["call"]]
        c_iv = vol_at_delta(calls["delta"], calls["iv"], wing_delta)
        p_iv = vol_at_delta(puts["delta"], puts["iv"], -wing_delta)
        c_ok, p_ok = calls[np.isfinite(calls["iv"])], puts[np.isfinite(puts["iv"])]
        k_c = vol_at_delta(c_ok["delta"], c_ok["k"], wing_delta) if c_iv is not None else None
        k_p = vol_at_delta(p_ok["delta"], p_ok["k"], -wing_delta) if p_iv is not None else None
        out.append(_expiry_stats(MARKS, expiry, g["code"].iloc[0], t, f, atm, k_c, k_p, c_iv, p_iv,
                                 int(np.isfinite(g["iv"]).sum())))
    out.sort(key=lambda s: s.t_years)
    return out


def _expiry_stats(source, expiry, code, t, f, atm, k_c, k_p, c_iv, p_iv, n) -> ExpiryStats:
    atm, k_c, k_p, c_iv, p_iv = (_opt(x) for x in (atm, k_c, k_p, c_iv, p_iv))
    rr = c_iv - p_iv if c_iv is not None and p_iv is not None else None
    bf = 0.5 * (c_iv + p_iv) - atm if rr is not None and atm is not None else None
    return ExpiryStats(source=source, expiry=expiry, expiry_code=None if code is None else str(code),
                       t_years=float(t), forward_usd=float(f), atm_iv=atm, k_call25=k_c, k_put25=k_p,
                       strike_call25_usd=None if k_c is None else float(f * math.exp(k_c)),
                       strike_put25_usd=None if k_p is None else float(f * math.exp(k_p)),
                       call25_iv=c_iv, put25_iv=p_iv, rr25=rr, bf25=bf, n_quotes=int(n))


# --------------------------------------------------------------------------------------------- from SVI

def fitted_slices(slices_or_doc) -> list:
    """The fitted slices (params not None, t_years > 0, years) of a surface document, a slice list or a fit
    result, sorted by t_years."""
    if slices_or_doc is None:
        return []
    slices = slices_or_doc.get("slices", []) if hasattr(slices_or_doc, "get") and not isinstance(
        slices_or_doc, (list, tuple)) else list(slices_or_doc)
    fitted = [s for s in slices if s.get("params") is not None and (s.get("t_years") or 0) > 0]
    return sorted(fitted, key=lambda s: s["t_years"])


def _param_columns(fitted: Sequence) -> tuple[np.ndarray, list[np.ndarray]]:
    t = np.array([s["t_years"] for s in fitted], dtype=float)
    p = np.array([[s["params"][n] for n in PARAM_NAMES] for s in fitted], dtype=float).reshape(-1, 5)
    return t, [p[:, i] for i in range(5)]


def svi_delta_log_moneyness(fitted: Sequence, delta: float) -> np.ndarray:
    """Per fitted slice, the log-moneyness where the forward delta on the fitted smile equals `delta`
    (calls: delta in (0, 1); puts: delta − 1 for a put delta in (−1, 0)); NaN when not bracketed on
    k ∈ [−5, 5]. Vectorised bisection (d1 decreases in k on an arbitrage-free smile)."""
    if not fitted:
        return np.array([])
    _, cols = _param_columns(fitted)
    call_delta = delta if delta > 0 else 1.0 + delta
    target = float(black76.norm_ppf(call_delta))
    n = len(fitted)
    lo, hi = np.full(n, -5.0), np.full(n, 5.0)

    def d1(kk):
        return black76.d1_d2_total_variance(kk, np.maximum(svi_total_variance(kk, *cols), 1e-300))[0]

    ok = (d1(lo) >= target) & (d1(hi) <= target)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        above = d1(mid) > target
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return np.where(ok, 0.5 * (lo + hi), np.nan)


def svi_expiry_stats(slices_or_doc, wing_delta: float = WING_DELTA) -> list[ExpiryStats]:
    """Per fitted SVI slice (of a surface document, slice list or fit), the smile statistics of the fit
    (module docstring), sorted by t_years. Slices carry expiry, t_years, forward (USD) and params."""
    fitted = fitted_slices(slices_or_doc)
    if not fitted:
        return []
    ts, cols = _param_columns(fitted)

    def vol(kk):
        return np.sqrt(np.maximum(svi_total_variance(kk, *cols), 0.0) / ts)

    atm = vol(0.0)
    k_c = svi_delta_log_moneyness(fitted, wing_delta)
    k_p = svi_delta_log_moneyness(fitted, -wing_delta)
    c_iv = np.where(np.isfinite(k_c), vol(np.nan_to_num(k_c)), np.nan)
    p_iv = np.where(np.isfinite(k_p), vol(np.nan_to_num(k_p)), np.nan)
    out = []
    for i, s in enumerate(fitted):
        f = s.get("forward", s.get("forward_usd"))
        out.append(_expiry_stats(SVI, s["expiry"], s.get("expiry_code"), ts[i], _nan(f), atm[i], k_c[i], k_p[i],
                                 c_iv[i], p_iv[i], int(s.get("n_points") or 0)))
    return out


def variance_swap_vols(slices_or_doc) -> np.ndarray:
    """Model-free (VIX-style) fair variance-swap vol (fraction) of each fitted smile:
    √(2/T ∫ OTM(k)/F e^{−k} dk), trapezoid rule on k ∈ ±20 ATM standard deviations (4001 points)."""
    fitted = fitted_slices(slices_or_doc)
    if not fitted:
        return np.array([])
    ts, cols = _param_columns(fitted)
    cols = [c[:, None] for c in cols]
    sd_atm = np.sqrt(np.maximum(svi_total_variance(0.0, *cols), 1e-12))          # (N, 1)
    kg = sd_atm * np.linspace(-20.0, 20.0, 4001)[None, :]                        # ±20 ATM sd, per slice
    w = np.maximum(svi_total_variance(kg, *cols), 1e-300)
    integrand = black76.otm_price_over_forward(kg, w) * np.exp(-kg)
    var_t = 2.0 * trapezoid(integrand, kg, axis=1)
    return np.sqrt(var_t / ts)


@dataclass(frozen=True)
class VarianceSwapVol(Record):
    """The SVI fit's variance-swap vol (fraction) at a constant maturity; ``extrapolated`` outside the
    fitted expiries."""

    source: str
    tenor_days: float
    t_years: float
    vol: float | None
    extrapolated: bool


def vs_vol_at(slices_or_doc, tenor_days: float, days_per_year: float) -> VarianceSwapVol:
    """The SVI variance-swap vol at `tenor_days` (total variance linear in T between the fitted expiries,
    flat vol outside); `days_per_year` of the slices' t_years basis."""
    fitted = fitted_slices(slices_or_doc)
    vs = variance_swap_vols(fitted)
    target = float(tenor_days) / float(days_per_year)
    vol, extrapolated = interpolate_total_variance([s["t_years"] for s in fitted], vs, target)
    return VarianceSwapVol(source=SVI, tenor_days=float(tenor_days), t_years=target, vol=_opt(vol),
                           extrapolated=extrapolated)


# --------------------------------------------------------------------------------------------- across expiries

def constant_maturity(stats: Sequence[ExpiryStats], tenors_days: Iterable[float],
                      days_per_year: float) -> list[ConstantMaturity]:
    """Smile statistics at each tenor (days) from per-expiry statistics of one source (module docstring):
    ATM and fixed-delta 25Δ vols with total variance linear in T, flat outside the listed expiries."""
    sources = {s.source for s in stats}
    if len(sources) > 1:
        raise ValueError(f"constant_maturity mixes sources {sorted(sources)}: give one source's statistics")
    source = sources.pop() if sources else MARKS
    t = np.array([s.t_years for s in stats], dtype=float)
    series = {name: np.array([_nan(getattr(s, name)) for s in stats], dtype=float)
              for name in ("atm_iv", "call25_iv", "put25_iv")}
    out = []
    for tenor in tenors_days:
        target = float(tenor) / float(days_per_year)
        atm, extrapolated = interpolate_total_variance(t, series["atm_iv"], target)
        c, _ = interpolate_total_variance(t, series["call25_iv"], target)
        p, _ = interpolate_total_variance(t, series["put25_iv"], target)
        rr = c - p if c is not None and p is not None else None
        bf = 0.5 * (c + p) - atm if rr is not None and atm is not None else None
        out.append(ConstantMaturity(source=source, tenor_days=float(tenor), t_years=target, atm_iv=_opt(atm),
                                    call25_iv=_opt(c), put25_iv=_opt(p), rr25=_opt(rr), bf25=_opt(bf),
                                    extrapolated=extrapolated))
    return out


def expiry_key(expiry):
    """A comparable key for an expiry (a UTC Timestamp for datetimes, naive ones read as UTC; other labels as given)."""
    try:
        stamp = pd.Timestamp(expiry)
    except (TypeError, ValueError):
        return expiry
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


def term_structure(marks: Sequence[ExpiryStats], svi: Sequence[ExpiryStats]) -> list[TermPoint]:
    """The listed expiries of either source with both sources' ATM IV, RR25 and BF25 (fractions) side by side;
    t_years in years, forward in USD."""
    by_key: dict = {}
    for s in marks:
        by_key.setdefault(expiry_key(s.expiry), {})[MARKS] = s
    for s in svi:
        by_key.setdefault(expiry_key(s.expiry), {})[SVI] = s
    out = []
    for both in by_key.values():
        m, v = both.get(MARKS), both.get(SVI)
        ref = m or v
        out.append(TermPoint(expiry=ref.expiry, expiry_code=(m.expiry_code if m else None) or (v.expiry_code if v else None),
                             t_years=ref.t_years, forward_usd=_opt(ref.forward_usd),
                             atm_iv_marks=m.atm_iv if m else None, atm_iv_svi=v.atm_iv if v else None,
                             rr25_marks=m.rr25 if m else None, rr25_svi=v.rr25 if v else None,
                             bf25_marks=m.bf25 if m else None, bf25_svi=v.bf25 if v else None))
    out.sort(key=lambda p: p.t_years)
    return out


def summary_stats(chain_frame: pd.DataFrame, surface_slices_or_none, tenors_days: Iterable[float],
                  days_per_year: float) -> SummaryStats:
    """The smile fields of one snapshot's summary: constant-maturity ATM IV, RR25, BF25 at each tenor (days)
    from marks and from SVI, the 30-day variance-swap vol of the SVI fit, the term slope (ATM IV 90 d − 7 d)
    of each source and the term structure. `surface_slices_or_none`: the stored surface document, its
    slices or None; `days_per_year` the basis of the frame's t_years (365 for ACT/365)."""
    tenors = tuple(float(t) for t in tenors_days)
    marks = marks_expiry_stats(chain_frame)
    fitted = fitted_slices(surface_slices_or_none)
    svi = svi_expiry_stats(fitted)
    cm_marks = constant_maturity(marks, tenors, days_per_year)
    cm_svi = constant_maturity(svi, tenors, days_per_year) if svi else []

    def slope(stats):
        if not stats:
            return None
        front, back = constant_maturity(stats, TERM_SLOPE_DAYS, days_per_year)
        return back.atm_iv - front.atm_iv if front.atm_iv is not None and back.atm_iv is not None else None

    vs = vs_vol_at(fitted, VS_TENOR_DAYS, days_per_year).vol if fitted else None
    return SummaryStats(days_per_year=float(days_per_year), tenors_days=tenors, has_surface=bool(fitted),
                        constant_maturity_marks=tuple(cm_marks), constant_maturity_svi=tuple(cm_svi),
                        vs_vol_30d_svi=vs, term_slope_marks=_opt(slope(marks)), term_slope_svi=_opt(slope(svi)),
                        term_structure=tuple(term_structure(marks, svi)))
