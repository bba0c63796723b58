"""One flat row per stored alert, for the CLI, `qortcli status` and the viewer (no URL ever: deliveries carry
only the redacted endpoint)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from qortcli.timeutils import as_utc


def short_id(alert_id: str) -> str:
    """The 8-hex-digit handle of an alert id (what `qortcli alerts ack` accepts besides the full id)."""
    return hashlib.sha1(alert_id.encode("utf-8")).hexdigest()[:8]


def delivery_state(alert: dict) -> str:
    """"delivered" (every target), "failed" (some target gave up), "pending" (some target still to try),
    "dropped" (closed before its turn) or "none" (no target configured when it opened)."""
    states = [str(d.get("status")) for d in alert.get("delivery") or []]
    if not states:
        return "none"
    for state in ("failed", "pending", "dropped"):
        if state in states:
            return state
    return "delivered"


def _utc(value) -> datetime | None:
    return as_utc(value) if isinstance(value, datetime) else None


def alert_row(alert: dict, now: datetime) -> dict:
    """The alert as a flat row: identity, status, times (UTC datetimes), the opening and latest titles, the
    trigger's values and thresholds, and the delivery state per target."""
    opened, closed = _utc(alert.get("opened_at")), _utc(alert.get("closed_at"))
    latest = alert.get("latest") or {}
    trigger = alert.get("trigger") or {}
    end = closed or now
    return {"id": str(alert.get("_id")), "short_id": alert.get("short_id") or short_id(str(alert.get("_id"))),
            "rule": alert.get("rule"), "kind": alert.get("kind"), "category": alert.get("category"),
            "subject": alert.get("subject"), "severity": alert.get("severity"), "status": alert.get("status"),
            "opened_at": opened, "last_seen_at": _utc(alert.get("last_seen_at")), "closed_at": closed,
            "acknowledged_at": _utc(alert.get("acknowledged_at")),
            "duration_s": (end - opened).total_seconds() if opened else None,
            "title": alert.get("title"), "latest_title": latest.get("title"), "close_reason": alert.get("close_reason"),
            "values": dict(trigger.get("values") or {}), "thresholds": dict(trigger.get("thresholds") or {}),
            "evaluations": alert.get("evaluations"), "delivery": delivery_state(alert),
            "deliveries": [{"target": d.get("target"), "kind": d.get("kind"), "endpoint": d.get("endpoint"),
                            "status": d.get("status"), "tries": len(d.get("attempts") or []), "error": d.get("error")}
                           for d in alert.get("delivery") or []]}
