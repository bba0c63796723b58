"""The check and backup steps: `qortcli check [--repair]` and `qortcli backup DIR` (store-level work in
`qortcli.store.maintenance`).

run_check(db, repair=False) -> dict     the CheckReport as a summary (`ok`, `damage_remaining`, ...)
run_backup(db, destination) -> dict     the BackupReport as a summary
"""

from __future__ import annotations

from pathlib import Path

from qortcli.store import maintenance
from qortcli.store.readonly import is_read_only
from qortcli.store.runs import recorded_run


def run_check(db, repair: bool = False, progress=None) -> dict:
    """Check the store (engine integrity per collection, snapshot records vs documents, orphans, stale pending
    snapshots, stale runs, half-priced snapshots); with `repair`, repair what can be and record the run.
    Returns the report as a dict with `ok` False while damage remains (the CLI then exits 1)."""
    if not repair:
        report = maintenance.check_store(db, progress=progress)
    else:
        with recorded_run(db, "check", {"repair": True}, clean=False) as run:
            report = maintenance.check_store(db, repair=True, progress=progress)
            run.counts.update(findings=len(report.findings), repaired=sum(1 for f in report.findings if f.repaired),
                              damage_remaining=report.damage_remaining)
    return {"step": "check", **report.as_dict()}


def run_backup(db, destination: str | Path) -> dict:
    """A consistent online copy of the embedded store into `destination` (see maintenance.backup_store)."""
    if is_read_only(db):
        report = maintenance.backup_store(db, destination)
    else:
        with recorded_run(db, "backup", {"to": str(destination)}, clean=False) as run:
            report = maintenance.backup_store(db, destination)
            run.counts.update(files=len(report.files), documents=sum(f.documents for f in report.files))
    return {"step": "backup", **report.as_dict()}
