"""The pieces of the stream without sockets: parity forwards, message parsing, backoff, the live chain's
updates and outputs, and the live_marks read function (the viewer's chain page over it: test_viewer_frame). Real recorded chains
(tests/fixtures); references computed here."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from qortcli.quant import black76, implied_vol
from qortcli.quant.parity import parity_forwards
from qortcli.sources.deribit import chains_from_file
from qortcli.sources.deribit_ws import (IndexPrice, InstrumentState, MarkPrices, StreamConfig, backoff_delay,
                                        parse_index, parse_marks, parse_state)
from qortcli.steps.live_chain import LiveChain, live_marks_document, parsed_chain, reprice
from qortcli.store import ops, read, schema

from bsoncheck import assert_bson_roundtrip
from conftest import FIXTURES

LATE = "deribit_options_snapshot_20260111T091434Z.csv"
EARLY = "deribit_options_snapshot_20260111T040517Z.csv"


def _chain(file: str, currency: str = "BTC"):
    return next(c for c in chains_from_file(FIXTURES / file) if c.currency == currency)


def _marks_event(chain, names=None, scale: float = 1.0, ts: datetime | None = None) -> MarkPrices:
    recs = [r for r in chain.records if names is None or r.symbol in names]
    at = ts or chain.timestamp
    ms = at.timestamp() * 1000.0
    return MarkPrices(chain.currency, f"{chain.currency.lower()}_usd", at, tuple(r.symbol for r in recs),
                      np.array([r.mark_coin * scale for r in recs]), np.array([r.mark_iv for r in recs]),
                      np.full(len(recs), ms), 0.0)


# --------------------------------------------------------------------------- parity forwards

def test_parity_recovers_the_forward_of_black76_marks_exactly():
    rng = np.random.default_rng(7)
    forwards = np.array([90_650.0, 91_210.0, 95_030.0])
    t = np.array([0.02, 0.13, 0.95])
    K, c, p, g = [], [], [], []
    for e, (f, tt) in enumerate(zip(forwards, t)):
        strikes = np.arange(60_000.0, 130_000.0, 2_500.0)
        vol = 0.45 + 0.3 * np.log(strikes / f) ** 2 + rng.normal(0, 0.01, strikes.size)   # any smile
        K.append(strikes)
        c.append(black76.price_coin(f, strikes, tt, vol, True))
        p.append(black76.price_coin(f, strikes, tt, vol, False))
        g.append(np.full(strikes.size, e))
    out = parity_forwards(np.concatenate(K), np.concatenate(c), np.concatenate(p), np.concatenate(g), 4,
                          prior_forward_usd=[90_000.0, np.nan, 96_000.0, np.nan])
    assert np.allclose(out.forward_usd[:3], forwards, rtol=1e-10, atol=0)
    assert math.isnan(out.forward_usd[3]) and out.n_pairs.tolist() == [5, 5, 5, 0]


def test_parity_uses_the_pairs_nearest_the_money_and_skips_unusable_ones():
    # strike 100 gives F = 125 by parity; the far strikes give absurd values that must not count
    K = np.array([100.0, 50.0, 400.0, 110.0, 90.0])
    c = np.array([0.3, 0.9, 0.0, 0.2, np.nan])
    p = np.array([0.1, 0.0, 0.95, 0.08, 0.1])
    out = parity_forwards(K, c, p, np.zeros(5, dtype=int), 1, prior_forward_usd=[120.0], n_nearest=2)
    implied = K / (1 - (c - p))
    assert out.n_pairs.tolist() == [2]          # zero/NaN premiums dropped; the two nearest 120 kept
    assert out.forward_usd[0] == pytest.approx(np.median(implied[[0, 3]]), rel=1e-15)
    with pytest.raises(ValueError, match="group"):
        parity_forwards(K, c, p, np.full(5, 3), 2)
    with pytest.raises(ValueError, match="one length"):
        parity_forwards(K[:2], c, p, np.zeros(5, dtype=int), 1)


@pytest.mark.parametrize("file", [EARLY, LATE, "deribit_options_snapshot_20260107T153452Z.csv"])
def test_parity_forwards_of_recorded_chains_fit_their_marks(file):
    """On real chains: within 4 bp of the recorded forwards, and the IVs solved back from the coin marks on
    them match Deribit's mark IVs better than on the recorded forwards (rows are stamped separately)."""
    frame = pd.read_csv(FIXTURES / file)
    ts = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601").max()
    errors = {"parity": [], "recorded": []}
    for (cur, expiry), e in frame.groupby(["currency", "expiry_datetime"]):
        c = e[e["option_type"] == "call"].set_index("strike")
        p = e[e["option_type"] == "put"].set_index("strike")
        k = c.index.intersection(p.index)
        recorded = float(e["underlying"].median())
        out = parity_forwards(k.to_numpy(float), c.loc[k, "mark_price"], p.loc[k, "mark_price"], np.zeros(k.size, int),
                              1, prior_forward_usd=[recorded])
        f = float(out.forward_usd[0])
        assert abs(f / recorded - 1) < 4e-4, (cur, expiry)
        t = (pd.Timestamp(expiry) - ts).total_seconds() / (365 * 86400)
        if t < 1 / 365:
            continue
        K, mark, iv = (e[col].to_numpy(float) for col in ("strike", "mark_price", "implied_volatility"))
        call = (e["option_type"] == "call").to_numpy()
        informative = black76.greeks(f, K, t, iv, call, days_per_year=365.0)["vega_coin"] > 1e-6
        for name, F in (("parity", f), ("recorded", e["underlying"].to_numpy(float))):
            solved = implied_vol.implied_vol_coin(mark, F, K, t, call).sigma
            errors[name].append(float(np.nanmedian(np.abs(solved - iv)[informative])))
    assert max(errors["parity"]) < 1e-3 and np.median(errors["parity"]) < 5e-5
    assert np.median(errors["parity"]) <= np.median(errors["recorded"])


# --------------------------------------------------------------------------- parsing and backoff

def test_mark_parsing_keeps_good_entries_and_names_the_bad_message():
    good = [{"timestamp": 1768122874403, "mark_price": 0.0333, "iv": 0.9, "instrument_name": "BTC-2JUN21-37000-P"},
            {"timestamp": 1768122874405, "mark_price": 0.117, "iv": 0.9, "instrument_name": "BTC-4JUN21-40500-P"}]
    event, dropped, why = parse_marks("markprice.options.btc_usd", good, 1.0)
    assert (event.currency, event.index_name, dropped, why) == ("BTC", "btc_usd", 0, "")
    assert event.mark_coin.tolist() == [0.0333, 0.117] and event.mark_iv.tolist() == [0.9, 0.9]
    assert event.timestamp == datetime(2026, 1, 11, 9, 14, 34, 405000, tzinfo=timezone.utc)
    mixed = good + [{"mark_price": 0.1, "iv": 0.5}, {"instrument_name": "BTC-4JUN21-1-P", "mark_price": None,
                                                     "iv": 0.5, "timestamp": 1}, "junk",
                    {"instrument_name": "BTC-4JUN21-2-P", "mark_price": 0.2, "iv": None, "timestamp": 1}]
    event, dropped, _ = parse_marks("markprice.options.btc_usd", mixed, 1.0)
    assert dropped == 3 and event.instruments[-1] == "BTC-4JUN21-2-P" and math.isnan(event.mark_iv[-1])
    assert parse_marks("markprice.options.btc_usd", {"a": 1}, 1.0)[0] is None
    assert parse_marks("markprice.options.btc_usd", [{"x": 1}], 1.0)[2].startswith("none of its 1")
    idx, _ = parse_index("deribit_price_index.eth_usd", {"index_name": "eth_usd", "price": 3100.1, "timestamp": 1}, 0.0)
    assert (idx.currency, idx.price_usd) == ("ETH", 3100.1)
    assert parse_index("deribit_price_index.eth_usd", {"price": -1, "timestamp": 1}, 0.0)[0] is None
    st, _ = parse_state("instrument.state.option.BTC", {"timestamp": 1, "state": "Terminated",
                                                        "instrument_name": "BTC-11JAN26-90000-C"}, 0.0)
    assert (st.currency, st.state) == ("BTC", "terminated")
    assert parse_state("instrument.state.option.BTC", {"state": "created"}, 0.0)[0] is None


def test_backoff_grows_exponentially_with_jitter_under_the_cap():
    rng = random.Random(1)
    for attempt in range(1, 12):
        base = min(60.0, 1.0 * 2 ** (attempt - 1))
        draws = [backoff_delay(attempt, 1.0, 60.0, 0.5, rng) for _ in range(200)]
        assert min(draws) >= 0.5 * base and max(draws) <= base
        assert max(draws) - min(draws) > 0.3 * base   # jitter spreads the retries
    assert backoff_delay(3, 1.0, 60.0, 0.0, rng) == 4.0


def test_stream_config_validates_and_lists_the_channels():
    cfg = StreamConfig(currencies=("BTC", "ETH"))
    assert cfg.channels == ("markprice.options.btc_usd", "deribit_price_index.btc_usd", "instrument.state.option.BTC",
                            "markprice.options.eth_usd", "deribit_price_index.eth_usd", "instrument.state.option.ETH")
    assert cfg.url == "wss://www.deribit.com/ws/api/v2"
    for bad in ({"url": "https://www.deribit.com"}, {"heartbeat_s": 0}, {"backoff_jitter": 1.0}, {"currencies": ()}):
        with pytest.raises(ValueError):
            StreamConfig(**bad)


# --------------------------------------------------------------------------- the live chain

def test_live_chain_applies_marks_states_and_books():
    early, late = _chain(EARLY), _chain(LATE)
    live = LiveChain.from_parsed(early)
    assert len(live.names) == len(early.records) and set(live.forward_source) == {"seed"}
    seed_forwards = {e: f for e, f in zip(live.expiries_s.tolist(), live.forward_usd.tolist())}
    # marks of the later chain: known rows updated, new listings added from their names, ETH names ignored
    eth = _chain(LATE, "ETH")
    event = _marks_event(late)
    mixed = event._replace(instruments=event.instruments + (eth.records[0].symbol, "garbage"),
                           mark_coin=np.append(event.mark_coin, [0.1, 0.1]), mark_iv=np.append(event.mark_iv, [0.5, 0.5]),
                           mark_time_ms=np.append(event.mark_time_ms, [1.0, 1.0]))
    assert live.apply_marks(mixed) == len(late.records) and live.ignored == 2
    new = {r.symbol for r in late.records} - {r.symbol for r in early.records}
    assert new and new <= set(live.names)
    row = live.rows[late.records[0].symbol]
    assert live.mark_coin[row] == late.records[0].mark_coin and live.marks_at == late.timestamp
    moved = [e for e, f in zip(live.expiries_s.tolist(), live.forward_usd.tolist()) if f != seed_forwards.get(e)]
    assert moved and {live.forward_source[i] for i in range(len(live.forward_source))} >= {"parity"}
    # states: settled before its expiry keeps the option, after it (or terminated/closed) removes it
    name = late.records[0].symbol
    expiry = late.records[0].expiry
    keep = InstrumentState("BTC", name, "settled", expiry - timedelta(hours=1), 0.0)
    assert live.apply_state(keep) == "" and name in live.rows
    assert live.apply_state(keep._replace(timestamp=expiry)) == "removed" and name not in live.rows
    assert live.apply_state(keep._replace(state="created")) == "added" and math.isnan(live.mark_coin[live.rows[name]])
    assert live.apply_state(keep._replace(state="terminated")) == "removed"
    assert live.apply_state(keep._replace(instrument="BTC-1JAN30-1-C", state="closed")) == ""
    # a REST book: quotes replaced, a missing instrument added with the book's mark
    live.remove([late.records[1].symbol])
    rows = [{"instrument_name": r.symbol, "mark_price": r.mark_coin, "mark_iv": (r.mark_iv or 0) * 100,
             "underlying_price": r.forward_usd, "underlying_index": r.forward_index, "bid_price": r.bid_coin,
             "ask_price": r.ask_coin, "mid_price": r.mid_coin, "open_interest": r.open_interest, "volume": r.volume,
             "volume_usd": r.volume_usd, "estimated_delivery_price": r.index_price_usd, "interest_rate": 0.0,
             "creation_timestamp": int(late.timestamp.timestamp() * 1000)} for r in late.records]
    assert live.merge_book(rows, late.timestamp) == len(late.records)
    back = live.rows[late.records[1].symbol]
    assert live.mark_coin[back] == late.records[1].mark_coin
    assert live.quotes["ask_coin"][back] == late.records[1].ask_coin
    live.clear_quotes()
    assert np.isnan(live.quotes["bid_coin"]).all() and live.quotes_at is None


def test_reprice_and_outputs_of_a_recorded_chain():
    chain = _chain(LATE, "ETH")
    live = LiveChain.from_parsed(chain)
    live.apply_marks(_marks_event(chain))
    live.add(live._terms(["ETH-27MAR26-9999-C"]))          # listed, no mark yet
    inputs = live.freeze()
    view = reprice(inputs, "ACT/365")
    n = len(chain.records)
    assert len(view.rows["instrument"]) == n and view.n_without_mark == 1
    order = list(zip(view.rows["expiry_i"], view.rows["strike_usd"], ~view.rows["is_call"]))
    assert order == sorted(order)
    # greeks are black76's on the expiry's forward with the mark IV, time from the marks' time
    t = view.rows["t_years"]
    g = black76.greeks(view.rows["forward_usd"], view.rows["strike_usd"], t, view.rows["mark_iv"], view.rows["is_call"], days_per_year=365.0)
    for name in ("delta", "gamma", "vega", "theta", "delta_coin", "gamma_coin"):
        assert np.allclose(view.rows[name], g[name], rtol=1e-12, atol=0), name
    expiry = np.array([live.expiries_s[live.expiry_row[live.rows[s]]] for s in view.rows["instrument"]])
    assert np.allclose(t, (expiry - chain.timestamp.timestamp()) / (365 * 86400.0), rtol=1e-12)
    doc = live_marks_document(view, datetime(2026, 12, 1, tzinfo=timezone.utc), {"connected": True})
    assert doc["currency"] == "ETH" and doc["n_instruments"] == n and len(doc["instruments"]["instrument"]) == n
    assert doc["n_expiries"] == len(doc["expiries"]) == len({r.expiry for r in chain.records})
    assert_bson_roundtrip(ops.to_plain(doc), "live_marks")      # what upsert_many writes survives BSON
    # the snapshot form: every marked option, the live forward, spot and quotes, the marks' time
    parsed = parsed_chain(inputs)
    assert len(parsed.records) == n and parsed.skipped == {"missing_mark": 1}
    assert parsed.timestamp == chain.timestamp and parsed.source == "deribit-stream"
    by = {r.symbol: r for r in chain.records}
    for r in parsed.records:
        src = by[r.symbol]
        assert (r.mark_coin, r.mark_iv, r.bid_coin, r.ask_coin, r.open_interest) == (
            src.mark_coin, src.mark_iv, src.bid_coin, src.ask_coin, src.open_interest)
        assert r.forward_usd == inputs.forward_usd[live.expiry_row[live.rows[r.symbol]]]
        assert r.index_price_usd == inputs.index_usd and r.greeks is None


def test_live_marks_read_gives_the_streams_marks_as_one_typed_frame(embedded_db):
    assert read.live_marks(embedded_db, "BTC") is None
    chain = _chain(LATE)
    live = LiveChain.from_parsed(chain)
    live.apply_index(IndexPrice("BTC", "btc_usd", 90_700.0, chain.timestamp, 0.0))
    view = reprice(live.freeze(), "ACT/365")
    written = chain.timestamp + timedelta(seconds=2)
    ops.upsert_many(embedded_db, schema.LIVE_MARKS, [live_marks_document(view, written, {"connected": True,
                                                                                     "reconnects": 3})])
    got = read.live_marks(embedded_db, "btc")
    assert got.updated_at == written and got.index_usd == 90_700.0 and got.stream["reconnects"] == 3
    frame = got.frame
    assert len(frame) == len(chain.records) and set(frame["option_type"]) == {"call", "put"}
    assert (frame["expiry_code"].map(lambda c: c in set(got.expiries["expiry_code"]))).all()
    assert np.allclose(frame["mark_usd"], frame["mark_coin"] * 90_700.0, rtol=1e-12)
    assert (frame["mark_time"] == pd.Timestamp(chain.timestamp)).all()
