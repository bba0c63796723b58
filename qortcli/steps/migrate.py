"""The migrate step: schema migrations (and, later, copying a store to another)."""

from __future__ import annotations

from qortcli.store import ensure_schema
from qortcli.store.runs import recorded_run


def run_migrate(db) -> dict:
    """Apply pending schema migrations; returns the store and one entry per migration."""
    with recorded_run(db, "migrate", {}) as run:
        report = ensure_schema(db)
        run.counts["applied"] = sum(m["status"] == "applied now" for m in report)
    return {"store": db.describe(), "migrations": report}
