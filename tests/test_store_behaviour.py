"""One store-behaviour suite, run on every backend: the embedded engine, mongomock and — with
QORT_TEST_MONGO_URL set (e.g. `docker compose up -d mongodb`, then
`QORT_TEST_MONGO_URL=mongodb://root:PASSWORD@localhost:27017 bash scripts/test.sh tests/test_store_behaviour.py`)
— a real MongoDB. Then the embedded engine's own guarantees: indexes that serve every query (or a clear
refusal), atomic batches, several processes at once, read-only opens that create and change nothing.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pymongo import DeleteMany, InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from qortcli.errors import StoreError
from qortcli.store import connect, ensure_schema, ops, read, schema
from qortcli.store.engine import EmbeddedDatabase, QueryError, ReadOnlyStoreError
from qortcli.steps.collect import run_collect_file

FIXTURES = Path(__file__).parent / "fixtures"
CHAIN = FIXTURES / "deribit_options_snapshot_20260111T211857Z.csv"
T0 = datetime(2026, 1, 11, 21, 18, 57, 123000, tzinfo=timezone.utc)


def _runs(n: int, step: str = "price") -> list[dict]:
    return [{"_id": f"run{i:03d}", "step": step if i % 3 else "collect", "status": "ok" if i % 4 else "failed",
             "started_at": T0 + timedelta(minutes=i), "counts": {"n": i}, "args": {"tags": [i, i + 1]}}
            for i in range(n)]


# ------------------------------------------------------------------------------------- every backend

def test_upserts_by_natural_key_never_duplicate(store_db):
    coll = store_db[schema.JOB_RUNS]
    requests = [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in _runs(30)]
    first = coll.bulk_write(requests, ordered=False)
    again = coll.bulk_write(requests, ordered=False)
    assert first.upserted_count == 30 and again.upserted_count == 0 and again.matched_count == 30
    assert coll.count_documents({}) == 30
    assert coll.count_documents({"step": "collect"}) == 10


def test_unique_keys_are_enforced(store_db):
    ops.upsert_many(store_db, schema.PRICES, [{"symbol": "BTC", "timestamp": T0, "close": 1.0}])
    with pytest.raises(DuplicateKeyError):
        store_db[schema.PRICES].insert_one({"_id": "other", "symbol": "BTC", "timestamp": T0, "close": 2.0})
    with pytest.raises(DuplicateKeyError):
        store_db[schema.PRICES].insert_one({"_id": "BTC|2026-01-11", "symbol": "X", "timestamp": T0})
    assert store_db[schema.PRICES].count_documents({}) == 1


def test_indexed_queries_equality_in_ranges_sort_limit(store_db):
    store_db[schema.JOB_RUNS].insert_many(_runs(40))
    coll = store_db[schema.JOB_RUNS]
    newest = list(coll.find({"step": "price"}).sort("started_at", -1).limit(3))
    expected = sorted((d for d in _runs(40) if d["step"] == "price"), key=lambda d: d["started_at"])[::-1][:3]
    assert [d["_id"] for d in newest] == [d["_id"] for d in expected]
    window = list(coll.find({"started_at": {"$gte": T0 + timedelta(minutes=5), "$lt": T0 + timedelta(minutes=9)}})
                  .sort("started_at", 1))
    assert [d["_id"] for d in window] == ["run005", "run006", "run007", "run008"]
    picked = coll.find({"_id": {"$in": ["run001", "run017", "nope"]}}, {"counts": 1})
    assert sorted((d["_id"], d["counts"]["n"]) for d in picked) == [("run001", 1), ("run017", 17)]
    assert coll.find_one({"_id": "run002"}, {"_id": 0, "args": 1}) == {"args": {"tags": [2, 3]}}
    assert coll.count_documents({"status": "failed", "started_at": {"$lte": T0 + timedelta(minutes=20)}}) == 6
    assert sorted(coll.distinct("step")) == ["collect", "price"]
    assert list(coll.find({"step": "price"}).sort("started_at", 1).skip(2).limit(2)) == \
        sorted((d for d in _runs(40) if d["step"] == "price"), key=lambda d: d["started_at"])[2:4]


def test_datetimes_round_trip_utc_to_the_millisecond(store_db):
    moment = datetime(2026, 3, 13, 19, 0, 15, 987654, tzinfo=timezone.utc)
    ops.upsert_many(store_db, schema.PRICES, [{"symbol": "ETH", "timestamp": moment, "close": 3.5}])
    doc = store_db[schema.PRICES].find_one({"symbol": "ETH"})
    assert doc["timestamp"] == moment.replace(microsecond=987000)
    assert doc["timestamp"].utcoffset() == timedelta(0)


def test_updates_set_unset_and_claims(store_db):
    coll = store_db[schema.SNAPSHOTS]
    coll.insert_one({"_id": "s1", "kind": "options", "status": "pending", "currency": "BTC", "timestamp": T0,
                     "owner": "a"})
    assert coll.find_one_and_update({"_id": "s1", "owner": "b"}, {"$set": {"owner": "c"}}) is None
    before = coll.find_one_and_update({"_id": "s1", "owner": "a"}, {"$set": {"owner": "b", "counts.n": 3}})
    assert before["owner"] == "a"
    coll.update_one({"_id": "s1"}, {"$unset": {"owner": ""}, "$set": {"status": "complete"}})
    doc = coll.find_one({"_id": "s1"})
    assert "owner" not in doc and doc["status"] == "complete" and doc["counts"] == {"n": 3}
    result = coll.update_one({"_id": "s2", "kind": "options"}, {"$set": {"status": "pending"}}, upsert=True)
    assert result.upserted_id == "s2" and coll.find_one({"_id": "s2"})["kind"] == "options"
    assert coll.delete_many({"kind": "options", "status": "pending"}).deleted_count == 1


def test_a_real_chain_reads_back_exactly(store_db):
    summary = run_collect_file(store_db, CHAIN)
    assert [r["status"] for r in summary["snapshots"]] == ["stored", "stored"]
    btc = read.latest_chain(store_db, "BTC")
    assert len(btc.frame) == summary["snapshots"][0]["instruments"]
    again = run_collect_file(store_db, CHAIN)
    assert [r["status"] for r in again["snapshots"]] == ["unchanged", "unchanged"] and again["stored"] == 0
    digests = ops.snapshot_digests(store_db, btc.snapshot.snapshot_id)
    assert len(digests) == len(btc.frame)


# ------------------------------------------------------------------------------------- the embedded engine

def test_a_query_no_index_serves_is_refused_not_scanned(embedded_db):
    embedded_db[schema.JOB_RUNS].insert_many(_runs(5))
    with pytest.raises(QueryError, match="no index serves this"):
        embedded_db[schema.JOB_RUNS].find_one({"counts.n": 3})
    with pytest.raises(QueryError, match="no index serves this"):
        list(embedded_db[schema.JOB_RUNS].find({}).sort("counts.n", 1))
    with pytest.raises(QueryError, match="not supported"):
        embedded_db[schema.JOB_RUNS].find_one({"$where": "this.step == 'price'"})
    # narrowed by an index first, the rest of the filter and the sort cost what the index returned
    assert embedded_db[schema.JOB_RUNS].find_one({"step": "price", "counts.n": 2})["_id"] == "run002"


def test_a_batch_is_atomic(embedded_db):
    coll = embedded_db[schema.JOB_RUNS]
    coll.insert_one({"_id": "run000", "step": "price", "started_at": T0})
    batch = [InsertOne({"_id": "run001", "step": "price", "started_at": T0}),
             UpdateOne({"_id": "run000"}, {"$set": {"status": "ok"}}),
             InsertOne({"_id": "run000", "step": "price", "started_at": T0})]   # a duplicate: the batch fails
    with pytest.raises(BulkWriteError):
        coll.bulk_write(batch)
    assert coll.count_documents({}) == 1 and "status" not in coll.find_one({"_id": "run000"})
    coll.bulk_write([DeleteMany({"step": "price"}), InsertOne({"_id": "x", "step": "collect", "started_at": T0})])
    assert [d["_id"] for d in coll.find({})] == ["x"]


def test_read_only_open_creates_and_changes_nothing(embedded_db, tmp_path):
    run_collect_file(embedded_db, CHAIN)
    embedded_db.close()

    def fingerprint(root: Path) -> dict:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    before = fingerprint(embedded_db.path)
    ro = connect(str(embedded_db.path), read_only=True)
    assert len(read.latest_chain(ro, "ETH").frame) > 600
    assert ro[schema.SURFACES].count_documents({}) == 0 and ro["never_written"].find_one({"x": 1}) is None
    with pytest.raises(ReadOnlyStoreError):
        ro[schema.JOB_RUNS].insert_one({"step": "x"})
    ro.close()
    assert fingerprint(embedded_db.path) == before
    missing = tmp_path / "no-store-here"
    with pytest.raises(StoreError, match="no store at"):
        connect(str(missing), read_only=True)
    assert not missing.exists()


def test_read_only_open_works_on_a_read_only_mount(embedded_db, tmp_path):
    """The viewer's case: the store folder mounted read-only (a private mount namespace, so root cannot
    write either)."""
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed to mount the store read-only")
    run_collect_file(embedded_db, CHAIN)
    embedded_db.close()
    mount = tmp_path / "ro-mount"
    mount.mkdir()
    script = textwrap.dedent(f"""
        from qortcli.store import connect, read
        db = connect({str(mount)!r}, read_only=True)
        print(len(read.latest_chain(db, "BTC").frame), db["never_written"].count_documents({{}}))
    """)
    reader = tmp_path / "reader.py"
    reader.write_text(script)
    shell = (f"mount --bind {embedded_db.path} {mount} && mount -o remount,ro,bind {mount} && "
             f"{sys.executable} {reader}")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", shell], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    if proc.returncode != 0 and "mount" in proc.stderr and "permission denied" in proc.stderr.lower():
        pytest.skip(f"cannot create a read-only mount here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    n, empty = proc.stdout.split()
    assert int(n) > 600 and int(empty) == 0


def _writer(path: str, worker: int, n: int) -> None:
    db = EmbeddedDatabase(path, "qortfolio", busy_s=60)
    for i in range(n):
        db[schema.JOB_RUNS].bulk_write([ReplaceOne({"_id": f"w{worker}-{i}-{j}"},
                                                   {"step": f"w{worker}", "started_at": T0, "i": i, "j": j},
                                                   upsert=True) for j in range(20)])
    db.close()


def test_several_processes_write_and_read_one_store(tmp_path):
    path = str(tmp_path / "shared")
    ensure_schema(connect(path))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 25)) for w in range(3)]
    for p in procs:
        p.start()
    reader = connect(path, read_only=True)
    seen = 0
    while any(p.is_alive() for p in procs):
        n = reader[schema.JOB_RUNS].count_documents({})
        assert n % 20 == 0 and n >= seen  # whole batches only, never going back
        seen = n
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert reader[schema.JOB_RUNS].count_documents({}) == 3 * 25 * 20
    assert reader[schema.JOB_RUNS].count_documents({"step": "w1"}) == 500


def test_closing_the_handle_while_another_thread_writes(tmp_path):
    """The worker closes its handle on shutdown while a scheduler thread may still write its heartbeat: each
    statement finishes first, later calls reopen, nothing crashes (it was a segfault: found by the soak)."""
    import threading

    db = EmbeddedDatabase(tmp_path / "store")
    ensure_schema(db)
    errors: list[BaseException] = []
    done = threading.Event()

    def beat():
        try:
            for i in range(400):
                db[schema.JOB_RUNS].update_one({"_id": f"beat{i % 20}"}, {"$set": {"n": i, "step": "beat"}}, upsert=True)
                db[schema.JOB_RUNS].find_one({"_id": f"beat{i % 20}"})
        except BaseException as exc:   # noqa: BLE001 - any failure is the test's finding
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=beat)
    writer.start()
    closes = 0
    while not done.is_set():
        db.close()
        closes += 1
    writer.join()
    assert errors == [] and closes > 1
    assert db[schema.JOB_RUNS].count_documents({"step": "beat"}) == 20
    assert db[schema.JOB_RUNS].find_one({"_id": "beat19"})["n"] == 399
    db.close()
