"""The store on both engines: natural-key upserts, unique keys, snapshots, run records, BSON safety."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from pymongo.errors import DuplicateKeyError

from bsoncheck import BsonViolation, CheckedDatabase, assert_bson_roundtrip
from qortcli.errors import StoreError
from qortcli.store import connect, ensure_schema, ops, schema
from qortcli.store.runs import last_runs, recorded_run

UTC = timezone.utc
T0 = datetime(2026, 1, 5, 4, 11, 27, tzinfo=UTC)


def option_doc(symbol="BTC-16JAN26-82000-C", snapshot_id="BTC-20260105T041127Z", mark=0.121):
    return {"symbol": symbol, "underlying": "BTC", "snapshot_id": snapshot_id, "timestamp": T0,
            "strike": np.float64(82000.0), "expiry": datetime(2026, 1, 16, 8, tzinfo=UTC), "option_type": "call",
            "premium_crypto": np.float64(mark), "open_interest": np.int64(3), "greeks": {"delta": np.float32(0.5)},
            "bid_crypto": float("nan")}


def test_upsert_is_idempotent_and_plain(any_db):
    assert ops.upsert_many(any_db, schema.OPTIONS, [option_doc()]) == 1
    assert ops.upsert_many(any_db, schema.OPTIONS, [option_doc(mark=0.2)]) == 1
    docs = list(any_db[schema.OPTIONS].find({}))
    assert len(docs) == 1
    doc = docs[0]
    assert doc["_id"] == "BTC-16JAN26-82000-C|BTC-20260105T041127Z"
    assert doc["premium_crypto"] == 0.2 and type(doc["premium_crypto"]) is float
    assert type(doc["open_interest"]) is int and doc["bid_crypto"] is None
    assert doc["timestamp"] == T0 and doc["timestamp"].tzinfo is not None


def test_unique_natural_key_is_enforced(any_db):
    ops.upsert_many(any_db, schema.OPTIONS, [option_doc()])
    clash = ops.to_plain(option_doc())
    clash["_id"] = "another id, same symbol and snapshot"
    with pytest.raises(DuplicateKeyError):
        any_db[schema.OPTIONS].insert_one(clash)


def test_naive_datetimes_never_reach_the_store(any_db):
    doc = option_doc()
    doc["expiry"] = datetime(2026, 1, 16, 8)
    with pytest.raises(ValueError, match="naive"):
        ops.upsert_many(any_db, schema.OPTIONS, [doc])
    assert any_db[schema.OPTIONS].count_documents({}) == 0


def test_to_plain_output_survives_bson_and_raw_numpy_does_not():
    assert_bson_roundtrip(ops.to_plain(option_doc()))
    with pytest.raises(BsonViolation):
        assert_bson_roundtrip({"x": np.float64(1.0), "when": T0} | {"n": np.int64(1)})
    with pytest.raises(BsonViolation):
        assert_bson_roundtrip({"when": datetime(2026, 1, 1)})  # naive comes back aware: changed


def test_snapshot_lifecycle_hides_pending_and_discards_failed(any_db):
    sid = ops.begin_snapshot(any_db, "options", "BTC", T0, source="test")
    ops.upsert_many(any_db, schema.OPTIONS, [option_doc(snapshot_id=sid)])
    assert ops.latest_snapshot(any_db, "options", "BTC") is None  # pending is invisible
    ops.complete_snapshot(any_db, sid, {"stored": 1})
    assert ops.latest_snapshot(any_db, "options", "BTC")["_id"] == sid

    later = T0 + timedelta(hours=6)
    failed = ops.begin_snapshot(any_db, "options", "BTC", later)
    ops.upsert_many(any_db, schema.OPTIONS, [dict(option_doc(snapshot_id=failed), timestamp=later)])
    assert ops.discard_snapshot(any_db, failed) == 1
    assert ops.latest_snapshot(any_db, "options", "BTC")["_id"] == sid
    assert any_db[schema.OPTIONS].count_documents({}) == 1
    assert ops.discard_snapshot(any_db, sid) == 0  # a complete snapshot is never discarded


def test_recorded_run_records_success_and_failure(any_db):
    with recorded_run(any_db, "price", {"currency": "BTC"}) as run:
        run.counts["priced"] = np.int64(7)
    with pytest.raises(RuntimeError):
        with recorded_run(any_db, "surface", {}):
            raise RuntimeError("no quotes to fit\nsecond line")
    ok, failed = last_runs(any_db, 1, step="price")[0], last_runs(any_db, 1, step="surface")[0]
    assert len(last_runs(any_db, 10)) == 2
    assert ok["step"] == "price" and ok["status"] == "ok" and ok["counts"] == {"priced": 7}
    assert ok["ended_at"] >= ok["started_at"] and ok["args"] == {"currency": "BTC"}
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: no quotes to fit"


def test_migrations_apply_once(any_db):
    again = ensure_schema(any_db)
    assert [m["status"] for m in again] == ["already applied"] * len(schema.MIGRATION_STEPS)
    assert any_db[schema.MIGRATIONS].count_documents({}) == len(schema.MIGRATION_STEPS)
    indexes = {ix["name"]: ix for ix in any_db[schema.OPTIONS].list_indexes()}
    assert indexes["snapshot_symbol_unique"]["unique"]  # the natural key: one document per instrument per snapshot
    assert not {"symbol", "underlying_timestamp", "expiry"} & set(indexes)  # no index without a reader
    names = {ix["name"] for ix in any_db[schema.PRICES].list_indexes()}
    assert {"symbol_timestamp_unique", "sector"} <= names


def test_embedded_store_persists_across_connections(tmp_path):
    first = connect(str(tmp_path / "store"))
    ensure_schema(first)
    ops.upsert_many(first, schema.OPTIONS, [option_doc()])
    first.close()
    second = connect(str(tmp_path / "store"))
    assert second[schema.OPTIONS].find_one({})["symbol"] == "BTC-16JAN26-82000-C"
    assert ensure_schema(second)[0]["status"] == "already applied"


def test_embedded_store_works_from_other_threads(embedded_db):
    import threading

    seen = []
    thread = threading.Thread(target=lambda: seen.append(ops.upsert_many(embedded_db, schema.OPTIONS, [option_doc()])))
    thread.start()
    thread.join()
    assert seen == [1] and embedded_db[schema.OPTIONS].count_documents({}) == 1


def test_checked_database_catches_unsafe_writes(embedded_db):
    checked = CheckedDatabase(embedded_db)
    ops.upsert_many(checked, schema.OPTIONS, [option_doc()])
    assert len(checked.written) == 1
    with pytest.raises(BsonViolation):
        checked[schema.OPTIONS].insert_one({"_id": "x", "v": np.float64(1.0)})


def test_unsupported_url_and_unreachable_mongo():
    with pytest.raises(StoreError, match="unsupported store URL"):
        connect("postgres://localhost/db")
    with pytest.raises(StoreError, match="unreachable"):
        connect("mongodb://127.0.0.1:1", timeout_ms=300)


def test_datetimes_are_stored_to_the_millisecond(any_db):
    doc = option_doc()
    doc["timestamp"] = datetime(2026, 1, 5, 4, 11, 27, 551698, tzinfo=UTC)
    plain = ops.to_plain(doc)
    assert plain["timestamp"].microsecond == 551000
    assert_bson_roundtrip(plain)
    ops.upsert_many(any_db, schema.OPTIONS, [doc])
    assert any_db[schema.OPTIONS].find_one({})["timestamp"] == plain["timestamp"]
