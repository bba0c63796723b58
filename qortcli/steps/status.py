"""The status step: a read-only summary of the store."""

from __future__ import annotations

from datetime import datetime, timezone

from qortcli.store import ops, read, worker_state
from qortcli.store import runs as runs_mod
from qortcli.store.maintenance import pricing_state
from qortcli.timeutils import as_utc


def run_status(db, runs: int = 10) -> dict:
    """Store description, counts per collection, latest complete snapshot per currency, last runs."""
    counts = read.collection_counts(db)
    latest = []
    currencies = ops.snapshot_currencies(db, "options")
    for currency in currencies:
        snap = ops.latest_snapshot(db, "options", currency)
        if snap is None:
            continue
        snap_counts = snap.get("counts") or {}
        pricing = pricing_state(db, snap)
        latest.append({
            "currency": currency,
            "snapshot_id": snap["_id"],
            "timestamp": snap["timestamp"],
            "instruments": snap_counts.get("stored", pricing.documents),
            "priced": pricing.with_model,
            # "priced" (confirmed by the price step's mark), "unpriced", or "partial" (a price run stopped half-way)
            "pricing": pricing.state, "priced_basis": pricing.basis, "priced_at": pricing.priced_at,
        })
    recent = [{k: r.get(k) for k in ("step", "trigger", "started_at", "ended_at", "seconds", "status", "counts", "error")}
              for r in runs_mod.last_runs(db, runs)]
    return {"store": db.describe(), "counts": counts, "latest_snapshots": latest, "last_runs": recent,
            "sections": status_sections(db)}


def status_sections(db) -> list[dict]:
    """Extra tables for the status (title, columns, rows): the schedule with each job's next run and last result.

    Read-only and quick: the schedule comes from the settings, the rest from a few primary-key reads
    of the worker's `worker_state` collection (written by `qortcli worker`).
    """
    from qortcli.errors import QortError
    from qortcli.schedule import load_schedule, next_runs

    columns = ["job", "runs", "next run (UTC)", "last status", "last run (UTC)", "seconds", "error"]
    try:
        schedule = load_schedule()
    except QortError as exc:
        return [{"title": "Schedule", "columns": ["error"], "rows": [[f"schedule settings: {exc}"]]}]
    state = worker_state.states(db, ["worker", *(f"job:{job_id}" for job_id in schedule.ids)])
    worker = state.get("worker")
    now = datetime.now(timezone.utc)
    alive = False
    if worker is None:
        note = "no worker has run on this store; next runs computed from the settings"
    elif worker.get("stopped_at"):
        note = f"worker on {worker.get('host')} stopped at {fmt_time(worker['stopped_at'])}"
    else:
        beat = worker.get("heartbeat_at")
        age = (now - as_utc(beat)).total_seconds() if beat else None
        limit = 3 * float(worker.get("heartbeat_seconds") or 60)
        alive = age is not None and age <= limit
        note = (f"worker on {worker.get('host')} pid {worker.get('pid')}, heartbeat {age:.0f} s ago" if alive else
                f"worker on {worker.get('host')} silent since {fmt_time(beat)} (not running?)")
    planned = next_runs(schedule, now)
    scheduled = (worker or {}).get("next_runs") or {}
    rows = []
    for spec in schedule.jobs:
        nxt = scheduled.get(spec.id) if alive else planned.get(spec.id)
        if nxt is None and spec.every is not None and not alive:
            nxt = f"at worker start, then every {spec.timing.removeprefix('every ')}"
        job = state.get(f"job:{spec.id}") or {}
        rows.append([spec.id, spec.timing, nxt, job.get("last_status"), job.get("last_started_at"),
                     job.get("last_seconds"), job.get("last_error")])
    from qortcli.steps.alerts import alerts_section
    return [{"title": f"Schedule ({note})", "columns": columns, "rows": rows}, alerts_section(db)]


def fmt_time(value) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if isinstance(value, datetime) else "never"


