"""Issues 13.5, 13.6 and 14.3: every row validated before it is stored, every live fetch bounded, and garbage
vols kept as data but flagged (never priced).

The live client runs against tests/replay_server.py serving the recorded book summary, with the fault
modes derived from it (slow drip, huge body, future-dated, bad-typed and duplicated rows).
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from qortcli.errors import PartialFailure, StepError
from qortcli.sources.deribit import DeribitClient, DeribitError, records_from_book_summary
from qortcli.steps.collect import run_collect_deribit, run_collect_file
from qortcli.steps.price import run_price
from qortcli.store import ops, schema

from conftest import FIXTURES
from replay_server import (Reply, bad_typed, deribit_server, duplicate_rows, future_dated, index_price_reply,
                           instruments_reply)

BOOK = json.loads((FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json").read_text())
SMALL = dict(BOOK, result=BOOK["result"][:40])
SUMMARY_PATH = "/api/v2/public/get_book_summary_by_currency"
INSTRUMENTS_PATH = "/api/v2/public/get_instruments"
INDEX_PATH = "/api/v2/public/get_index_price"


def _client(server, **kw):
    options = dict(retries=2, backoff_factor=0.01, backoff_jitter=0.0, timeout=(2.0, 5.0), sleep=lambda s: None)
    options.update(kw)
    return DeribitClient(base_url=server.url + "/api/v2", **options)


def _no_snapshot(db, currency="BTC"):
    assert ops.latest_snapshot(db, "options", currency) is None
    # no document of any snapshot (these stores only ever saw `currency`): nothing partial left behind
    assert db[schema.OPTIONS].count_documents({}) == 0


def _expiry_by_hand(name: str) -> float:
    """POSIX seconds of an instrument's 08:00 UTC expiry, read off its name."""
    from datetime import datetime, timezone

    code = name.split("-")[1]
    months = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
    return datetime(2000 + int(code[-2:]), months.index(code[-5:-2]) + 1, int(code[:-5]), 8,
                    tzinfo=timezone.utc).timestamp()


def _by_hand(name: str) -> tuple[float, str]:
    """Strike and type read off an instrument name (independently of the parser under test)."""
    _cur, _code, strike, cp = name.split("-")
    return float(strike), {"C": "call", "P": "put"}[cp]


# ------------------------------------------------------------------------------------------ rows (13.5)

def test_strings_where_numbers_belong_skip_the_row_with_its_reason(embedded_db):
    hostile, damage = bad_typed(SMALL)
    with deribit_server(SMALL) as server:
        server.add(SUMMARY_PATH, Reply.json(hostile), query={"currency": "BTC"})
        (snap,) = run_collect_deribit(embedded_db, ["BTC"], client=_client(server))["snapshots"]
    assert snap["skipped_by_reason"] == {"bad_field": len(damage)}
    assert snap["stored"] == len(SMALL["result"]) - len(damage)
    assert len(damage) == len(snap["skipped_examples"]) == 5
    for name, field in damage.items():  # each skipped row named with the field that was not a number
        assert any(name in e and repr(field) in e and "is not a number" in e for e in snap["skipped_examples"])
    stored = {d["symbol"] for d in ops.snapshot_documents(embedded_db, snap["snapshot_id"])}
    assert not stored & set(damage)


def test_a_bad_instrument_list_fails_that_currency_not_the_next(embedded_db):
    """ETH's get_instruments sends strings for strikes (a ValueError used to escape and skip BTC)."""
    eth_instruments = instruments_reply(SMALL)
    eth_instruments["result"] = [dict(r, strike="lots") for r in eth_instruments["result"]]
    with deribit_server(SMALL) as server:
        server.add(INSTRUMENTS_PATH, Reply.json(eth_instruments), query={"currency": "ETH"})
        server.add(SUMMARY_PATH, Reply.json(SMALL), query={"currency": "ETH"})
        server.add(INDEX_PATH, Reply.json(index_price_reply(SMALL)), query={"index_name": "eth_usd"})
        with pytest.raises(PartialFailure, match=r"ETH: ETH chain .* has no usable option rows") as caught:
            run_collect_deribit(embedded_db, ["ETH", "BTC"], client=_client(server))
    assert caught.value.summary["snapshots"][0]["currency"] == "BTC"
    assert ops.latest_snapshot(embedded_db, "options", "BTC")["counts"]["stored"] == len(SMALL["result"])
    (run,) = list(embedded_db[schema.JOB_RUNS].find({"step": "collect"}))
    assert run["status"] == "failed" and run["counts"]["snapshots"] == 1 and run["counts"]["failed"] == 1


def test_instrument_terms_that_disagree_with_the_name_are_rejected(embedded_db):
    reply = instruments_reply(SMALL)
    first, second, third = (r["instrument_name"] for r in reply["result"][:3])
    reply["result"][0]["strike"] += 1000.0                              # strike not the name's
    reply["result"][1]["option_type"] = "put" if reply["result"][1]["option_type"] == "call" else "call"
    reply["result"][2]["strike"] = -5.0                                 # not positive
    with deribit_server(SMALL) as server:
        server.add(INSTRUMENTS_PATH, Reply.json(reply), query={"currency": "BTC"})
        (snap,) = run_collect_deribit(embedded_db, ["BTC"], client=_client(server))["snapshots"]
    assert snap["skipped_by_reason"] == {"bad_instrument": 3}
    stored = {d["symbol"]: d for d in ops.snapshot_documents(embedded_db, snap["snapshot_id"])}
    assert not {first, second, third} & set(stored)
    for name, doc in stored.items():  # every stored strike and type is the name's own
        assert (doc["strike"], doc["option_type"]) == _by_hand(name)


def test_marks_outside_the_option_bounds_and_bad_forwards_are_skipped():
    rows = [dict(r) for r in SMALL["result"]]
    calls = [i for i, r in enumerate(rows) if r["instrument_name"].endswith("-C")]
    puts = [i for i, r in enumerate(rows) if r["instrument_name"].endswith("-P")]
    rows[calls[0]]["mark_price"] = 1.5                                   # a coin call is worth at most 1 coin
    strike, _ = _by_hand(rows[puts[0]]["instrument_name"])
    rows[puts[0]]["mark_price"] = strike / rows[puts[0]]["underlying_price"] + 0.01   # above K/F
    rows[calls[1]]["mark_price"] = -0.001
    rows[calls[2]]["underlying_price"] = 0.0
    rows[puts[1]]["estimated_delivery_price"] = -1.0
    chain = records_from_book_summary(rows, "BTC")
    assert chain.skipped == {"mark_out_of_bounds": 3, "bad_forward": 1, "bad_index": 1}
    assert len(chain.records) == len(rows) - 5
    for r in chain.records:  # every kept mark within its bound, by hand
        bound = 1.0 if r.option_type == "call" else r.strike_usd / r.forward_usd
        assert 0 <= r.mark_coin <= bound + 1e-4 and r.forward_usd > 0 and r.index_price_usd > 0


def test_duplicate_rows_are_collapsed_and_counted_once(embedded_db):
    with deribit_server(SMALL) as server:
        server.add(SUMMARY_PATH, Reply.json(duplicate_rows(SMALL, 5)), query={"currency": "BTC"})
        (snap,) = run_collect_deribit(embedded_db, ["BTC"], client=_client(server))["snapshots"]
    assert snap["skipped_by_reason"] == {"duplicate": 5}
    assert snap["stored"] == len(SMALL["result"])
    assert embedded_db[schema.OPTIONS].count_documents({"snapshot_id": snap["snapshot_id"]}) == len(SMALL["result"])


def test_a_future_dated_snapshot_is_refused(embedded_db, tmp_path):
    with deribit_server(SMALL) as server:
        server.add(SUMMARY_PATH, Reply.json(future_dated(SMALL, 3600)), query={"currency": "BTC"})
        with pytest.raises(StepError, match=r"in the future \(allowed clock skew 300 s\): refused"):
            run_collect_deribit(embedded_db, ["BTC"], client=_client(server))
    _no_snapshot(embedded_db)
    recorded = tmp_path / "future.json"
    recorded.write_text(json.dumps(future_dated(SMALL, 86400)))
    with pytest.raises(StepError, match="in the future"):
        run_collect_file(embedded_db, recorded)
    _no_snapshot(embedded_db)
    # a clock a minute behind the exchange is within the skew (rows expired by then are skipped as expired)
    shifted = future_dated(SMALL, 60)
    recorded.write_text(json.dumps(shifted))
    stamp = shifted["result"][0]["creation_timestamp"] / 1000
    live = [r for r in SMALL["result"] if _expiry_by_hand(r["instrument_name"]) > stamp]
    assert live
    (snap,) = run_collect_file(embedded_db, recorded)["snapshots"]
    assert snap["stored"] == len(live) and snap["skipped_by_reason"] == {"expired": len(SMALL["result"]) - len(live)}


# ------------------------------------------------------------------------------------------ vols (14.3)

def _garbage_vol_book() -> tuple[dict, dict[str, str]]:
    rows = [dict(r) for r in SMALL["result"]]
    cases = {0: (0.0, "non_positive_vol"), 1: (-35.0, "non_positive_vol"), 2: (None, "missing_vol"),
             3: (float("nan"), "missing_vol"), 4: (1500.0, "vol_above_max")}    # mark_iv in percent
    flags = {}
    for i, (iv, flag) in cases.items():
        rows[i]["mark_iv"] = iv
        flags[rows[i]["instrument_name"]] = flag
    return dict(SMALL, result=rows), flags


def test_garbage_vols_are_kept_flagged_counted_and_never_priced(embedded_db, tmp_path):
    book, flags = _garbage_vol_book()
    path = tmp_path / "garbage_vols.json"
    path.write_text(json.dumps(book))  # NaN is written as the JSON token NaN, as a hostile file may hold
    (snap,) = run_collect_file(embedded_db, path)["snapshots"]
    assert snap["stored"] == len(book["result"]) and snap["skipped"] == 0      # the rows' marks are data
    assert snap["iv_flagged"] == 5
    assert snap["iv_flagged_by_reason"] == {"non_positive_vol": 2, "missing_vol": 2, "vol_above_max": 1}
    docs = {d["symbol"]: d for d in ops.snapshot_documents(embedded_db, snap["snapshot_id"])}
    for name, flag in flags.items():
        assert docs[name]["implied_volatility"] is None and docs[name]["iv_flag"] == flag
    clean = [d for n, d in docs.items() if n not in flags]
    assert all(d["iv_flag"] is None and d["implied_volatility"] > 0 for d in clean)

    summary = run_price(embedded_db)
    assert summary["snapshots"][0]["iv_flagged"] == {"non_positive_vol": 2, "missing_vol": 2, "vol_above_max": 1}
    docs = {d["symbol"]: d for d in ops.snapshot_documents(embedded_db, snap["snapshot_id"])}
    for name, flag in flags.items():
        model = docs[name]["model"]
        assert model["iv_flag"] == flag
        for key in ("model_price_coin", "model_price_usd", "delta", "gamma", "vega", "theta", "rho", "delta_coin",
                    "delta_pa", "gamma_coin", "vega_coin", "theta_coin"):
            assert model[key] is None, (name, key)
        # the vol solved from the row's own mark price is still there (it does not use the garbage vol)
        assert model["iv_mark"] is None or 0 < model["iv_mark"] < 10
    prices = np.array([d["model"]["model_price_coin"] for d in docs.values() if d["model"]["model_price_coin"] is not None])
    assert len(prices) == len(docs) - len(flags) and (prices >= 0).all()
    # frames carry the flag for every reader
    from qortcli.store import read

    frame = read.chain_at(embedded_db, snap["snapshot_id"]).frame
    assert dict(zip(frame["instrument"], frame["iv_flag"])) == {**{n: "" for n in docs if n not in flags}, **flags}


def test_pricing_flags_garbage_vols_stored_before_collect_validated_them(embedded_db):
    """A snapshot written by an older collector (negative / zero IV stored as such): price still refuses."""
    run_collect_file(embedded_db, FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json")
    snap = ops.latest_snapshot(embedded_db, "options", "BTC")
    docs = ops.snapshot_documents(embedded_db, snap["_id"])[:3]
    for doc, iv in zip(docs, (-0.4, 0.0, 12.0)):
        embedded_db[schema.OPTIONS].update_one({"_id": doc["_id"]}, {"$set": {"implied_volatility": iv},
                                                                    "$unset": {"iv_flag": ""}})
    run_price(embedded_db)
    got = {d["symbol"]: d["model"] for d in ops.snapshot_documents(embedded_db, snap["_id"])}
    assert [got[d["symbol"]]["iv_flag"] for d in docs] == ["non_positive_vol", "non_positive_vol", "vol_above_max"]
    assert all(got[d["symbol"]]["model_price_coin"] is None for d in docs)
    assert all(m["model_price_coin"] is None or m["model_price_coin"] >= 0 for m in got.values())


# ------------------------------------------------------------------------------------------ fetches (13.6)

def test_a_slow_drip_body_ends_at_the_deadline(embedded_db):
    body = json.dumps(index_price_reply(SMALL)).encode()
    with deribit_server(SMALL) as server:
        # every byte arrives well within the 5 s read timeout, the whole body would take ~ len(body) × 0.05 s
        server.add(INDEX_PATH, Reply.slow_drip(body, every=0.05, size=1), query={"index_name": "btc_usd"})
        started = time.monotonic()
        with pytest.raises(StepError, match=r"get_index_price: no complete response within the 1 s deadline"):
            run_collect_deribit(embedded_db, ["BTC"], client=_client(server, deadline=1.0))
        elapsed = time.monotonic() - started
    print(f"slow drip of {len(body)} bytes (≈{len(body) * 0.05:.0f} s) abandoned after {elapsed:.2f} s")
    assert len(body) * 0.05 > 5.0  # the drip really is slower than the deadline and the read timeout
    _no_snapshot(embedded_db)


def test_retry_after_is_capped(embedded_db, urllib3_sleeps):
    with deribit_server(SMALL) as server:
        server.add(SUMMARY_PATH, Reply(429, b"", {"Retry-After": "3600"}), Reply.json(SMALL), query={"currency": "BTC"})
        summary = run_collect_deribit(embedded_db, ["BTC"], client=_client(server, retry_after_max=2.0))
        assert server.count(SUMMARY_PATH) == 2
    assert summary["stored"] == len(SMALL["result"])
    assert urllib3_sleeps and max(urllib3_sleeps) <= 2.0 and 3600 not in urllib3_sleeps


def test_a_huge_body_is_refused_declared_or_not(embedded_db):
    with deribit_server(SMALL) as server:
        server.add(SUMMARY_PATH, Reply.huge(200 * 1024 * 1024, declare=True), query={"currency": "BTC"})
        with pytest.raises(StepError, match=r"response of 200\.0 MB is over the 1 MB cap"):
            run_collect_deribit(embedded_db, ["BTC"], client=_client(server, max_bytes=1024 * 1024))
        server.add(SUMMARY_PATH, Reply.huge(5 * 1024 * 1024, declare=False), query={"currency": "BTC"})
        with pytest.raises(StepError, match=r"response body over the 1 MB cap"):
            run_collect_deribit(embedded_db, ["BTC"], client=_client(server, max_bytes=1024 * 1024))
    _no_snapshot(embedded_db)


def test_compressed_bodies_are_decoded_and_capped_by_what_they_inflate_to(embedded_db):
    import gzip

    packed = gzip.compress(json.dumps(SMALL).encode())
    gz = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    with deribit_server(SMALL) as server:
        server.add(SUMMARY_PATH, Reply(200, packed, gz), query={"currency": "BTC"})
        assert run_collect_deribit(embedded_db, ["BTC"], client=_client(server))["stored"] == len(SMALL["result"])
        bomb = gzip.compress(b'{"jsonrpc": "2.0", "result": [' + b" " * (8 * 1024 * 1024))   # ~8 KB on the wire
        server.add(SUMMARY_PATH, Reply(200, bomb, gz), query={"currency": "BTC"})
        with pytest.raises(StepError, match=r"response body over the 1 MB cap"):
            run_collect_deribit(embedded_db, ["BTC"], client=_client(server, max_bytes=1024 * 1024))


def test_the_instrument_count_is_sanity_bounded(embedded_db):
    with deribit_server(SMALL) as server:
        with pytest.raises(StepError, match=r"get_instruments: 40 instruments, over the sanity bound of 10"):
            run_collect_deribit(embedded_db, ["BTC"], client=_client(server, max_instruments=10))
    _no_snapshot(embedded_db)


def test_defaults_come_from_the_deribit_settings():
    from qortcli.config import get_settings

    cfg = get_settings().deribit
    client = DeribitClient(base_url="http://127.0.0.1:9/api/v2")
    assert client.deadline == cfg.request_deadline_seconds and client.retry_after_max == cfg.retry_after_max_seconds
    assert client.max_bytes == cfg.max_response_mb * 1024 * 1024 and client.max_instruments == cfg.max_instruments
    assert client.timeout == (cfg.connect_timeout_seconds, cfg.read_timeout_seconds)
    assert client.retry.retry_after_max == math.ceil(cfg.retry_after_max_seconds)


def test_a_bad_index_price_is_a_clear_error(embedded_db):
    with deribit_server(SMALL) as server:
        for bad in ("lots", -1.0, 0):
            server.add(INDEX_PATH, Reply.json({"jsonrpc": "2.0", "result": {"index_price": bad}}),
                       query={"index_name": "btc_usd"})
            with pytest.raises(DeribitError, match="index_price"):
                _client(server).get_index_price("BTC")
