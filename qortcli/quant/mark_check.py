"""How closely Black-76 reproduces a snapshot's own marks and published greeks (pure, no I/O).

The test for one option: the model coin price from Deribit's ``mark_iv`` is within
``max(rel_tol * mark_price, half_tick_vol_points * vega_coin)`` of ``mark_price``, where ``vega_coin``
is coin per vol point and half an IV tick is 0.005 vol points (mark_iv is quoted to 0.01 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qortcli.quant import black76
from qortcli.quant.records import Record

REL_TOL = 1e-3
HALF_IV_TICK_VOL_POINTS = 0.005


@dataclass(frozen=True)
class WorstOption(Record):
    """One of the options furthest from its mark, relative to its tolerance (prices in coin)."""

    index: int
    name: str | None
    mark_price: float
    model_price_coin: float
    abs_error_coin: float
    tolerance_coin: float
    ratio: float


@dataclass(frozen=True)
class MarkCheck(Record):
    """The accuracy of model prices from ``mark_iv`` against the marks (coin), overall and per option.

    ``share_within`` fraction of the checked options within tolerance; errors in coin per option;
    ``delta_median_abs_error`` against Deribit's published delta (dimensionless), ``vega_median_rel_error``
    against its vega (fraction); None where nothing could be checked. The per-option arrays
    (``model_price_coin, abs_error_coin, tolerance_coin, within``) are left out of `summary()`.
    """

    n: int
    n_checked: int
    share_within: float | None
    median_abs_error_coin: float | None
    median_rel_error: float | None
    worst_abs_error_coin: float | None
    worst: tuple
    delta_median_abs_error: float | None
    vega_median_rel_error: float | None
    n_greeks: int
    model_price_coin: np.ndarray
    abs_error_coin: np.ndarray
    tolerance_coin: np.ndarray
    within: np.ndarray

    def summary(self) -> dict:
        """The JSON-able report (everything but the per-option arrays)."""
        arrays = ("model_price_coin", "abs_error_coin", "tolerance_coin", "within")
        return {k: v for k, v in self.to_dict().items() if k not in arrays}


def mark_check(F, K, t_years, mark_iv, is_call, mark_price_coin, rate=0.0, delta_published=None,
               vega_published=None, names=None, rel_tol: float = REL_TOL,
               half_tick_vol_points: float = HALF_IV_TICK_VOL_POINTS, worst: int = 5) -> MarkCheck:
    """Accuracy of model prices from ``mark_iv`` (fraction) against ``mark_price_coin`` (coin), per option and overall.

    ``F`` forward and ``K`` strike in USD, ``t_years`` in years, ``rate`` a fraction. Options without a
    finite positive forward/strike/time/IV or a finite mark are left out (``n_checked`` counts the rest).
    Where ``delta_published`` / ``vega_published`` (Deribit's forward delta and vega in forward-USD per vol
    point) are given, their errors against the model's are summarised too (NaN entries ignored).
    Returns a `MarkCheck` (``report["share_within"]`` reads like ``report.share_within``).
    """
    F, K, t_years, mark_iv, mark, rate = black76.as_arrays(F, K, t_years, mark_iv, mark_price_coin, rate)
    with np.errstate(invalid="ignore", divide="ignore"):
        model = black76.price_coin(F, K, t_years, mark_iv, is_call, rate)
        disc = np.exp(-rate * t_years)
        vega_coin = disc * black76.vega_per_unit_vol(F, K, t_years, mark_iv) / 100.0 / F
        delta = disc * black76.forward_delta(F, K, t_years, mark_iv, is_call)
        valid = (np.isfinite(F) & (F > 0) & np.isfinite(K) & (K > 0) & np.isfinite(t_years) & (t_years > 0)
                 & np.isfinite(mark_iv) & (mark_iv > 0) & np.isfinite(mark) & np.isfinite(model))
    abs_err = np.abs(model - mark)
    tol = np.maximum(rel_tol * np.abs(mark), half_tick_vol_points * vega_coin)
    within = valid & (abs_err <= tol)
    n_checked = int(valid.sum())
    share = median_abs = median_rel = worst_abs = None
    worst_rows: list[WorstOption] = []
    if n_checked:
        errs = abs_err[valid]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(mark[valid] > 0, errs / np.abs(mark[valid]), np.nan)
            ratio = np.where(valid, abs_err / tol, -np.inf)
        share, median_abs, worst_abs = float(within.sum() / n_checked), float(np.median(errs)), float(errs.max())
        median_rel = float(np.nanmedian(rel)) if np.isfinite(rel).any() else None
        order = np.argsort(-ratio, kind="stable")[:worst]
        worst_rows = [WorstOption(int(i), None if names is None else str(np.asarray(names)[i]), float(mark[i]),
                                  float(model[i]), float(abs_err[i]), float(tol[i]), float(ratio[i]))
                      for i in order if np.isfinite(ratio[i])]
    delta_err = vega_err = None
    n_greeks = 0
    if delta_published is not None:
        dp = np.broadcast_to(np.asarray(delta_published, dtype=float), F.shape)
        ok = valid & np.isfinite(dp)
        if ok.any():
            delta_err = float(np.median(np.abs(delta[ok] - dp[ok])))
            n_greeks = int(ok.sum())
    if vega_published is not None:
        vp = np.broadcast_to(np.asarray(vega_published, dtype=float), F.shape)
        ok = valid & np.isfinite(vp) & (vp > 0)
        if ok.any():
            vega_err = float(np.median(np.abs(vega_coin[ok] * F[ok] / vp[ok] - 1.0)))
    return MarkCheck(n=int(F.size), n_checked=n_checked, share_within=share, median_abs_error_coin=median_abs,
                     median_rel_error=median_rel, worst_abs_error_coin=worst_abs, worst=tuple(worst_rows),
                     delta_median_abs_error=delta_err, vega_median_rel_error=vega_err, n_greeks=n_greeks,
                     model_price_coin=model, abs_error_coin=abs_err, tolerance_coin=tol, within=within)
