"""`qortcli migrate --to`: interrupted and resumed copies, verification, dry run, refusals, TLS URL pass-through."""

from __future__ import annotations

import copy
import csv
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import qortcli.store.transfer as migrate_mod
from qortcli.store import connect, ensure_schema, ops, schema
from qortcli.store.runs import recorded_run
from qortcli.steps.migrate import run_migrate
from qortcli.store.transfer import (CHECKPOINTS, MigrationMismatch, combined_hash, compare_collection,
                                    document_digest)

FIXTURES = Path(__file__).parent / "fixtures"
BOOK = FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json"
BTC_CSV = FIXTURES / "prices" / "BTC-USD.csv"
SNAP_TIME = datetime(2026, 3, 13, 19, 0, 15, tzinfo=timezone.utc)  # the book summary's recording time
REAL_WRITE_BATCH = migrate_mod._write_batch


def fill_source(db, n_options: int = 240, n_days: int = 150) -> None:
    """Real documents: Deribit book-summary records as options_data, Yahoo BTC closes as price_data."""
    records = json.loads(BOOK.read_text())["result"][:n_options]
    snapshot_id = ops.begin_snapshot(db, "options", "BTC", SNAP_TIME, source="book_summary_file")
    docs = [{"symbol": r["instrument_name"], "underlying": "BTC", "snapshot_id": snapshot_id, "timestamp": SNAP_TIME,
             "premium_crypto": r["mark_price"], "implied_volatility": r["mark_iv"] / 100.0,
             "bid_crypto": r["bid_price"], "ask_crypto": r["ask_price"], "forward": r["underlying_price"],
             "forward_index": r["underlying_index"], "open_interest": r["open_interest"], "volume": r["volume"],
             "greeks": None, "source": "book_summary_file"} for r in records]
    ops.upsert_many(db, schema.OPTIONS, docs)
    ops.complete_snapshot(db, snapshot_id, {"stored": len(docs)})
    with open(BTC_CSV, newline="") as fh:
        rows = list(csv.DictReader(fh))[:n_days]
    prices = [{"symbol": "BTC", "yfinance_symbol": "BTC-USD", "sector": "Store of Value",
               "timestamp": datetime.fromisoformat(r["Date"]).replace(tzinfo=timezone.utc),
               "open": float(r["Open"]), "high": float(r["High"]), "low": float(r["Low"]),
               "close": float(r["Close"]), "adj_close": float(r["Adj Close"]), "price_usd": float(r["Close"]),
               "volume_24h": int(r["Volume"]), "source": "yahoo_csv"} for r in rows]
    ops.upsert_many(db, schema.PRICES, prices)
    with recorded_run(db, "collect", {"source": "fixtures"}) as run:
        run.counts["stored"] = len(docs) + len(prices)


def canonical_docs(db, name: str) -> list[str]:
    """The collection as sorted canonical JSON strings: an independent, exact comparison of contents."""
    if name not in db.list_collection_names():
        return []

    def dump(doc):
        return json.dumps(doc, sort_keys=True, default=lambda v: v.astimezone(timezone.utc).isoformat()
                          if isinstance(v, datetime) else str(v))

    return sorted(dump(d) for d in db[name].find({}))


def assert_same_stores(source, target, migrate_run_ids: set[str]) -> None:
    for name in schema.COLLECTIONS:
        src = canonical_docs(source, name)
        tgt = canonical_docs(target, name)
        if name == schema.JOB_RUNS:  # the copying runs' own records stay in the source only
            src = [d for d in src if json.loads(d)["_id"] not in migrate_run_ids]
        if name == schema.MIGRATIONS:  # applied_at differs per store only if the target was migrated first
            assert [json.loads(d)["_id"] for d in src] == [json.loads(d)["_id"] for d in tgt]
            continue
        assert src == tgt, f"{name}: {len(src)} source vs {len(tgt)} target documents differ"
        assert len(set(tgt)) == len(tgt)  # no duplicates


@pytest.fixture
def source(tmp_path):
    db = connect(str(tmp_path / "source"))
    ensure_schema(db)
    fill_source(db)
    yield db
    db.close()


@pytest.fixture
def embedded_target(tmp_path):
    db = connect(str(tmp_path / "target"))
    yield db
    db.close()


def _interrupt_after(monkeypatch, n_batches: int):
    """Make the n+1-th batch write fail (as a dropped connection or Ctrl-C would), after n written batches."""
    real = REAL_WRITE_BATCH
    calls = {"n": 0}

    def flaky(target, collection, docs):
        if calls["n"] >= n_batches:
            raise ConnectionError("injected: connection lost")
        calls["n"] += 1
        real(target, collection, docs)

    monkeypatch.setattr(migrate_mod, "_write_batch", flaky)
    return calls


@pytest.mark.parametrize("target_kind", ["embedded", "mongomock"])
def test_interrupted_copy_resumes_without_loss_or_duplicates(source, target_kind, request, monkeypatch):
    target = request.getfixturevalue("embedded_target" if target_kind == "embedded" else "mongomock_db")
    n_options = source[schema.OPTIONS].count_documents({})
    batch = 50
    calls = _interrupt_after(monkeypatch, 3)
    with pytest.raises(ConnectionError, match="injected"):
        run_migrate(source, target, batch_size=batch)
    assert calls["n"] == 3
    assert target[schema.OPTIONS].count_documents({}) == 3 * batch < n_options  # stopped midway
    checkpoint = target[CHECKPOINTS].find_one({"collection": schema.OPTIONS})
    assert checkpoint["done_count"] == 3 * batch and not checkpoint["done"]
    failed_run = source[schema.JOB_RUNS].find_one({"step": "migrate", "status": "failed"})
    assert "injected" in failed_run["error"]

    monkeypatch.setattr(migrate_mod, "_write_batch", REAL_WRITE_BATCH)  # the connection is back
    seen = []
    summary = run_migrate(source, target, batch_size=batch, progress=lambda c, d, t: seen.append((c, d, t)))
    rows = {r["collection"]: r for r in summary["collections"]}
    assert summary["ok"] and all(r["match"] for r in rows.values())
    assert rows[schema.OPTIONS]["resumed_from"] == 3 * batch  # resumed after the checkpoint ...
    assert rows[schema.OPTIONS]["copied"] == n_options - 3 * batch  # ... copying only the rest
    assert rows[schema.OPTIONS]["source_count"] == rows[schema.OPTIONS]["target_count"] == n_options
    assert rows[schema.PRICES]["source_count"] == rows[schema.PRICES]["target_count"] == 150
    assert (schema.OPTIONS, n_options, n_options) in seen  # the progress callback saw the end
    assert CHECKPOINTS not in target.list_collection_names()  # cleaned up after verification
    ids = {d["_id"] for d in source[schema.JOB_RUNS].find({"step": "migrate"})}
    assert_same_stores(source, target, migrate_run_ids=ids - {failed_run["_id"]})
    # the failed first attempt's record is copied (it was complete by then); the second stays in the source
    assert target[schema.JOB_RUNS].find_one({"_id": failed_run["_id"]})["status"] == "failed"
    # the target got the schema's unique indexes
    index_names = {ix["name"] for ix in target[schema.OPTIONS].list_indexes()}
    assert "snapshot_symbol_unique" in index_names

    again = run_migrate(source, target, batch_size=batch)  # idempotent: a full re-copy, nothing duplicated
    assert again["ok"]
    assert target[schema.OPTIONS].count_documents({}) == n_options


def test_mismatch_names_the_collection_and_cli_exits_1(tmp_path, source, embedded_target):
    from typer.testing import CliRunner

    from qortcli.cli import app

    assert run_migrate(source, embedded_target)["ok"]
    extra = copy.deepcopy(embedded_target[schema.PRICES].find_one({}))
    extra["_id"] = "BTC|1999-01-01"
    extra["timestamp"] = datetime(1999, 1, 1, tzinfo=timezone.utc)
    embedded_target[schema.PRICES].insert_one(extra)  # a document the source does not have
    with pytest.raises(MigrationMismatch, match=r"price_data \(source 150 vs target 151 documents: 1 only in target"):
        run_migrate(source, embedded_target)
    src_path, dst_path = str(source.path), str(embedded_target.path)
    source.close()
    embedded_target.close()
    result = CliRunner().invoke(app, ["migrate", "--db", src_path, "--to", dst_path, "--batch-size", "100"])
    assert result.exit_code == 1
    assert "verification failed for price_data" in result.output
    assert "options_data" not in result.output.split("verification failed")[1]  # only the bad one is named


def test_compare_collection_sees_a_changed_value(source, mongomock_db):
    assert run_migrate(source, mongomock_db)["ok"]
    doc = mongomock_db[schema.OPTIONS].find_one({})
    mongomock_db[schema.OPTIONS].update_one({"_id": doc["_id"]}, {"$set": {"implied_volatility": 0.5}})
    verdict = compare_collection(source, mongomock_db, schema.OPTIONS)
    assert not verdict["match"] and "1 different" in verdict["detail"] and doc["_id"] in verdict["detail"]
    assert verdict["target_count"] == source[schema.OPTIONS].count_documents({})


def test_content_hash_is_order_independent_and_bson_faithful():
    base = datetime(2026, 3, 13, 19, 0, 15, 123456, tzinfo=timezone.utc)
    a = {"_id": "x", "strike": 70000.0, "t": base, "legs": [{"k": 1, "q": -1}], "n": 3}
    b = {"n": 3, "legs": [{"q": -1, "k": 1}], "t": base.replace(microsecond=123000), "strike": 70000.0, "_id": "x"}
    assert document_digest(a) == document_digest(b)  # key order and sub-millisecond digits do not count
    assert document_digest(a) != document_digest({**a, "strike": 70000.5})
    assert document_digest(a) != document_digest({**a, "n": 3.0})  # int vs double are different BSON
    assert document_digest(a) != document_digest({**a, "t": base + timedelta(milliseconds=1)})
    digests = {i: document_digest({"_id": i, "v": i * 1.5}) for i in range(20)}
    shuffled = dict(sorted(digests.items(), key=lambda kv: -kv[0]))
    assert combined_hash(digests) == combined_hash(shuffled)
    fewer = dict(list(digests.items())[1:])
    assert combined_hash(fewer) != combined_hash(digests)


def test_dry_run_writes_nothing(tmp_path, source):
    target_path = tmp_path / "dry-target"
    summary = run_migrate(source, str(target_path), dry_run=True, batch_size=100)
    rows = {r["collection"]: r for r in summary["collections"]}
    n_options = source[schema.OPTIONS].count_documents({})
    assert rows[schema.OPTIONS]["would_copy"] == n_options and rows[schema.OPTIONS]["batches"] == -(-n_options // 100)
    assert not target_path.exists()  # nothing created (issue 14.9: read-only commands never create stores)
    assert source[schema.JOB_RUNS].count_documents({"step": "migrate"}) == 0  # a dry run is not recorded


def test_refuses_to_copy_a_store_onto_itself(tmp_path, source):
    from qortcli.errors import StepError

    for spelling in (str(source.path), str(source.path.parent / ".." / source.path.parent.name / "source")):
        with pytest.raises(StepError, match="onto itself"):
            run_migrate(source, spelling)
    with pytest.raises(StepError, match="onto itself"):
        run_migrate(source, source)


def test_tls_options_of_srv_urls_reach_pymongo_unchanged(source, monkeypatch):
    import mongomock
    import pymongo

    seen = {}

    def fake_client(url, **options):
        seen["url"], seen["options"] = url, options
        return mongomock.MongoClient()

    monkeypatch.setattr(pymongo, "MongoClient", fake_client)
    url = ("mongodb+srv://qort:s3cret@cluster0.example.mongodb.net/qortprod"
           "?retryWrites=true&w=majority&tls=true&tlsCAFile=/etc/ssl/certs/ca-certificates.crt")
    summary = run_migrate(source, url, dry_run=True)
    assert seen["url"] == url  # TLS and other options travel in the URL, untouched
    assert "s3cret" not in summary["target"] and "qortprod" in summary["target"]  # password redacted; db from path
