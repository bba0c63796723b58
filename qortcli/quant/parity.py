"""Forwards implied by put-call parity of coin-settled option premiums (pure numpy, no I/O).

Deribit prices every option of one expiry on that expiry's forward ``F`` (USD) with zero rate, and quotes
the coin premium ``V = P_usd / F``. Undiscounted Black-76 parity ``C − P = F − K`` divided by ``F`` gives

    V_call − V_put = 1 − K / F      ⇒      F = K / (1 − (V_call − V_put))

for every strike listed as both a call and a put, whatever the volatility. The mark-price stream carries
coin marks but no forward, so this is how a live chain keeps each expiry's forward in step with its own
marks (verified on the recorded January 2026 chains: within 1 bp of the recorded forwards).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["ParityForwards", "parity_forwards"]


class ParityForwards(NamedTuple):
    """Per group (expiry): ``forward_usd`` (NaN where no usable call/put pair) and ``n_pairs`` used."""

    forward_usd: np.ndarray
    n_pairs: np.ndarray


def parity_forwards(strike_usd, call_coin, put_coin, group, n_groups: int, prior_forward_usd=None,
                    n_nearest: int = 5) -> ParityForwards:
    """Forward (USD) of each group from the call/put coin premiums of its strikes.

    ``strike_usd``, ``call_coin``, ``put_coin`` and ``group`` (int in ``0..n_groups-1``) describe one
    call/put pair per entry (same expiry and strike, premiums in coin per option, rate 0). Each pair
    implies ``F_k = K / (1 − (V_call − V_put))``; a group's forward is the median over its ``n_nearest``
    pairs closest to the money, measured by ``|ln(K / prior)|`` with ``prior`` the group's previous
    forward (``prior_forward_usd``, USD; where absent or NaN, the median of all the group's pairs).
    Pairs with a non-finite or non-positive premium, or ``V_call − V_put ≥ 1``, are not used.
    Vectorised: sorts, no loop over options or groups.
    """
    if n_nearest < 1:
        raise ValueError(f"n_nearest must be at least 1, got {n_nearest}")
    K = np.asarray(strike_usd, dtype=float)
    c = np.asarray(call_coin, dtype=float)
    p = np.asarray(put_coin, dtype=float)
    g = np.asarray(group, dtype=np.intp)
    if not (K.shape == c.shape == p.shape == g.shape) or K.ndim != 1:
        raise ValueError("strike_usd, call_coin, put_coin and group must be 1-d arrays of one length")
    if g.size and (g.min() < 0 or g.max() >= n_groups):
        raise ValueError(f"group values must lie in 0..{n_groups - 1}")
    out = np.full(n_groups, np.nan)
    counts = np.zeros(n_groups, dtype=np.intp)
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = 1.0 - (c - p)
        implied = K / denom
    ok = np.isfinite(implied) & (implied > 0) & (denom > 0) & (c > 0) & (p > 0) & (K > 0)
    if not ok.any():
        return ParityForwards(out, counts)
    K, implied, g = K[ok], implied[ok], g[ok]
    prior = np.full(n_groups, np.nan) if prior_forward_usd is None else np.array(prior_forward_usd, dtype=float)
    if prior.shape != (n_groups,):
        raise ValueError(f"prior_forward_usd must have one value per group ({n_groups})")
    missing = ~(np.isfinite(prior) & (prior > 0))
    if missing.any():
        prior[missing] = _group_median(implied, g, n_groups)[missing]
    distance = np.abs(np.log(K / prior[g]))
    order = np.lexsort((distance, g))            # by group, then nearest the money first
    g_sorted = g[order]
    first = np.searchsorted(g_sorted, g_sorted, side="left")
    keep = (np.arange(g_sorted.size) - first) < n_nearest
    chosen = order[keep]
    out[:] = _group_median(implied[chosen], g[chosen], n_groups)
    counts[:] = np.bincount(g[chosen], minlength=n_groups)
    return ParityForwards(out, counts)


def _group_median(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Median of ``values`` per group (NaN for empty groups), vectorised with one sort."""
    out = np.full(n_groups, np.nan)
    if values.size == 0:
        return out
    order = np.lexsort((values, group))
    v, g = values[order], group[order]
    groups, start, count = np.unique(g, return_index=True, return_counts=True)
    out[groups] = 0.5 * (v[start + (count - 1) // 2] + v[start + count // 2])
    return out
