"""Vectorised Black-76 implied volatility from coin or USD option prices.

Method (after Jaeckel, "By Implication", 2006, and "Let's Be Rational", 2015): every price is reduced
to the normalised out-of-the-money time value ``beta = P_otm / sqrt(F K)`` at ``x = -|ln(F/K)|``
(put-call parity moves in-the-money options to the out-of-the-money side, undiscounting by
``e^{rT}``), and the total volatility ``s = sigma sqrt(T)`` is solved on the whole array at once:

- the inflection point ``s_c = sqrt(2|x|)`` splits the curve ``b(s)`` into a convex lower part and a
  concave upper part; ``beta < b(s_c)`` is solved on ``ln b(s) = ln beta`` from a guess interpolated in a
  small table of ``(s/s_c)^2`` over ``(sqrt|x|, 1/(1 - ln(beta/b_c)))`` (built once by this solver from
  the asymptotic guess ``s0 = sqrt(2 x^2 / (|x| - 4 ln(beta / b_c)))``); otherwise on ``ln(b_max - b(s)) = ln(b_max - beta)``
  (``b_max = e^{x/2}``) from ``s0 = -2 N^{-1}((b_max - beta) / (e^{x/2} + e^{-x/2}))``;
- both objectives are evaluated with the scaled complementary error function cores of
  `qortcli.quant.black76.normalised_otm_core` (no underflow in the deep wings, no ``exp`` per step),
  and iterated with Halley steps kept inside a bracket that every evaluation tightens (bisection
  when a step would leave it), over masked sub-arrays of the options not yet converged.

Prices outside the no-arbitrage bounds give NaN and a reason code (``REASONS``), never an exception.
Pure numpy/scipy; no I/O.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from qortcli.quant.black76 import (_call_flags, as_arrays, norm_ppf, normalised_otm_at_inflection,
                                   normalised_otm_core)

(OK, NON_POSITIVE_PRICE, BELOW_INTRINSIC, ABOVE_UPPER_BOUND, EXPIRED, INVALID_INPUT, NO_CONVERGENCE,
 MISSING_PRICE) = range(8)
REASONS = {
    OK: "ok",
    NON_POSITIVE_PRICE: "non_positive_price",
    BELOW_INTRINSIC: "below_intrinsic",        # no time value: price <= intrinsic value
    ABOVE_UPPER_BOUND: "above_upper_bound",    # call >= F (coin price >= 1), put >= K
    EXPIRED: "expired",                        # t_years <= 0
    INVALID_INPUT: "invalid_input",            # NaN/inf, F <= 0 or K <= 0
    NO_CONVERGENCE: "no_convergence",
    MISSING_PRICE: "missing_price",            # price is NaN (e.g. no bid), the rest valid
}

#: relative price error left by a final Halley step (from its cubic error term) below which it stops
_PREDICTED_RESIDUAL = 1e-14
_REASON_NAMES = np.array([REASONS[c] for c in range(len(REASONS))], dtype=object)
_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)
_LN_HALF = np.log(0.5)


class ImpliedVol(NamedTuple):
    """``sigma`` (fraction, NaN where undefined) and ``reason`` (int codes, see ``REASONS``)."""

    sigma: np.ndarray
    reason: np.ndarray

    def reason_names(self) -> np.ndarray:
        """The reason codes as strings (same shape)."""
        return _REASON_NAMES[self.reason]


def reason_name(code: int) -> str:
    """The name of one reason code (a label, no units)."""
    return REASONS.get(int(code), f"unknown({code})")


def implied_vol(price, F, K, t_years, is_call, rate=0.0, unit: str = "coin",
                tol: float = 1e-9, max_iter: int = 64) -> ImpliedVol:
    """Black-76 implied volatilities (fractions) for option prices, vectorised.

    ``price`` is the coin premium ``V`` (``unit="coin"``, Deribit's ``mark_price``) or the Black-76 USD
    value ``V * F`` (``unit="usd"``; not the spot-converted premium). ``F`` forward (USD), ``K`` strike
    (USD), ``t_years`` years to expiry, ``is_call`` booleans (or "call"/"put"), ``rate`` fraction.
    Returns ``ImpliedVol(sigma, reason)``: sigma is NaN where reason != OK. ``tol`` bounds the last
    Halley step relative to ``sigma`` (the error after it is of the order of its cube).
    """
    if unit not in ("coin", "usd"):
        raise ValueError(f"unit must be 'coin' or 'usd', got {unit!r}")
    price, F, K, t_years, rate = as_arrays(price, F, K, t_years, rate)
    shape = price.shape
    price, F, K, t_years, rate = (a.ravel() for a in (price, F, K, t_years, rate))
    call = _call_flags(is_call, shape).ravel()
    sigma = np.full(price.shape, np.nan)
    reason = np.full(price.shape, OK, dtype=np.int8)

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        finite = np.isfinite(F) & np.isfinite(K) & np.isfinite(t_years) & np.isfinite(rate)
        bad = ~finite | ~(F > 0) | ~(K > 0) | np.isinf(price)
        reason[bad] = INVALID_INPUT
        reason[~bad & np.isnan(price)] = MISSING_PRICE
        expired = ~bad & ~(t_years > 0)
        reason[expired] = EXPIRED
        nonpos = (reason == OK) & ~(price > 0)  # NaN prices are MISSING_PRICE already
        reason[nonpos] = NON_POSITIVE_PRICE

        undisc = price * F if unit == "coin" else price.copy()
        if np.any(rate != 0.0):
            undisc *= np.exp(rate * t_years)
        intrinsic = np.where(call, np.maximum(F - K, 0.0), np.maximum(K - F, 0.0))
        time_value = undisc - intrinsic
        below = (reason == OK) & ~(time_value > 0)
        reason[below] = BELOW_INTRINSIC
        above = (reason == OK) & ~(undisc < np.where(call, F, K))
        reason[above] = ABOVE_UPPER_BOUND

        ok_mask = reason == OK
        if ok_mask.all():                       # the common case: no gathers
            todo = slice(None)
            Ft, Kt, tv, tt = F, K, time_value, t_years
        else:
            todo = np.flatnonzero(ok_mask)
            Ft, Kt, tv, tt = F[todo], K[todo], time_value[todo], t_years[todo]
        ratio = Ft / Kt
        x = np.log(ratio)
        np.abs(x, out=x)
        np.negative(x, out=x)                   # x = -|ln(F/K)|
        root_fk = np.sqrt(Ft * Kt)
        beta = tv / root_fk
        # beta < b_max = e^{x/2} by the bounds above, up to rounding: check it in normalised terms too
        above_n = ~(beta < np.minimum(ratio, 1.0 / ratio) ** 0.5)
        s, converged = solve_total_vol(beta, x, tol=tol, max_iter=max_iter)
        s /= np.sqrt(tt)
    code = np.where(converged, OK, NO_CONVERGENCE).astype(np.int8)
    code[above_n] = ABOVE_UPPER_BOUND
    s[code != OK] = np.nan
    sigma[todo] = s
    reason[todo] = code
    return ImpliedVol(sigma.reshape(shape), reason.reshape(shape))


def implied_vol_coin(price_coin, F, K, t_years, is_call, rate=0.0, **kw) -> ImpliedVol:
    """Implied vols from coin premiums (Deribit ``mark_price``, ``bid_price``, ``ask_price``)."""
    return implied_vol(price_coin, F, K, t_years, is_call, rate, unit="coin", **kw)


def implied_vol_usd(price_usd, F, K, t_years, is_call, rate=0.0, **kw) -> ImpliedVol:
    """Implied vols from Black-76 USD values (coin premium x forward)."""
    return implied_vol(price_usd, F, K, t_years, is_call, rate, unit="usd", **kw)


def _b_critical(x):
    """``b(s_c)`` at the inflection point ``s_c = sqrt(2|x|)`` (d1 = 0), from `black76`."""
    return normalised_otm_at_inflection(x)


# Initial guess in the lower region: (s / s_c)^2 tabulated on (sqrt|x|, q), q = 1 / (1 - ln(beta / b_c)) in
# (0, 1], and interpolated bilinearly (about 1e-4 relative in s on real chains; Halley then needs about two
# steps). Built once, on first use, by this module's own solver from the asymptotic guess.
_TABLE_NA, _TABLE_NQ, _TABLE_SQRT_A_MAX = 128, 256, 2.0
_table: np.ndarray | None = None


def _guess_table() -> np.ndarray:
    global _table
    if _table is None:
        sqrt_a = np.linspace(0.0, _TABLE_SQRT_A_MAX, _TABLE_NA)
        a = np.maximum(sqrt_a ** 2, 1e-8)[:, None] * np.ones((1, _TABLE_NQ))
        q = np.linspace(0.0, 1.0, _TABLE_NQ)[None, :] * np.ones((_TABLE_NA, 1))
        with np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore"):
            beta = _b_critical(-a) * np.exp(1.0 - 1.0 / q)
        table = np.zeros(a.shape)
        inside = (beta > 1e-300) & (q < 1.0)
        s, _ = solve_total_vol(beta[inside], -a[inside], tol=1e-12, guess="asymptotic")
        table[inside] = s * s / (2.0 * a[inside])
        table[:, -1] = 1.0                      # beta = b_c: s = s_c
        _table = np.ascontiguousarray(table.ravel())
    return _table


def _asymptotic_lower_guess(x, beta, b_c):
    """Jaeckel (2006): ln b ~ A - x^2/(2 s^2) matched at s_c: s0 = sqrt(2 x^2 / (|x| - 4 ln(beta / b_c)))."""
    return np.sqrt(2.0 * x * x / (-x - 4.0 * np.log(beta / b_c)))


def _lower_guess(x, beta, b_c, s_c):
    """Initial total vol in the lower region from the table (asymptotic guess beyond |x| = 4)."""
    table = _guess_table()
    q = np.log(beta / b_c)
    np.subtract(1.0, q, out=q)
    np.divide(1.0, q, out=q)                    # q in (0, 1]
    fa = np.sqrt(-x)
    fa *= (_TABLE_NA - 1) / _TABLE_SQRT_A_MAX
    beyond = fa > _TABLE_NA - 1.0
    ia = np.minimum(fa.astype(np.intp), _TABLE_NA - 2)
    fa -= ia                                    # weight in the |x| direction
    q *= _TABLE_NQ - 1
    iq = np.minimum(q.astype(np.intp), _TABLE_NQ - 2)
    q -= iq                                     # weight in the q direction
    ia *= _TABLE_NQ
    ia += iq                                    # flat index of the lower-left node
    t00, t01 = table[ia], table[ia + 1]
    ia += _TABLE_NQ
    t10, t11 = table[ia], table[ia + 1]
    t01 -= t00
    t01 *= q
    t01 += t00                                  # along q at the lower |x| node
    t11 -= t10
    t11 *= q
    t11 += t10
    t11 -= t01
    t11 *= fa
    t11 += t01
    np.sqrt(t11, out=t11)
    t11 *= s_c
    if beyond.any():
        t11[beyond] = _asymptotic_lower_guess(x[beyond], beta[beyond], b_c[beyond])
    return t11


def solve_total_vol(beta, x, tol: float = 1e-9, max_iter: int = 64, guess: str = "table"):
    """Total volatility ``s = sigma sqrt(T)`` (dimensionless) with ``b(x, s) = beta`` for ``x <= 0``,
    ``0 < beta < e^{x/2}`` (normalised price, dimensionless).

    Returns ``(s, converged)`` arrays. No per-option Python loop: each iteration works on the whole
    sub-array of options not yet converged.
    """
    beta = np.asarray(beta, dtype=float)
    x = np.asarray(x, dtype=float)
    s = np.full(beta.shape, np.nan)
    converged = np.zeros(beta.shape, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
        s_c = np.sqrt(-2.0 * x)
        b_c = _b_critical(x)
        lower = beta < b_c
        n_lower = int(np.count_nonzero(lower))
        for region_lower in (True, False):
            n_region = n_lower if region_lower else beta.size - n_lower
            if n_region == 0:
                continue
            if n_region == beta.size:            # one region only: no gathers
                idx = slice(None)
                xs, bs, sc, bcs = x, beta, s_c, b_c
            else:
                idx = np.flatnonzero(lower if region_lower else ~lower)
                xs, bs, sc, bcs = x[idx], beta[idx], s_c[idx], b_c[idx]
            if region_lower:
                target = np.log(bs)
                s0 = (_lower_guess(xs, bs, bcs, sc) if guess == "table"
                      else _asymptotic_lower_guess(xs, bs, bcs))
                lo, hi = np.zeros_like(xs), sc.copy()
            else:
                b_max = np.exp(0.5 * xs)
                target = np.log(b_max - bs)
                s0 = -2.0 * norm_ppf((b_max - bs) / (b_max + np.exp(-0.5 * xs)))
                s0 = np.maximum(s0, sc)
                lo, hi = sc.copy(), np.full_like(xs, np.inf)
            bad0 = ~(s0 > lo) | ~(s0 < hi) | ~np.isfinite(s0)
            s0[bad0] = np.where(np.isfinite(hi[bad0]), 0.5 * (lo[bad0] + hi[bad0]), np.maximum(2.0 * lo[bad0], 1.0))
            sol, ok = _halley(s0, xs, target, lo, hi, region_lower, tol, max_iter)
            s[idx], converged[idx] = sol, ok
    return s, converged


def _objective(s, x, target, region_lower):
    """f, f', f'' of ``ln b(s) - ln beta`` (lower) or ``ln(b_max - b(s)) - ln(b_max - beta)`` (upper)."""
    q = x / s
    hs = 0.5 * s
    core = normalised_otm_core(x, s, upper=not region_lower)   # b (or b_max - b) = 1/2 e^{-q^2/2 - s^2/8} core
    if region_lower:
        r = _SQRT_2_OVER_PI / core         # b'/b
    else:
        r = -_SQRT_2_OVER_PI / core        # (b_max - b)'/(b_max - b)
    q *= q                                 # q^2
    f = np.log(core)
    f -= target
    f -= 0.5 * q + 0.5 * hs * hs - _LN_HALF
    q /= s
    q -= 0.5 * hs                          # q^2/s - s/4
    q -= r
    q *= r                                 # f'' = r (x^2/s^3 - s/4) - r^2
    return f, r, q


def _halley(s, x, target, lo, hi, region_lower, tol, max_iter):
    """Safeguarded Halley iterations on the active sub-array (bracket [lo, hi] tightened each step).

    Returns ``(s, converged)``.
    """
    out = s.copy()
    done = np.zeros(s.shape, dtype=bool)
    act = np.arange(s.size)
    sa, xa, ta, loa, hia = s.copy(), x, target, lo.copy(), hi.copy()
    for _ in range(max_iter):
        f, fp, fpp = _objective(sa, xa, ta, region_lower)
        too_low = (f < 0) if region_lower else (f > 0)   # the root lies above sa
        np.copyto(loa, sa, where=too_low)
        np.copyto(hia, sa, where=~too_low)
        step = f / fp                                    # Newton step is -step
        factor = step * fpp
        factor /= fp
        factor *= -0.5
        factor += 1.0                                    # Halley: divide the Newton step by this
        halley = (factor > 0.5) & (factor < 2.0)
        np.clip(factor, 0.5, 2.0, out=factor)
        step /= factor
        new = sa - step
        outside = ~((new >= loa) & (new <= hia))         # also NaN steps
        np.abs(step, out=step)
        finished = step <= tol * new
        # Halley leaves an error K step^3 in s, K = f2^2/(4 f1^2) - f3/(6 f1) (f1, f2, f3: derivatives of f);
        # f is a log price, so |f1 K| step^3 is the relative price error left: stop once that is negligible
        c = fpp / fp
        c += fp                                          # x^2/s^3 - s/4
        f3 = c + 0.25 * sa
        f3 *= -3.0 / sa
        f3 -= 0.25
        f3 *= fp
        f3 += fpp * (c - 2.0 * fp)                       # f3 = f2 c + f1 (-3 x^2/s^4 - 1/4) - 2 f1 f2
        k = fpp / fp
        k *= k
        k *= 0.25
        k -= f3 / (6.0 * fp)
        k *= fp
        np.abs(k, out=k)
        k *= step * step * step
        finished |= halley & (k <= _PREDICTED_RESIDUAL) & (step <= 1e-3 * new)
        if outside.any():
            oi = np.flatnonzero(outside)
            lo_o, hi_o = loa[oi], hia[oi]
            new[oi] = np.where(np.isfinite(hi_o), 0.5 * (lo_o + hi_o), 2.0 * np.maximum(sa[oi], lo_o))
            finished[oi] = (hi_o - lo_o) <= 4e-16 * hi_o
        out[act] = new
        n_fin = np.count_nonzero(finished)
        if n_fin == finished.size:
            done[act] = True
            break
        if n_fin:
            done[act[finished]] = True
            keep = ~finished
            act, sa, xa, ta, loa, hia = act[keep], new[keep], xa[keep], ta[keep], loa[keep], hia[keep]
        else:
            sa = new
    return out, done
