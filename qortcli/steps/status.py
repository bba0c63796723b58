"""The status step: a read-only summary of the store."""

from __future__ import annotations

from qortcli.store import ops, schema
from qortcli.store import runs as runs_mod


def run_status(db, runs: int = 10) -> dict:
    """Store description, counts per collection, latest complete snapshot per currency, last runs."""
    counts = {name: db[name].count_documents({}) for name in schema.COLLECTIONS}
    latest = []
    currencies = sorted({s["currency"] for s in ops.list_snapshots(db, "options")})
    for currency in currencies:
        snap = ops.latest_snapshot(db, "options", currency)
        if snap is None:
            continue
        snap_counts = snap.get("counts") or {}
        latest.append({
            "currency": currency,
            "snapshot_id": snap["_id"],
            "timestamp": snap["timestamp"],
            "instruments": snap_counts.get("stored", db[schema.OPTIONS].count_documents({"snapshot_id": snap["_id"]})),
            "priced": db[schema.OPTIONS].count_documents({"snapshot_id": snap["_id"], "model": {"$exists": True}}),
        })
    recent = [{k: r.get(k) for k in ("step", "trigger", "started_at", "ended_at", "seconds", "status", "counts", "error")}
              for r in runs_mod.last_runs(db, runs)]
    return {"store": db.describe(), "counts": counts, "latest_snapshots": latest, "last_runs": recent,
            "sections": status_sections(db)}


def status_sections(db) -> list[dict]:
    """Extra tables for the status (title, columns, rows); the schedule's next runs go here."""
    return []
