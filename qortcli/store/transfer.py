"""Copying a whole store to another, verified (`qortcli migrate --to URL` runs it through `qortcli.steps.migrate`).

Copying (embedded → MongoDB Atlas is the case it is designed for, any direction works):
- a consistent cut, while writers (the worker) keep writing: the options snapshots complete when the copy
  starts, with their documents; snapshots pending then (and documents of snapshots the source has no
  complete record of) are left for the next run. The snapshot records are copied last, after every
  options_data document, so the target never shows a snapshot complete before its documents are in;
- every other collection is copied as it is when its batch is read; documents are copied verbatim in
  batches of `batch_size` taken in a deterministic `_id` order, each batch compared document by document
  (SHA-256 of the canonical BSON) with what the target already holds: only documents that differ are
  written (`ReplaceOne({"_id": ...}, doc, upsert=True)`), so a re-run copies only what changed;
- after each batch a checkpoint (collection, last `_id`, count) is written to the target's
  `migrate_checkpoints` collection, so an interrupted copy resumes after the last written batch;
  the checkpoints are removed once the copy has been verified;
- the target's collections and indexes are created first (`ensure_schema`, unique natural keys);
- verification, per collection: document counts and an order-independent content hash on both sides
  (sum mod 2**256 of the SHA-256 of each document's canonical BSON: keys sorted recursively, datetimes
  at BSON's millisecond precision), over the cut for options_data and snapshots. A difference the source
  explains — a document it changed or added after the copy read it — is reported ("changed during the
  copy": the next run copies it), not a failure; any other raises MigrationMismatch naming the collections.
- a read-only source (a read-only mount, a read-only MongoDB user) is copied without writing to it: the
  run is recorded in the target's job_runs instead of the source's.
The run record of the copy itself is neither copied nor compared.
TLS for `mongodb+srv://` (and `?tls=true&tlsCAFile=...` options) comes from the URL: pymongo reads it.
"""

from __future__ import annotations

import bisect
import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import bson
from pymongo import ReplaceOne
from pymongo.errors import BulkWriteError, PyMongoError

from qortcli.errors import StepError
from qortcli.store import ensure_schema, schema
from qortcli.store.connect import is_mongo_url, redact
from qortcli.timeutils import utcnow

CHECKPOINTS = "migrate_checkpoints"
DEFAULT_BATCH_SIZE = 1000

Progress = Callable[[str, int, int], None]  # (collection, documents done, documents to do)


class MigrationMismatch(StepError):
    """Verification found differences; `summary` holds the per-collection comparison."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


def holds_run(target, run_id: str) -> bool:
    """Whether `target` already has the job_runs record `run_id` (the source itself, seen through another URL)."""
    return target[schema.JOB_RUNS].find_one({"_id": run_id}, {"_id": 1}) is not None


# --- target -------------------------------------------------------------------------------------------

def _identity(kind_url: str, db_name: str) -> tuple:
    """What makes two stores the same: embedded (resolved path, db) or MongoDB (hosts, db)."""
    if is_mongo_url(kind_url):
        parts = urlsplit(kind_url)
        hosts = parts.netloc.rsplit("@", 1)[-1].lower()
        return ("mongo", parts.scheme, ",".join(sorted(hosts.split(","))), db_name)
    return ("embedded", str(Path(kind_url).expanduser().resolve()), db_name)


def _db_identity(db) -> tuple | None:
    if getattr(db, "is_embedded", False):
        return _identity(str(db.path), db.name)
    url = getattr(db, "url", None)
    return _identity(url, db.name) if url else None


def target_db_name(url: str, explicit: str | None, default: str) -> str:
    """The target database: --to-db, else the path of a mongodb:// URL (/qortfolio), else the source's name."""
    if explicit:
        return explicit
    if is_mongo_url(url):
        path = urlsplit(url).path.strip("/")
        if path:
            return path
    return default


def open_target(db, to, to_db_name: str | None, read_only: bool = False):
    """(target handle, whether we opened it). Refuses the source itself by URL/path before connecting.
    `read_only` (a dry run): nothing is created — an embedded target that does not exist yet is None."""
    if not isinstance(to, str):
        if to is db:
            raise StepError("refusing to copy the store onto itself")
        return to, False
    from qortcli.store import connect

    name = target_db_name(to, to_db_name, db.name)
    if _db_identity(db) == _identity(to, name):
        raise StepError(f"refusing to copy the store onto itself ({redact(to)}, database {name!r})")
    if read_only and not is_mongo_url(to) and not Path(to).expanduser().exists():
        return None, False
    return connect(to, name, read_only=read_only), True


# --- copying ----------------------------------------------------------------------------------------

_TYPE_RANK = {type(None): 0, int: 1, float: 1, bson.Int64: 1, str: 2, dict: 3, list: 4, bytes: 5,
              bson.Binary: 5, bson.ObjectId: 7, bool: 8, datetime: 9}


def id_key(value) -> tuple:
    """A total order on `_id` values of mixed types (numbers < strings < ... < ObjectId < bool < dates)."""
    rank = _TYPE_RANK.get(type(value), 10)
    if rank in (1, 2, 7, 8):
        return (rank, value)
    if rank == 9:
        return (rank, value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    if rank == 5:
        return (rank, bytes(value))
    return (rank, repr(value))


def collections_to_copy(db) -> list[str]:
    """The source's collections: the schema's in their usual order, then any others by name."""
    present = set(db.list_collection_names()) - {CHECKPOINTS}
    ordered = [name for name in schema.COLLECTIONS if name in present]
    return ordered + sorted(present - set(ordered))


def _source_id(db) -> str:
    return db.describe()


def _write_batch(target, collection: str, docs: list[dict]) -> None:
    """Upsert one batch by `_id` (unordered: one bad document does not hide the others' errors)."""
    if not docs:
        return
    try:
        target[collection].bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs], ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        first = errors[0].get("errmsg", "") if errors else str(exc)
        raise StepError(f"copying {collection}: {len(errors)} documents rejected by the target, first: {first}") from None
    except PyMongoError as exc:
        raise StepError(f"copying {collection}: {str(exc).splitlines()[0]}") from None


class Cut(dict):
    """The consistent cut of a copy: {snapshot_id: record} of the options snapshots complete at its start."""

    def holds(self, name: str, doc: dict) -> bool:
        """Whether a document of collection `name` belongs to the cut (every document of other collections does)."""
        if name == schema.SNAPSHOTS:
            return str(doc.get("_id")) in self
        if name == schema.OPTIONS:
            return str(doc.get("snapshot_id")) in self
        return True


def snapshot_cut(source) -> Cut:
    """The options snapshots complete now (the records are read once: later completions are not in the cut)."""
    if schema.SNAPSHOTS not in source.list_collection_names():
        return Cut()
    return Cut({str(r["_id"]): r for r in source[schema.SNAPSHOTS].find({"kind": "options", "status": "complete"})})


def _listed_ids(source, name: str, cut: Cut | None, skip_id: str | None) -> list:
    """The `_id`s of `name` to copy, sorted by `id_key`: for options_data the documents of the cut's snapshots,
    for snapshots the cut's records, else every document."""
    if cut is not None and name == schema.OPTIONS:
        ids = [doc["_id"] for sid in cut for doc in source[name].find({"snapshot_id": sid}, {"_id": 1})]
    elif cut is not None and name == schema.SNAPSHOTS:
        ids = list(cut)
    else:
        ids = [doc["_id"] for doc in source[name].find({}, {"_id": 1})]
    if skip_id is not None:
        ids = [i for i in ids if i != skip_id]
    ids.sort(key=id_key)
    return ids


def copy_store(source, target, batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None,
               skip_run_id: str | None = None, consistent_cut: bool = False) -> dict:
    """Copy every collection of `source` into `target` (resuming from checkpoints, writing only documents that
    differ), then verify. `consistent_cut`: options data only for the snapshots complete at the start, the
    snapshot records last (see the module docstring); without it every document is copied as it is."""
    clock = time.perf_counter()
    ensure_schema(target)
    source_id = _source_id(source)
    cut = snapshot_cut(source) if consistent_cut else None
    names = collections_to_copy(source)
    if cut is not None and schema.SNAPSHOTS in names:
        names = [n for n in names if n != schema.SNAPSHOTS] + [schema.SNAPSHOTS]  # records after their documents
    rows = []
    for name in names:
        rows.append(_copy_collection(source, target, name, batch_size, progress, source_id,
                                     skip_run_id if name == schema.JOB_RUNS else None, cut))
    mismatches = []
    for row in rows:
        skip = skip_run_id if row["collection"] == schema.JOB_RUNS else None
        verdict = verify_copy(source, target, row.pop("_state"), skip, cut)
        verdict["copied"] = row["copied"] + verdict["caught_up"]
        row.update(verdict)
        if not verdict["match"]:
            mismatches.append(f"{row['collection']} ({verdict['detail']})")
    # the copy is finished either way: a re-run after a mismatch compares everything again
    target[CHECKPOINTS].delete_many({"source": source_id})
    if target[CHECKPOINTS].count_documents({}) == 0:
        target.drop_collection(CHECKPOINTS)
    summary = {"store": source.describe(), "target": target.describe(), "dry_run": False, "batch_size": batch_size,
               "collections": rows, "ok": not mismatches, "seconds": round(time.perf_counter() - clock, 3)}
    if cut is not None:
        summary["cut"] = {"complete_snapshots": len(cut)}
    if mismatches:
        raise MigrationMismatch("verification failed for " + "; ".join(mismatches), summary)
    return summary


@dataclass
class _CopyState:
    """What one collection's copy saw: the ids it listed and, per document it read, the source digest and the
    target's digest after the batch (None: written by this copy, to be read back by `verify_copy`)."""

    name: str
    ids: list
    keys: list
    start: int
    seen: dict = field(default_factory=dict)     # id_key → source digest as read
    held: dict = field(default_factory=dict)     # id_key → target digest found equal (written ones absent)
    written: list = field(default_factory=list)  # _ids written


def _copy_collection(source, target, name: str, batch_size: int, progress: Progress | None, source_id: str,
                     skip_id: str | None, cut: Cut | None = None) -> dict:
    ids = _listed_ids(source, name, cut, skip_id)
    keys = [id_key(i) for i in ids]
    checkpoint_id = f"{source_id}|{name}"
    checkpoint = target[CHECKPOINTS].find_one({"_id": checkpoint_id})
    start = 0
    if checkpoint is not None:
        start = len(ids) if checkpoint.get("done") else bisect.bisect_right(keys, id_key(checkpoint["last_id"]))
    exists = name in target.list_collection_names()
    target_before = target[name].count_documents({}) if exists else 0
    total = len(ids)
    state = _CopyState(name, ids, keys, start)
    if progress:
        progress(name, start, total)
    for offset in range(start, total, batch_size):
        batch = ids[offset:offset + batch_size]
        docs = [d for d in source[name].find({"_id": {"$in": batch}}) if cut is None or cut.holds(name, d)]
        digests = {id_key(d["_id"]): document_digest(d) for d in docs}
        state.seen.update(digests)
        held = {}
        if target_before or state.written:
            held = {id_key(d["_id"]): document_digest(d) for d in target[name].find({"_id": {"$in": batch}})}
        changed = [d for d in docs if held.get(id_key(d["_id"])) != digests[id_key(d["_id"])]]
        _write_batch(target, name, changed)
        state.written += [d["_id"] for d in changed]
        state.held.update({k: v for k, v in held.items() if digests.get(k) == v})
        target[CHECKPOINTS].replace_one({"_id": checkpoint_id}, {
            "_id": checkpoint_id, "source": source_id, "collection": name, "last_id": batch[-1],
            "done_count": offset + len(batch), "total": total, "done": offset + len(batch) >= total,
            "updated_at": utcnow()}, upsert=True)
        if progress:
            progress(name, offset + len(batch), total)
    if name not in target.list_collection_names():
        target.create_collection(name)
    return {"collection": name, "source_count": total, "target_count_before": target_before,
            "resumed_from": start, "copied": len(state.written), "already_there": len(state.held),
            "_state": state}


def _ids(db, name: str) -> list:
    if name not in db.list_collection_names():
        return []
    return [d["_id"] for d in db[name].find({}, {"_id": 1})]


def verify_copy(source, target, state: _CopyState, skip_id: str | None = None, cut: Cut | None = None) -> dict:
    """Verify one collection's copy from what the copy itself read, without reading both stores again: the
    documents it wrote are read back from the target and must hash as the source documents it read; those
    it found equal were verified when read. The ids it never read (before a resumed checkpoint) are compared
    now, and copied where they differ. Target documents the source has no longer (or never had) are "only in
    target"; source documents added after the listing are reported ("new since the copy started": the next
    run copies them), never a mismatch."""
    name = state.name
    tgt = dict(state.held)
    for start in range(0, len(state.written), DEFAULT_BATCH_SIZE):
        for doc in target[name].find({"_id": {"$in": state.written[start:start + DEFAULT_BATCH_SIZE]}}):
            tgt[id_key(doc["_id"])] = document_digest(doc)
    src = dict(state.seen)
    caught_up = 0
    unread = [i for i, k in zip(state.ids, state.keys) if k not in src]
    for start in range(0, len(unread), DEFAULT_BATCH_SIZE):
        batch = unread[start:start + DEFAULT_BATCH_SIZE]
        docs = [d for d in source[name].find({"_id": {"$in": batch}}) if cut is None or cut.holds(name, d)]
        held = {id_key(d["_id"]): document_digest(d) for d in target[name].find({"_id": {"$in": batch}})}
        differ = []
        for doc in docs:
            key = id_key(doc["_id"])
            src[key] = document_digest(doc)
            if held.get(key) == src[key]:
                tgt[key] = src[key]
            else:
                differ.append(doc)
        _write_batch(target, name, differ)
        for doc in target[name].find({"_id": {"$in": [d["_id"] for d in differ]}}) if differ else []:
            tgt[id_key(doc["_id"])] = document_digest(doc)
        caught_up += len(differ)
    source_now = {id_key(i) for i in _ids(source, name) if i != skip_id}
    listed = set(state.keys)
    if cut is None or name not in (schema.OPTIONS, schema.SNAPSHOTS):
        new_since = len(source_now - listed)
    elif name == schema.SNAPSHOTS:  # completed while the copy ran: outside its cut, copied by the next run
        new_since = len(set(snapshot_cut(source)) - set(cut))
    else:
        new_since = 0
    extra_ids = [i for i in _ids(target, name) if i != skip_id and id_key(i) not in listed and id_key(i) not in source_now]
    if name == schema.MIGRATIONS:
        extra_ids = []  # a target of a newer version has applied more migrations
    if name == schema.JOB_RUNS and extra_ids:  # records of copies off a read-only source live in the target only
        extra_ids = [d["_id"] for d in target[name].find({"_id": {"$in": extra_ids}})
                     if not (d.get("step") == "migrate" and "from" in (d.get("args") or {}))]
    for i in extra_ids:
        tgt[id_key(i)] = b"only in target"
    return _verdict(src, tgt, new_since, caught_up)


def _verdict(src: dict, tgt: dict, explained: int = 0, caught_up: int = 0) -> dict:
    """Counts, order-independent hashes and what differs between {id_key: digest} maps of both sides."""
    src_hash, tgt_hash = combined_hash(src), combined_hash(tgt)
    match = len(src) == len(tgt) and src_hash == tgt_hash
    detail = "identical" if not explained else f"identical; {explained} added to the source (or completed) during " \
                                               "the copy: the next run copies them"
    if not match:
        missing = [k for k in src if k not in tgt]
        extra = [k for k in tgt if k not in src]
        differ = [k for k in src if k in tgt and src[k] != tgt[k]]
        parts = []
        for label, keys in (("missing in target", missing), ("only in target", extra), ("different", differ)):
            if keys:
                parts.append(f"{len(keys)} {label}, e.g. _id {keys[0][1]!r}")
        detail = f"source {len(src)} vs target {len(tgt)} documents: " + ", ".join(parts)
    return {"target_count": len(tgt), "verified_count": len(src), "source_hash": src_hash, "target_hash": tgt_hash,
            "match": match, "detail": detail, "changed_during_copy": explained, "caught_up": caught_up}


# --- verification ---------------------------------------------------------------------------------

_PLAIN = (str, float, bool, type(None))


def _canonical(value):
    """Keys sorted recursively, Int64 as int, tuples as lists, datetimes UTC at millisecond precision.
    (Exact-type checks first: this runs on every value of every document a copy reads.)"""
    kind = type(value)
    if kind in _PLAIN or kind is int:
        return value
    if kind is dict:
        return {str(k): _canonical(value[k]) for k in sorted(value, key=str)}
    if kind is list or kind is tuple:
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        aware = aware.astimezone(timezone.utc)
        return aware.replace(microsecond=aware.microsecond // 1000 * 1000)
    return value


def document_digest(doc: dict) -> bytes:
    """SHA-256 of the document's canonical BSON."""
    return hashlib.sha256(bson.encode({"d": _canonical(doc)})).digest()


def collection_digests(db, name: str, skip_id: str | None = None) -> dict:
    """{id_key: digest} of every document of a collection (one pass)."""
    return {key: digest for key, (digest, _) in _digests_and_docs(db, name, skip_id).items()}


def _digests_and_docs(db, name: str, skip_id: str | None = None) -> dict:
    """{id_key: (digest, {_id, snapshot_id})}: what verification needs of each document."""
    if name not in db.list_collection_names():
        return {}
    out = {}
    for doc in db[name].find({}):
        if skip_id is not None and doc["_id"] == skip_id:
            continue
        info = {"_id": doc["_id"], "snapshot_id": doc.get("snapshot_id"),
                "copy_record": doc.get("step") == "migrate" and "from" in (doc.get("args") or {})}
        out[id_key(doc["_id"])] = (document_digest(doc), info)
    return out


def combined_hash(digests: dict) -> str:
    """Order-independent hash of a collection: sum of the document digests mod 2**256, as hex."""
    total = sum(int.from_bytes(d, "big") for d in digests.values()) % (1 << 256)
    return f"{total:064x}"


def compare_collection(source, target, name: str, skip_id: str | None = None, cut: Cut | None = None) -> dict:
    """Counts and hashes of one collection on both sides (each read whole), and what differs. For
    `schema_migrations` only the source's records are compared (a target of a newer version has applied more
    migrations). With a `cut`, options_data and snapshots are compared over the cut's snapshots."""
    src_all = _digests_and_docs(source, name, skip_id)
    tgt_all = _digests_and_docs(target, name, skip_id)
    if cut is not None and name in (schema.OPTIONS, schema.SNAPSHOTS):
        source_ids = set(src_all)
        src_all = {k: v for k, v in src_all.items() if cut.holds(name, v[1])}
        tgt_all = {k: v for k, v in tgt_all.items() if cut.holds(name, v[1]) or k not in source_ids}
    if name == schema.JOB_RUNS:  # records of copies off a read-only source live in the target only
        tgt_all = {k: v for k, v in tgt_all.items() if k in src_all or not v[1]["copy_record"]}
    src = {k: v[0] for k, v in src_all.items()}
    tgt = {k: v[0] for k, v in tgt_all.items()}
    if name == schema.MIGRATIONS:
        tgt = {k: v for k, v in tgt.items() if k in src}
    verdict = _verdict(src, tgt)
    verdict.pop("caught_up")
    verdict.pop("changed_during_copy")
    return verdict


# --- dry run ---------------------------------------------------------------------------------------

def plan(source, target, batch_size: int, to=None) -> dict:
    """What a copy would do, reading both stores only (`target` None: an embedded store not created yet)."""
    source_id = _source_id(source)
    target_names = set(target.list_collection_names()) if target is not None else set()
    checkpoints = {}
    if CHECKPOINTS in target_names:
        checkpoints = {doc["collection"]: doc for doc in target[CHECKPOINTS].find({"source": source_id})}
    rows = []
    for name in collections_to_copy(source):
        count = source[name].count_documents({})
        done = checkpoints.get(name, {}).get("done_count", 0)
        if checkpoints.get(name, {}).get("done"):
            done = count
        to_copy = max(count - done, 0)
        rows.append({"collection": name, "source_count": count,
                     "target_count_before": target[name].count_documents({}) if name in target_names else 0,
                     "resumed_from": done, "would_copy": to_copy, "batches": -(-to_copy // batch_size)})
    described = target.describe() if target is not None else f"embedded store at {to} (not created yet)"
    return {"store": source.describe(), "target": described, "dry_run": True, "batch_size": batch_size,
            "collections": rows, "ok": True}
