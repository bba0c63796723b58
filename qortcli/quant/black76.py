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

Pure numpy/scipy; no I/O.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erfcx, ndtr

SQRT2 = np.sqrt(2.0)
INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)

__all__ = ["as_arrays", "d1_d2", "normalised_otm", "price_usd", "price_coin", "premium_usd_now", "greeks",
           "GREEK_NAMES"]

GREEK_NAMES = ("delta", "gamma", "vega", "theta", "rho", "delta_coin", "delta_pa", "gamma_coin", "vega_coin",
               "theta_coin")


def as_arrays(*values, dtype=float):
    """Broadcast the inputs to one shape as float arrays (booleans stay bool when dtype=None)."""
    arrays = np.broadcast_arrays(*[np.asarray(v) for v in values])
    return [np.asarray(a, dtype=dtype) if dtype is not None else a for a in arrays]


def _call_flags(is_call, shape) -> np.ndarray:
    flags = np.asarray(is_call)
    if flags.dtype.kind in "US":  # "call"/"put" or "C"/"P"
        lowered = np.char.lower(flags.astype(str))
        flags = (lowered == "call") | (lowered == "c")
    return np.broadcast_to(flags.astype(bool), shape)


def d1_d2(F, K, t_years, sigma):
    """Black-76 ``d1, d2`` (dimensionless) for forwards ``F``, strikes ``K``, years ``t_years``, vol ``sigma``."""
    F, K, t_years, sigma = as_arrays(F, K, t_years, sigma)
    s = sigma * np.sqrt(t_years)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.log(F / K) / s + 0.5 * s
    return d1, d1 - s


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
        d1 = xl / sl + 0.5 * sl
        out[lower] = 0.5 * np.exp(-0.5 * (xl / sl) ** 2 - sl * sl / 8.0) * (
            erfcx(-d1 / SQRT2) - erfcx(-(d1 - sl) / SQRT2))
        upper = ~lower & (s > 0)
        xu, su = x[upper], s[upper]
        d1 = xu / su + 0.5 * su
        out[upper] = np.exp(0.5 * xu) * ndtr(d1) - np.exp(-0.5 * xu) * ndtr(d1 - su)
    return out


def _undiscounted_usd(F, K, t_years, sigma, call):
    """Undiscounted Black-76 USD price: the out-of-the-money option's value plus intrinsic value."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x = -np.abs(np.log(F / K))
        otm = np.sqrt(F * K) * normalised_otm(x, sigma * np.sqrt(t_years))
    intrinsic = np.where(call, np.maximum(F - K, 0.0), np.maximum(K - F, 0.0))
    return otm + intrinsic


def price_usd(F, K, t_years, sigma, is_call, rate=0.0):
    """Black-76 USD price ``e^{-rT} E[payoff]`` of options on the forward ``F`` (USD)."""
    F, K, t_years, sigma, rate = as_arrays(F, K, t_years, sigma, rate)
    call = _call_flags(is_call, F.shape)
    return np.exp(-rate * t_years) * _undiscounted_usd(F, K, t_years, sigma, call)


def price_coin(F, K, t_years, sigma, is_call, rate=0.0):
    """Coin premium ``V = price_usd / F`` (Deribit's ``mark_price`` unit: BTC per BTC option)."""
    F = np.asarray(F, dtype=float)
    return price_usd(F, K, t_years, sigma, is_call, rate) / F


def premium_usd_now(price_coin_, index_price):
    """USD premium paid now: the coin premium times the spot index price (USD)."""
    return np.asarray(price_coin_, dtype=float) * np.asarray(index_price, dtype=float)


def greeks(F, K, t_years, sigma, is_call, rate=0.0, days_per_year: float = 365.0) -> dict[str, np.ndarray]:
    """Prices and Greeks for every option (see the module docstring for names and units).

    Returns a dict of arrays: ``price_usd, price_coin`` and ``delta, gamma, vega, theta, rho`` (Deribit's
    USD set) and ``delta_coin, delta_pa, gamma_coin, vega_coin, theta_coin`` (Greeks of the coin
    premium ``V``). ``days_per_year`` converts theta to calendar days (365 for ACT/365).
    """
    F, K, t_years, sigma, rate = as_arrays(F, K, t_years, sigma, rate)
    call = _call_flags(is_call, F.shape)
    disc = np.exp(-rate * t_years)
    sqrt_t = np.sqrt(t_years)
    s = sigma * sqrt_t
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.log(F / K) / s + 0.5 * s
    d2 = d1 - s
    pdf = INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
    n1 = ndtr(d1)
    p_usd = disc * _undiscounted_usd(F, K, t_years, sigma, call)
    v = p_usd / F

    delta = disc * np.where(call, n1, n1 - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = disc * pdf / (F * s)
        theta_year = rate * p_usd - disc * F * pdf * sigma / (2.0 * sqrt_t)
    vega = disc * F * pdf * sqrt_t / 100.0
    rho = disc * K * t_years * np.where(call, ndtr(d2), -ndtr(-d2)) / 100.0
    theta = theta_year / days_per_year

    delta_pa = delta - v
    delta_coin = delta_pa / F
    gamma_coin = gamma / F - 2.0 * delta_coin / F
    return {
        "price_usd": p_usd, "price_coin": v,
        "delta": delta, "gamma": gamma, "vega": vega, "theta": theta, "rho": rho,
        "delta_coin": delta_coin, "delta_pa": delta_pa, "gamma_coin": gamma_coin,
        "vega_coin": vega / F, "theta_coin": theta / F,
    }
