"""`qortcli stream` end to end: the real websocket client and stream step against tests/ws_replay_server.py
(a local Deribit-shaped JSON-RPC peer) and the REST seed from tests/replay_server.py.

The data are two real recorded whole chains five hours apart (tests/fixtures, 2026-01-11 04:05 and 09:14 UTC):
the REST seed is the first (as a get_book_summary reply), the websocket replays the second as documented
Deribit notifications. Between them the 11JAN26 expiry settled (sent as instrument.state "terminated") and
15JAN26 was listed ("created"). See tests/fixtures/SOURCES.md. No network.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from qortcli.steps.stream import run_stream
from qortcli.store import connect, ops, read, schema

from conftest import FIXTURES
from replay_server import Reply, ReplayServer, index_price_reply, instruments_reply
from ws_replay_server import (WsReplayServer, book_from_chain_csv, heartbeat, index_notification, marks_from_book,
                              markprice_notification, notification, state_notification)

ROOT = Path(__file__).resolve().parents[1]
BOOK_A = book_from_chain_csv(FIXTURES / "deribit_options_snapshot_20260111T040517Z.csv", "BTC")
BOOK_B = book_from_chain_csv(FIXTURES / "deribit_options_snapshot_20260111T091434Z.csv", "BTC")
ROWS_B = BOOK_B["result"]
TS_B = ROWS_B[0]["creation_timestamp"]
AT_B = datetime.fromtimestamp(TS_B / 1000, tz=timezone.utc)
INDEX_B = float(np.median([r["estimated_delivery_price"] for r in ROWS_B]))
NAMES_A = {r["instrument_name"] for r in BOOK_A["result"]}
NAMES_B = {r["instrument_name"] for r in ROWS_B}
SNAPSHOT_B = f"BTC-{AT_B:%Y%m%dT%H%M%SZ}"
# short deadlines so the suite stays fast (Deribit's own minimum heartbeat is 10 s)
WS = {"heartbeat_s": 0.5, "backoff_initial_s": 0.05, "backoff_max_s": 0.2, "rate_limit_backoff_s": 0.4,
      "request_timeout_s": 5.0, "open_timeout_s": 5.0, "stable_after_s": 0.5}
API = "/api/v2/public"


def rest_server(*books) -> ReplayServer:
    """REST replies: instruments listing every option of the books, the books in order (the last repeats)."""
    rows, seen = [], set()
    for book in (b for b in books if not isinstance(b, Reply)):
        rows += [r for r in book["result"] if r["instrument_name"] not in seen]
        seen |= {r["instrument_name"] for r in book["result"]}
    server = ReplayServer()
    server.add(f"{API}/get_instruments", Reply.json(instruments_reply({"result": rows})), query={"currency": "BTC"})
    server.add(f"{API}/get_book_summary_by_currency", *[b if isinstance(b, Reply) else Reply.json(b) for b in books],
               query={"currency": "BTC"})
    server.add(f"{API}/get_index_price", Reply.json(index_price_reply(books[0])), query={"index_name": "btc_usd"})
    return server


def run_until(db, predicate, limit_s: float = 60.0, **kwargs) -> dict:
    """run_stream until `predicate(db)` holds (polled from another thread); the limit only guards a hang."""
    stop, gave_up = threading.Event(), []

    def poll():
        deadline = time.monotonic() + limit_s
        while not stop.is_set():
            try:
                if predicate(db):
                    break
            except Exception:  # a document half there: poll again
                pass
            if time.monotonic() > deadline:
                gave_up.append(True)
                break
            time.sleep(0.05)
        stop.set()

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    summary = run_stream(db, stop_event=stop, handle_signals=False, **kwargs)
    stop.set()
    watcher.join(5)
    assert not gave_up, "gave up waiting for the condition"
    return summary


def live_doc(db, currency="BTC") -> dict | None:
    return db[schema.LIVE_MARKS].find_one({"_id": currency})


def has_index(value):
    return lambda db: (doc := live_doc(db)) is not None and doc["index_usd"] == value


async def feed_b(peer):
    """The second recording as the feed would send it: index, expiries/listings, marks, a test_request."""
    await peer.send(index_notification("btc_usd", INDEX_B, TS_B))
    for name in sorted(NAMES_A - NAMES_B):
        await peer.send(state_notification("BTC", name, "terminated", TS_B - 1000))
    for name in sorted(NAMES_B - NAMES_A):
        await peer.send(state_notification("BTC", name, "created", TS_B - 1000))
    await peer.send(markprice_notification("btc_usd", marks_from_book(ROWS_B, TS_B)))
    await peer.send(heartbeat("test_request"))
    await peer.heartbeats(0.1)


def marker(value: float):
    """A script sending one index update `value` (the tests' 'done' signal), then heartbeats."""
    async def play(peer):
        await peer.send(index_notification("btc_usd", value, TS_B + 5000))
        await peer.heartbeats(0.1)
    return play


# --------------------------------------------------------------------------- independent references

def _ncdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _bs_delta_vega(F, K, t, sigma, call):
    """Black-76 forward delta and vega (USD per vol point), written out here as the reference."""
    s = sigma * math.sqrt(t)
    d1 = math.log(F / K) / s + 0.5 * s
    delta = _ncdf(d1) if call else _ncdf(d1) - 1.0
    vega = F * math.exp(-0.5 * d1 * d1) / math.sqrt(2.0 * math.pi) * math.sqrt(t) / 100.0
    return delta, vega


def _recorded_forwards(rows) -> dict[str, float]:
    by = {}
    for r in rows:
        by.setdefault(r["instrument_name"].split("-")[1], []).append(r["underlying_price"])
    return {code: float(np.median(v)) for code, v in by.items()}


# --------------------------------------------------------------------------- tests

def test_seed_subscribe_and_updates_reach_live_marks(embedded_db):
    db = embedded_db
    with rest_server(BOOK_A, BOOK_B) as rest, WsReplayServer([feed_b]) as ws:
        summary = run_until(db, lambda d: (doc := live_doc(d)) is not None and doc["marks_at"] == AT_B
                            and bool(ws.requests_of("public/test")),
                            currencies=["BTC"], url=ws.url, rest_url=rest.url + "/api/v2", snapshot_every="1h", ws=WS)
        rest_calls = {p: rest.count(p) for p in (f"{API}/get_instruments", f"{API}/get_book_summary_by_currency")}
    assert not ws.errors
    # the session: heartbeat first, then one subscription to the three channels, a test_request answered
    assert [m["params"] for _, m in ws.requests_of("public/set_heartbeat")] == [{"interval": 0.5}]
    assert [m["params"]["channels"] for _, m in ws.requests_of("public/subscribe")] == [
        ["markprice.options.btc_usd", "deribit_price_index.btc_usd", "instrument.state.option.BTC"]]
    assert summary["test_requests"] == 1 and len(ws.requests_of("public/test")) == 1
    assert rest_calls == {f"{API}/get_instruments": 1, f"{API}/get_book_summary_by_currency": 2}  # seed + final quotes

    live = read.live_marks(db, "BTC")
    frame = live.frame.set_index("instrument")
    assert set(frame.index) == NAMES_B                     # 11JAN26 terminated, 15JAN26 listed
    assert summary["state_changes"] == len(NAMES_A - NAMES_B) + len(NAMES_B - NAMES_A)
    assert "11JAN26" not in set(live.expiries["expiry_code"]) and "15JAN26" in set(live.expiries["expiry_code"])
    rows = {r["instrument_name"]: r for r in ROWS_B}
    assert all(frame.at[n, "mark_coin"] == rows[n]["mark_price"] for n in NAMES_B)
    assert all(frame.at[n, "mark_iv"] == rows[n]["mark_iv"] / 100.0 for n in NAMES_B)
    assert live.index_usd == INDEX_B and live.marks_at == AT_B
    assert np.allclose(frame["mark_usd"], frame["mark_coin"] * INDEX_B, rtol=1e-12, atol=0)

    # each expiry's forward follows its marks (parity): within 2.5 bp of the recorded forward, which is itself
    # out of step with the recorded marks by up to ~2 bp (rows stamped separately; see the IV check below)
    recorded = _recorded_forwards(ROWS_B)
    fwd = dict(zip(live.expiries["expiry_code"], live.expiries["forward_usd"]))
    assert set(fwd) == set(recorded)
    for code, f in fwd.items():
        assert abs(f / recorded[code] - 1.0) < 2.5e-4, code
    assert set(live.expiries["forward_source"]) == {"parity"}

    # greeks against Black-76 written out here, and against Deribit's published deltas of the recording
    import pandas as pd
    csv = pd.read_csv(FIXTURES / "deribit_options_snapshot_20260111T091434Z.csv")
    published = dict(zip(csv["instrument_name"], csv["delta"]))
    worst_delta = worst_vega = 0.0
    off_deribit = []
    for name, r in frame.iterrows():
        t = (r["expiry"] - AT_B).total_seconds() / (365.0 * 86400.0)
        d, v = _bs_delta_vega(fwd[r["expiry_code"]], r["strike_usd"], t, r["mark_iv"], bool(r["is_call"]))
        worst_delta = max(worst_delta, abs(r["delta"] - d))
        worst_vega = max(worst_vega, abs(r["vega"] / v - 1.0))
        off_deribit.append(abs(r["delta"] - published[name]))
    assert worst_delta < 1e-9 and worst_vega < 1e-9
    assert np.median(off_deribit) < 5e-4 and max(off_deribit) < 0.01   # Deribit's come from later ticker calls
    # the IV solved back from each coin mark at the live forward reproduces the mark IV (quoted to 0.01 %)
    priced = frame["vega_coin"] > 1e-6
    off = (frame.loc[priced, "iv_mark"] - frame.loc[priced, "mark_iv"]).abs()
    assert off.max() < 5e-4 and off.median() < 5e-5

    # 30-day ATM IV (total variance linear in T) and the front RR25 from the marks, recomputed here
    atm, ts = {}, {}
    for code, g in frame.groupby("expiry_code"):
        k = np.sort(g["strike_usd"].unique())
        iv = np.array([g.loc[g["strike_usd"] == x, "mark_iv"].mean() for x in k])
        atm[code] = float(np.interp(0.0, np.log(k / fwd[code]), iv))
        ts[code] = (g["expiry"].iloc[0] - AT_B).total_seconds() / (365.0 * 86400.0)
    order = sorted(ts, key=ts.get)
    tt, aa = np.array([ts[c] for c in order]), np.array([atm[c] for c in order])
    target = 30.0 / 365.0
    j = np.searchsorted(tt, target)
    w = np.interp(target, tt[j - 1:j + 1], (aa ** 2 * tt)[j - 1:j + 1])
    assert live.atm_iv_30d_marks == pytest.approx(math.sqrt(w / target), rel=1e-12)
    front = next(c for c in order if ts[c] * 365.0 >= 2.0)
    g = frame[frame["expiry_code"] == front]

    def iv_at(sub, target_delta):
        sub = sub.sort_values("delta")
        return float(np.interp(target_delta, sub["delta"], sub["mark_iv"]))
    rr = iv_at(g[g["is_call"]], 0.25) - iv_at(g[~g["is_call"].astype(bool)], -0.25)
    assert live.front_expiry == front and live.rr25_front_marks == pytest.approx(rr, abs=1e-12)

    # the session's run record carries its counts; stream status in the document
    (run,) = db[schema.JOB_RUNS].find({"step": "stream"})
    assert run["status"] == "ok" and run["counts"]["messages"] == summary["messages"] > 0
    assert run["counts"]["updates"] == summary["updates"] >= 2 + summary["state_changes"]
    assert run["counts"]["reconnects"] == 0 and run["counts"]["snapshots"] == summary["snapshots"] == 1
    assert live.stream["connected"] is False and live.stream["reconnects"] == 0   # the last write: feed stopped
    assert summary["latency_ms"]["n"] >= 1


def test_dropped_connection_reconnects_resubscribes_and_reseeds_from_rest(embedded_db, caplog):
    async def then_drop(peer):
        await peer.send(markprice_notification("btc_usd", marks_from_book(ROWS_B, TS_B)))
        await peer.send(heartbeat())
        await peer.close(1011, "going away")

    caplog.set_level(logging.WARNING)
    with rest_server(BOOK_A, BOOK_B) as rest, WsReplayServer([then_drop, marker(INDEX_B + 1.0)]) as ws:
        summary = run_until(embedded_db, has_index(INDEX_B + 1.0), currencies=["BTC"], url=ws.url,
                            rest_url=rest.url + "/api/v2", snapshot_every="1h", ws=WS)
        books = rest.count(f"{API}/get_book_summary_by_currency")
        listings = rest.count(f"{API}/get_instruments")
    assert ws.connections == 2 and not ws.errors
    subs = ws.requests_of("public/subscribe")
    assert [n for n, _ in subs] == [1, 2] and subs[0][1]["params"] == subs[1][1]["params"]
    assert summary["reconnects"] == 1 and summary["reseeds"] == 1 and summary["connections"] == 2
    assert listings == 2 and books == 3          # seed, re-seed after the gap, final snapshot quotes
    assert any("re-seeded from REST" in r.getMessage() and "gap of" in r.getMessage() for r in caplog.records)
    live = read.live_marks(embedded_db, "BTC")
    assert live.stream["reconnects"] == 1
    # the re-seed (book B) replaced the seed's instruments: only the second recording's remain
    assert set(live.frame["instrument"]) == NAMES_B


def test_missed_heartbeat_is_detected_and_the_connection_replaced(embedded_db, caplog):
    async def silent(peer):
        return None  # subscribed, then nothing at all: no heartbeat, no data

    caplog.set_level(logging.WARNING)
    options = dict(WS, heartbeat_s=0.3, missed_heartbeat_factor=2.5)
    with rest_server(BOOK_A) as rest, WsReplayServer([silent, marker(INDEX_B + 2.0)]) as ws:
        summary = run_until(embedded_db, has_index(INDEX_B + 2.0), currencies=["BTC"], url=ws.url,
                            rest_url=rest.url + "/api/v2", snapshot_every="1h", ws=options)
    assert summary["missed_heartbeats"] == 1 and ws.connections == 2 and summary["reconnects"] == 1
    assert any("missed heartbeat" in r.getMessage() for r in caplog.records)
    assert [m["params"] for _, m in ws.requests_of("public/set_heartbeat")] == [{"interval": 0.3}] * 2


def test_malformed_messages_are_logged_and_skipped(embedded_db, caplog):
    bad_entries = marks_from_book(ROWS_B, TS_B)
    broken = bad_entries[0]["instrument_name"]
    bad_entries[0] = dict(bad_entries[0], mark_price="x")

    async def garbage(peer):
        await peer.send("this is not json {")
        await peer.send(notification("markprice.options.btc_usd", "oops"))
        await peer.send(notification("deribit_price_index.btc_usd", {"index_name": "btc_usd", "price": None,
                                                                      "timestamp": TS_B}))
        await peer.send(markprice_notification("btc_usd", bad_entries))
        await marker(INDEX_B + 3.0)(peer)

    caplog.set_level(logging.WARNING)
    with rest_server(BOOK_A) as rest, WsReplayServer([garbage]) as ws:
        summary = run_until(embedded_db, has_index(INDEX_B + 3.0), currencies=["BTC"], url=ws.url,
                            rest_url=rest.url + "/api/v2", snapshot_every="1h", ws=WS)
    assert summary["malformed"] == 3 and summary["dropped_mark_entries"] == 1 and ws.connections == 1
    skipped = [r.getMessage() for r in caplog.records if "malformed message skipped" in r.getMessage()]
    assert len(skipped) == 3 and "not JSON" in skipped[0] and "not a list" in skipped[1] and "price" in skipped[2]
    frame = read.live_marks(embedded_db, "BTC").frame.set_index("instrument")
    seed = {r["instrument_name"]: r["mark_price"] for r in BOOK_A["result"]}
    rows = {r["instrument_name"]: r["mark_price"] for r in ROWS_B}
    assert frame.at[broken, "mark_coin"] == seed[broken]          # its bad entry was dropped, the rest applied
    assert all(frame.at[n, "mark_coin"] == rows[n] for n in NAMES_A & NAMES_B if n != broken)


def test_too_many_requests_backs_off_then_reconnects(embedded_db):
    with rest_server(BOOK_A) as rest, WsReplayServer([marker(INDEX_B + 4.0)],
                                                     subscribe_errors={1: {"code": 10028,
                                                                           "message": "too_many_requests"}}) as ws:
        summary = run_until(embedded_db, has_index(INDEX_B + 4.0), currencies=["BTC"], url=ws.url,
                            rest_url=rest.url + "/api/v2", snapshot_every="1h", ws=dict(WS, backoff_max_s=1.0))
    assert summary["rate_limited"] == 1 and ws.connections == 2 and summary["connections"] == 1
    first_wait = summary["backoff_waits_s"][0]
    assert 0.4 * (1 - 0.5) <= first_wait <= 0.4        # the rate-limit backoff (jitter 0.5), not the 0.05 s one
    assert [n for n, _ in ws.requests_of("public/subscribe")] == [1, 2]   # retried on a new connection


def test_periodic_snapshot_equals_what_collect_from_file_stores_for_the_same_marks(embedded_db, tmp_path):
    from qortcli.steps.collect import run_collect_file
    from qortcli.steps.price import run_price

    db = embedded_db
    with rest_server(BOOK_A, BOOK_B) as rest, WsReplayServer([feed_b]) as ws:
        summary = run_until(db, lambda d: read.snapshot_info(d, SNAPSHOT_B) is not None, currencies=["BTC"],
                            url=ws.url, rest_url=rest.url + "/api/v2", snapshot_every="1s", ws=WS)
    assert SNAPSHOT_B in summary["snapshot_ids"]
    live = read.live_marks(db, "BTC")
    forward = dict(zip(live.expiries["expiry_code"], live.expiries["forward_usd"]))
    # the same inputs as a recorded book summary: the streamed marks, IVs, index and the live forwards, the
    # quotes of the REST book the snapshot refreshed (book B), stamped at the marks' time
    rows = [dict(r, underlying_price=forward[r["instrument_name"].split("-")[1]], estimated_delivery_price=INDEX_B,
                 creation_timestamp=TS_B) for r in ROWS_B]
    path = tmp_path / "same_marks.json"
    path.write_text(json.dumps({"jsonrpc": "2.0", "result": rows}))
    other = connect(str(tmp_path / "other"))
    try:
        collected = run_collect_file(other, path)
        assert [s["snapshot_id"] for s in collected["snapshots"]] == [SNAPSHOT_B]
        expected = {d["symbol"]: d for d in ops.snapshot_documents(other, SNAPSHOT_B)}
        stored = {d["symbol"]: d for d in ops.snapshot_documents(db, SNAPSHOT_B)}
        assert set(stored) == set(expected) == NAMES_B
        for name, doc in stored.items():
            want = expected[name]
            assert set(doc) == set(want), name
            for field in doc:
                if field == "source":
                    assert (doc[field], want[field]) == ("deribit-stream", "book_summary_file")
                else:
                    assert doc[field] == want[field], (name, field)
        for key in ("instruments", "expiries", "stored", "skipped"):
            assert read.snapshot_info(db, SNAPSHOT_B).counts[key] == read.snapshot_info(other, SNAPSHOT_B).counts[key]
    finally:
        other.close()
    # the snapshot's own collect run, like collect writes; price works on it from the stream alone
    runs = [r for r in db[schema.JOB_RUNS].find({"step": "collect"}) if r["args"].get("source") == "deribit-stream"]
    assert runs and all(r["status"] == "ok" and r["counts"]["snapshots"] == 1 for r in runs)
    priced = run_price(db, "BTC")
    assert priced["priced"] == len(NAMES_B) and priced["snapshots"][0]["snapshot_id"] == SNAPSHOT_B


def test_snapshot_without_a_quote_refresh_stores_no_stale_quotes(embedded_db):
    refused = Reply.json({"jsonrpc": "2.0", "error": {"code": 11050, "message": "bad_request"}}, status=400)
    with rest_server(BOOK_A, refused) as rest, WsReplayServer([feed_b]) as ws:
        summary = run_until(embedded_db, lambda d: (doc := live_doc(d)) is not None and doc["marks_at"] == AT_B,
                            currencies=["BTC"], url=ws.url, rest_url=rest.url + "/api/v2", snapshot_every="1h", ws=WS)
    assert summary["quote_refresh_failures"] == 1 and summary["snapshot_ids"] == [SNAPSHOT_B]
    docs = ops.snapshot_documents(embedded_db, SNAPSHOT_B)
    assert len(docs) == len(NAMES_B)
    assert all(d["bid_crypto"] is None and d["ask_crypto"] is None and d["open_interest"] is None for d in docs)
    marks = {r["instrument_name"]: r["mark_price"] for r in ROWS_B}
    assert all(d["premium_crypto"] == marks[d["symbol"]] for d in docs)


def test_sigterm_flushes_and_exits_zero(tmp_path):
    """`python -m qortcli stream` in a subprocess: SIGTERM → last live_marks, a final snapshot, exit 0."""
    db_path = tmp_path / "db"
    with rest_server(BOOK_A, BOOK_B) as rest, WsReplayServer([feed_b]) as ws:
        env = {**os.environ, "QORT_DB": str(db_path), "QORT_DERIBIT_URL": rest.url + "/api/v2",
               "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-m", "qortcli", "stream", "--currency", "BTC", "--url", ws.url,
                                 "--snapshot-every", "1h", "--json"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 90
            db = None
            while time.monotonic() < deadline and proc.poll() is None:
                if db is None and db_path.exists():
                    db = connect(str(db_path))
                doc = live_doc(db) if db is not None else None
                if doc and doc["marks_at"] == AT_B and doc["stream"]["connected"]:
                    break
                time.sleep(0.1)
            assert proc.poll() is None, proc.communicate()[1]
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["stop_reason"] == "SIGTERM received" and summary["snapshot_ids"] == [SNAPSHOT_B]
    try:
        (run,) = db[schema.JOB_RUNS].find({"step": "stream"})
        assert run["status"] == "ok" and run["counts"]["snapshots"] == 1 and run["counts"]["messages"] > 0
        assert read.snapshot_info(db, SNAPSHOT_B).counts["instruments"] == len(NAMES_B)
        doc = live_doc(db)
        assert doc["stream"]["connected"] is False and doc["marks_at"] == AT_B
    finally:
        db.close()


def test_cli_usage_errors_and_help(qort_env):
    from typer.testing import CliRunner

    from qortcli.cli import app

    cli = CliRunner()
    assert cli.invoke(app, ["stream", "--url", "http://www.deribit.com"]).exit_code == 2
    bad = cli.invoke(app, ["stream", "--snapshot-every", "5x"])
    assert bad.exit_code == 2 and "--snapshot-every" in bad.output
    text = cli.invoke(app, ["stream", "--help"]).output
    assert "qortcli stream --currency BTC --duration 10m" in text and "--snapshot-every" in text


def test_worker_in_stream_mode_runs_one_long_lived_session_and_prices_each_snapshot(embedded_db):
    from apscheduler.schedulers.background import BackgroundScheduler

    from jobs.worker import Worker, describe_schedule
    from qortcli.errors import ConfigError
    from qortcli.schedule import load_schedule

    db = embedded_db
    for bad in ({"chains": "websocket"}, {"chains": "stream", "stream": "5m"}):
        with pytest.raises(ConfigError):
            load_schedule(bad)

    def priced(d):
        docs = ops.snapshot_documents(d, SNAPSHOT_B, {"model": 1})
        return bool(docs) and all("model" in doc for doc in docs)

    with rest_server(BOOK_A, BOOK_B) as rest, WsReplayServer([feed_b]) as ws:
        schedule = load_schedule({
            "chains": "stream", "heartbeat_seconds": 0,
            "stream": {"currencies": ["BTC"], "url": ws.url, "rest_url": rest.url + "/api/v2", "snapshot_every": "1s",
                       "ws": WS},
            "jobs": {"collect_deribit": {"every": "5m"}, "price": {"after": "collect_deribit"}}})
        assert [r["job"] for r in describe_schedule(schedule)] == ["stream", "collect_deribit", "price"]
        worker = Worker(db, schedule, scheduler_cls=BackgroundScheduler)
        worker.scheduler.start()
        try:
            deadline = time.monotonic() + 90
            while not priced(db) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert priced(db), "the stream's snapshot was never priced"
        finally:
            worker.stop()  # asks the session to flush; returns once it has
    runs = list(db[schema.JOB_RUNS].find({}))
    (stream,) = [r for r in runs if r["step"] == "stream"]
    assert stream["status"] == "ok" and stream["job"] == "stream" and stream["trigger"] == "scheduler"
    assert stream["counts"]["snapshots"] >= 1
    assert not [r for r in runs if r.get("job") == "collect_deribit"]          # the REST poll never ran
    collects = [r for r in runs if r["step"] == "collect"]
    assert collects and all(r["args"]["source"] == "deribit-stream" and r["job"] == "stream" for r in collects)
    assert any(r["step"] == "price" and r["job"] == "price" and r["status"] == "ok" for r in runs)
    assert db["worker_state"].find_one({"_id": "job:stream"})["last_status"] == "ok"


def test_status_line_shows_each_currency_and_the_counters():
    from qortcli.cli.stream import status_line
    from qortcli.steps.stream import CurrencyStatus, StreamStatus

    status = StreamStatus(at=AT_B, connected=True, messages=1234, updates=456, live_writes=300, snapshots=2,
                          reconnects=1, malformed=0, latency_p50_ms=12.4, latency_p99_ms=31.0,
                          currencies=(CurrencyStatus("BTC", 626, 90656.17, 0.3975, -0.0244, 0.4),
                                      CurrencyStatus("ETH", 654, float("nan"), float("nan"), float("nan"), None)))
    text = status_line(status).plain
    assert text.startswith("● live ") and "BTC 626 opt  idx $90,656.17  ATM30 39.8%  RR25 -2.44pts  age 0.4s" in text
    assert "ETH 654 opt  idx –  ATM30 –  RR25 –  age –" in text
    assert "msgs 1,234" in text and "reconn 1" in text and "lag p50 12ms p99 31ms" in text
    assert status_line(status._replace(connected=False)).plain.startswith("○ down ")
