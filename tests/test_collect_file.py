"""`run_collect_file` / `qortcli collect deribit --from-file`: recorded chains → atomic snapshots."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd
import pytest
from typer.testing import CliRunner

from qortcli.errors import StepError
from qortcli.steps import collect as collect_step
from qortcli.steps.collect import run_collect_file
from qortcli.store import ops, schema

from conftest import FIXTURES

BOOK = FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json"
CHAIN_CSV = FIXTURES / "deribit_options_snapshot_20260111T211857Z.csv"
MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()


def _book_rows() -> list[dict]:
    return json.loads(BOOK.read_text())["result"]


def _expiry_by_hand(name: str) -> datetime:
    code = name.split("-")[1]
    return datetime(2000 + int(code[-2:]), MONTHS.index(code[-5:-2]) + 1, int(code[:-5]), 8, tzinfo=timezone.utc)


def test_book_summary_envelope_becomes_one_complete_snapshot(any_db):
    rows = _book_rows()
    summary = run_collect_file(any_db, BOOK)

    snap_time = datetime.fromtimestamp(max(r["creation_timestamp"] for r in rows) / 1000, tz=timezone.utc)
    assert snap_time.strftime("%Y%m%dT%H%M%S") == "20260313T190015"  # SOURCES.md: 2026-03-13 19:00:15 UTC
    (snap,) = summary["snapshots"]
    assert snap["snapshot_id"] == f"BTC-{snap_time:%Y%m%dT%H%M%SZ}"
    assert snap["stored"] == len(rows) == 964 and snap["skipped"] == 0
    assert snap["expiries"] == len({r["instrument_name"].split("-")[1] for r in rows}) == 12

    latest = ops.latest_snapshot(any_db, "options", "BTC")
    assert latest["_id"] == snap["snapshot_id"] and latest["status"] == "complete"
    assert latest["counts"]["stored"] == 964
    docs = {d["symbol"]: d for d in ops.snapshot_documents(any_db, snap["snapshot_id"])}
    assert len(docs) == 964
    for row in rows:
        doc = docs[row["instrument_name"]]
        strike = float(row["instrument_name"].split("-")[2])
        assert doc["strike"] == strike
        assert doc["expiry"] == _expiry_by_hand(row["instrument_name"])
        assert doc["option_type"] == {"C": "call", "P": "put"}[row["instrument_name"][-1]]
        assert doc["premium_crypto"] == row["mark_price"]
        assert doc["premium_usd"] == pytest.approx(row["mark_price"] * row["estimated_delivery_price"], rel=1e-12)
        assert doc["forward"] == row["underlying_price"] and doc["forward_index"] == row["underlying_index"]
        assert doc["index_price"] == row["estimated_delivery_price"] == 71048.7
        assert doc["implied_volatility"] == pytest.approx(row["mark_iv"] / 100)
        assert doc["bid_crypto"] == row["bid_price"] and doc["ask_crypto"] == row["ask_price"]
        assert doc["mid_crypto"] == row["mid_price"]
        assert doc["open_interest"] == row["open_interest"] and doc["volume_usd"] == row["volume_usd"]
        assert doc["greeks"] is None and doc["source"] == "book_summary_file"
        assert doc["timestamp"] == latest["timestamp"] and doc["underlying"] == "BTC"
    assert sum(d["bid_crypto"] is None for d in docs.values()) == sum(r["bid_price"] is None for r in rows) == 48


def test_bare_result_list_gives_the_same_documents(embedded_db, tmp_path):
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(_book_rows()))
    a = run_collect_file(embedded_db, BOOK)["snapshots"][0]
    embedded_db[schema.OPTIONS].delete_many({})
    embedded_db[schema.SNAPSHOTS].delete_many({})
    b = run_collect_file(embedded_db, bare)["snapshots"][0]
    assert a["snapshot_id"] == b["snapshot_id"] and a["stored"] == b["stored"] == 964


def test_importing_twice_stores_each_document_once(any_db):
    run_collect_file(any_db, BOOK)
    run_collect_file(any_db, BOOK)
    assert any_db[schema.OPTIONS].count_documents({}) == 964
    assert any_db[schema.SNAPSHOTS].count_documents({}) == 1
    runs = list(any_db[schema.JOB_RUNS].find({"step": "collect"}))
    assert [r["status"] for r in runs] == ["ok", "ok"]


def test_chain_csv_gives_one_snapshot_per_currency_with_published_greeks(any_db):
    frame = pd.read_csv(CHAIN_CSV)
    summary = run_collect_file(any_db, CHAIN_CSV)
    by_cur = {s["currency"]: s for s in summary["snapshots"]}
    assert set(by_cur) == {"BTC", "ETH"}
    stamp = pd.Timestamp(frame["timestamp"].iloc[0]).to_pydatetime()
    for currency, part in frame.groupby("currency"):
        snap = by_cur[currency]
        assert snap["stored"] == len(part) and snap["skipped"] == 0
        assert snap["snapshot_id"] == f"{currency}-{stamp:%Y%m%dT%H%M%SZ}"
        docs = {d["symbol"]: d for d in ops.snapshot_documents(any_db, snap["snapshot_id"])}
        assert len(docs) == len(part)
        for row in part.itertuples():
            doc = docs[row.instrument_name]
            assert doc["strike"] == row.strike and doc["option_type"] == row.option_type
            assert doc["expiry"] == pd.Timestamp(row.expiry_datetime).to_pydatetime()
            assert doc["premium_crypto"] == row.mark_price
            assert doc["premium_usd"] == pytest.approx(row.mark_price * row.index_price, rel=1e-12)
            assert doc["index_price"] == row.index_price and doc["forward"] == row.underlying
            assert doc["forward_index"] == row.underlying_name
            assert doc["implied_volatility"] == row.implied_volatility
            assert doc["greeks"]["delta"] == row.delta and doc["greeks"]["vega"] == row.vega
            assert (doc["bid_crypto"] is None) == pd.isna(row.bid_price)
            assert abs((doc["timestamp"] - stamp).total_seconds()) < 1e-3


def test_bad_rows_are_skipped_and_counted_never_stored(embedded_db, tmp_path):
    rows = _book_rows()
    bad = [dict(rows[0], instrument_name="BTC-32MAR26-70000-C"),          # malformed (day 32)
           dict(rows[1], instrument_name="BTC-13MAR26-70000-C"),          # expired 08:00, snapshot 19:00
           dict(rows[2], mark_price=None),                                 # no mark
           dict(rows[3], underlying_price="n/a")]                          # bad number
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"jsonrpc": "2.0", "result": bad + rows[4:]}))
    (snap,) = run_collect_file(embedded_db, path)["snapshots"]
    assert snap["skipped_by_reason"] == {"malformed_name": 1, "expired": 1, "missing_mark": 1, "bad_field": 1}
    assert snap["stored"] == len(rows) - 4
    stored = {d["symbol"] for d in ops.snapshot_documents(embedded_db, snap["snapshot_id"])}
    assert not stored & {"BTC-32MAR26-70000-C", "BTC-13MAR26-70000-C", rows[2]["instrument_name"], rows[3]["instrument_name"]}
    assert any("underlying_price" in e for e in snap["skipped_examples"])


def test_failure_mid_write_leaves_no_visible_snapshot(any_db, monkeypatch):
    real_upsert = ops.upsert_many

    def upsert_then_fail(db, collection, docs, **kw):
        if collection != schema.OPTIONS:
            return real_upsert(db, collection, docs, **kw)
        real_upsert(db, collection, list(docs)[:100], **kw)  # a partial write, then the store fails
        raise RuntimeError("disk full")

    monkeypatch.setattr(collect_step.ops, "upsert_many", upsert_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        run_collect_file(any_db, BOOK)
    assert ops.latest_snapshot(any_db, "options", "BTC") is None
    assert any_db[schema.OPTIONS].count_documents({}) == 0
    assert any_db[schema.SNAPSHOTS].count_documents({}) == 0
    (run,) = list(any_db[schema.JOB_RUNS].find({"step": "collect"}))
    assert run["status"] == "failed" and "disk full" in run["error"]


def test_truncated_and_error_files_are_one_line_errors(embedded_db, tmp_path):
    text = BOOK.read_text()
    truncated = tmp_path / "truncated.json"
    truncated.write_text(text[: len(text) // 2])
    with pytest.raises(StepError, match="truncated.json: malformed JSON"):
        run_collect_file(embedded_db, truncated)
    error = tmp_path / "error.json"
    error.write_text(json.dumps({"jsonrpc": "2.0", "error": {"code": 10028, "message": "too_many_requests"}}))
    with pytest.raises(StepError, match="Deribit error 10028 too_many_requests"):
        run_collect_file(embedded_db, error)
    assert embedded_db[schema.OPTIONS].count_documents({}) == 0


def test_cli_from_file_exit_codes(qort_env, tmp_path):
    from qortcli.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["collect", "deribit", "--from-file", str(CHAIN_CSV), "--json"])
    assert ok.exit_code == 0, ok.output
    summary = json.loads(ok.stdout)
    assert {s["currency"] for s in summary["snapshots"]} == {"BTC", "ETH"}
    assert summary["stored"] == len(pd.read_csv(CHAIN_CSV))

    missing = runner.invoke(app, ["collect", "deribit", "--from-file", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "not found" in missing.output  # a bad path is a usage error
    usage = runner.invoke(app, ["collect", "deribit", "--from-file", str(CHAIN_CSV), "--currency", "BTC"])
    assert usage.exit_code == 2
