"""Backtests of portfolio weights (pure: no I/O): rebalancing, turnover, walk-forward, equity.

In-sample: `fixed_weight_returns` applies one set of weights to the whole window with daily rebalancing
(R @ w) -- what the weights would have done on the data they were fitted on, so it flatters them.
Out-of-sample: `walk_forward` refits on a trailing window only and holds the weights buy-and-hold:

    At the first observed day of each period (week/month/quarter) with a full trailing window of
    `lookback_days` calendar days behind it, the model is fitted on that window only and the weights
    are held (buy and hold: they drift with prices) until the next rebalance. The equal-weight benchmark
    is rebalanced on the same dates. Returns are out-of-sample daily simple returns.

`turnover` and `rebalance_plan` compare two allocations; `equity_curve` is the growth of 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from qortcli.quant.choices import REBALANCE_FREQUENCIES  # noqa: F401  (re-exported)


def turnover(previous: Mapping[str, float], new: Mapping[str, float]) -> float:
    """One-way turnover (fraction of the portfolio): half the sum of absolute weight changes (weights as
    fractions; assets missing on one side count as 0)."""
    names = set(previous) | set(new)
    return 0.5 * sum(abs(float(new.get(a, 0.0)) - float(previous.get(a, 0.0))) for a in names)


def rebalance_plan(previous: Mapping[str, float], new: Mapping[str, float], threshold: float = 0.005) -> list[dict]:
    """Per-asset changes from `previous` to `new` weights (fractions), biggest first, as buy/sell/hold suggestions.

    `threshold`: a change smaller than this (fraction of the portfolio) is "hold".
    """
    rows = []
    for asset in sorted(set(previous) | set(new)):
        before, after = float(previous.get(asset, 0.0)), float(new.get(asset, 0.0))
        change = after - before
        action = "hold" if abs(change) < threshold else ("buy" if change > 0 else "sell")
        rows.append({"asset": asset, "previous": before, "new": after, "change": change, "action": action})
    rows.sort(key=lambda r: -abs(r["change"]))
    return rows


def fixed_weight_returns(returns: pd.DataFrame, weights: pd.Series) -> pd.Series:
    """Daily simple returns (fractions) of constant weights (fractions) re-applied every day: R @ w (the
    in-sample series)."""
    return pd.Series(returns[weights.index].to_numpy() @ weights.to_numpy(), index=returns.index, name="portfolio")


def rebalance_dates(index: pd.DatetimeIndex, frequency: str, lookback_days: int) -> list[pd.Timestamp]:
    """First observed day (UTC) of each period that has `lookback_days` calendar days of history behind it."""
    if frequency not in REBALANCE_FREQUENCIES:
        raise ValueError(f"unknown rebalance frequency {frequency!r}; use one of {', '.join(REBALANCE_FREQUENCIES)}")
    if len(index) == 0:
        return []
    periods = index.to_period(REBALANCE_FREQUENCIES[frequency])
    firsts = pd.Series(index, index=index).groupby(periods).min()
    earliest = index[0] + pd.Timedelta(days=lookback_days)
    return [pd.Timestamp(d) for d in firsts if d >= earliest]


def buy_and_hold_returns(returns: pd.DataFrame, weights: np.ndarray) -> np.ndarray:
    """Daily simple returns (fractions) of a buy-and-hold position started with `weights` (fractions) on the
    first row (drifts with prices)."""
    growth = np.cumprod(1.0 + returns.to_numpy(), axis=0)
    value = growth @ weights
    previous = np.concatenate([[float(np.sum(weights))], value[:-1]])
    return value / previous - 1.0


@dataclass
class WalkForward:
    """Out-of-sample daily returns of the walk-forward portfolio and its equal-weight benchmark."""

    returns: pd.Series
    benchmark: pd.Series
    rebalances: list[dict]  # [{date, weights {asset: w}, turnover}]


def walk_forward(returns: pd.DataFrame, fit: Callable[[pd.DataFrame], pd.Series], frequency: str,
                 lookback_days: int, min_window: int | None = None) -> WalkForward:
    """Fit on the trailing `lookback_days` (calendar days) before each rebalance date, hold until the next one;
    returns are daily simple returns (fractions), weights fractions.

    `fit(window_returns) -> weights Series`. A window with fewer than `min_window` observed days
    (default: half the lookback) is skipped, keeping the previous weights.
    """
    dates = rebalance_dates(returns.index, frequency, lookback_days)
    if not dates:
        raise ValueError(f"no {frequency} rebalance date has {lookback_days} days of history before it "
                         f"({returns.index[0].date()}…{returns.index[-1].date()})")
    min_window = min_window if min_window is not None else max(2, lookback_days // 2)
    n = returns.shape[1]
    equal = np.full(n, 1.0 / n)
    out_p, out_b, rebalances = [], [], []
    current: pd.Series | None = None
    for k, start in enumerate(dates):
        stop = dates[k + 1] if k + 1 < len(dates) else None
        window = returns.loc[(returns.index < start) & (returns.index >= start - pd.Timedelta(days=lookback_days))]
        if len(window) >= min_window:
            new = fit(window).reindex(returns.columns).fillna(0.0)
            rebalances.append({"date": start, "weights": {a: float(w) for a, w in new.items()},
                               "turnover": turnover(current.to_dict(), new.to_dict()) if current is not None else 1.0})
            current = new
        if current is None:
            continue
        held = returns.loc[(returns.index >= start) & ((returns.index < stop) if stop is not None else True)]
        if held.empty:
            continue
        out_p.append(pd.Series(buy_and_hold_returns(held, current.to_numpy()), index=held.index))
        out_b.append(pd.Series(buy_and_hold_returns(held, equal), index=held.index))
    if not out_p:
        raise ValueError("the walk-forward produced no out-of-sample days")
    return WalkForward(returns=pd.concat(out_p).rename("portfolio"), benchmark=pd.concat(out_b).rename("equal_weight"),
                       rebalances=rebalances)


def equity_curve(returns: pd.Series) -> np.ndarray:
    """Growth of 1 (a multiple of the start value) from compounding the daily simple returns (fractions), one
    value per return day."""
    return np.cumprod(1.0 + pd.Series(returns, dtype=float).to_numpy())
