"""Coin-settled Black-76: USD and coin prices and Greeks, vectorised over numpy arrays.

Conventions (Deribit's, verified on its recorded marks and ticker greeks):

- ``F`` is the expiry's forward in USD (Deribit ``underlying_price``), ``K`` the strike in USD,
  ``t_years`` the time to expiry in years (ACT/365 by default, see ``qortcli.timeutils``), ``sigma``
  the volatility as a fraction (0.52, not 52), ``is_call`` a boolean array, ``rate`` a continuously
  compounded rate as a fraction (Deribit uses 0).
- USD price (Black-76): ``e^{-rT} [F N(d1) - K N(d2)]`` for a call, ``e^{-rT} [K N(-d2) - F N(-d1)]``
  for a put, ``d1 = (ln(F/K) + s^2/2)/s``, ``d2 = d1 - s``, ``s = sigma sqrt(T)``.
- Coin premium ``V = price_usd / F`` (what Deribit quotes as ``mark_price``); the USD premium paid now
  is ``V * index_price`` (spot index).

Greeks, named by convention and unit:

=============  ======================================================================  ================
name           definition                                                              unit
=============  ======================================================================  ================
delta          dP/dF: ``e^{-rT} N(d1)`` (call), ``e^{-rT} (N(d1) - 1)`` (put)            USD per USD
gamma          d2P/dF2: ``e^{-rT} phi(d1) / (F s)``                                     per USD
vega           dP/dsigma / 100: ``e^{-rT} F phi(d1) sqrt(T) / 100``                     USD per vol point
theta          dP/dt (calendar time, F fixed) / days_per_year                          USD per day
rho            dP/dr / 100 with spot fixed (F = S e^{rT}): ``e^{-rT} K T N(d2)/100``     USD per 1 % rate
               (call), ``-e^{-rT} K T N(-d2)/100`` (put) -- Deribit's published rho
delta_coin     dV/dF = ``(delta - V) / F``                                              coin per USD
delta_pa       premium-adjusted delta ``F dV/dF = delta - V`` (r = 0: N(d1) - V)         dimensionless
gamma_coin     d2V/dF2 = ``gamma / F - 2 delta_coin / F``                               coin per USD^2
vega_coin      dV/dsigma / 100 = ``vega / F``                                           coin per vol point
theta_coin     dV/dt (F fixed) / days_per_year = ``theta / F``                          coin per day
=============  ======================================================================  ================

Which USD: the USD greeks above are **forward-USD** -- derivatives of the Black-76 value ``P = V * F``
(what Deribit publishes) -- while a premium paid now is **spot-USD**, ``V * S`` with ``S`` the index.
To add a greek to spot-USD premiums convert it through the coin greek: ``vega_coin * S`` is the vega in
spot-USD per vol point, ``theta_coin * S`` the theta in spot-USD per day (`spot_usd_greek`).

This module is the one home of Black-76 in the project: the normal pdf/cdf/ppf (`norm_pdf`, `norm_cdf`,
`norm_ppf`), ``d1, d2`` in (F, K, T, sigma) and in total-variance form (`d1_d2_total_variance`), the
normalised out-of-the-money price (`normalised_otm`, `otm_price_over_forward`), vega per unit vol,
the forward delta, and the one skew-aware digital (`prob_above`) that every probability of profit uses.

Degenerate inputs never give a silent NaN: `greeks` returns a reason code per option (``GREEK_REASONS``:
expired ``t_years <= 0``, non-positive vol, invalid input) and NaN values where the code is not "ok".

Pure numpy/scipy; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erfcx, ndtr, ndtri

from qortcli.quant.records import Record

SQRT2 = np.sqrt(2.0)
INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)

__all__ = ["as_arrays", "norm_pdf", "norm_cdf", "norm_ppf", "d1_d2", "d1_d2_total_variance", "normalised_otm",
           "normalised_otm_core", "normalised_otm_at_inflection", "otm_price_over_forward", "price_usd",
           "price_coin", "premium_usd_now", "vega_per_unit_vol", "forward_delta", "prob_above", "greeks", "Greeks",
           "spot_usd_greek", "GREEK_NAMES", "GREEK_REASONS", "greek_reason_name"]

GREEK_NAMES = ("delta", "gamma", "vega", "theta", "rho", "delta_coin", "delta_pa", "gamma_coin", "vega_coin",
               "theta_coin")

#: why a greek is NaN (int8 codes of `Greeks.reason`)
GREEK_OK, GREEK_EXPIRED, GREEK_NON_POSITIVE_VOL, GREEK_INVALID_INPUT = range(4)
GREEK_REASONS = {
    GREEK_OK: "ok",
    GREEK_EXPIRED: "expired",                   # t_years <= 0: the option has no time value left to price
    GREEK_NON_POSITIVE_VOL: "non_positive_vol",  # sigma <= 0: no distribution (zero vol is not a market)
    GREEK_INVALID_INPUT: "invalid_input",        # NaN/inf input, F <= 0 or K <= 0
}
_GREEK_REASON_NAMES = np.array([GREEK_REASONS[c] for c in range(len(GREEK_REASONS))], dtype=object)


def greek_reason_name(code: int) -> str:
    """The name of one `Greeks.reason` code (a label, no units)."""
    return GREEK_REASONS.get(int(code), f"unknown({code})")


def as_arrays(*values, dtype=float):
    """Broadcast the inputs to one shape as float arrays (units unchanged; booleans stay bool when dtype=None)."""
    arrays = np.broadcast_arrays(*[np.asarray(v) for v in values])
    return [np.asarray(a, dtype=dtype) if dtype is not None else a for a in arrays]


def _call_flags(is_call, shape) -> np.ndarray:
    flags = np.asarray(is_call)
    if flags.dtype.kind in "US":  # "call"/"put" or "C"/"P"
        lowered = np.char.lower(flags.astype(str))
        flags = (lowered == "call") | (lowered == "c")
    return np.broadcast_to(flags.astype(bool), shape)


# ------------------------------------------------------------------------------------ the normal law

def norm_pdf(x):
    """Standard normal density phi(x) (dimensionless)."""
    x = np.asarray(x, dtype=float)
    return INV_SQRT_2PI * np.exp(-0.5 * x * x)


def norm_cdf(x):
    """Standard normal distribution function N(x) (probability)."""
    return ndtr(np.asarray(x, dtype=float))


def norm_ppf(p):
    """Inverse of N: the x with N(x) = p (p a probability in (0, 1))."""
    return ndtri(np.asarray(p, dtype=float))


# ------------------------------------------------------------------------------------ d1, d2

def d1_d2(F, K, t_years, sigma):
    """Black-76 ``d1, d2`` (dimensionless) for forwards ``F``, strikes ``K`` (USD), years ``t_years``, vol
    ``sigma`` (fraction)."""
    F, K, t_years, sigma = as_arrays(F, K, t_years, sigma)
    s = sigma * np.sqrt(t_years)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.log(F / K) / s + 0.5 * s
    return d1, d1 - s


def d1_d2_total_variance(k, w):
    """``d1, d2`` in total-variance form: ``d1 = -k/sqrt(w) + sqrt(w)/2``, ``d2 = d1 - sqrt(w)``, with
    ``k = ln(K/F)`` (log-moneyness) and ``w = sigma^2 T`` (total implied variance, dimensionless)."""
    k, w = as_arrays(k, w)
    sd = np.sqrt(w)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = -k / sd + 0.5 * sd
    return d1, d1 - sd


# ------------------------------------------------------------------------------------ normalised prices

def normalised_otm_core(x, s, upper: bool = False):
    """The erfcx "cores" of the normalised Black price ``b(x, s)`` (``x = -|ln(F/K)| <= 0``, ``s = sigma sqrt(T)``).

    With ``d1 = x/s + s/2``, ``d2 = d1 - s`` and ``E = exp(-x^2/(2 s^2) - s^2/8)``:
    lower (``upper=False``): ``b = 1/2 E [erfcx(-d1/sqrt2) - erfcx(-d2/sqrt2)]`` -- returns the bracket;
    upper (``upper=True``): ``e^{x/2} - b = 1/2 E [erfcx(d1/sqrt2) + erfcx(-d2/sqrt2)]`` -- returns the bracket.
    Neither underflows in the deep wings (used by `normalised_otm` and the implied-vol solver).
    """
    x, s = np.asarray(x, dtype=float), np.asarray(s, dtype=float)
    q = x / s
    u1 = -(q + 0.5 * s) / SQRT2                    # -d1 / sqrt2
    u2 = -(q - 0.5 * s) / SQRT2                    # -d2 / sqrt2
    if upper:
        return erfcx(-u1) + erfcx(u2)
    return erfcx(u1) - erfcx(u2)


def normalised_otm_at_inflection(x):
    """``b(x, s_c)`` at the inflection point ``s_c = sqrt(2|x|)`` (where d1 = 0):
    ``1/2 e^{x/2} (1 - erfcx(sqrt|x|))`` (dimensionless, ``x <= 0``)."""
    x = np.asarray(x, dtype=float)
    return 0.5 * np.exp(0.5 * x) * (1.0 - erfcx(np.sqrt(-x)))


def normalised_otm(x, s):
    """Normalised out-of-the-money Black price ``b = P_otm / sqrt(F K)`` for ``x = -|ln(F/K)| <= 0``.

    ``b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2)``, ``s = sigma sqrt(T)``. Below the
    inflection point ``s_c = sqrt(2|x|)`` it is evaluated as
    ``1/2 exp(-x^2/(2 s^2) - s^2/8) [erfcx(-d1/sqrt2) - erfcx(-d2/sqrt2)]``, which does not underflow in
    the deep wings; above it with the plain cumulative normals.
    """
    x, s = as_arrays(x, s)
    out = np.zeros(np.broadcast(x, s).shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        lower = s * s < -2.0 * x
        xl, sl = x[lower], s[lower]
        out[lower] = 0.5 * np.exp(-0.5 * (xl / sl) ** 2 - sl * sl / 8.0) * normalised_otm_core(xl, sl)
        upper = ~lower & (s > 0)
        xu, su = x[upper], s[upper]
        d1 = xu / su + 0.5 * su
        out[upper] = np.exp(0.5 * xu) * ndtr(d1) - np.exp(-0.5 * xu) * ndtr(d1 - su)
    return out


def otm_price_over_forward(k, w):
    """Undiscounted out-of-the-money price divided by the forward, ``P_otm / F`` (coin per coin option at
    zero rate), at log-moneyness ``k = ln(K/F)`` and total variance ``w = sigma^2 T``: the put for
    ``k < 0``, the call for ``k >= 0``. Equal to ``e^{k/2} b(-|k|, sqrt(w))``."""
    k, w = as_arrays(k, w)
    return np.exp(0.5 * k) * normalised_otm(-np.abs(k), np.sqrt(np.maximum(w, 0.0)))


def _undiscounted_usd(F, K, t_years, sigma, call):
    """Undiscounted Black-76 USD price: the out-of-the-money option's value plus intrinsic value."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x = -np.abs(np.log(F / K))
        otm = np.sqrt(F * K) * normalised_otm(x, sigma * np.sqrt(t_years))
    intrinsic = np.where(call, np.maximum(F - K, 0.0), np.maximum(K - F, 0.0))
    return otm + intrinsic


def price_usd(F, K, t_years, sigma, is_call, rate=0.0):
    """Black-76 forward-USD price ``e^{-rT} E[payoff]`` (USD) of options on the forward ``F`` (USD), strike
    ``K`` (USD), ``t_years`` (years), ``sigma`` (fraction), ``rate`` (fraction)."""
    F, K, t_years, sigma, rate = as_arrays(F, K, t_years, sigma, rate)
    call = _call_flags(is_call, F.shape)
    return np.exp(-rate * t_years) * _undiscounted_usd(F, K, t_years, sigma, call)


def price_coin(F, K, t_years, sigma, is_call, rate=0.0):
    """Coin premium ``V = price_usd / F`` (coin per option: Deribit's ``mark_price`` unit, BTC per BTC option)."""
    F = np.asarray(F, dtype=float)
    return price_usd(F, K, t_years, sigma, is_call, rate) / F


def premium_usd_now(price_coin_, index_price):
    """Spot-USD premium paid now: the coin premium times the spot index price (USD)."""
    return np.asarray(price_coin_, dtype=float) * np.asarray(index_price, dtype=float)


def spot_usd_greek(coin_greek, index_usd):
    """A coin greek (e.g. ``vega_coin``, coin per vol point) in spot-USD (``x index``): the unit in which it
    adds to spot-USD premiums such as ``premium_usd`` and ``mark_usd``."""
    return np.asarray(coin_greek, dtype=float) * np.asarray(index_usd, dtype=float)


# ------------------------------------------------------------------------------------ sensitivities

def vega_per_unit_vol(F, K, t_years, sigma):
    """Undiscounted Black-76 vega per unit of vol, ``F phi(d1) sqrt(T)``: forward-USD per 1.00 of vol when
    ``F`` and ``K`` are in USD (divide by 100 for Deribit's per-vol-point vega)."""
    F, K, t_years, sigma = as_arrays(F, K, t_years, sigma)
    d1, _ = d1_d2(F, K, t_years, sigma)
    return F * norm_pdf(d1) * np.sqrt(t_years)


def forward_delta(F, K, t_years, sigma, is_call):
    """Deribit's forward delta without premium adjustment (dimensionless): ``N(d1)`` for a call,
    ``N(d1) - 1`` for a put, at zero rate; NaN where ``t_years <= 0`` or ``sigma <= 0`` or an input is
    missing."""
    F, K, t_years, sigma = as_arrays(F, K, t_years, sigma)
    call = _call_flags(is_call, F.shape)
    with np.errstate(invalid="ignore"):
        valid = (F > 0) & (K > 0) & (t_years > 0) & (sigma > 0)
    d1, _ = d1_d2(F, K, t_years, sigma)
    n1 = ndtr(d1)
    return np.where(valid, np.where(call, n1, n1 - 1.0), np.nan)


def forward_gamma(F, K, t_years, sigma):
    """Black-76 gamma ``d²P/dF² = φ(d1) / (F σ √T)`` per USD (calls and puts alike, zero rate); NaN where
    ``t_years <= 0`` or ``sigma <= 0`` or an input is missing. The gamma-only kernel of `greeks` for code that
    needs nothing else (exposure profiles over many spot levels)."""
    F, K, t_years, sigma = as_arrays(F, K, t_years, sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = (F > 0) & (K > 0) & (t_years > 0) & (sigma > 0)
        s = sigma * np.sqrt(t_years)
        d1 = np.log(F / K) / s + 0.5 * s
        gamma = norm_pdf(d1) / (F * s)
    return np.where(valid, gamma, np.nan)


def prob_above(k, w, dw_dk=0.0):
    """Risk-neutral probability that the underlying ends above the strike, ``P(S_T > K)`` (a probability).

    Skew-aware digital in total-variance form: with ``k = ln(K/F)``, ``w = w(k)`` the total implied
    variance at that strike and ``dw_dk`` its slope along the smile,

        P(S_T > K) = -dC/dK = N(d2) - phi(d2) * dw_dk / (2 sqrt(w)),   d2 = -k/sqrt(w) - sqrt(w)/2,

    the flat-vol digital ``N(d2)`` (``dw_dk = 0``, the default) corrected by vega x dsigma/dK. Clipped to
    [0, 1]. Zero variance (``w <= 0``, e.g. at expiry) gives the certain outcome ``1{K < F}``; NaN where
    ``w`` or ``k`` is NaN.
    """
    k, w, dw_dk = as_arrays(k, w, dw_dk)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.sqrt(np.where(w > 0, w, np.nan))
        d2 = -k / sd - 0.5 * sd
        p = np.clip(ndtr(d2) - norm_pdf(d2) * dw_dk / (2.0 * sd), 0.0, 1.0)
    certain = (k < 0).astype(float)
    out = np.where(w > 0, p, np.where(np.isnan(w) | np.isnan(k), np.nan, certain))
    return out if out.ndim else float(out)


@dataclass(frozen=True)
class Greeks(Record):
    """Prices and greeks of each option (arrays of one shape; units in the module docstring) and why any
    of them is NaN: ``reason`` int8 codes of ``GREEK_REASONS`` (``reason_names()`` as strings)."""

    price_usd: np.ndarray
    price_coin: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray
    rho: np.ndarray
    delta_coin: np.ndarray
    delta_pa: np.ndarray
    gamma_coin: np.ndarray
    vega_coin: np.ndarray
    theta_coin: np.ndarray
    reason: np.ndarray

    def reason_names(self) -> np.ndarray:
        """The reason codes as strings (same shape)."""
        return _GREEK_REASON_NAMES[self.reason]


def greeks(F, K, t_years, sigma, is_call, rate=0.0, *, days_per_year: float) -> Greeks:
    """Prices and Greeks for every option (see the module docstring for names and units).

    ``F`` forward and ``K`` strike (USD), ``t_years`` (years on the caller's day-count basis), ``sigma``
    (fraction), ``rate`` (fraction), ``days_per_year`` the same basis' days per year (365 for ACT/365), which
    converts theta to calendar days. Returns `Greeks`: ``price_usd`` (forward-USD), ``price_coin`` and
    ``delta, gamma, vega, theta, rho`` (Deribit's forward-USD set) and ``delta_coin, delta_pa, gamma_coin,
    vega_coin, theta_coin`` (greeks of the coin premium ``V``), each NaN where ``reason`` is not "ok"
    (expired, non-positive vol, invalid input). ``g["delta"]`` reads like ``g.delta``.
    """
    F, K, t_years, sigma, rate = as_arrays(F, K, t_years, sigma, rate)
    call = _call_flags(is_call, F.shape)
    with np.errstate(invalid="ignore"):
        invalid = ~(np.isfinite(F) & np.isfinite(K) & np.isfinite(t_years) & np.isfinite(sigma)
                    & np.isfinite(rate) & (F > 0) & (K > 0))
        reason = np.where(invalid, GREEK_INVALID_INPUT,
                          np.where(~(t_years > 0), GREEK_EXPIRED,
                                   np.where(~(sigma > 0), GREEK_NON_POSITIVE_VOL, GREEK_OK))).astype(np.int8)
    disc = np.exp(-rate * t_years)
    with np.errstate(divide="ignore", invalid="ignore"):
        sqrt_t = np.sqrt(t_years)
        s = sigma * sqrt_t
        d1 = np.log(F / K) / s + 0.5 * s
        d2 = d1 - s
        pdf = INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
        n1 = ndtr(d1)
        p_usd = disc * _undiscounted_usd(F, K, t_years, sigma, call)
        v = p_usd / F
        delta = disc * np.where(call, n1, n1 - 1.0)
        gamma = disc * pdf / (F * s)
        theta_year = rate * p_usd - disc * F * pdf * sigma / (2.0 * sqrt_t)
        vega = disc * F * pdf * sqrt_t / 100.0
        rho = disc * K * t_years * np.where(call, ndtr(d2), -ndtr(-d2)) / 100.0
        theta = theta_year / days_per_year
        delta_pa = delta - v
        delta_coin = delta_pa / F
        gamma_coin = gamma / F - 2.0 * delta_coin / F
        vega_coin = vega / F
        theta_coin = theta / F
    values = [p_usd, v, delta, gamma, vega, theta, rho, delta_coin, delta_pa, gamma_coin, vega_coin, theta_coin]
    bad = reason != GREEK_OK
    if bad.any():                                   # undefined where a reason says why (none on a clean chain)
        values = [np.where(bad, np.nan, a) for a in values]
    return Greeks(*values, reason=reason)
