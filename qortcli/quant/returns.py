"""Daily simple returns of crypto closes for the portfolio models (pure: no I/O).

`daily_returns(closes)` turns a wide frame of daily closes (USD, one column per asset, index = UTC
calendar days) into simple daily returns on the every-day crypto calendar. A day without a close gives
no return that day *and* no return the next day (there is no previous close): gaps are never bridged
or forward-filled. Assets with fewer than `min_history_days` returns are excluded with the reason;
the rest are aligned on their common span and days on which any asset has no return are dropped
(and counted), so every model sees a complete matrix of observed returns only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class ReturnsPanel:
    """Aligned daily simple returns (fractions) and what was left out on the way.

    returns   DataFrame, index = UTC days (tz-naive midnight), one column per included asset, no NaN.
    excluded  [{symbol, reason, returns}] assets left out (too short a history, no data in the window).
    gaps      {symbol: missing calendar days between its first and last close (within the window)}.
    dropped_days  days in the common span on which some included asset had no return (left out).
    """

    returns: pd.DataFrame
    excluded: list[dict] = field(default_factory=list)
    gaps: dict[str, int] = field(default_factory=dict)
    dropped_days: int = 0
    span_start: pd.Timestamp | None = None
    span_end: pd.Timestamp | None = None

    def summary(self) -> dict:
        index = self.returns.index
        return {"first": index[0].date().isoformat() if len(index) else None,
                "last": index[-1].date().isoformat() if len(index) else None,
                "days": int(len(index)), "assets": list(self.returns.columns),
                "gaps": dict(self.gaps), "dropped_days": int(self.dropped_days)}


def _day_index(index) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(pd.to_datetime(index))
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.normalize()


def daily_returns(closes: pd.DataFrame, min_history_days: int, start=None, end=None) -> ReturnsPanel:
    """Daily simple returns (fractions) on the every-day calendar from a wide frame of closes (USD).

    `closes`: index = days (datetime-like, UTC), columns = assets; NaN or non-positive = no close.
    `start`/`end` (inclusive, dates) restrict the *returns* window. Raises ValueError when fewer than two
    assets remain or the aligned history is shorter than `min_history_days`.
    """
    if closes.empty:
        raise ValueError("no closes to compute returns from")
    frame = closes.copy()
    frame.index = _day_index(frame.index)
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    frame = frame.apply(pd.to_numeric, errors="coerce").astype(float)
    frame = frame.where(frame > 0)  # a non-positive close is not a price
    calendar = pd.date_range(frame.index[0], frame.index[-1], freq="D")
    frame = frame.reindex(calendar)
    returns = frame / frame.shift(1) - 1.0  # NaN whenever either day lacks a close: nothing is bridged
    lo = pd.Timestamp(start).tz_localize(None) if start is not None and pd.Timestamp(start).tz else (
        pd.Timestamp(start) if start is not None else None)
    hi = pd.Timestamp(end).tz_localize(None) if end is not None and pd.Timestamp(end).tz else (
        pd.Timestamp(end) if end is not None else None)
    if lo is not None:
        returns, frame = returns.loc[returns.index >= lo.normalize()], frame.loc[frame.index >= lo.normalize()]
    if hi is not None:
        returns, frame = returns.loc[returns.index <= hi.normalize()], frame.loc[frame.index <= hi.normalize()]

    excluded: list[dict] = []
    gaps: dict[str, int] = {}
    keep: list[str] = []
    for symbol in frame.columns:
        observed = frame[symbol].dropna()
        n_returns = int(returns[symbol].notna().sum())
        if observed.empty:
            excluded.append({"symbol": symbol, "reason": "no closes in the window", "returns": 0})
            continue
        span = frame[symbol].loc[observed.index[0]:observed.index[-1]]
        gaps[symbol] = int(span.isna().sum())
        if n_returns < min_history_days:
            first, last = observed.index[0].date(), observed.index[-1].date()
            excluded.append({"symbol": symbol, "returns": n_returns,
                             "reason": f"{n_returns} daily returns ({first}…{last}) < minimum {min_history_days}"})
            continue
        keep.append(symbol)
    if len(keep) < 2:
        raise ValueError(f"{len(keep)} asset(s) with at least {min_history_days} daily returns; need 2 or more"
                         + (f" (excluded: {', '.join(e['symbol'] for e in excluded)})" if excluded else ""))
    kept = returns[keep]
    firsts = [kept[s].first_valid_index() for s in keep]
    lasts = [kept[s].last_valid_index() for s in keep]
    span_start, span_end = max(firsts), min(lasts)
    common = kept.loc[span_start:span_end]
    complete = common.dropna(how="any")
    dropped = int(len(common) - len(complete))
    if len(complete) < min_history_days:
        raise ValueError(f"the {len(keep)} assets share {len(complete)} complete days of returns "
                         f"({span_start.date()}…{span_end.date()}, {dropped} dropped for gaps) "
                         f"< minimum {min_history_days}")
    return ReturnsPanel(returns=complete, excluded=excluded, gaps=gaps, dropped_days=dropped,
                        span_start=span_start, span_end=span_end)
