"""Open alerts for the viewer's overview: plain rows (str / float / int / bool / None) from `read.open_alerts`.

`open_alerts(db)` gives one row per open episode (status open or acknowledged), newest first: ids, rule, kind,
category ("market" | "health"), subject, severity ("info" | "warning" | "critical"), status, opened_at and
last_seen_at (ISO 8601 UTC), age_s (seconds open), title (the reading that opened it), latest_title (the last
reading), delivery ("delivered" | "pending" | "failed" | "dropped" | "none"). One indexed read; nothing written.
"""

from __future__ import annotations

from datetime import datetime, timezone

from qortcli.alerts.views import alert_row
from qortcli.store import read

FIELDS = ("id", "short_id", "rule", "kind", "category", "subject", "severity", "status", "title", "latest_title",
          "delivery")


def _iso(value) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def open_alerts(db, now: datetime | None = None) -> list[dict]:
    """The open alerts as plain rows (module docstring), newest first."""
    now = now or datetime.now(timezone.utc)
    rows = []
    for doc in read.open_alerts(db):
        row = alert_row(doc, now)
        rows.append({**{k: (None if row[k] is None else str(row[k])) for k in FIELDS},
                     "opened_at": _iso(row["opened_at"]), "last_seen_at": _iso(row["last_seen_at"]),
                     "acknowledged": row["acknowledged_at"] is not None,
                     "age_s": None if row["duration_s"] is None else float(row["duration_s"])})
    return rows
