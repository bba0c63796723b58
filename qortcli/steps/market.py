"""The market step: positioning of each currency's latest chain (`qortcli.quant.market`) and the change in
open interest against the snapshot 24 hours earlier.

`run_market(db, currency=None, expiry=None, basis="ACT/365", dealer="long-calls-short-puts",
compare_hours=24, tolerance_hours=3) -> MarketSummary` reads `read.latest_chain` of each currency (every
currency with a complete snapshot when none is given), computes `market_statistics`, and compares open interest
with the snapshot `compare_hours` earlier: the latest complete snapshot at or before (latest − compare_hours),
used only when it was taken at most `tolerance_hours` before that moment (else no comparison, and
`change_note` says why). It writes nothing but its `job_runs` record: the totals go into the per-snapshot
summaries through `market_totals(frame)`, which the surface step calls. `market_report` is the same computation
for one currency without the run record.

`MarketSummary.to_dict()` is the JSON view the CLI prints and renders: every figure of its tables.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np
import pandas as pd

from qortcli.errors import StepError, UsageError
from qortcli.quant import market as qm
from qortcli.steps.common import day_count
from qortcli.store import ops, read
from qortcli.store.runs import recorded_run
from qortcli.timeutils import BASES, DEFAULT_BASIS

DEFAULT_COMPARE_HOURS = 24.0
DEFAULT_TOLERANCE_HOURS = 3.0
TOP_CHANGES = 10                 # instruments with the largest OI change in the view (and the CLI's table)


class CurrencyMarket(NamedTuple):
    """One currency's market statistics: its latest snapshot, the chosen expiry (None: all expiries), the
    statistics of the whole chain, and the OI change against the earlier snapshot (None with a note)."""

    currency: str
    snapshot: read.SnapshotInfo
    basis: str
    expiry_code: str | None
    stats: qm.MarketStatistics
    earlier: read.SnapshotInfo | None
    change: qm.OIChanges | None
    change_note: str


class MarketSummary(NamedTuple):
    """What `run_market` returns; `to_dict()` is its JSON view."""

    basis: str
    dealer: str
    expiry_code: str | None
    compare_hours: float
    tolerance_hours: float
    markets: tuple[CurrencyMarket, ...]
    seconds: float

    def to_dict(self) -> dict:
        return {"step": "market", "basis": self.basis, "dealer_convention": self.dealer,
                "dealer_note": qm.DEALER_DESCRIPTIONS[self.dealer], "expiry": self.expiry_code,
                "compare_hours": self.compare_hours, "tolerance_hours": self.tolerance_hours,
                "iv_source": "marks", "seconds": self.seconds,
                "currencies": [market_view(m) for m in self.markets]}


# ----------------------------------------------------------------------------------------------- inputs

def _basis(basis: str) -> float:
    return BASES[day_count(basis)]


def _dealer(dealer: str) -> qm.DealerSigns:
    try:
        return qm.DealerSigns.parse(dealer)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _currency(db, currency: str | None) -> list[str]:
    found = read.currencies(db)
    if not found:
        raise StepError(read.NO_SNAPSHOT)
    if currency is None:
        return found
    wanted = currency.strip().upper()
    if wanted not in found:
        raise UsageError(f"no {wanted} options snapshot in the store; currencies with one: {', '.join(found)}")
    return [wanted]


def _expiry(stats: qm.MarketStatistics, code: str | None, snapshot_id: str) -> str | None:
    if code is None:
        return None
    wanted = code.strip().upper()
    listed = [str(c) for c in stats.expiries["expiry_code"]]
    if wanted not in listed:
        raise UsageError(f"no expiry {wanted} in {snapshot_id}; listed: {', '.join(listed)}")
    return wanted


def _earlier(db, currency: str, latest: read.SnapshotInfo, compare_hours: float,
             tolerance_hours: float) -> tuple[read.SnapshotInfo | None, str]:
    target = latest.timestamp - timedelta(hours=compare_hours)
    found = read.snapshot_near(db, currency, target)
    if found is None or found.snapshot_id == latest.snapshot_id:
        return None, f"no {currency} snapshot at or before {target:%Y-%m-%d %H:%M} UTC ({compare_hours:g} h earlier)"
    lag = (target - found.timestamp).total_seconds() / 3600.0
    if lag > tolerance_hours:
        return None, (f"no {currency} snapshot within {tolerance_hours:g} h before {target:%Y-%m-%d %H:%M} UTC "
                      f"({compare_hours:g} h earlier); the nearest, {found.snapshot_id}, is {lag:.1f} h older")
    hours = (latest.timestamp - found.timestamp).total_seconds() / 3600.0
    return found, f"against {found.snapshot_id}, {hours:.1f} h earlier"


# ----------------------------------------------------------------------------------------------- the step

def market_totals(frame: pd.DataFrame, dealer: str = qm.DEFAULT_DEALER) -> qm.MarketTotals:
    """The positioning totals of one chain frame for its per-snapshot summary (`MarketTotals.as_document()`
    gives the fields); the frame's own basis (`frame.attrs["basis"]`) sets the 30-day expiry."""
    days_per_year = _basis(frame.attrs.get("basis") or DEFAULT_BASIS)
    try:
        return qm.market_totals(frame, days_per_year=days_per_year, dealer=_dealer(dealer))
    except ValueError as exc:
        raise StepError(f"market totals of {frame.attrs.get('snapshot_id') or 'the chain'}: {exc}") from None


def market_report(db, currency: str, expiry: str | None = None, basis: str = DEFAULT_BASIS,
                  dealer: str = qm.DEFAULT_DEALER, compare_hours: float = DEFAULT_COMPARE_HOURS,
                  tolerance_hours: float = DEFAULT_TOLERANCE_HOURS) -> CurrencyMarket:
    """One currency's statistics and OI change (reads only; no run record). UsageError on an unknown
    currency, expiry, basis or dealer convention; StepError when the store has no usable chain."""
    days_per_year = _basis(basis)
    signs = _dealer(dealer)
    if compare_hours <= 0 or tolerance_hours < 0:
        raise UsageError(f"compare hours must be > 0 and tolerance >= 0, got {compare_hours:g} and "
                         f"{tolerance_hours:g}")
    (cur,) = _currency(db, currency)
    chain = read.latest_chain(db, cur, basis)
    try:
        stats = qm.market_statistics(chain.frame, days_per_year=days_per_year, dealer=signs)
    except ValueError as exc:
        raise StepError(f"{chain.snapshot.snapshot_id}: {exc}") from None
    code = _expiry(stats, expiry, chain.snapshot.snapshot_id)
    earlier, note = _earlier(db, cur, chain.snapshot, compare_hours, tolerance_hours)
    change = None
    if earlier is not None:
        before = read.chain_at(db, earlier.snapshot_id, basis)
        try:
            change = qm.oi_changes(chain.frame, before.frame, as_of=chain.snapshot.timestamp,
                                   spot_usd=stats.spot_usd)
        except ValueError as exc:
            raise StepError(f"OI change {earlier.snapshot_id} → {chain.snapshot.snapshot_id}: {exc}") from None
    return CurrencyMarket(currency=cur, snapshot=chain.snapshot, basis=basis, expiry_code=code, stats=stats,
                          earlier=earlier, change=change, change_note=note)


def run_market(db, currency: str | None = None, expiry: str | None = None, basis: str = DEFAULT_BASIS,
               dealer: str = qm.DEFAULT_DEALER, compare_hours: float = DEFAULT_COMPARE_HOURS,
               tolerance_hours: float = DEFAULT_TOLERANCE_HOURS) -> MarketSummary:
    """Market statistics of the latest chain of each currency (or of `currency`), for all expiries or one
    (`expiry`, Deribit's code such as 27MAR26), with a `job_runs` record. Nothing else is written."""
    signs = _dealer(dealer)
    _basis(basis)
    clock = time.perf_counter()
    args = {"currency": currency, "expiry": expiry, "basis": basis, "dealer": signs.name,
            "compare_hours": compare_hours, "tolerance_hours": tolerance_hours}
    with recorded_run(db, "market", args) as run:
        markets = tuple(market_report(db, cur, expiry, basis, signs.name, compare_hours, tolerance_hours)
                        for cur in _currency(db, currency))
        run.counts.update(currencies=len(markets), options=sum(m.stats.n_options for m in markets),
                          compared=sum(m.change is not None for m in markets))
    return MarketSummary(basis=basis, dealer=signs.name, expiry_code=expiry.strip().upper() if expiry else None,
                         compare_hours=compare_hours, tolerance_hours=tolerance_hours, markets=markets,
                         seconds=round(time.perf_counter() - clock, 3))


# ----------------------------------------------------------------------------------------------- the view

def _plain(value):
    """JSON-able values: datetimes (pandas' too) → ISO 8601 strings (NaT → None); the rest as the store's
    `to_plain` (numpy → Python, NaN → None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return None if pd.isna(value) else value.isoformat()
    return ops.to_plain(value)


def _records(frame: pd.DataFrame, columns=None) -> list[dict]:
    frame = frame if columns is None else frame[list(columns)]
    return _plain(frame.to_dict("records"))


def selection(market: CurrencyMarket) -> tuple[dict, pd.DataFrame, pd.Series]:
    """The chosen expiry's (or all expiries') summary row, its by-strike rows and its GEX profile."""
    st = market.stats
    if market.expiry_code is None:
        return st.overall.iloc[0].to_dict(), st.all_by_strike, st.gex_profile[qm.ALL]
    row = st.expiries[st.expiries["expiry_code"] == market.expiry_code]
    strikes = st.by_strike[st.by_strike["expiry_code"] == market.expiry_code].reset_index(drop=True)
    return row.iloc[0].to_dict(), strikes, st.gex_profile[market.expiry_code]


def _change_view(market: CurrencyMarket) -> dict | None:
    ch = market.change
    if ch is None:
        return None
    if market.expiry_code is None:
        strikes, instruments = ch.all_by_strike, ch.by_instrument
        sums = strikes
    else:
        strikes = ch.by_strike[ch.by_strike["expiry_code"] == market.expiry_code]
        instruments = ch.by_instrument[ch.by_instrument["expiry_code"] == market.expiry_code]
        sums = ch.by_expiry[ch.by_expiry["expiry_code"] == market.expiry_code]
    top = instruments[instruments["oi_change_coin"] != 0].head(TOP_CHANGES)
    selected = {k: float(sums[k].sum()) for k in ("oi_calls_change_coin", "oi_puts_change_coin", "oi_change_coin",
                                                  "oi_change_usd")}
    return {"earlier_snapshot_id": market.earlier.snapshot_id, "earlier_timestamp": market.earlier.timestamp,
            "totals": ch.totals._asdict(), "selected": selected, "by_expiry": _records(ch.by_expiry),
            "strikes": _records(strikes), "top_instruments": _records(top)}


def market_view(market: CurrencyMarket) -> dict:
    """One currency as plain JSON values: snapshot, totals, every expiry, the selection (expiry or ALL) with
    its strikes and GEX profile, and the OI change. Days = t_years × the basis' days per year."""
    st = market.stats
    days_per_year = BASES[market.basis]
    chosen, strikes, profile = selection(market)
    expiries = st.expiries.assign(days=st.expiries["t_years"] * days_per_year)
    return _plain({
        "currency": market.currency, "snapshot_id": market.snapshot.snapshot_id,
        "timestamp": market.snapshot.timestamp, "source": market.snapshot.source, "spot_usd": st.spot_usd,
        "n_options": st.n_options, "n_expired": st.n_expired, "n_without_greeks": st.n_without_greeks,
        "selection": market.expiry_code or qm.ALL,
        "totals": st.totals.as_document(),
        "expiries": _records(expiries),
        "all_expiries": _records(st.overall)[0],
        "selected": {**_plain(chosen), "days": (chosen["t_years"] * days_per_year)},
        "strikes": _records(strikes),
        "gex_profile": {"spot_usd": profile.index.to_numpy(), "gex_usd_per_pct_marks": profile.to_numpy(),
                        "grid": {"low": st.grid.low, "high": st.grid.high, "points": st.grid.points}},
        "change": _change_view(market), "change_note": market.change_note,
    })
