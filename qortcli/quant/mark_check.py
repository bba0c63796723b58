"""How closely Black-76 reproduces a snapshot's own marks and published greeks (pure, no I/O).

The test for one option: the model coin price from Deribit's ``mark_iv`` is within
``max(rel_tol * mark_price, half_tick_vol_points * vega_coin)`` of ``mark_price``, where ``vega_coin``
is coin per vol point and half an IV tick is 0.005 vol points (mark_iv is quoted to 0.01 %).
"""

from __future__ import annotations

import numpy as np

from qortcli.quant import black76

REL_TOL = 1e-3
HALF_IV_TICK_VOL_POINTS = 0.005


def mark_check(F, K, t_years, mark_iv, is_call, mark_price_coin, rate=0.0, delta_published=None,
               vega_published=None, names=None, rel_tol: float = REL_TOL,
               half_tick_vol_points: float = HALF_IV_TICK_VOL_POINTS, worst: int = 5) -> dict:
    """Accuracy of model prices from ``mark_iv`` (fraction) against ``mark_price_coin``, per option and overall.

    Options without a finite positive forward/strike/time/IV or a finite mark are left out (``n_checked``
    counts the rest). Where ``delta_published`` / ``vega_published`` (Deribit's USD delta and vega per vol
    point) are given, their errors against the model's are summarised too (NaN entries ignored).

    Returns a dict: ``n, n_checked, share_within, median_abs_error_coin, median_rel_error,
    worst_abs_error_coin, worst`` (list of the worst options by error/tolerance: index, name,
    mark_price, model_price_coin, abs_error_coin, tolerance_coin, ratio), ``delta_median_abs_error``,
    ``vega_median_rel_error`` (None without published greeks), and the per-option arrays
    ``model_price_coin``, ``abs_error_coin``, ``tolerance_coin``, ``within``.
    """
    F, K, t_years, mark_iv, mark, rate = black76.as_arrays(F, K, t_years, mark_iv, mark_price_coin, rate)
    g = black76.greeks(F, K, t_years, mark_iv, is_call, rate)
    model = g["price_coin"]
    with np.errstate(invalid="ignore"):
        valid = (np.isfinite(F) & (F > 0) & np.isfinite(K) & (K > 0) & np.isfinite(t_years) & (t_years > 0)
                 & np.isfinite(mark_iv) & (mark_iv > 0) & np.isfinite(mark) & np.isfinite(model))
    abs_err = np.abs(model - mark)
    tol = np.maximum(rel_tol * np.abs(mark), half_tick_vol_points * g["vega_coin"])
    within = valid & (abs_err <= tol)
    n_checked = int(valid.sum())
    out: dict = {"n": int(F.size), "n_checked": n_checked}
    if n_checked:
        errs = abs_err[valid]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(mark[valid] > 0, errs / np.abs(mark[valid]), np.nan)
        out.update(share_within=float(within.sum() / n_checked), median_abs_error_coin=float(np.median(errs)),
                   median_rel_error=float(np.nanmedian(rel)) if np.isfinite(rel).any() else None,
                   worst_abs_error_coin=float(errs.max()))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(valid, abs_err / tol, -np.inf)
        order = np.argsort(-ratio, kind="stable")[:worst]
        out["worst"] = [{"index": int(i), "name": None if names is None else str(np.asarray(names)[i]),
                         "mark_price": float(mark[i]), "model_price_coin": float(model[i]),
                         "abs_error_coin": float(abs_err[i]), "tolerance_coin": float(tol[i]),
                         "ratio": float(ratio[i])} for i in order if np.isfinite(ratio[i])]
    else:
        out.update(share_within=None, median_abs_error_coin=None, median_rel_error=None,
                   worst_abs_error_coin=None, worst=[])
    out["delta_median_abs_error"] = None
    out["vega_median_rel_error"] = None
    out["n_greeks"] = 0
    if delta_published is not None:
        dp = np.broadcast_to(np.asarray(delta_published, dtype=float), F.shape)
        ok = valid & np.isfinite(dp)
        if ok.any():
            out["delta_median_abs_error"] = float(np.median(np.abs(g["delta"][ok] - dp[ok])))
            out["n_greeks"] = int(ok.sum())
    if vega_published is not None:
        vp = np.broadcast_to(np.asarray(vega_published, dtype=float), F.shape)
        ok = valid & np.isfinite(vp) & (vp > 0)
        if ok.any():
            out["vega_median_rel_error"] = float(np.median(np.abs(g["vega"][ok] / vp[ok] - 1.0)))
    out.update(model_price_coin=model, abs_error_coin=abs_err, tolerance_coin=tol, within=within)
    return out
