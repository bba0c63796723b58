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
    if isinstance(obj, str):
        return str(obj)  # a str subclass (e.g. a SnapshotClaim) is stored as the plain string
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


def update_fields(db, collection: str, updates: Iterable[tuple[object, dict]], batch_size: int = 2000) -> int:
    """Narrow updates: set `fields` (dotted paths allowed) on the document with each `_id`, touching nothing else
    (the `price` step's model fields on collected documents). Returns how many documents matched."""
    from pymongo import UpdateOne

    matched = 0
    batch: list = []
    for doc_id, fields in updates:
        batch.append(UpdateOne({"_id": doc_id}, {"$set": to_plain(fields)}))
        if len(batch) >= batch_size:
            matched += db[collection].bulk_write(batch, ordered=False).matched_count
            batch = []
    if batch:
        matched += db[collection].bulk_write(batch, ordered=False).matched_count
    return matched


def snapshot_id_for(currency: str, timestamp: datetime) -> str:
    """`BTC-20260313T190015Z`: the id of a currency's options snapshot taken at `timestamp`."""
    return f"{currency.upper()}-{require_utc(timestamp, 'snapshot time'):%Y%m%dT%H%M%SZ}"


# ---------------------------------------------------------------------------------------------- snapshots
# A snapshot is written pending and made complete only after all its documents are in. Each writer claims
# the snapshot atomically (an insert of the record, or a conditional update taking over a dead writer's
# claim); only the owner may complete or discard it, so two writers of the same snapshot never lose it.

CLAIMED, BUSY = "claimed", "busy"
STALE_AFTER_S = 900.0          # a pending claim this old, of a process we cannot see, is dead


class SnapshotClaim(str):
    """The snapshot id, plus what the claim found: `state` "claimed" (yours to write), "complete" (already
    stored: compare or leave it) or "busy" (another live writer is storing it now); `owner` is your token."""

    state: str
    owner: str
    record: dict | None

    def __new__(cls, snapshot_id: str, state: str, owner: str, record: dict | None = None):
        obj = super().__new__(cls, snapshot_id)
        obj.state, obj.owner, obj.record = state, owner, record
        return obj

    def __getnewargs__(self):
        return str(self), self.state, self.owner, self.record


def owner_token() -> str:
    """host:pid:random — who holds a claim (the pid lets the same host prove a dead writer dead)."""
    import os
    import socket
    import uuid

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def owner_alive(owner: str | None, started_at: datetime | None, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Whether the writer that holds a claim may still be running: on this host, its pid is alive; on another
    host (or unknown), its claim is younger than `stale_after_s`."""
    import os
    import socket

    host, _, rest = (owner or "").partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname() and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if started_at is None:
        return False
    from qortcli.timeutils import as_utc

    return (utcnow() - as_utc(started_at)).total_seconds() < stale_after_s


def begin_snapshot(db, kind: str, currency: str, timestamp: datetime, source: str = "",
                   replace: bool = False, stale_after_s: float = STALE_AFTER_S) -> SnapshotClaim:
    """Claim the snapshot of `currency` at `timestamp` for writing; its documents stay invisible to readers
    until `complete_snapshot`.

    Returns a SnapshotClaim (a str: the id): "claimed" when it is yours to write (a new snapshot, a dead
    writer's leftover, or — with `replace` — a complete one you are replacing, which readers stop seeing
    until you complete it); "complete" when it is already stored (nothing changed); "busy" when another
    live writer is storing it right now (a concurrent twin: leave it to that writer).
    """
    from pymongo.errors import DuplicateKeyError

    snapshot_id = snapshot_id_for(currency, timestamp)
    owner = owner_token()
    now = utcnow()
    record = to_plain({"_id": snapshot_id, "snapshot_id": snapshot_id, "kind": kind, "currency": currency.upper(),
                       "timestamp": require_utc(timestamp), "status": PENDING, "source": source, "owner": owner,
                       "started_at": now, "counts": {}})
    coll = db[schema.SNAPSHOTS]
    try:
        coll.insert_one(dict(record))
        return SnapshotClaim(snapshot_id, CLAIMED, owner)
    except DuplicateKeyError:
        pass
    existing = coll.find_one({"_id": snapshot_id}) or {}
    if existing.get("status") == COMPLETE:
        if not replace:
            return SnapshotClaim(snapshot_id, COMPLETE, owner, existing)
        taken = coll.find_one_and_update({"_id": snapshot_id, "status": COMPLETE},
                                         {"$set": {"status": PENDING, "owner": owner, "started_at": now,
                                                   "source": source, "replacing": True}})
        return SnapshotClaim(snapshot_id, CLAIMED if taken else BUSY, owner, existing)
    if owner_alive(existing.get("owner"), existing.get("started_at"), stale_after_s):
        return SnapshotClaim(snapshot_id, BUSY, owner, existing)
    taken = coll.find_one_and_update({"_id": snapshot_id, "status": PENDING, "owner": existing.get("owner")},
                                     {"$set": {"owner": owner, "started_at": now, "source": source}})
    return SnapshotClaim(snapshot_id, CLAIMED if taken else BUSY, owner, existing)


class LostClaim(RuntimeError):
    """The snapshot's claim was taken over (this writer was thought dead): its work is not kept."""


def complete_snapshot(db, snapshot_id: str, counts: dict | None = None, owner: str | None = None) -> None:
    """Mark a snapshot complete (visible to readers) with its document counts — only if `owner` (default:
    the claim's own token when `snapshot_id` is a SnapshotClaim) still holds it."""
    owner = owner or getattr(snapshot_id, "owner", None)
    query: dict = {"_id": str(snapshot_id), "status": PENDING}
    if owner:
        query["owner"] = owner
    # documents (re)written by a collector carry no model fields: a `priced` mark of a replaced snapshot goes
    done = db[schema.SNAPSHOTS].update_one(query, {"$set": {"status": COMPLETE, "completed_at": utcnow(),
                                                            "counts": to_plain(counts or {})},
                                                   "$unset": {"owner": "", "replacing": "", "priced": ""}})
    if done.matched_count == 0:
        raise LostClaim(f"snapshot {snapshot_id}: another writer took over its claim; this copy is not kept")


def discard_snapshot(db, snapshot_id: str, collection: str = schema.OPTIONS, owner: str | None = None) -> int:
    """Delete the documents of a snapshot that never completed, and its record; returns documents deleted.

    Only the claim's owner (default: the SnapshotClaim's token) may discard; a complete snapshot, or one
    another writer holds, is left untouched (returns 0).
    """
    owner = owner or getattr(snapshot_id, "owner", None)
    coll = db[schema.SNAPSHOTS]
    record = coll.find_one({"_id": str(snapshot_id)})
    if not record or record.get("status") == COMPLETE:
        return 0
    if owner and record.get("owner") != owner:
        return 0
    # Take the claim over atomically before deleting anything: a writer that took a dead writer's claim over
    # between the read above and the delete below would otherwise have its new documents deleted and then
    # complete the snapshot with none (found by tests/test_faults.py).
    mine = owner_token()
    taken = coll.find_one_and_update({"_id": str(snapshot_id), "status": PENDING, "owner": record.get("owner")},
                                     {"$set": {"owner": mine, "started_at": utcnow(), "discarding": True}})
    if not taken:
        return 0
    deleted = db[collection].delete_many({"snapshot_id": str(snapshot_id)}).deleted_count
    coll.delete_one({"_id": str(snapshot_id), "status": PENDING, "owner": mine})
    return deleted


#: fields of an options_data document that are not the collected data itself (left out of content digests)
DERIVED_FIELDS = ("_id", "model", "source")


def content_digest(doc: dict) -> str:
    """A digest of a document's collected content (not its `_id`, model fields or source label)."""
    import hashlib

    import bson

    plain = to_plain({k: v for k, v in doc.items() if k not in DERIVED_FIELDS})
    return hashlib.sha256(bson.encode(_sorted(plain))).hexdigest()


def _sorted(value):
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def snapshot_digests(db, snapshot_id: str, collection: str = schema.OPTIONS) -> dict[str, str]:
    """{symbol: content digest} of a stored snapshot's documents (to compare a re-import with)."""
    return {d["symbol"]: content_digest(d) for d in db[collection].find({"snapshot_id": str(snapshot_id)})}


def remove_other_documents(db, snapshot_id: str, keep_symbols: list[str], collection: str = schema.OPTIONS) -> int:
    """Delete a snapshot's documents whose symbol is not in `keep_symbols` (a replaced snapshot's leftovers)."""
    return db[collection].delete_many({"snapshot_id": str(snapshot_id), "symbol": {"$nin": list(keep_symbols)}}).deleted_count


def stale_snapshots(db, kind: str = "options", stale_after_s: float = STALE_AFTER_S) -> list[dict]:
    """Pending snapshot records whose writer is provably gone (see `owner_alive`)."""
    pending = db[schema.SNAPSHOTS].find({"kind": kind, "status": PENDING})
    return [r for r in pending if not owner_alive(r.get("owner"), r.get("started_at"), stale_after_s)]


def clean_stale_snapshots(db, kind: str = "options", collection: str = schema.OPTIONS,
                          stale_after_s: float = STALE_AFTER_S) -> list[dict]:
    """Discard the leftovers of dead writers (pending snapshots and their partial documents); returns what
    was cleaned: [{snapshot_id, documents, owner}]. A replaced-then-abandoned snapshot is discarded too."""
    cleaned = []
    for record in stale_snapshots(db, kind, stale_after_s):
        deleted = discard_snapshot(db, record["_id"], collection, owner=record.get("owner") or "")
        cleaned.append({"snapshot_id": record["_id"], "documents": deleted, "owner": record.get("owner")})
    return cleaned


def mark_priced(db, snapshot_id: str, count: int, basis: str, priced_at: datetime) -> bool:
    """Record on a complete snapshot that `count` of its documents now carry model fields on `basis`, priced at
    `priced_at` — called by the price step after all of that snapshot's model updates, so a snapshot whose
    pricing was killed half-way has no (or an older) `priced` mark. Returns whether the record was updated."""
    done = db[schema.SNAPSHOTS].update_one(
        {"_id": str(snapshot_id), "status": COMPLETE},
        {"$set": {"priced": to_plain({"count": int(count), "basis": basis, "priced_at": priced_at})}})
    return done.matched_count > 0


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
