"""Core reads: snapshots, chains, prices, surfaces and summaries.

Each returns one typed record or frame with one column vocabulary (chains: `qortcli.store.frames`);
no caller outside `qortcli/store/` issues a query itself. Every query here is served by an index of
`qortcli.store.schema` and costs what it returns, never the whole history.

Snapshots: `currencies`, `latest_snapshot`, `snapshot_info`, `snapshots`, `snapshot_near`.
Chains:    `latest_chain`, `chain_at` (a `Chain`: the snapshot record and its chain frame), `marks_at`.
Prices:    `price_series`, `last_price_day`.
Surfaces:  `latest_surface`, `surface_at`.
Summaries: `summary_series`, `latest_summary` (`SUMMARY_TENORS_DAYS`, column names below).
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, NamedTuple

import numpy as np
import pandas as pd

from qortcli.errors import StepError
from qortcli.store import schema
from qortcli.store.frames import chain_frame
from qortcli.timeutils import DEFAULT_BASIS, as_utc, require_utc

__all__ = ["COMPLETE", "NO_SNAPSHOT", "SUMMARY_TENORS_DAYS", "SnapshotInfo", "Chain", "currencies",
           "latest_snapshot", "latest_priced_snapshot", "snapshot_near", "snapshot_info", "snapshots", "require_latest_snapshot", "chain_documents", "latest_chain", "chain_at", "marks_at",
           "PRICE_COLUMNS", "price_series", "last_price_day", "surface_at", "latest_surface", "summary_series",
           "summary_history", "summary_at", "latest_summary"]

COMPLETE = "complete"
NO_SNAPSHOT = ("no complete options snapshot in the store: run `qortcli collect deribit` "
               "(or `qortcli collect deribit --from-file FILE`, or `qortcli collect sample`) first")

#: constant maturities of the per-snapshot summaries (days)
SUMMARY_TENORS_DAYS = (7, 30, 60, 90, 180)


class SnapshotInfo(NamedTuple):
    """A complete options snapshot: its id, currency, time (UTC), source, document counts and pricing."""

    snapshot_id: str
    currency: str
    timestamp: datetime
    source: str
    counts: dict
    priced: dict | None          # {"count", "basis", "priced_at"} once `price` has run on it, else None

    @classmethod
    def from_doc(cls, doc: dict) -> "SnapshotInfo":
        return cls(snapshot_id=str(doc["_id"]), currency=str(doc.get("currency") or ""),
                   timestamp=as_utc(doc["timestamp"]), source=str(doc.get("source") or ""),
                   counts=dict(doc.get("counts") or {}), priced=doc.get("priced"))


class Chain(NamedTuple):
    """One snapshot's options: the snapshot record and the chain frame (`qortcli.store.frames`)."""

    snapshot: SnapshotInfo
    frame: pd.DataFrame


# ------------------------------------------------------------------------------------------ snapshots

def _window(start: datetime | None, end: datetime | None) -> dict:
    """{"timestamp": {"$gte": start, "$lte": end}} for the bounds given (UTC), {} for none."""
    span = {op: require_utc(when, name) for op, when, name in (("$gte", start, "start"), ("$lte", end, "end"))
            if when is not None}
    return {"timestamp": span} if span else {}


def _snapshot_query(currency: str | None) -> dict:
    query: dict = {"kind": "options", "status": COMPLETE}
    if currency:
        query["currency"] = currency.upper()
    return query


def currencies(db) -> list[str]:
    """Currencies with at least one complete options snapshot, sorted."""
    found = db[schema.SNAPSHOTS].distinct("currency", {"kind": "options", "status": COMPLETE})
    return sorted(str(c) for c in found if c)


def latest_snapshot(db, currency: str, before: datetime | None = None) -> SnapshotInfo | None:
    """The newest complete options snapshot of `currency` (taken at or before `before` if given)."""
    query = _snapshot_query(currency)
    if before is not None:
        query["timestamp"] = {"$lte": require_utc(before, "before")}
    found = list(db[schema.SNAPSHOTS].find(query).sort("timestamp", -1).limit(1))
    return SnapshotInfo.from_doc(found[0]) if found else None


def latest_priced_snapshot(db, currency: str, scan: int = 12) -> SnapshotInfo | None:
    """The newest of the last `scan` complete snapshots of `currency` that `price` has finished (its `priced`
    record set), or None: a reader needing model fields while a new chain is collected but not yet priced."""
    found = db[schema.SNAPSHOTS].find(_snapshot_query(currency)).sort("timestamp", -1).limit(int(scan))
    for doc in found:
        if doc.get("priced"):
            return SnapshotInfo.from_doc(doc)
    return None


def snapshot_near(db, currency: str, when: datetime) -> SnapshotInfo | None:
    """The latest complete snapshot of `currency` at or before `when` (e.g. 24 hours earlier)."""
    return latest_snapshot(db, currency, before=when)


def snapshot_info(db, snapshot_id: str) -> SnapshotInfo | None:
    """The record of one complete snapshot, or None (pending and unknown ids alike)."""
    doc = db[schema.SNAPSHOTS].find_one({"_id": snapshot_id})
    if doc is None or doc.get("status") != COMPLETE:
        return None
    return SnapshotInfo.from_doc(doc)


def snapshots(db, currency: str | None = None, start: datetime | None = None, end: datetime | None = None,
              limit: int | None = None, newest_first: bool = False) -> list[SnapshotInfo]:
    """Complete options snapshots (of `currency`) with start ≤ timestamp ≤ end, oldest first."""
    query = _snapshot_query(currency)
    query.update(_window(start, end))
    cursor = db[schema.SNAPSHOTS].find(query).sort("timestamp", -1 if newest_first else 1)
    if limit:
        cursor = cursor.limit(int(limit))
    return [SnapshotInfo.from_doc(d) for d in cursor]


# ------------------------------------------------------------------------------------------ chains

def chain_documents(db, info: SnapshotInfo) -> list[dict]:
    """The whole options_data documents of one snapshot (cheaper than projecting); StepError when it has none."""
    docs = list(db[schema.OPTIONS].find({"snapshot_id": info.snapshot_id}))
    if not docs:
        raise StepError(f"snapshot {info.snapshot_id} has no options_data documents")
    return docs


def _chain(db, info: SnapshotInfo, basis: str) -> Chain:
    return Chain(info, chain_frame(chain_documents(db, info), info.timestamp, basis, snapshot_id=info.snapshot_id,
                                   currency=info.currency))


def require_latest_snapshot(db, currency: str, before: datetime | None = None) -> SnapshotInfo:
    """The newest complete snapshot of `currency` (at or before `before`); StepError saying how to get one."""
    info = latest_snapshot(db, currency, before)
    if info is None:
        if before is not None:
            raise StepError(f"no complete {currency.upper()} options snapshot at or before "
                            f"{require_utc(before):%Y-%m-%d %H:%M} UTC")
        raise StepError(f"no complete {currency.upper()} options snapshot in the store: run `qortcli collect "
                        f"deribit --currency {currency.upper()}` (or `qortcli collect sample`) first")
    return info


def latest_chain(db, currency: str, basis: str = DEFAULT_BASIS, before: datetime | None = None) -> Chain:
    """The newest complete chain of `currency` (at or before `before`); StepError saying how to get one."""
    return _chain(db, require_latest_snapshot(db, currency, before), basis)


def chain_at(db, snapshot_id: str, basis: str = DEFAULT_BASIS) -> Chain:
    """The chain of one complete snapshot; StepError if it is unknown or not complete."""
    info = snapshot_info(db, snapshot_id)
    if info is None:
        raise StepError(f"no complete snapshot {snapshot_id}")
    return _chain(db, info, basis)


def marks_at(db, snapshot_ids: Iterable[str], instruments: Iterable[str]) -> pd.DataFrame:
    """Marks of some instruments at some snapshots (tracking): one row per (snapshot_id, instrument) found,
    columns snapshot_id, instrument, mark_coin, bid_coin, ask_coin, index_usd. Found by `_id`."""
    ids = [f"{sym}|{sid}" for sid in snapshot_ids for sym in instruments]
    rows = []
    for start in range(0, len(ids), 500):
        for d in db[schema.OPTIONS].find({"_id": {"$in": ids[start:start + 500]}},
                                         {"symbol": 1, "snapshot_id": 1, "premium_crypto": 1, "bid_crypto": 1,
                                          "ask_crypto": 1, "index_price": 1}):
            rows.append((d.get("snapshot_id"), d.get("symbol"), d.get("premium_crypto"), d.get("bid_crypto"),
                         d.get("ask_crypto"), d.get("index_price")))
    frame = pd.DataFrame(rows, columns=["snapshot_id", "instrument", "mark_coin", "bid_coin", "ask_coin",
                                        "index_usd"])
    for c in ("mark_coin", "bid_coin", "ask_coin", "index_usd"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    return frame


# ------------------------------------------------------------------------------------------ prices

PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close", "volume")


def price_series(db, symbol: str, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
    """Daily bars of one ticker (e.g. "BTC") from `price_data`: index = UTC day (DatetimeIndex, tz UTC),
    columns open, high, low, close, adj_close (USD), volume (USD 24 h, Yahoo's). Empty frame if none."""
    query: dict = {"symbol": symbol}
    query.update(_window(start, end))
    docs = list(db[schema.PRICES].find(query, {"timestamp": 1, "open": 1, "high": 1, "low": 1, "close": 1,
                                               "adj_close": 1, "volume_24h": 1}).sort("timestamp", 1))
    index = pd.DatetimeIndex([as_utc(d["timestamp"]) for d in docs], name="day")
    data = {c: np.array([np.nan if d.get(c) is None else d[c] for d in docs], dtype=float)
            for c in ("open", "high", "low", "close", "adj_close")}
    data["volume"] = np.array([np.nan if d.get("volume_24h") is None else d["volume_24h"] for d in docs], dtype=float)
    frame = pd.DataFrame(data, index=index, columns=list(PRICE_COLUMNS))
    frame.attrs["symbol"] = symbol
    return frame


def last_price_day(db, symbol: str) -> datetime | None:
    """The latest UTC day stored for `symbol` in `price_data`, or None."""
    found = list(db[schema.PRICES].find({"symbol": symbol}, {"timestamp": 1}).sort("timestamp", -1).limit(1))
    return as_utc(found[0]["timestamp"]) if found else None


# ------------------------------------------------------------------------------------------ surfaces

def surface_at(db, snapshot_id: str) -> dict | None:
    """The stored volatility surface document of one snapshot (`volatility_surfaces`), or None."""
    return db[schema.SURFACES].find_one({"_id": snapshot_id})


def latest_surface(db, currency: str, before: datetime | None = None) -> dict | None:
    """The newest stored surface document of `currency` (fitted on a snapshot at or before `before`)."""
    query: dict = {"currency": currency.upper()}
    if before is not None:
        query["timestamp"] = {"$lte": require_utc(before, "before")}
    found = list(db[schema.SURFACES].find(query).sort("timestamp", -1).limit(1))
    return found[0] if found else None


# ------------------------------------------------------------------------------------------ summaries

def summary_series(db, currency: str, start: datetime | None = None, end: datetime | None = None,
                   resolution: str = "snapshot", columns: Iterable[str] | None = None) -> pd.DataFrame:
    """The per-snapshot summaries of `currency` (resolution "snapshot") or their daily roll-up ("day": the
    last snapshot of each UTC day) as a frame indexed by snapshot time (UTC), oldest first; scalar fields
    only (the term structure stays in the documents: `latest_summary`). Columns: see `qortcli.store.schema`
    SUMMARY fields — e.g. atm_iv_30d_marks, atm_iv_30d_svi, rr25_30d_marks, vs_vol_30d_svi, index_usd."""
    if resolution not in ("snapshot", "day"):
        raise ValueError(f"resolution must be 'snapshot' or 'day', got {resolution!r}")
    query: dict = {"currency": currency.upper(), "resolution": resolution}
    query.update(_window(start, end))
    docs = list(db[schema.SUMMARIES].find(query).sort("timestamp", 1))
    if not docs:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="timestamp"))
    wanted = list(columns) if columns is not None else None
    rows = []
    for d in docs:
        row = {k: v for k, v in d.items() if isinstance(v, (int, float, str, bool)) or v is None}
        rows.append(row if wanted is None else {k: row.get(k) for k in (*wanted, "snapshot_id")})
    frame = pd.DataFrame(rows, index=pd.DatetimeIndex([as_utc(d["timestamp"]) for d in docs], name="timestamp"))
    return frame.drop(columns=[c for c in ("_id", "resolution") if c in frame.columns])


def summary_history(db, currency: str, end: datetime, lookback_days: float, columns: Iterable[str]) -> pd.DataFrame:
    """A history as of `end` without look-ahead and without reading every snapshot: the daily roll-up for the
    days before `end`'s UTC day (one point a day, back `lookback_days`), then every snapshot summary of that day
    up to `end`. Frame indexed by snapshot time with `columns` and snapshot_id."""
    from datetime import timedelta

    end = require_utc(end, "end")
    day_start = end.replace(hour=0, minute=0, second=0, microsecond=0)
    start = day_start - timedelta(days=float(lookback_days))
    earlier = summary_series(db, currency, start, day_start - timedelta(milliseconds=1), "day", columns)
    today = summary_series(db, currency, day_start, end, "snapshot", columns)
    parts = [f for f in (earlier, today) if not f.empty]
    if not parts:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="timestamp"))
    return pd.concat(parts).sort_index()


def summary_at(db, summary_id: str) -> dict | None:
    """One summary document by its `_id` (a snapshot id, or `CUR|day|YYYY-MM-DD` for a daily roll-up)."""
    return db[schema.SUMMARIES].find_one({"_id": summary_id})


def latest_summary(db, currency: str, before: datetime | None = None) -> dict | None:
    """The newest per-snapshot summary document of `currency` (taken before `before` if given), with its term
    structure, or None."""
    query: dict = {"currency": currency.upper(), "resolution": "snapshot"}
    if before is not None:
        query["timestamp"] = {"$lt": require_utc(before, "before")}
    found = list(db[schema.SUMMARIES].find(query).sort("timestamp", -1).limit(1))
    return found[0] if found else None
