"""Market-regime measures for the strategy rules: the percentile of a level, realised vol.

Pure numpy/scipy, no I/O. Vols are fractions, times in years, prices in USD. The smile statistics (ATM IV,
constant maturity, 25Δ, RR25, BF25) live in `qortcli.quant.smile`.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
from scipy.stats import percentileofscore


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
