"""Retention: keep full option chains for a window, then thin older ones to one chain per currency per day.

Only `options_data` documents of thinned snapshots are deleted; their snapshot records stay, marked
`pruned` (with what was removed), so the history says they existed; readers see complete snapshots only.
Summaries (the source of every history view), surfaces, suggestions, books and runs are all kept.
A snapshot that an open suggestion's tracking has not yet covered is never thinned (`read.tracking_floor`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from qortcli.store import read, schema
from qortcli.store.ops import COMPLETE
from qortcli.timeutils import require_utc, utcnow

PRUNED, PRUNING = "pruned", "pruning"


class PrunePlan(NamedTuple):
    """What thinning would remove for one currency: snapshot ids, with the one kept per day."""

    currency: str
    cutoff: datetime
    protected_from: datetime | None
    remove: list[str]
    keep: list[str]
    documents: int


def plan(db, currency: str, full_days: float, now: datetime | None = None) -> PrunePlan:
    """Snapshots of `currency` older than `full_days` that are not the last of their UTC day (and not needed
    by open suggestions' tracking)."""
    now = require_utc(now or utcnow(), "now")
    # whole UTC days only: a day is thinned once all of it is older than the window
    cutoff = (now - timedelta(days=float(full_days))).replace(hour=0, minute=0, second=0, microsecond=0)
    floor = read.tracking_floor(db, currency)
    end = min(cutoff, floor) if floor is not None else cutoff
    old = [i for i in read.snapshots(db, currency, end=end) if i.timestamp < end]
    last_of_day: dict[str, read.SnapshotInfo] = {}
    for info in old:
        last_of_day[f"{info.timestamp:%Y-%m-%d}"] = info     # ascending: the last one wins
    keep_ids = {info.snapshot_id for info in last_of_day.values()}
    remove = [info for info in old if info.snapshot_id not in keep_ids]
    documents = sum(int(info.counts.get("stored") or info.counts.get("instruments") or 0) for info in remove)
    return PrunePlan(currency.upper(), cutoff, floor, [i.snapshot_id for i in remove], sorted(keep_ids), documents)


def apply(db, prune: PrunePlan) -> dict:
    """Delete the documents of the planned snapshots and mark their records pruned; returns counts."""
    removed_docs = 0
    for snapshot_id in prune.remove:
        # hidden from readers first, so no complete snapshot ever lacks documents (a crash leaves "pruning")
        taken = db[schema.SNAPSHOTS].update_one({"_id": snapshot_id, "status": COMPLETE},
                                                {"$set": {"status": PRUNING}})
        if taken.matched_count == 0 and not db[schema.SNAPSHOTS].find_one({"_id": snapshot_id, "status": PRUNING}):
            continue
        deleted = db[schema.OPTIONS].delete_many({"snapshot_id": snapshot_id}).deleted_count
        removed_docs += deleted
        db[schema.SNAPSHOTS].update_one({"_id": snapshot_id}, {"$set": {"status": PRUNED, "pruned_at": utcnow(),
                                                                        "pruned_documents": deleted}})
    return {"currency": prune.currency, "snapshots": len(prune.remove), "documents": removed_docs,
            "kept_daily": len(prune.keep)}
