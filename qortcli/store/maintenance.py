"""Store-level maintenance: clean what dead processes left, check a store's integrity, repair it, back it up.

- `clean_leftovers(db)`: "running" job_runs of processes that are provably gone → "abandoned" (with the
  reason), pending snapshots of dead writers → discarded with their partial documents. Every recorded step
  run calls it at its start (`qortcli.store.runs.recorded_run`); `qortcli check --repair` calls it too.
- `check_store(db, repair=False) -> CheckReport`: per collection the engine's integrity check (SQLite's
  `PRAGMA integrity_check` and the count bookkeeping of each embedded collection file; MongoDB's `validate`
  where the server allows it), then the snapshot protocol: complete snapshots whose documents are missing,
  documents of unknown snapshots (orphans), pending snapshots of dead writers, runs stuck "running", and
  snapshots left half-priced by a killed `price`. With `repair`, what can be repaired is: stale runs marked
  abandoned, stale pending discarded, orphans deleted, a complete snapshot with missing documents hidden from
  readers (status "incomplete": re-import it with `collect --replace`), half-priced model fields removed (the
  next `qortcli price` prices the latest snapshot again), count bookkeeping rewritten. A damaged file cannot
  be repaired here: restore it from a backup (README, "Backup and restore").
- `backup_store(db, dest)`: a consistent online copy of the embedded store while writers run (SQLite's online
  backup API per collection file, the `snapshots` file first so every snapshot complete in the copy has its
  documents in it; what was pending at that moment is left out), then the copy is checked.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from qortcli.errors import StepError, StoreError
from qortcli.store import ops, schema
from qortcli.store import runs as runs_mod
from qortcli.timeutils import as_utc, utcnow

TimeoutFor = Callable[[str | None, str | None], float]

#: run statuses after which a price run may have left its snapshot half-priced
UNFINISHED_RUNS = ("abandoned", "failed", "interrupted", "timeout")


# ----------------------------------------------------------------------------------------- leftovers

@dataclass(frozen=True)
class Cleaned:
    """What `clean_leftovers` cleaned: runs marked abandoned and pending snapshots discarded."""

    abandoned_runs: tuple[dict, ...] = ()
    discarded_snapshots: tuple[dict, ...] = ()

    @property
    def discarded_documents(self) -> int:
        return sum(int(s.get("documents") or 0) for s in self.discarded_snapshots)

    def counts(self) -> dict[str, int]:
        """The non-zero counts, as a step's run counts carry them."""
        out = {"abandoned_runs": len(self.abandoned_runs), "discarded_snapshots": len(self.discarded_snapshots),
               "discarded_documents": self.discarded_documents}
        return {k: v for k, v in out.items() if v}

    def __bool__(self) -> bool:
        return bool(self.abandoned_runs or self.discarded_snapshots)


def _default_timeout_for(step: str | None, job: str | None) -> float:
    from qortcli.schedule import step_timeout_seconds

    return step_timeout_seconds(step, job)


def clean_leftovers(db, found_by: str | None = None, timeout_for: TimeoutFor | None = None) -> Cleaned:
    """Mark the runs of dead processes abandoned and discard dead writers' pending snapshots (see the module
    docstring). Only what is provably dead is touched: a live process's run or claim is never changed."""
    timeout_for = timeout_for or _default_timeout_for
    stale = runs_mod.stale_runs(db, timeout_for)
    marked = []
    for record in stale:
        reason = runs_mod.abandon_reason(record, timeout_for(record.get("step"), record.get("job")))
        marked += runs_mod.abandon_runs(db, [record], reason, found_by=found_by)
    discarded: list[dict] = []
    if db[schema.SNAPSHOTS].find_one({"kind": "options", "status": ops.PENDING}, {"_id": 1}) is not None:
        discarded = ops.clean_stale_snapshots(db, stale_after_s=timeout_for("collect", None))
    return Cleaned(tuple(marked), tuple(discarded))


# ----------------------------------------------------------------------------------------- pricing state

@dataclass(frozen=True)
class PricingState:
    """How far a snapshot is priced: `state` "priced" (every model field confirmed by the price step's mark),
    "unpriced" (no model fields) or "partial" (model fields the price step never confirmed: it was killed
    or failed half-way). `documents` and `with_model` count its options_data documents."""

    snapshot_id: str
    documents: int
    with_model: int
    priced_count: int | None
    basis: str | None
    priced_at: object
    state: str


def pricing_state(db, record: dict) -> PricingState:
    """The pricing state of one snapshot record (reads its documents' model stamps)."""
    sid = str(record["_id"])
    mark = record.get("priced") or None
    documents = 0
    stamps: list = []
    for doc in db[schema.OPTIONS].find({"snapshot_id": sid}, {"model.priced_at": 1, "model.basis": 1}):
        documents += 1
        model = doc.get("model")
        if isinstance(model, dict):
            stamps.append((model.get("priced_at"), model.get("basis")))
    with_model = len(stamps)
    if with_model == 0 and not mark:
        state = "unpriced"
    elif mark and with_model == int(mark.get("count") or 0) and all(
            basis == mark.get("basis") and at is not None and mark.get("priced_at") is not None
            and as_utc(at) <= as_utc(mark["priced_at"]) for at, basis in stamps):
        state = "priced"
    else:
        state = "partial"
    return PricingState(sid, documents, with_model, int(mark["count"]) if mark and mark.get("count") is not None
                        else None, (mark or {}).get("basis"), (mark or {}).get("priced_at"), state)


def _latest_before(db, currency: str | None, moment) -> list[dict]:
    """The latest complete options snapshot of `currency` (or of each currency) taken before `moment`."""
    currencies = [currency.upper()] if currency else ops.snapshot_currencies(db, "options")
    out = []
    for cur in currencies:
        found = list(db[schema.SNAPSHOTS].find({"kind": "options", "status": ops.COMPLETE, "currency": cur})
                     .sort("timestamp", -1).limit(50))
        found = [r for r in found if moment is None or r.get("completed_at") is None
                 or as_utc(r["completed_at"]) <= as_utc(moment)]
        if found:
            out.append(found[0])
    return out


def pricing_candidates(db) -> list[dict]:
    """Snapshot records a killed or failed `price` may have left half-priced: the latest complete snapshot of
    each currency, and the one each unfinished price run was pricing (the latest complete when it started)."""
    seen: dict[str, dict] = {}
    for record in _latest_before(db, None, None):
        seen[str(record["_id"])] = record
    for run in db[schema.JOB_RUNS].find({"step": "price"}).sort("started_at", -1).limit(200):
        if run.get("status") not in UNFINISHED_RUNS:
            continue
        for record in _latest_before(db, (run.get("args") or {}).get("currency"), run.get("started_at")):
            seen.setdefault(str(record["_id"]), record)
    return list(seen.values())


def strip_partial_model(db, snapshot_id: str) -> int:
    """Remove model fields the price step never confirmed (a half-priced snapshot becomes unpriced; the next
    `qortcli price` prices the latest snapshot again). Returns how many documents changed."""
    changed = db[schema.OPTIONS].update_many({"snapshot_id": str(snapshot_id), "model": {"$exists": True}},
                                             {"$unset": {"model": ""}}).modified_count
    db[schema.SNAPSHOTS].update_one({"_id": str(snapshot_id)}, {"$unset": {"priced": ""}})
    return int(changed)


# ----------------------------------------------------------------------------------------- check

@dataclass(frozen=True)
class CollectionCheck:
    """One collection: its file (embedded), documents, what the engine check found and what was repaired."""

    name: str
    file: str | None
    documents: int | None
    problems: tuple[str, ...] = ()
    repaired: tuple[str, ...] = ()
    checked: bool = True

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Finding:
    """One defect of the snapshot protocol or the run records (`kind`), its subject, detail and repair."""

    kind: str
    subject: str
    detail: str
    repaired: str | None = None


@dataclass(frozen=True)
class CheckReport:
    """The whole check: per-collection engine checks, protocol findings, and whether damage remains."""

    store: str
    collections: tuple[CollectionCheck, ...]
    findings: tuple[Finding, ...]
    snapshots: dict = field(default_factory=dict)
    repair: bool = False
    seconds: float = 0.0
    skipped: tuple[str, ...] = ()   # checks not run because a file they read is damaged

    @property
    def damage_remaining(self) -> int:
        """Problems left after the repair (all of them without `repair`)."""
        left = sum(1 for c in self.collections if c.problems and not c.repaired)
        return left + sum(1 for f in self.findings if f.repaired is None)

    @property
    def ok(self) -> bool:
        return self.damage_remaining == 0

    def as_dict(self) -> dict:
        out = asdict(self)
        out["damage_remaining"] = self.damage_remaining
        out["ok"] = self.ok
        return out


def _collection_names(db) -> list[str]:
    names = set(db.list_collection_names())
    if getattr(db, "is_embedded", False) and db.dir.is_dir():
        from qortcli.store.engine import files

        names |= {p.name[: -len(files.SUFFIX)] for p in db.dir.glob(f"*{files.SUFFIX}")}
    ordered = [n for n in schema.COLLECTIONS if n in names]
    return ordered + sorted(names - set(ordered))


def _check_collection(db, name: str, repair: bool) -> CollectionCheck:
    embedded = getattr(db, "is_embedded", False)
    coll = db[name]
    path = str(coll.path) if embedded else None
    problems: list[str] = []
    repaired: list[str] = []
    checked = True
    documents = None
    try:
        if embedded:
            problems = list(coll.integrity_check())
        else:
            problems, checked = _mongo_validate(db, name)
        documents = coll.count_documents({})
    except StoreError as exc:
        problems.append(str(exc))
    if repair and embedded and problems and all(p.startswith("document count ") for p in problems):
        try:
            actual = coll.repair_count()
            repaired.append(f"document count rewritten ({actual})")
            documents = actual
        except StoreError as exc:
            problems.append(str(exc))
    return CollectionCheck(name, path, documents, tuple(problems), tuple(repaired), checked)


def _mongo_validate(db, name: str) -> tuple[list[str], bool]:
    """MongoDB's `validate` of one collection: (problems, whether it could run)."""
    try:
        result = db.command("validate", name)
    except Exception:  # not allowed for this user, or mongomock: not checked, said so
        return [], False
    if result.get("valid", True):
        return [], True
    return [str(e) for e in (result.get("errors") or ["validate: not valid"])], True


def check_store(db, repair: bool = False, timeout_for: TimeoutFor | None = None,
                progress: Callable[[str, int, int], None] | None = None, include_runs: bool = True) -> CheckReport:
    """Check (and with `repair`, repair) the store; see the module docstring. Never raises for damage: a
    collection that cannot be read is reported with the error naming its file. `include_runs=False` leaves
    run records out (a backup's copies of runs that were live when it was taken)."""
    clock = time.perf_counter()
    timeout_for = timeout_for or _default_timeout_for
    names = _collection_names(db)
    collections = []
    for i, name in enumerate(names):
        if progress:
            progress("engine check", i, len(names))
        collections.append(_check_collection(db, name, repair))
    if progress:
        progress("engine check", len(names), len(names))
    # what reads a damaged file is not run (its errors would hide the rest); the damage itself is reported
    damaged = {c.name for c in collections if c.problems and not c.repaired}
    findings: list[Finding] = []
    counts: dict = {}
    skipped: list[str] = []
    if include_runs and schema.JOB_RUNS not in damaged:
        findings += _check_runs(db, repair, timeout_for)
    elif include_runs:
        skipped.append(f"run records not checked: {schema.JOB_RUNS} is damaged")
    if not damaged & {schema.SNAPSHOTS, schema.OPTIONS, schema.JOB_RUNS}:
        snapshot_findings, counts = _check_snapshots(db, repair, timeout_for, progress)
        findings += snapshot_findings
    else:
        skipped.append("snapshots not checked against their documents: "
                       f"{', '.join(sorted(damaged & {schema.SNAPSHOTS, schema.OPTIONS, schema.JOB_RUNS}))} damaged")
    return CheckReport(db.describe(), tuple(collections), tuple(findings), counts, repair,
                       round(time.perf_counter() - clock, 3), tuple(skipped))


def _check_runs(db, repair: bool, timeout_for: TimeoutFor) -> list[Finding]:
    out = []
    for record in runs_mod.stale_runs(db, timeout_for):
        reason = runs_mod.abandon_reason(record, timeout_for(record.get("step"), record.get("job")))
        fixed = None
        if repair and runs_mod.abandon_runs(db, [record], reason, found_by="qortcli check --repair"):
            fixed = "marked abandoned"
        why = reason.removeprefix("abandoned: ")
        out.append(Finding("stale run", f"{record.get('step')} run {record['_id']}",
                           f"started {_fmt(record.get('started_at'))}, still \"running\": {why}", fixed))
    return out


def _check_snapshots(db, repair: bool, timeout_for: TimeoutFor, progress) -> tuple[list[Finding], dict]:
    out: list[Finding] = []
    records = list(db[schema.SNAPSHOTS].find({"kind": "options"}).sort("timestamp", 1))
    known = {str(r["_id"]) for r in records}
    complete = [r for r in records if r.get("status") == ops.COMPLETE]
    pending = [r for r in records if r.get("status") == ops.PENDING]
    for i, record in enumerate(complete):
        if progress and i % 200 == 0:
            progress("snapshots", i, len(complete))
        sid = str(record["_id"])
        expected = (record.get("counts") or {}).get("stored")
        have = db[schema.OPTIONS].count_documents({"snapshot_id": sid})
        if (expected is not None and have < int(expected)) or have == 0:
            fixed = None
            if repair:
                done = db[schema.SNAPSHOTS].update_one({"_id": sid, "status": ops.COMPLETE},
                                                       {"$set": {"status": "incomplete", "incomplete_found_at": utcnow(),
                                                                 "documents_found": have}})
                fixed = "hidden from readers (status incomplete): re-import it with --replace" if done.matched_count else None
            out.append(Finding("incomplete snapshot", sid, f"complete with {have} of {expected if expected is not None else '?'} "
                                                           "documents", fixed))
    if progress:
        progress("snapshots", len(complete), len(complete))
    stale_after = timeout_for("collect", None)
    stale_ids = {str(r["_id"]) for r in ops.stale_snapshots(db, "options", stale_after)}
    for record in pending:
        sid = str(record["_id"])
        if sid not in stale_ids:
            continue
        have = db[schema.OPTIONS].count_documents({"snapshot_id": sid})
        fixed = None
        if repair:
            deleted = ops.discard_snapshot(db, sid, schema.OPTIONS, owner=record.get("owner") or "")
            gone = db[schema.SNAPSHOTS].find_one({"_id": sid}, {"_id": 1}) is None
            fixed = f"discarded with {deleted} documents" if gone else None
        out.append(Finding("stale pending snapshot", sid, f"pending since "
                           f"{_fmt(record.get('started_at'))}, writer {record.get('owner') or 'unknown'} is gone, "
                           f"{have} partial documents", fixed))
    doc_snapshots = {str(s) for s in db[schema.OPTIONS].distinct("snapshot_id")}
    for sid in sorted(doc_snapshots - known):
        have = db[schema.OPTIONS].count_documents({"snapshot_id": sid})
        fixed = None
        if repair:
            deleted = db[schema.OPTIONS].delete_many({"snapshot_id": sid}).deleted_count
            fixed = f"{deleted} documents deleted"
        out.append(Finding("orphan documents", sid, f"{have} options_data documents of a snapshot with no record", fixed))
    for record in pricing_candidates(db):
        state = pricing_state(db, record)
        if state.state != "partial":
            continue
        fixed = None
        if repair:
            fixed = f"unconfirmed model fields removed from {strip_partial_model(db, state.snapshot_id)} documents"
        mark = (f"marked priced {state.priced_count} on {state.basis}" if state.priced_count is not None
                else "no priced mark")
        out.append(Finding("half-priced snapshot", state.snapshot_id,
                           f"{state.with_model} of {state.documents} documents carry model fields, {mark} "
                           "(a price run was killed or failed half-way)", fixed))
    counts = {"complete": len(complete), "pending": len(pending), "stale_pending": len(stale_ids),
              "with_documents": len(doc_snapshots)}
    return out, counts


def _fmt(value) -> str:
    return f"{as_utc(value):%Y-%m-%d %H:%M:%S} UTC" if value is not None else "an unknown time"


# ----------------------------------------------------------------------------------------- backup

@dataclass(frozen=True)
class BackedUpFile:
    """One collection file copied by `backup_store`."""

    collection: str
    file: str
    documents: int
    bytes: int


@dataclass(frozen=True)
class BackupReport:
    """Where the backup went, what it holds, and the check of the copy."""

    store: str
    destination: str
    files: tuple[BackedUpFile, ...]
    left_out: dict
    check: dict
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def backup_store(db, destination: str | Path) -> BackupReport:
    """A consistent online copy of the embedded store at `destination` (a new or empty directory), made while
    writers run: each collection file through SQLite's online backup API (one consistent read of that file),
    `snapshots` first, so every snapshot complete in the copy had all its documents stored before the
    options_data file was copied. Snapshots pending at that moment (and documents of snapshots the copy has
    no record of) are left out of the copy. The copy is then checked like `check_store`.
    Raises StepError for MongoDB (use mongodump, or `qortcli migrate --to DIR`) or an unusable destination."""
    if not getattr(db, "is_embedded", False):
        raise StepError("backup copies the embedded store; for MongoDB use mongodump (or `qortcli migrate --to DIR` "
                        "to copy it into an embedded store)")
    from qortcli.store.engine import MARKER, EmbeddedDatabase, files

    clock = time.perf_counter()
    dest = Path(destination).expanduser()
    source_root = db.path.resolve()
    if dest.resolve() == source_root or source_root in dest.resolve().parents:
        raise StepError(f"the backup folder {dest} must not be the store itself or inside it")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise StepError(f"{dest} exists and is not an empty folder: a backup never overwrites anything")
    if not db.dir.is_dir():
        raise StepError(f"{db.describe()} has no collection files to back up")
    target_dir = dest / db.name
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StepError(f"cannot create the backup folder {dest}: {exc.strerror}") from None
    paths = {p.name[: -len(files.SUFFIX)]: p for p in sorted(db.dir.glob(f"*{files.SUFFIX}"))}
    order = [schema.SNAPSHOTS] + [n for n in paths if n != schema.SNAPSHOTS]
    copied = []
    for name in order:
        if name not in paths:
            continue
        copied.append(_backup_file(paths[name], target_dir / paths[name].name, name))
    marker = db.path / MARKER
    if marker.exists():
        (dest / MARKER).write_bytes(marker.read_bytes())
    backup = EmbeddedDatabase(dest, db.name, scannable=getattr(db, "scannable", frozenset()))
    try:
        left_out = _trim_backup(backup)
        # what the copy caught half-way (a price that ran between the two files' copies) is made consistent
        # in the copy; a damaged file stays reported
        report = check_store(backup, repair=True, timeout_for=lambda step, job: 0.0, include_runs=False)
    finally:
        backup.close()
    for name in paths:
        _to_rollback_journal(target_dir / paths[name].name)
    counts = {c.name: c.documents for c in report.collections}
    copied = [BackedUpFile(f.collection, f.file, int(counts.get(f.collection) or 0), f.bytes) for f in copied]
    return BackupReport(db.describe(), str(dest), tuple(copied), left_out, report.as_dict(),
                        round(time.perf_counter() - clock, 3))


def _backup_file(source: Path, target: Path, name: str) -> BackedUpFile:
    from qortcli.store.engine import files

    try:
        src = sqlite3.connect(f"file:{source.resolve()}?mode=ro", uri=True, timeout=files.DEFAULT_BUSY_S)
        try:
            dst = sqlite3.connect(str(target))
            try:
                src.backup(dst)  # one step: a single consistent read of the whole file (WAL writers go on)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise files.store_error(source, exc, "backing up") from None
    return BackedUpFile(name, str(target), 0, target.stat().st_size)


def _trim_backup(backup) -> dict:
    """Remove from the copy what was not complete when `snapshots` was copied: pending records and their
    documents, and documents of snapshots the copy has no record of (written after that moment)."""
    records = {str(r["_id"]): r.get("status") for r in backup[schema.SNAPSHOTS].find({}, {"_id": 1, "status": 1})}
    pending = [sid for sid, status in records.items() if status != ops.COMPLETE]
    documents = 0
    for sid in pending:
        documents += backup[schema.OPTIONS].delete_many({"snapshot_id": sid}).deleted_count
        backup[schema.SNAPSHOTS].delete_one({"_id": sid})
    later = sorted({str(s) for s in backup[schema.OPTIONS].distinct("snapshot_id")} - set(records))
    for sid in later:
        documents += backup[schema.OPTIONS].delete_many({"snapshot_id": sid}).deleted_count
    # runs still going when their file was copied never finish in the copy: say so there
    running = backup[schema.JOB_RUNS].update_many(
        {"status": "running"}, {"$set": {"status": runs_mod.ABANDONED, "ended_at": utcnow(),
                                         "error": "abandoned: still running when this backup was taken"}}).modified_count
    return {"pending_snapshots": len(pending), "later_snapshots": len(later), "documents": documents,
            "running_runs": int(running)}


def _to_rollback_journal(path: Path) -> None:
    """Leave each copied file self-contained (no -wal/-shm beside it) so the folder can be moved as is."""
    try:
        conn = sqlite3.connect(str(path))
        try:
            conn.execute("PRAGMA journal_mode = DELETE")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        from qortcli.store.engine import files

        raise files.store_error(path, exc, "finishing the backup") from None
