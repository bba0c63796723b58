"""Issue 14, the chain board: `qortcli chain` on a recorded whole chain (2026-01-11 21:18 UTC, BTC + ETH).

Oracles: the recorded CSV's own quotes, marks, open interest and Deribit's published deltas; Black-76
round trips for the implied vols solved from the bid/ask quotes.
"""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qortcli.cli import app
from qortcli.quant.black76 import price_coin

from conftest import FIXTURES, copied_store

CHAIN = FIXTURES / "deribit_options_snapshot_20260111T211857Z.csv"
runner = CliRunner()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from qortcli.steps.collect import run_collect_file
    from qortcli.store import connect

    path = tmp_path_factory.mktemp("chain") / "db"
    db = connect(str(path))
    run_collect_file(db, CHAIN)
    db.close()
    return path


@pytest.fixture
def store(recorded, tmp_path):
    return copied_store(recorded, tmp_path)


@pytest.fixture(scope="module")
def raw():
    frame = pd.read_csv(CHAIN)
    frame["expiry"] = pd.to_datetime(frame["expiry_datetime"], utc=True)
    return frame.set_index("instrument_name")


def board_json(store, *args) -> dict:
    result = runner.invoke(app, ["--db", str(store), "chain", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_strike_of_an_expiry_matches_the_recording(store, raw):
    board = board_json(store, "--currency", "BTC", "--expiry", "27MAR26", "--strikes", "all")
    listed = raw[(raw["currency"] == "BTC") & (raw.index.str.contains("-27MAR26-"))]
    assert board["strikes_listed"] == board["strikes_shown"] == listed["strike"].nunique()
    assert [r["strike_usd"] for r in board["rows"]] == sorted(listed["strike"].unique())
    seen = set()
    for row in board["rows"]:
        for side, kind in (("call", "call"), ("put", "put")):
            name = row[f"{side}_instrument"]
            if not name:
                continue
            seen.add(name)
            rec = raw.loc[name]
            assert rec["option_type"] == kind and rec["strike"] == row["strike_usd"]
            for quote, column in (("bid", "bid_price"), ("ask", "ask_price"), ("mark", "mark_price")):
                expected = rec[column] if rec[column] > 0 else None       # 0 = no quote on Deribit
                assert row[f"{side}_{quote}_coin"] == expected, (name, quote)
                if expected is not None:   # spot-USD = coin x the row's index
                    assert row[f"{side}_{quote}_spot_usd"] == pytest.approx(expected * rec["index_price"], rel=1e-12)
            assert row[f"{side}_iv_mark"] == pytest.approx(rec["implied_volatility"])
            assert row[f"{side}_open_interest_coin"] == rec["open_interest"]
            assert row[f"{side}_volume_coin"] == rec["volume"]
            assert row[f"{side}_delta"] == pytest.approx(rec["delta"], abs=0.01)   # Deribit's published delta
            for quote in ("bid", "ask"):   # the solved IV reprices the quote
                iv, premium = row[f"{side}_iv_{quote}"], row[f"{side}_{quote}_coin"]
                if iv is not None:
                    again = price_coin(rec["futures_price"], rec["strike"], board["t_years"], iv, kind == "call")
                    assert float(again) == pytest.approx(premium, rel=1e-6, abs=1e-9), (name, quote)
        assert row["itm_call"] == (row["strike_usd"] < board["forward_usd"])
    assert seen == set(listed.index)


def test_deltas_track_deribit_across_both_chains(store, raw):
    errors = []
    for cur in ("BTC", "ETH"):
        for code in board_json(store, "-c", cur)["expiries"]:
            for row in board_json(store, "-c", cur, "-e", code, "--strikes", "all")["rows"]:
                for side in ("call", "put"):
                    if row[f"{side}_instrument"] and row[f"{side}_delta"] is not None:
                        errors.append(abs(row[f"{side}_delta"] - raw.loc[row[f"{side}_instrument"], "delta"]))
    errors = np.array(errors)
    assert len(errors) == len(raw)
    assert np.median(errors) < 1e-3 and np.percentile(errors, 99) < 0.01


def test_default_expiry_window_filters_and_sorts(store, raw):
    board = board_json(store)
    assert board["currency"] == "BTC"
    days = {c: (pd.Timestamp(raw[raw.index.str.contains(f"-{c}-")]["expiry"].iloc[0]) - pd.Timestamp(board["timestamp"]))
            .total_seconds() / 86400 for c in board["expiries"]}
    assert board["expiry"] == min(days, key=lambda c: abs(days[c] - 30))
    every = board_json(store, "--strikes", "all")["rows"]
    nearest = sorted(every, key=lambda r: abs(r["strike_usd"] - board["forward_usd"]))[:10]
    assert [r["strike_usd"] for r in board["rows"]] == sorted(r["strike_usd"] for r in nearest)
    assert len(board_json(store, "--strikes", "3")["rows"]) == 3

    band = board_json(store, "--strikes", "all", "--delta", "0.25:0.75")["rows"]
    inside = [r for r in every if any(r[f"{s}_delta"] is not None and 0.25 <= abs(r[f"{s}_delta"]) <= 0.75
                                      for s in ("call", "put"))]
    assert band and [r["strike_usd"] for r in band] == [r["strike_usd"] for r in inside] and len(band) < len(every)

    def total(r, field):
        return (r[f"call_{field}"] or 0) + (r[f"put_{field}"] or 0)

    liquid = board_json(store, "--strikes", "all", "--min-oi", "500")["rows"]
    assert liquid and all(total(r, "open_interest_coin") >= 500 for r in liquid)
    assert len(liquid) == sum(total(r, "open_interest_coin") >= 500 for r in every)
    by_oi = [total(r, "open_interest_coin") for r in board_json(store, "--strikes", "all", "--sort", "oi")["rows"]]
    assert by_oi == sorted(by_oi, reverse=True) and len(by_oi) == len(every)
    by_volume = [total(r, "volume_coin") for r in board_json(store, "--strikes", "all", "--sort", "volume")["rows"]]
    assert by_volume == sorted(by_volume, reverse=True)


def test_the_board_fits_100_columns_and_wider_shows_more(store, raw):
    narrow = runner.invoke(app, ["--db", str(store), "chain", "-e", "27MAR26"], env={"COLUMNS": "100"})
    wide = runner.invoke(app, ["--db", str(store), "chain", "-e", "27MAR26"], env={"COLUMNS": "240"})
    for result, width in ((narrow, 100), (wide, 240)):
        assert result.exit_code == 0, result.output
        assert max(len(line) for line in result.stdout.splitlines()) <= width
        assert not re.search(r"[\w.,]…", result.stdout)           # no cell cut short
    shown = set(re.findall(r"│\s+(\d{2,3},\d{3})\s+│", narrow.stdout))
    expected = {f"{k:,.0f}" for k in board_json(store, "-e", "27MAR26")["rows"] for k in [k["strike_usd"]]}
    assert shown == expected                                      # every strike shown whole
    assert "not shown at this width" in narrow.stdout and "not shown at this width" not in wide.stdout
    assert wide.stdout.count("USD") > narrow.stdout.count("USD")  # the spot-USD premiums come back


def test_csv_carries_every_row_at_full_precision(store, raw, tmp_path):
    out = tmp_path / "board.csv"
    result = runner.invoke(app, ["--db", str(store), "chain", "-c", "ETH", "--strikes", "all", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    eth = raw[raw["currency"] == "ETH"]
    board = board_json(store, "-c", "ETH")
    assert len(rows) == eth[eth.index.str.contains(f"-{board['expiry']}-")]["strike"].nunique()
    for row in rows:
        if row["call_instrument"]:
            assert float(row["call_mark_coin"]) == raw.loc[row["call_instrument"], "mark_price"]
    piped = runner.invoke(app, ["--db", str(store), "chain", "--csv", "-"])
    assert len(list(csv.DictReader(io.StringIO(piped.stdout)))) == 10


@pytest.mark.parametrize("args, fragment", [
    (["--expiry", "99ZZZ26"], "not a Deribit expiry code"),
    (["--expiry", "31FEB26"], "not a calendar date"),
    (["--expiry", "26DEC25"], "expired on 2025-12-26"),
    (["--expiry", "28MAR26"], "no expiry 28MAR26"),
    (["--currency", "DOGE"], "no DOGE option snapshot"),
    (["--strikes", "0"], "at least 1"),
    (["--strikes", "ten"], "not a count of strikes"),
    (["--delta", "0.9:0.1"], "0 <= LO <= HI <= 1"),
    (["--delta", "half"], "not a range"),
    (["--sort", "gamma"], "use one of strike, oi, volume, iv"),
    (["--min-oi", "-5"], "--min-oi"),
])
def test_bad_input_is_a_usage_error(store, args, fragment):
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in store.rglob("*.sqlite"))
    result = runner.invoke(app, ["--db", str(store), "chain", *args])
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in store.rglob("*.sqlite")) == before


def test_a_missing_store_is_an_error_and_is_not_created(tmp_path):
    result = runner.invoke(app, ["--db", str(tmp_path / "typo"), "chain"])
    assert result.exit_code != 0 and not (tmp_path / "typo").exists()
