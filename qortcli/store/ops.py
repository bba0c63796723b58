"""The small set of store operations every step uses (honoured by MongoDB and the embedded engine)."""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from typing import Iterable

import numpy as np
from pymongo import ReplaceOne

from qortcli.store import schema
from qortcli.timeutils import require_utc, utcnow

PENDING, COMPLETE = "pending", "complete"


def to_plain(obj):
    """A BSON-safe copy of `obj`: numpy scalars/arrays → Python, NaN/inf → None, datetimes UTC-aware
    and truncated to the millisecond (what BSON stores).

    A naive datetime raises ValueError (it would be stored as an ambiguous time).
    """
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [to_plain(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, datetime):
        if hasattr(obj, "to_pydatetime"):  # pandas Timestamp
            obj = obj.to_pydatetime()
        moment = require_utc(obj, "datetime")
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)  # BSON keeps milliseconds
    if isinstance(obj, date):
        return datetime(obj.year, obj.month, obj.day, tzinfo=timezone.utc)
    if isinstance(obj, np.datetime64):
        return datetime.fromtimestamp(obj.astype("datetime64[us]").astype(np.int64) / 1e6, tz=timezone.utc)
    return obj


def upsert_many(db, collection: str, docs: Iterable[dict], batch_size: int = 2000) -> int:
    """Write `docs` keyed by their natural `_id` (replace or insert); returns how many were written."""
    written = 0
    batch: list[ReplaceOne] = []
    for doc in docs:
        plain = to_plain(doc)
        plain["_id"] = schema.natural_key(collection, plain)
        batch.append(ReplaceOne({"_id": plain["_id"]}, plain, upsert=True))
        if len(batch) >= batch_size:
            db[collection].bulk_write(batch, ordered=False)
            written += len(batch)
            batch = []
    if batch:
        db[collection].bulk_write(batch, ordered=False)
        written += len(batch)
    return written


def snapshot_id_for(currency: str, timestamp: datetime) -> str:
    """`BTC-20260313T190015Z`: the id of a currency's options snapshot taken at `timestamp`."""
    return f"{currency.upper()}-{require_utc(timestamp, 'snapshot time'):%Y%m%dT%H%M%SZ}"


def begin_snapshot(db, kind: str, currency: str, timestamp: datetime, source: str = "") -> str:
    """Record a pending snapshot; its documents stay invisible to readers until `complete_snapshot`.

    Re-collecting a snapshot that is already complete keeps it visible (the upserts rewrite the same
    documents with the same keys).
    """
    snapshot_id = snapshot_id_for(currency, timestamp)
    existing = db[schema.SNAPSHOTS].find_one({"_id": snapshot_id})
    status = existing["status"] if existing else PENDING
    doc = {"snapshot_id": snapshot_id, "kind": kind, "currency": currency.upper(),
           "timestamp": require_utc(timestamp), "status": status, "source": source, "started_at": utcnow(),
           "counts": existing.get("counts", {}) if existing else {}}
    upsert_many(db, schema.SNAPSHOTS, [doc])
    return snapshot_id


def complete_snapshot(db, snapshot_id: str, counts: dict | None = None) -> None:
    """Mark a snapshot complete (visible to readers) with its document counts."""
    db[schema.SNAPSHOTS].update_one({"_id": snapshot_id},
                                    {"$set": {"status": COMPLETE, "completed_at": utcnow(),
                                              "counts": to_plain(counts or {})}})


def discard_snapshot(db, snapshot_id: str, collection: str = schema.OPTIONS) -> int:
    """Delete the documents of a snapshot that never completed, and its record; returns documents deleted.

    A snapshot already complete is left untouched (returns 0).
    """
    record = db[schema.SNAPSHOTS].find_one({"_id": snapshot_id})
    if record and record.get("status") == COMPLETE:
        return 0
    deleted = db[collection].delete_many({"snapshot_id": snapshot_id}).deleted_count
    db[schema.SNAPSHOTS].delete_one({"_id": snapshot_id})
    return deleted


def list_snapshots(db, kind: str = "options", currency: str | None = None, complete_only: bool = True) -> list[dict]:
    """Snapshot records, oldest first."""
    query: dict = {"kind": kind}
    if currency:
        query["currency"] = currency.upper()
    if complete_only:
        query["status"] = COMPLETE
    return list(db[schema.SNAPSHOTS].find(query).sort("timestamp", 1))


def snapshot_currencies(db, kind: str = "options") -> list[str]:
    """Currencies with at least one complete snapshot of `kind`, sorted."""
    found = db[schema.SNAPSHOTS].distinct("currency", {"kind": kind, "status": COMPLETE})
    return sorted(str(c) for c in found if c)


def latest_snapshot(db, kind: str = "options", currency: str | None = None) -> dict | None:
    """The newest complete snapshot record of `kind` (optionally for one currency), or None."""
    query: dict = {"kind": kind, "status": COMPLETE}
    if currency:
        query["currency"] = currency.upper()
    found = list(db[schema.SNAPSHOTS].find(query).sort("timestamp", -1).limit(1))
    return found[0] if found else None


def snapshot_documents(db, snapshot_id: str, projection: dict | None = None) -> list[dict]:
    """All options_data documents of one snapshot."""
    return list(db[schema.OPTIONS].find({"snapshot_id": snapshot_id}, projection))
