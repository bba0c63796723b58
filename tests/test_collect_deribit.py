"""The live Deribit collector against tests/replay_server.py replaying the recorded book summary.

get_instruments and get_index_price replies are built from the recorded book summary's own fields
(see replay_server.instruments_reply / index_price_reply and tests/fixtures/SOURCES.md).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qortcli.errors import StepError
from qortcli.sources.deribit import DeribitClient
from qortcli.steps import collect as collect_step
from qortcli.steps.collect import run_collect_deribit
from qortcli.store import ops, schema

from conftest import FIXTURES
from replay_server import Reply, deribit_server, index_price_reply, instruments_reply

BOOK = json.loads((FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json").read_text())
SUMMARY_PATH = "/api/v2/public/get_book_summary_by_currency"
INSTRUMENTS_PATH = "/api/v2/public/get_instruments"
INDEX_PATH = "/api/v2/public/get_index_price"
N_ROWS = len(BOOK["result"])
# The fault tests replay the first 60 recorded rows (real data, fewer writes: the suite stays fast).
SMALL = dict(BOOK, result=BOOK["result"][:60])
N_SMALL = 60


def _client(server, retries=3, sleeps=None, timeout=(2.0, 5.0)):
    return DeribitClient(base_url=server.url + "/api/v2", retries=retries, backoff_factor=0.01, backoff_jitter=0.01,
                         timeout=timeout, sleep=(sleeps.append if sleeps is not None else None))


def _assert_no_snapshot(db):
    assert ops.latest_snapshot(db, "options", "BTC") is None
    assert db[schema.OPTIONS].count_documents({}) == 0
    assert db[schema.SNAPSHOTS].count_documents({"kind": "options", "status": "pending"}) == 0


def test_live_chain_is_stored_with_terms_from_instruments_and_spot_from_index(any_db):
    with deribit_server(BOOK) as server:
        summary = run_collect_deribit(any_db, ["BTC"], client=_client(server))
        queries = {p: q for p, q in server.requests}
    (snap,) = summary["snapshots"]
    assert snap["stored"] == N_ROWS == 964 and snap["skipped"] == 0 and snap["expiries"] == 12
    assert summary["calls"] == {"public/get_instruments": 1, "public/get_book_summary_by_currency": 1,
                                "public/get_index_price": 1}
    assert queries[INSTRUMENTS_PATH] == {"currency": ["BTC"], "kind": ["option"], "expired": ["false"]}
    assert queries[SUMMARY_PATH] == {"currency": ["BTC"], "kind": ["option"]}
    assert queries[INDEX_PATH] == {"index_name": ["btc_usd"]}

    spot = index_price_reply(BOOK)["result"]["index_price"]
    specs = {r["instrument_name"]: r for r in instruments_reply(BOOK)["result"]}
    docs = {d["symbol"]: d for d in ops.snapshot_documents(any_db, snap["snapshot_id"])}
    for row in BOOK["result"]:
        doc, spec = docs[row["instrument_name"]], specs[row["instrument_name"]]
        assert doc["strike"] == spec["strike"] and doc["option_type"] == spec["option_type"]
        assert doc["expiry"].timestamp() * 1000 == spec["expiration_timestamp"]
        assert doc["index_price"] == spot
        assert doc["premium_usd"] == pytest.approx(row["mark_price"] * spot, rel=1e-12)
        assert doc["source"] == "deribit-live" and doc["forward"] == row["underlying_price"]
    assert ops.latest_snapshot(any_db, "options", "BTC")["_id"] == snap["snapshot_id"]


def test_collecting_twice_against_the_same_responses_stores_each_document_once(embedded_db):
    with deribit_server(BOOK) as server:
        first = run_collect_deribit(embedded_db, ["BTC"], client=_client(server))
        second = run_collect_deribit(embedded_db, ["BTC"], client=_client(server))
    assert first["snapshots"][0]["snapshot_id"] == second["snapshots"][0]["snapshot_id"]
    assert embedded_db[schema.OPTIONS].count_documents({}) == N_ROWS
    assert embedded_db[schema.SNAPSHOTS].count_documents({}) == 1


def test_http_429_then_success_is_retried_honouring_retry_after(embedded_db, urllib3_sleeps):
    with deribit_server(SMALL) as server:
        server.add(SUMMARY_PATH, Reply(429, b"", {"Retry-After": "3"}), Reply.json(SMALL), query={"currency": "BTC"})
        summary = run_collect_deribit(embedded_db, ["BTC"], client=_client(server))
        assert server.count(SUMMARY_PATH) == 2
    assert summary["stored"] == N_SMALL
    assert 3 in urllib3_sleeps  # urllib3 waited the server's Retry-After


def test_http_503_is_retried_with_backoff_then_gives_up_cleanly(embedded_db, urllib3_sleeps):
    with deribit_server(SMALL) as server:
        server.add(SUMMARY_PATH, Reply(503, b"upstream down"), Reply(503, b"upstream down"), Reply.json(SMALL),
                   query={"currency": "BTC"})
        ok = run_collect_deribit(embedded_db, ["BTC"], client=_client(server, retries=3))
        assert server.count(SUMMARY_PATH) == 3 and ok["stored"] == N_SMALL
        embedded_db[schema.OPTIONS].delete_many({})
        embedded_db[schema.SNAPSHOTS].delete_many({})

        server.add(SUMMARY_PATH, Reply(503, b"upstream down"), query={"currency": "BTC"})
        before = server.count(SUMMARY_PATH)
        with pytest.raises(StepError, match=r"get_book_summary_by_currency: gave up after 2 retries .*503"):
            run_collect_deribit(embedded_db, ["BTC"], client=_client(server, retries=2))
        assert server.count(SUMMARY_PATH) - before == 3  # first try + 2 retries
    assert len(urllib3_sleeps) >= 2 and urllib3_sleeps[-1] > 0  # exponential backoff (with jitter) was applied
    _assert_no_snapshot(embedded_db)
    (failed,) = list(embedded_db[schema.JOB_RUNS].find({"status": "failed"}))
    assert "503" in failed["error"]


def test_deribit_10028_is_retried_then_succeeds(embedded_db):
    limited = {"jsonrpc": "2.0", "error": {"code": 10028, "message": "too_many_requests"}, "testnet": False}
    sleeps: list[float] = []
    with deribit_server(SMALL) as server:
        server.add(SUMMARY_PATH, Reply.json(limited, status=400), Reply.json(limited, status=400), Reply.json(SMALL),
                   query={"currency": "BTC"})
        client = _client(server, sleeps=sleeps)
        summary = run_collect_deribit(embedded_db, ["BTC"], client=client)
        assert server.count(SUMMARY_PATH) == 3
    assert summary["stored"] == N_SMALL and summary["rate_limited_retries"] == 2
    assert len(sleeps) == 2 and sleeps[1] > 0


def test_deribit_10028_that_persists_fails_with_one_line(embedded_db):
    limited = {"jsonrpc": "2.0", "error": {"code": 10028, "message": "too_many_requests"}}
    with deribit_server(SMALL) as server:
        server.add(SUMMARY_PATH, Reply.json(limited, status=400), query={"currency": "BTC"})
        with pytest.raises(StepError, match="Deribit error 10028 too_many_requests persisted after 2 retries"):
            run_collect_deribit(embedded_db, ["BTC"], client=_client(server, retries=2, sleeps=[]))
        assert server.count(SUMMARY_PATH) == 3
    _assert_no_snapshot(embedded_db)


def test_truncated_body_is_a_clear_error_and_stores_nothing(embedded_db):
    text = json.dumps(SMALL)
    with deribit_server(SMALL) as server:
        server.add(SUMMARY_PATH, Reply.text(text[: len(text) // 3]), query={"currency": "BTC"})
        with pytest.raises(StepError, match="BTC: public/get_book_summary_by_currency: truncated or malformed JSON response body"):
            run_collect_deribit(embedded_db, ["BTC"], client=_client(server))
    _assert_no_snapshot(embedded_db)


def test_jsonrpc_error_envelope_names_code_and_message(embedded_db):
    error = {"jsonrpc": "2.0", "error": {"code": -32602, "message": "Invalid params",
                                         "data": {"reason": "wrong format", "param": "currency"}}}
    with deribit_server(SMALL) as server:
        server.add(INSTRUMENTS_PATH, Reply.json(error, status=400), query={"currency": "BTC"})
        with pytest.raises(StepError, match=r"public/get_instruments: Deribit error -32602 Invalid params .*currency"):
            run_collect_deribit(embedded_db, ["BTC"], client=_client(server))
    _assert_no_snapshot(embedded_db)


def test_missing_result_field_and_missing_index_are_named(embedded_db):
    with deribit_server(SMALL) as server:
        server.add(INDEX_PATH, Reply.json({"jsonrpc": "2.0", "result": {"estimated_delivery_price": 1.0}}),
                   query={"index_name": "btc_usd"})
        with pytest.raises(StepError, match="get_index_price: response lacks 'index_price'"):
            run_collect_deribit(embedded_db, ["BTC"], client=_client(server))
        server.add(SUMMARY_PATH, Reply.json({"jsonrpc": "2.0", "testnet": False}), query={"currency": "BTC"})
        with pytest.raises(StepError, match="get_book_summary_by_currency: response has no 'result' field"):
            run_collect_deribit(embedded_db, ["BTC"], client=_client(server))
    _assert_no_snapshot(embedded_db)


def test_row_with_unknown_instrument_is_skipped_counted_and_named(embedded_db):
    rows = list(SMALL["result"])
    unknown = dict(rows[0], instrument_name="BTC-27MAR26-123456-C")   # listed nowhere by get_instruments
    no_forward = {k: v for k, v in rows[1].items() if k != "underlying_price"}
    patched = dict(SMALL, result=[unknown, no_forward] + rows[2:])
    with deribit_server(SMALL) as server:
        server.add(SUMMARY_PATH, Reply.json(patched), query={"currency": "BTC"})
        (snap,) = run_collect_deribit(embedded_db, ["BTC"], client=_client(server))["snapshots"]
    assert snap["skipped_by_reason"] == {"unknown_instrument": 1, "bad_field": 1}
    assert snap["stored"] == N_SMALL - 2
    assert any("unknown instrument 'BTC-27MAR26-123456-C'" in e for e in snap["skipped_examples"])
    assert any("missing field 'underlying_price'" in e for e in snap["skipped_examples"])
    symbols = {d["symbol"] for d in ops.snapshot_documents(embedded_db, snap["snapshot_id"])}
    assert "BTC-27MAR26-123456-C" not in symbols and rows[1]["instrument_name"] not in symbols


def test_one_currency_failing_keeps_the_other_and_fails_the_run(embedded_db):
    with deribit_server(SMALL) as server:  # ETH has no route: the server answers 404 Method not found
        with pytest.raises(StepError, match=r"ETH: public/get_instruments: Deribit error -32601 Method not found.*1 other"):
            run_collect_deribit(embedded_db, ["BTC", "ETH"], client=_client(server))
    assert ops.latest_snapshot(embedded_db, "options", "BTC")["counts"]["stored"] == N_SMALL
    assert ops.latest_snapshot(embedded_db, "options", "ETH") is None


def test_store_failure_during_live_write_leaves_no_visible_snapshot(embedded_db, monkeypatch):
    real = ops.upsert_many

    def fail_options(db, collection, docs, **kw):
        if collection == schema.OPTIONS:
            real(db, collection, list(docs)[:50], **kw)
            raise OSError("store went away")
        return real(db, collection, docs, **kw)

    monkeypatch.setattr(collect_step.ops, "upsert_many", fail_options)
    with deribit_server(SMALL) as server:
        with pytest.raises(OSError):
            run_collect_deribit(embedded_db, ["BTC"], client=_client(server))
    _assert_no_snapshot(embedded_db)


def test_read_timeout_is_a_clear_error(embedded_db):
    with deribit_server(BOOK) as server:
        server.add(INDEX_PATH, Reply.json(index_price_reply(BOOK), delay=1.5), query={"index_name": "btc_usd"})
        with pytest.raises(StepError, match="get_index_price: timed out"):
            run_collect_deribit(embedded_db, ["BTC"], client=_client(server, retries=0, timeout=(2.0, 0.3)))
    _assert_no_snapshot(embedded_db)


def test_cli_collect_deribit_against_replay_server(qort_env, monkeypatch):
    from qortcli.cli import app

    runner = CliRunner()
    with deribit_server(SMALL) as server:
        monkeypatch.setenv("QORT_DERIBIT_URL", server.url + "/api/v2")
        ok = runner.invoke(app, ["collect", "deribit", "--currency", "BTC", "--json"])
        assert ok.exit_code == 0, ok.output
        assert json.loads(ok.stdout)["stored"] == N_SMALL
        table = runner.invoke(app, ["collect", "deribit", "--currency", "BTC"])  # the same snapshot again: a no-op
        assert table.exit_code == 0 and "unchanged" in table.stdout and "0 documents stored" in table.stdout
        failed = runner.invoke(app, ["collect", "deribit", "--currency", "ETH"])
        assert failed.exit_code == 1
        assert "Method not found" in failed.output and len(failed.output.strip().splitlines()) <= 2
