"""The migrate step: schema migrations, and copying a whole store to another (`qortcli migrate --to URL`).

The copy itself — consistent cut, batches compared by content, checkpoints, verification — is
`qortcli.store.transfer` (see its docstring); this step records the run and refuses copying a store onto itself.
"""

from __future__ import annotations

from typing import Any

from qortcli.errors import StepError
from qortcli.store import ensure_schema
from qortcli.store.readonly import is_read_only
from qortcli.store.runs import recorded_run
from qortcli.store.transfer import (CHECKPOINTS, DEFAULT_BATCH_SIZE, MigrationMismatch, Progress, copy_store,  # noqa: F401
                                    holds_run, open_target, plan)


def run_migrate(db, to: Any = None, *, to_db_name: str | None = None, dry_run: bool = False,
                batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None) -> dict:
    """Apply pending schema migrations; with `to` (a store URL/path or an open database handle), then copy
    every collection to that store and verify it (see the module docstring). Returns a JSON-able summary.

    Raises StepError for an unusable target (or the source itself), MigrationMismatch after a copy whose
    verification failed.
    """
    if to is None:
        with recorded_run(db, "migrate", {}) as run:
            report = ensure_schema(db)
            run.counts["applied"] = sum(m["status"] == "applied now" for m in report)
        return {"store": db.describe(), "migrations": report}
    if batch_size < 1:
        raise StepError("--batch-size must be at least 1")
    target, owned = open_target(db, to, to_db_name, read_only=dry_run)
    try:
        if dry_run:
            return plan(db, target, batch_size, to)
        read_only = is_read_only(db)
        record_in = target if read_only else db  # a read-only source is never written: the target keeps the record
        args = {"to": target.describe()} if not read_only else {"from": db.describe()}
        if read_only:
            ensure_schema(target)  # the run record goes there: its collections and indexes first
        with recorded_run(record_in, "migrate", {**args, "batch_size": batch_size}) as run:
            report = [] if read_only else ensure_schema(db)
            if not read_only and holds_run(target, run.run_id):
                raise StepError(f"refusing to copy the store onto itself: {target.describe()} is {db.describe()}")
            summary = copy_store(db, target, batch_size=batch_size, progress=progress, skip_run_id=run.run_id,
                                 consistent_cut=True)
            summary["migrations"] = report
            summary["source_read_only"] = read_only
            run.counts.update({"collections": len(summary["collections"]),
                               "copied": sum(c["copied"] for c in summary["collections"]),
                               "documents": sum(c["source_count"] for c in summary["collections"]),
                               "changed_during_copy": sum(c.get("changed_during_copy", 0)
                                                          for c in summary["collections"])})
        return summary
    finally:
        if owned:
            target.close()
