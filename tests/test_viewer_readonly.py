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
    # the only store entry point is the read-only handle (qortview/db.py: open_readonly)
    text = "\n".join(f.read_text() for f in files)
    assert "open_readonly(" in (VIEWER / "qortview" / "db.py").read_text()
    assert "import connect" not in text and "from qortcli.store import connect" not in text
    assert "connect(" not in text.replace("open_readonly(", "")
    assert "qortcli.steps" not in text


# --- read-only for real (issue 13.10): introspection, server-side JavaScript, missing collections ------------

def _fingerprint(root: Path) -> dict:
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _reachable(start, limit: int = 50_000) -> list:
    """Objects reachable from `start` through the garbage collector's referents (modules, classes and module
    globals are not followed: they lead to everything in the process, not to what the handle holds)."""
    import gc
    import sys
    import types

    module_dicts = {id(m.__dict__) for m in list(sys.modules.values()) if m is not None}
    seen, queue, out = {id(start)}, [start], []
    while queue and len(out) < limit:
        obj = queue.pop()
        out.append(obj)
        for ref in gc.get_referents(obj):
            if id(ref) in seen or isinstance(ref, (types.ModuleType, type)) or id(ref) in module_dicts:
                continue
            seen.add(id(ref))
            queue.append(ref)
    return out


def test_introspection_reaches_no_writable_handle_on_the_embedded_store(embedded_db):
    from qortcli.store.engine import EmbeddedCollection, EmbeddedDatabase, ReadOnlyStoreError

    _seed(embedded_db)
    before = _fingerprint(embedded_db.path)
    for ro in (ReadOnlyDatabase(embedded_db), open_readonly(str(embedded_db.path))):
        coll = ro[schema.OPTIONS]
        cursor = coll.find({})
        # the bypasses of issue 13.10: the closure behind find, the cursor's bound method's owner
        inner = [c.cell_contents for c in coll._reads["find"].__closure__ if hasattr(c.cell_contents, "insert_one")]
        engine_cursor = cursor._next.__self__
        assert inner and engine_cursor
        for handle in (*inner, engine_cursor._coll):
            with pytest.raises(ReadOnlyStoreError):
                handle.insert_one({"_id": "x", "snapshot_id": "x", "symbol": "x"})
            with pytest.raises(ReadOnlyStoreError):
                handle.delete_many({"snapshot_id": "BTC-20260111T211857Z"})
        # and nothing reachable at all can write
        stores = [o for o in _reachable(ro) if isinstance(o, (EmbeddedDatabase, EmbeddedCollection))]
        assert stores
        for obj in stores:
            database = obj if isinstance(obj, EmbeddedDatabase) else obj._db
            assert database.read_only, f"{obj!r} is writable and reachable from the read-only handle"
        assert embedded_db not in stores
        ro.close()
    assert _fingerprint(embedded_db.path) == before
    assert embedded_db[schema.OPTIONS].count_documents({}) == 2


@pytest.mark.parametrize("query", [
    {"$where": "this.strike > 0"},
    {"symbol": {"$exists": True}, "$and": [{"$where": "sleep(10000) || true"}]},
    {"$expr": {"$function": {"body": "function() { return true }", "args": [], "lang": "js"}}},
    {"legs": {"$elemMatch": {"$expr": {"$gt": [{"$accumulator": {"init": "function() {}"}}, 0]}}}},
])
def test_server_side_javascript_is_refused_anywhere_in_a_query(any_db, query):
    _seed(any_db)
    coll = ReadOnlyDatabase(any_db)[schema.OPTIONS]
    for call in (lambda: coll.find(query), lambda: coll.find_one(query), lambda: coll.count_documents(query),
                 lambda: coll.distinct("symbol", query), lambda: coll.find({}, {"x": query})):
        with pytest.raises(ReadOnlyError, match="server-side JavaScript"):
            call()
    with pytest.raises(ReadOnlyError, match="not allowed"):
        coll.find({}, let={"f": {"$function": {}}})  # only sort, skip and limit pass as options


def test_reading_a_missing_collection_or_database_creates_nothing(embedded_db):
    _seed(embedded_db)
    before = _fingerprint(embedded_db.path)
    for ro in (open_readonly(str(embedded_db.path)), open_readonly(str(embedded_db.path), db_name="not_there"),
               ReadOnlyDatabase(embedded_db)):
        assert ro["never_written"].find_one({"x": 1}) is None
        assert ro["never_written"].count_documents({}) == 0 and list(ro["never_written"].find({})) == []
        assert ro["never_written"].distinct("x") == []
        ro.close()
    assert _fingerprint(embedded_db.path) == before


def test_the_read_only_view_sees_what_the_writer_writes_later(embedded_db):
    ro = ReadOnlyDatabase(embedded_db)
    assert ro[schema.OPTIONS].count_documents({}) == 0
    _seed(embedded_db)
    assert ro[schema.OPTIONS].count_documents({"snapshot_id": "BTC-20260111T211857Z"}) == 2
    ro.close()
