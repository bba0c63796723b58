"""Positions from a recorded-shape Deribit `private/get_positions` response and from a positions CSV
(`qortcli.sources.positions`): units, signs, netting and one clear line per malformed row."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from chain_fixtures import FIXTURES
from qortcli.sources.positions import (FUTURE, OPTION, SPOT, PositionsError, combine, instrument_terms,
                                       load_positions, make_position, positions_from_csv,
                                       positions_from_get_positions)

GET_POSITIONS = FIXTURES / "deribit_get_positions_20260111T211857Z.json"
CSV = FIXTURES / "positions_20260105.csv"


def _payload() -> dict:
    return json.loads(GET_POSITIONS.read_text())


def test_recorded_get_positions_envelope_and_bare_list():
    payload = _payload()
    parsed = load_positions(GET_POSITIONS)
    assert parsed.format == "deribit_get_positions" and parsed.source == GET_POSITIONS.name and len(parsed.sha256) == 64
    assert parsed.skipped_flat == (f"{GET_POSITIONS.name} result[7] (BTC-23JAN26)",)
    bare, _ = positions_from_get_positions(payload["result"], "bare")
    assert [p.to_doc() for p in bare] == [p.to_doc() for p in parsed.positions]
    by_name = {p.instrument: p for p in parsed.positions}
    rows = {r["instrument_name"]: r for r in payload["result"]}
    call = by_name["BTC-27MAR26-100000-C"]
    assert (call.kind, call.currency, call.size_coin, call.entry_price_coin, call.size_usd) == (OPTION, "BTC", 2.0, 0.055, None)
    assert call.expiry == datetime(2026, 3, 27, 8, tzinfo=timezone.utc) and call.strike_usd == 100000.0
    assert call.option_type == "call"
    put = by_name["BTC-30JAN26-85000-P"]
    assert put.size_coin == -3.0 and rows[put.instrument]["size"] == -3.0 and rows[put.instrument]["direction"] == "sell"
    future = by_name["BTC-27MAR26"]
    row = rows["BTC-27MAR26"]
    # futures: size in USD contracts, average_price in USD; size_currency is the same position in coin at the mark
    assert (future.kind, future.size_usd, future.entry_price_usd, future.size_coin) == (FUTURE, -20000.0, row["average_price"], None)
    assert row["size_currency"] == pytest.approx(row["size"] / row["mark_price"])
    perp = by_name["BTC-PERPETUAL"]
    assert perp.perpetual and perp.expiry is None and perp.size_usd == 10000.0
    assert by_name["ETH-27MAR26-3500-C"].currency == "ETH"


def test_positions_csv_sizes_in_coin_and_a_coin_holding():
    parsed = load_positions(CSV)
    assert parsed.format == "csv" and parsed.skipped_flat == ()
    by_name = {p.instrument: p for p in parsed.positions}
    future = by_name["BTC-27MAR26"]
    # the CSV sizes a future in coin at its entry price: −0.213018 BTC at 93,888.9 USD → USD contracts
    assert future.size_usd == pytest.approx(-0.213018 * 93888.9) and future.entry_price_usd == 93888.9
    held = by_name["BTC"]
    assert (held.kind, held.size_coin, held.entry_price_usd, held.size_unit) == (SPOT, 1.5, None, "coin")
    assert by_name["BTC-30JAN26-85000-P"].size_coin == -3.0
    text = "BTC,1.5\n# a comment\n\nBTC-27MAR26-100000-C,1,0.05\nBTC-27MAR26-100000-C,1,0.07\nETH,2,3100\n"
    positions, flat = positions_from_csv(text, "no_header.csv")
    assert flat == [] and len(positions) == 4 and positions[-1].entry_price_usd == 3100.0


@pytest.mark.parametrize("text, message", [
    ("instrument,size,avg_price_coin\nBTC-27MAR26-100000-C,two,0.05\n", "bad.csv line 2 (BTC-27MAR26-100000-C): size 'two' is not a number"),
    ("instrument,size,avg_price_coin\nBTC-27MAR26-100000-C,1\n", "bad.csv line 2 (BTC-27MAR26-100000-C): BTC-27MAR26-100000-C: an option needs its entry premium"),
    ("instrument,size,avg_price_coin\nBTC-27MAR26,1\n", "bad.csv line 2 (BTC-27MAR26): BTC-27MAR26: a future needs its entry price in USD"),
    ("instrument,qty,avg_price_coin\nBTC,1\n", "bad.csv line 1: header must be instrument,size,avg_price_coin"),
    ("BTC,1.5\nBTC-27MAR26-100000-X,1,0.05\n", "bad.csv line 2 (BTC-27MAR26-100000-X): malformed option instrument name 'BTC-27MAR26-100000-X'"),
    ("BTC,1.5\nBTC_USDC-PERPETUAL,1,90000\n", "bad.csv line 2 (BTC_USDC-PERPETUAL): BTC_USDC-PERPETUAL: linear"),
    ("BTC,1.5\nBTC-31FEB26,1,90000\n", "bad.csv line 2 (BTC-31FEB26): malformed future name 'BTC-31FEB26'"),
    ("BTC,1.5,2,3\n", "bad.csv line 1: expected instrument,size,avg_price_coin, got 4 fields"),
    ("BTC,nan\n", "bad.csv line 1 (BTC): size must be finite"),
])
def test_malformed_csv_rows_name_the_file_and_line(text, message):
    with pytest.raises(PositionsError) as err:
        positions_from_csv(text, "bad.csv")
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("change, message", [
    ({"size": "3"}, "size must be a number"),
    ({"direction": "long"}, "direction must be buy, sell or zero"),
    ({"direction": "buy", "size": -3.0}, "size -3 is negative on a 'buy' position"),
    ({"kind": "future"}, "kind 'future' does not fit the instrument name (a option)"),
    ({"kind": "option_combo"}, "option_combo positions are not supported"),
    ({"average_price": None}, "average_price must be a number"),
    ({"instrument_name": None}, "missing 'instrument_name'"),
])
def test_malformed_get_positions_rows_name_the_row(change, message):
    payload = _payload()
    payload["result"][1].update(change)
    with pytest.raises(PositionsError) as err:
        positions_from_get_positions(payload, "positions.json")
    assert str(err.value).startswith("positions.json result[1]") and message in str(err.value), str(err.value)


def test_bad_files_and_envelopes(tmp_path):
    for body, message in (('{"jsonrpc": "2.0", "error": {"code": 13009, "message": "unauthorized"}}', "JSON-RPC error (13009 unauthorized)"),
                          ('{"jsonrpc": "2.0", "id": 1}', "envelope has no 'result'"),
                          ('{"result": {"a": 1}}', "expected a list of positions"),
                          ('{"result": [1', "malformed JSON")):
        path = tmp_path / "p.json"
        path.write_text(body)
        with pytest.raises(PositionsError, match="p.json"):
            load_positions(path)
        with pytest.raises(PositionsError) as err:
            load_positions(path)
        assert message in str(err.value)
    with pytest.raises(PositionsError, match="positions file not found"):
        load_positions(tmp_path / "missing.csv")


def test_instrument_terms():
    assert instrument_terms("BTC").kind == SPOT
    perp = instrument_terms("ETH-PERPETUAL")
    assert (perp.kind, perp.currency, perp.perpetual, perp.expiry) == (FUTURE, "ETH", True, None)
    assert instrument_terms("BTC-3APR26").expiry == datetime(2026, 4, 3, 8, tzinfo=timezone.utc)
    put = instrument_terms("BTC-27MAR26-85000-P")
    assert (put.kind, put.strike_usd, put.option_type) == (OPTION, 85000.0, "put")


def test_combine_averages_entries_realises_reductions_and_flips():
    a = make_position("BTC-27MAR26-100000-C", 2.0, 0.05)
    more, realised = combine(a, make_position("BTC-27MAR26-100000-C", 1.0, 0.08))
    assert more.size_coin == 3.0 and more.entry_price_coin == pytest.approx((2 * 0.05 + 0.08) / 3) and realised == 0
    less, realised = combine(more, make_position("BTC-27MAR26-100000-C", -1.0, 0.09))
    assert less.size_coin == 2.0 and less.entry_price_coin == more.entry_price_coin
    assert realised == pytest.approx(1.0 * (0.09 - more.entry_price_coin))
    flipped, realised = combine(less, make_position("BTC-27MAR26-100000-C", -5.0, 0.04))
    assert flipped.size_coin == -3.0 and flipped.entry_price_coin == 0.04
    assert realised == pytest.approx(2.0 * (0.04 - less.entry_price_coin))
    gone, _ = combine(flipped, make_position("BTC-27MAR26-100000-C", 3.0, 0.04))
    assert gone is None
    # inverse futures average harmonically: N/F_avg = Σ N_i/F_i (the coin the USD contracts were worth)
    f1 = make_position("BTC-27MAR26", -10_000.0, 90_000.0)
    f2, _ = combine(f1, make_position("BTC-27MAR26", -30_000.0, 100_000.0))
    assert f2.size_usd == -40_000.0 and f2.entry_price_usd == pytest.approx(40_000 / (10_000 / 90_000 + 30_000 / 100_000))
    closed, realised = combine(f2, make_position("BTC-27MAR26", 40_000.0, 95_000.0))
    assert closed is None and realised == pytest.approx(-40_000 * (1 / f2.entry_price_usd - 1 / 95_000))
