"""Reads for alerts: the stored episodes (`alerts`) and the run records the health rules watch (`job_runs`).

Every query is served by an index of `qortcli.store.schema`: alerts by (status, opened_at) and by `_id`; runs by
(job, started_at) and (step, started_at). Alert documents come back as stored (the `alerts` layout is in
`qortcli.steps.alerts`); runs as typed `RunRecord`s.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from qortcli.store import schema
from qortcli.timeutils import as_utc, require_utc

__all__ = ["ALERT_OPEN_STATUSES", "RunRecord", "open_alerts", "closed_alerts", "alert", "job_runs", "step_runs"]

ALERT_OPEN_STATUSES = ("open", "acknowledged")


class RunRecord(NamedTuple):
    """One `job_runs` record: status "running" | "ok" | "failed" | "interrupted" | "missed" | "skipped"."""

    run_id: str
    step: str
    job: str | None
    status: str
    started_at: datetime
    ended_at: datetime | None
    error: str | None

    @classmethod
    def from_doc(cls, doc: dict) -> "RunRecord":
        ended = doc.get("ended_at")
        return cls(run_id=str(doc["_id"]), step=str(doc.get("step") or ""), job=doc.get("job"),
                   status=str(doc.get("status") or ""), started_at=as_utc(doc["started_at"]),
                   ended_at=as_utc(ended) if isinstance(ended, datetime) else None, error=doc.get("error"))


def open_alerts(db) -> list[dict]:
    """Every open episode (status open or acknowledged), newest first."""
    return list(db[schema.ALERTS].find({"status": {"$in": list(ALERT_OPEN_STATUSES)}}).sort("opened_at", -1))


def closed_alerts(db, limit: int = 50, before: datetime | None = None) -> list[dict]:
    """The `limit` most recently opened closed episodes (opened before `before` if given), newest first."""
    query: dict = {"status": "closed"}
    if before is not None:
        query["opened_at"] = {"$lt": require_utc(before, "before")}
    return list(db[schema.ALERTS].find(query).sort("opened_at", -1).limit(int(limit)))


def alert(db, alert_id: str) -> dict | None:
    """One alert by its `_id` (`rule|subject|YYYYmmddTHHMMSSZ`), or None."""
    return db[schema.ALERTS].find_one({"_id": alert_id})


def _runs(db, field: str, value: str, before: datetime | None, limit: int) -> list[RunRecord]:
    query: dict = {field: value}
    if before is not None:
        query["started_at"] = {"$lte": require_utc(before, "before")}
    cursor = db[schema.JOB_RUNS].find(query).sort("started_at", -1).limit(int(limit))
    return [RunRecord.from_doc(d) for d in cursor]


def job_runs(db, job: str, before: datetime | None = None, limit: int = 20) -> list[RunRecord]:
    """The newest run records of a scheduled job (tagged `job` by the worker), started at or before `before`."""
    return _runs(db, "job", job, before, limit)


def step_runs(db, step: str, before: datetime | None = None, limit: int = 5) -> list[RunRecord]:
    """The newest run records of a step (e.g. "stream"), whatever ran it, started at or before `before`."""
    return _runs(db, "step", step, before, limit)
