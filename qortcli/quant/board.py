"""The chain board of one expiry: calls | strike | puts, one row per strike (pure pandas, no I/O).

Input: a chain frame (`qortcli.store.frames`). Every figure is from Deribit's quotes and marks of that
snapshot; nothing comes from the SVI fit:

- premiums in coin as quoted (`bid`, `ask`, `mark`), and in spot-USD: coin premium x the row's spot index
  (what the option costs now in USD), suffix `_spot_usd`;
- vols as fractions: `iv_mark` is Deribit's mark IV, `iv_bid` / `iv_ask` are Black-76 implied vols solved
  from the bid / ask coin premiums on the row's forward (`qortcli.quant.implied_vol`);
- `delta`: Black-76 forward delta from the mark IV (Deribit's convention, no premium adjustment);
- `open_interest_coin`, `volume_coin`: contracts (one contract = one coin), volume over 24 h.

`board(frame, expiry_code)` returns a `Board`; `select(...)` applies the strike window, delta band, open-
interest floor and sort order a trader asks for.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from qortcli.quant.black76 import forward_delta
from qortcli.quant.implied_vol import implied_vol_coin

#: the per-side fields of a board row (prefixed call_ / put_)
SIDE_FIELDS = ("instrument", "bid_coin", "ask_coin", "mark_coin", "bid_spot_usd", "ask_spot_usd", "mark_spot_usd",
               "iv_bid", "iv_ask", "iv_mark", "delta", "open_interest_coin", "volume_coin")
SORTS = ("strike", "oi", "volume", "iv")


class Board(NamedTuple):
    """One expiry's board: `rows` has strike_usd, itm_call (strike below the forward) and the SIDE_FIELDS
    of each side as call_* / put_* (NaN / "" where that side is not listed), sorted by strike."""

    expiry_code: str
    expiry: pd.Timestamp
    t_years: float
    forward_usd: float            # the expiry's forward (median of its rows' forwards), USD
    index_usd: float              # spot index (median of the expiry's rows), USD
    atm_strike_usd: float         # the listed strike nearest the forward
    rows: pd.DataFrame


def expiry_codes(frame: pd.DataFrame) -> list[str]:
    """The frame's expiry codes in date order."""
    seen = frame.drop_duplicates("expiry_code").sort_values("expiry")
    return [str(c) for c in seen["expiry_code"]]


def default_expiry(frame: pd.DataFrame, days_per_year: float, target_days: float = 30.0) -> str:
    """The listed expiry nearest `target_days` (calendar days, on the frame's basis of `days_per_year`) from the
    snapshot (ties: the earlier one)."""
    per = frame.drop_duplicates("expiry_code").sort_values("expiry")
    gap = (per["t_years"].to_numpy(dtype=float) * days_per_year - target_days)
    return str(per["expiry_code"].iloc[int(np.argmin(np.abs(gap)))])


def _side(part: pd.DataFrame, prefix: str) -> pd.DataFrame:
    mark_iv = part["mark_iv"].to_numpy(dtype=float)
    forward = part["forward_usd"].to_numpy(dtype=float)
    strike = part["strike_usd"].to_numpy(dtype=float)
    t = part["t_years"].to_numpy(dtype=float)
    calls = part["is_call"].to_numpy(dtype=bool)
    index = part["index_usd"].to_numpy(dtype=float)
    usable = (part["iv_flag"].astype(str).to_numpy() == "") & np.isfinite(mark_iv) & (mark_iv > 0)
    out = {"strike_usd": strike, "instrument": part["instrument"].astype(str).to_numpy(),
           "open_interest_coin": part["open_interest_coin"].to_numpy(dtype=float),
           "volume_coin": part["volume_coin"].to_numpy(dtype=float),
           "iv_mark": np.where(usable, mark_iv, np.nan),
           "delta": np.where(usable, forward_delta(forward, strike, t, np.where(usable, mark_iv, np.nan), calls),
                             np.nan)}
    for quote in ("bid", "ask", "mark"):
        premium = part[f"{quote}_coin"].to_numpy(dtype=float)
        premium = np.where(premium > 0, premium, np.nan)          # Deribit sends 0 for "no bid"
        out[f"{quote}_coin"] = premium
        out[f"{quote}_spot_usd"] = premium * index
        if quote != "mark":
            solved = implied_vol_coin(premium, forward, strike, t, calls).sigma
            out[f"iv_{quote}"] = np.where(np.isfinite(premium), solved, np.nan)
    side = pd.DataFrame(out)
    return side.rename(columns={f: f"{prefix}_{f}" for f in SIDE_FIELDS})


def board(frame: pd.DataFrame, expiry_code: str) -> Board:
    """The board of one listed expiry of a chain frame (KeyError if the frame does not list it)."""
    part = frame[frame["expiry_code"] == expiry_code]
    if part.empty:
        raise KeyError(expiry_code)
    calls = _side(part[part["is_call"]], "call")
    puts = _side(part[~part["is_call"]], "put")
    rows = calls.merge(puts, on="strike_usd", how="outer").sort_values("strike_usd", kind="stable")
    rows = rows.reset_index(drop=True)
    for prefix in ("call", "put"):
        rows[f"{prefix}_instrument"] = rows[f"{prefix}_instrument"].fillna("")
    forward = float(part["forward_usd"].median())
    rows["itm_call"] = rows["strike_usd"] < forward
    strikes = rows["strike_usd"].to_numpy(dtype=float)
    atm = float(strikes[int(np.argmin(np.abs(strikes - forward)))]) if len(strikes) else float("nan")
    rows = rows[["strike_usd", "itm_call", *(f"call_{f}" for f in SIDE_FIELDS), *(f"put_{f}" for f in SIDE_FIELDS)]]
    return Board(expiry_code=expiry_code, expiry=part["expiry"].iloc[0], t_years=float(part["t_years"].iloc[0]),
                 forward_usd=forward, index_usd=float(part["index_usd"].median()), atm_strike_usd=atm, rows=rows)


def select(b: Board, strikes: int | None = 10, delta: tuple[float, float] | None = None,
           min_oi_coin: float = 0.0, sort: str = "strike") -> pd.DataFrame:
    """The rows to show: with `delta` = (lo, hi) only strikes where either side's |delta| lies in [lo, hi];
    with `min_oi_coin` only strikes whose calls + puts open interest is at least that; then the `strikes`
    nearest the forward (None: all); ordered by `sort` — "strike" ascending, "oi" / "volume" by the
    strike's calls + puts (largest first), "iv" by the mean of the two mark IVs (highest first)."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
    rows = b.rows
    keep = np.ones(len(rows), dtype=bool)
    if delta is not None:
        lo, hi = delta
        call_d, put_d = rows["call_delta"].abs(), rows["put_delta"].abs()
        keep &= (call_d.between(lo, hi) | put_d.between(lo, hi)).to_numpy()
    oi = rows["call_open_interest_coin"].fillna(0.0) + rows["put_open_interest_coin"].fillna(0.0)
    if min_oi_coin > 0:
        keep &= (oi >= min_oi_coin).to_numpy()
    picked = rows[keep]
    if strikes is not None and len(picked) > strikes:
        distance = (picked["strike_usd"] - b.forward_usd).abs()
        picked = picked.loc[distance.sort_values(kind="stable").index[:strikes]].sort_values("strike_usd")
    if sort == "oi":
        key = oi.loc[picked.index]
    elif sort == "volume":
        key = (picked["call_volume_coin"].fillna(0.0) + picked["put_volume_coin"].fillna(0.0))
    elif sort == "iv":
        key = picked[["call_iv_mark", "put_iv_mark"]].mean(axis=1)
    else:
        return picked.reset_index(drop=True)
    order = np.argsort(-key.fillna(-np.inf).to_numpy(), kind="stable")
    return picked.iloc[order].reset_index(drop=True)
