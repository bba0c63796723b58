"""Tracking a suggestion's legs after entry, and settling them (pure: no I/O).

Legs are the stored leg records of `qortcli.quant.strategies` (instrument, option_type, strike USD, expiry,
side_sign, size in coin contracts, price_coin = the entry price crossed). Conventions (those of
`qortcli.quant.payoff`):

- Entry: ``entry_coin = Σ q·price_coin`` (q = side·size; > 0 a debit), ``entry_usd = entry_coin × index0``
  (spot-USD at the entry index).
- Mark-to-market at a later snapshot: a live leg is worth its mark (coin; × the snapshot's spot index in
  USD), an expired leg its coin payoff at its delivery price (`payoff.payoff_coin`; × the delivery price
  in USD, converted at expiry), the held coin 1 coin (the index in USD).
  ``pnl_coin = Σ q·value_coin − entry_coin``, ``pnl_usd = Σ q·value_usd − entry_usd``.
- Exit cost: closing now crosses the spread back — a long leg is sold at its bid, a short one bought back at
  its ask. ``exit_pnl_*`` is the P/L of that close (None when a needed bid/ask is missing) and
  ``exit_cost_usd = pnl_usd − exit_pnl_usd`` (≥ 0 when bid ≤ mark ≤ ask), shown beside the mark-to-market.
- Settlement: Deribit settles on the time-weighted average of its index over the 30 minutes before 08:00 UTC
  (`settlement_twap`). From index samples that cover that window (no gap longer than `max_gap_minutes`,
  default 6: the worker's 5-minute snapshots with one late, edges included) the TWAP is Deribit's rule
  ("deribit_twap_30m"); otherwise the price is approximate and
  says how it was found (a partial TWAP of the samples in the window, the index sample nearest expiry, or the
  expiry's last forward: `settlement_from_forward`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping, Sequence

import numpy as np

from qortcli.quant.payoff import UNDERLYING, Leg, payoff_coin
from qortcli.quant.records import Record

TWAP_WINDOW_MINUTES = 30.0
DERIBIT_TWAP = "deribit_twap_30m"
PARTIAL_TWAP = "approximate: partial TWAP"
NEAREST_INDEX = "approximate: nearest index sample"
LAST_FORWARD = "approximate: last forward"
NO_PRICE = "none"


@dataclass(frozen=True)
class Settlement(Record):
    """A delivery (settlement) price of one expiry: `price_usd` (None when none could be found), `method`
    (``DERIBIT_TWAP`` when Deribit's rule could be applied, else an "approximate: ..." method), whether it is
    `approximate`, the `n_samples` used and their first/last times, and a one-line `detail`."""

    price_usd: float | None
    method: str
    approximate: bool
    n_samples: int
    first_sample: datetime | None
    last_sample: datetime | None
    detail: str

    def as_delivery(self) -> dict:
        """The stored delivery entry ({price_usd, method, detail, approximate, n_samples})."""
        return {"price_usd": self.price_usd, "method": self.method, "detail": self.detail,
                "approximate": self.approximate, "n_samples": self.n_samples}


def _seconds(times: Sequence[datetime], origin: datetime) -> np.ndarray:
    return np.array([(t - origin).total_seconds() for t in times], dtype=float)


def settlement_twap(timestamps: Sequence[datetime], index_usd: Sequence[float], expiry: datetime, *,
                    window_minutes: float = TWAP_WINDOW_MINUTES, max_gap_minutes: float = 6.0,
                    tolerance_minutes: float = 30.0) -> Settlement:
    """The delivery price of `expiry` (timezone-aware, 08:00 UTC) from index samples (timestamps tz-aware,
    index in USD): the time-weighted average of the index over [expiry − window, expiry].

    The index is held constant from each sample to the next (the value at the window's start is the last
    sample at or before it). Deribit's rule (``DERIBIT_TWAP``) when the samples cover the window: at every
    moment of it the latest sample is at most `max_gap_minutes` old (so consecutive samples, the one held
    into the window included, are at most that far apart, and the last is that close to expiry). Otherwise
    approximate: ``PARTIAL_TWAP`` over the samples that do fall in the
    window, or ``NEAREST_INDEX`` (the sample nearest expiry within `tolerance_minutes`), or no price.
    """
    t = _seconds(timestamps, expiry)                       # seconds relative to expiry (≤ 0 before)
    x = np.asarray(index_usd, dtype=float)
    ok = np.isfinite(t) & np.isfinite(x) & (x > 0)
    t, x = t[ok], x[ok]
    order = np.argsort(t, kind="stable")
    t, x = t[order], x[order]
    start, gap = -60.0 * float(window_minutes), 60.0 * float(max_gap_minutes)
    before = np.flatnonzero(t <= start)
    inside = np.flatnonzero((t > start) & (t <= 0.0))
    use = np.concatenate([before[-1:], inside]).astype(int)
    if inside.size or (before.size and (start - t[before[-1]]) <= gap):
        times = t[use]
        knots = np.clip(times, start, 0.0)
        weights = np.diff(np.append(knots, 0.0))            # each sample holds until the next (or expiry)
        if weights.sum() > 0:
            twap = float(weights @ x[use] / weights.sum())
            lead = 0.0 if before.size else float(times[0] - start)   # no value known from the window's start
            largest = float(max(np.diff(np.append(times, 0.0)).max(initial=0.0), lead))
            exact = largest <= gap
            stamps = [expiry + timedelta(seconds=float(v)) for v in times]
            detail = (f"time-weighted index over the {window_minutes:g} min before expiry from {use.size} samples, "
                      f"largest gap {largest / 60:.1f} min"
                      + ("" if exact else f" (> {max_gap_minutes:g} min: approximate)"))
            return Settlement(twap, DERIBIT_TWAP if exact else PARTIAL_TWAP, not exact, int(use.size),
                              stamps[0], stamps[-1], detail)
    near = np.flatnonzero(np.abs(t) <= 60.0 * float(tolerance_minutes))
    if near.size:
        i = near[np.argmin(np.abs(t[near]))]
        when = expiry + timedelta(seconds=float(t[i]))
        return Settlement(float(x[i]), NEAREST_INDEX, True, 1, when, when,
                          f"index sample {t[i] / 60:+.0f} min from expiry (no sample covers the "
                          f"{window_minutes:g}-min window)")
    return Settlement(None, NO_PRICE, True, 0, None, None,
                      f"no index sample within {tolerance_minutes:g} min of expiry")


def settlement_from_forward(forward_usd: float, at: datetime, expiry: datetime, source: str = "") -> Settlement:
    """An approximate delivery price: the expiry's last forward (USD) seen at `at` before expiry."""
    hours = (expiry - at).total_seconds() / 3600.0
    return Settlement(float(forward_usd), LAST_FORWARD, True, 1, at, at,
                      f"median forward of the expiry {source}{' ' if source else ''}{hours:.1f} h before expiry")


# ------------------------------------------------------------------------------------------ valuation

def _leg(record: Mapping) -> Leg:
    """A unit long `Leg` of a stored leg record (for its payoff)."""
    return Leg(str(record["instrument"]), str(record["option_type"]), float(record["strike"]), None, 1, 1.0, 0.0)


def settled_value_coin(record: Mapping, delivery_usd: float) -> float:
    """Coin value per contract of an expired option leg at its delivery price (USD): call
    max(S − K, 0)/S, put max(K − S, 0)/S (`payoff.payoff_coin`)."""
    return float(payoff_coin([_leg(record)], np.array([float(delivery_usd)]))[0])


def entry_value(records: Sequence[Mapping], index0_usd: float) -> tuple[float, float]:
    """(entry_coin, entry_usd): Σ q·price_coin and that at the entry spot index (USD)."""
    coin = float(sum(r["side_sign"] * r["size"] * r["price_coin"] for r in records))
    return coin, coin * float(index0_usd)


@dataclass(frozen=True)
class TrackPoint(Record):
    """The position valued at one later snapshot (or at settlement). P/L in coin and spot-USD; None when
    a live leg has no mark (`missing`) or there is no index. `exit_*`: closing by crossing the spread."""

    snapshot_id: str | None
    timestamp: datetime
    index_usd: float | None
    marks: dict
    missing: tuple
    pnl_coin: float | None
    pnl_usd: float | None
    exit_pnl_coin: float | None
    exit_pnl_usd: float | None
    exit_cost_usd: float | None
    settlement: bool = False

    def to_document(self) -> dict:
        out = self.to_dict()
        out["missing"] = list(self.missing)
        if not self.settlement:
            out.pop("settlement")
        return out


def mark_point(records: Sequence[Mapping], index0_usd: float, snapshot_id: str | None, timestamp: datetime,
               index_usd: float | None, quotes: Mapping[str, Mapping], deliveries: Mapping) -> TrackPoint:
    """The position at one snapshot. `quotes`: instrument → {mark_coin, bid_coin, ask_coin} (coin; missing
    or None where the snapshot lacks them); `deliveries`: expiry → delivery price (USD, a number or a
    `Settlement`, None when unknown) for the legs expired by `timestamp`; `index_usd` the snapshot's spot."""
    entry_coin, entry_usd = entry_value(records, index0_usd)
    value_coin = value_usd = exit_coin = exit_usd = 0.0
    missing: list[str] = []
    no_exit = False
    marks: dict = {}
    index = np.nan if index_usd is None else float(index_usd)
    for r in records:
        q = r["side_sign"] * r["size"]
        if r["option_type"] == UNDERLYING:
            value_coin, value_usd = value_coin + q, value_usd + q * index
            exit_coin, exit_usd = exit_coin + q, exit_usd + q * index
            continue
        expiry = r["expiry"]
        if timestamp >= expiry:
            dp = deliveries.get(expiry)
            price = dp.price_usd if isinstance(dp, Settlement) else dp
            if price is None:
                missing.append(f"{r['instrument']} (expired, no delivery price)")
                continue
            v = settled_value_coin(r, price)
            marks[r["instrument"]] = {"settled_coin": v, "delivery_usd": float(price)}
            value_coin, value_usd = value_coin + q * v, value_usd + q * v * price
            exit_coin, exit_usd = exit_coin + q * v, exit_usd + q * v * price
            continue
        quote = quotes.get(r["instrument"]) or {}
        mark = quote.get("mark_coin")
        if mark is None or not np.isfinite(mark):
            missing.append(r["instrument"])
            continue
        bid, ask = quote.get("bid_coin"), quote.get("ask_coin")
        marks[r["instrument"]] = {"mark_coin": float(mark), "bid_coin": bid, "ask_coin": ask}
        value_coin, value_usd = value_coin + q * mark, value_usd + q * mark * index
        close = bid if q > 0 else ask                          # sell a long at the bid, buy a short back at the ask
        if close is None or not np.isfinite(close) or not close > 0:
            no_exit = True
            continue
        exit_coin, exit_usd = exit_coin + q * close, exit_usd + q * close * index
    ok = not missing and np.isfinite(index)
    pnl_coin = value_coin - entry_coin if ok else None
    pnl_usd = value_usd - entry_usd if ok else None
    exit_ok = ok and not no_exit
    exit_pnl_coin = exit_coin - entry_coin if exit_ok else None
    exit_pnl_usd = exit_usd - entry_usd if exit_ok else None
    return TrackPoint(snapshot_id, timestamp, None if index_usd is None else float(index_usd), marks, tuple(missing),
                      pnl_coin, pnl_usd, exit_pnl_coin, exit_pnl_usd,
                      pnl_usd - exit_pnl_usd if exit_pnl_usd is not None else None)


@dataclass(frozen=True)
class SettlementResult(Record):
    """The position settled at its last expiry: P/L in coin and spot-USD (USD converted at each delivery),
    the delivery of each expiry, and whether any of them is approximate."""

    timestamp: datetime
    pnl_coin: float
    pnl_usd: float
    deliveries: dict
    approximate: bool


def settle(records: Sequence[Mapping], index0_usd: float, deliveries: Mapping) -> SettlementResult:
    """Settle every option leg at its expiry's delivery price (`deliveries`: expiry → `Settlement` or USD
    price, every expiry present) and the held coin at the last delivery price."""
    expiries = sorted({r["expiry"] for r in records if r["option_type"] != UNDERLYING})
    prices = {e: (d.price_usd if isinstance(d, Settlement) else d) for e, d in deliveries.items()}
    lacking = [e for e in expiries if prices.get(e) is None]
    if lacking:
        raise ValueError(f"no delivery price for expiry {', '.join(str(e) for e in lacking)}")
    entry_coin, entry_usd = entry_value(records, index0_usd)
    value_coin = value_usd = 0.0
    for r in records:
        q = r["side_sign"] * r["size"]
        if r["option_type"] == UNDERLYING:
            last = prices[expiries[-1]]
            value_coin, value_usd = value_coin + q, value_usd + q * last
            continue
        price = prices[r["expiry"]]
        v = settled_value_coin(r, price)
        value_coin, value_usd = value_coin + q * v, value_usd + q * v * price
    approximate = any(isinstance(deliveries[e], Settlement) and deliveries[e].approximate for e in expiries)
    return SettlementResult(expiries[-1], value_coin - entry_coin, value_usd - entry_usd,
                            {e: deliveries[e] for e in expiries}, approximate)
