"""The read-only store handle the viewer uses: reads work on both stores, every write is refused,
and no attribute path leads back to a writable handle; the viewer source contains no write call."""

from __future__ import annotations

import ast
from datetime import datetime, timezone
from pathlib import Path

import pytest

from qortcli.errors import StoreError
from qortcli.store import ops, schema
from qortcli.store.readonly import (WRITE_METHODS, ReadOnlyCursor, ReadOnlyDatabase, ReadOnlyError,
                                    open_readonly)

VIEWER = Path(__file__).resolve().parents[1] / "viewer"
WRITE_CALLS = {"insert_one", "insert_many", "update_one", "update_many", "replace_one", "delete_one", "delete_many",
               "bulk_write", "drop", "drop_collection", "drop_database", "create_index", "create_indexes", "drop_index",
               "find_one_and_update", "find_one_and_replace", "find_one_and_delete", "rename", "create_collection",
               "upsert_many", "begin_snapshot", "complete_snapshot", "discard_snapshot", "recorded_run",
               "record_event", "ensure_schema", "insert", "update", "remove", "save"}


def _seed(db) -> None:
    ts = datetime(2026, 1, 11, 21, 18, 57, tzinfo=timezone.utc)
    sid = ops.begin_snapshot(db, "options", "BTC", ts, source="test")
    ops.upsert_many(db, schema.OPTIONS, [
        {"symbol": "BTC-16JAN26-82000-C", "underlying": "BTC", "snapshot_id": sid, "timestamp": ts, "strike": 82000.0,
         "option_type": "call", "index_price": 90612.79},
        {"symbol": "BTC-16JAN26-82000-P", "underlying": "BTC", "snapshot_id": sid, "timestamp": ts, "strike": 82000.0,
         "option_type": "put", "index_price": 90612.79}])
    ops.complete_snapshot(db, sid, {"stored": 2})


def test_reads_work_and_match_the_writable_handle(any_db):
    _seed(any_db)
    ro = ReadOnlyDatabase(any_db)
    assert ro[schema.OPTIONS].count_documents({}) == any_db[schema.OPTIONS].count_documents({}) == 2
    sid = "BTC-20260111T211857Z"
    assert ro[schema.OPTIONS].find_one({"snapshot_id": sid, "option_type": "put"})["symbol"] == "BTC-16JAN26-82000-P"
    cursor = ro[schema.OPTIONS].find({"snapshot_id": sid}, {"symbol": 1}).sort("symbol", -1).limit(1)
    assert isinstance(cursor, ReadOnlyCursor)
    assert [d["symbol"] for d in cursor] == ["BTC-16JAN26-82000-P"]
    assert sorted(ro[schema.OPTIONS].distinct("option_type", {"snapshot_id": sid})) == ["call", "put"]
    assert schema.OPTIONS in ro.list_collection_names()
    # the store helpers readers use accept the read-only handle
    assert ops.latest_snapshot(ro, "options", "BTC")["_id"] == "BTC-20260111T211857Z"


@pytest.mark.parametrize("method", sorted(WRITE_METHODS))
def test_every_write_method_is_refused(any_db, method):
    _seed(any_db)
    ro = ReadOnlyDatabase(any_db)
    with pytest.raises(ReadOnlyError):
        getattr(ro[schema.OPTIONS], method)({"_id": "x"})
    with pytest.raises(ReadOnlyError):
        getattr(ro, method)("x")
    assert any_db[schema.OPTIONS].count_documents({}) == 2  # nothing changed


def test_no_attribute_path_back_to_a_writable_handle(any_db):
    _seed(any_db)
    ro = ReadOnlyDatabase(any_db)
    coll = ro[schema.OPTIONS]
    cursor = coll.find({})
    for obj in (ro, coll, cursor):
        for attr in ("collection", "database", "_db", "_collection", "client", "_client", "_native"):
            with pytest.raises(AttributeError):
                getattr(obj, attr)
    # and the public surface is exactly the read API
    public = {n for n in dir(coll) if not n.startswith("_")}
    assert public == {"name", "find", "find_one", "count_documents", "distinct"}
    assert not (set(dir(ro)) & set(WRITE_METHODS))


@pytest.mark.parametrize("stage", ["$out", "$merge", "$match"])
def test_aggregate_is_refused(any_db, stage):
    """Aggregation pipelines can write ($out, $merge) or run server-side JavaScript ($function,
    $accumulator): a read-only handle offers none."""
    _seed(any_db)
    ro = ReadOnlyDatabase(any_db)
    with pytest.raises(ReadOnlyError):
        ro[schema.OPTIONS].aggregate([{"$match": {}}, {stage: "copy"}])
    assert "copy" not in any_db.list_collection_names()


def test_open_readonly_never_creates_a_store(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(StoreError, match="no store at"):
        open_readonly(str(missing))
    assert not missing.exists()


def test_open_readonly_on_an_embedded_store(embedded_db):
    _seed(embedded_db)
    ro = open_readonly(str(embedded_db.path))
    try:
        assert ro.is_embedded and "read-only" in ro.describe()
        assert ro[schema.OPTIONS].count_documents({"snapshot_id": "BTC-20260111T211857Z"}) == 2
        with pytest.raises(ReadOnlyError):
            ro[schema.OPTIONS].delete_many({})
    finally:
        ro.close()
    assert embedded_db[schema.OPTIONS].count_documents({}) == 2


def write_calls(source: str) -> list[str]:
    """Names of write-like calls (`x.insert_one(...)`, `upsert_many(...)`, ...) in Python source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else None
            if name in WRITE_CALLS:
                found.append(f"{name} (line {node.lineno})")
    return found


def test_the_scanner_finds_write_calls():
    sample = "db['x'].insert_one({})\ncoll.update_many({}, {})\nops.upsert_many(db, 'x', [])\ndb.x.drop()\n"
    assert [c.split()[0] for c in write_calls(sample)] == ["insert_one", "update_many", "upsert_many", "drop"]
    assert write_calls("db['x'].find_one({})\nlist(c.find({}).sort('t', -1))\n") == []


def test_viewer_package_has_no_write_calls():
    files = sorted(VIEWER.rglob("*.py"))
    files = [f for f in files if ".web" not in f.parts and "__pycache__" not in f.parts]
    assert len(files) >= 8, f"viewer sources not found under {VIEWER}"
    offenders = {str(f.relative_to(VIEWER)): calls for f in files if (calls := write_calls(f.read_text()))}
    assert offenders == {}
    # the only store entry point: the engine opened read-only, behind the read-only wrapper (qortview/db.py)
    text = "\n".join(f.read_text() for f in files)
    assert "ReadOnlyDatabase(connect(" in (VIEWER / "qortview" / "db.py").read_text()
    calls = [node for f in files for node in ast.walk(ast.parse(f.read_text())) if isinstance(node, ast.Call)
             and getattr(node.func, "id", getattr(node.func, "attr", "")) == "connect"]
    assert len(calls) == 1 and any(k.arg == "read_only" and getattr(k.value, "value", None) is True
                                   for k in calls[0].keywords)
    assert "qortcli.steps" not in text
