"""`--csv FILE` / `--csv -` and `-v` after the subcommand on market, risk, book, prune, vol, stream, alerts, check
and backup, on real stores: the recorded 2026-01-10/11 BTC + ETH chains (collected, priced, surfaced, a book
imported from the recorded positions), the vol store of tests/vol_store.py, the websocket replay of test_stream.

Each CSV is read back and checked against an independent count (the store, the input files, the settings)
and, cell by cell, against the --json output of the same invocation (`--csv FILE --json`: full precision, the
CSV's floats must equal the JSON's exactly).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qortcli.cli import app
from qortcli.cli.alerts import ALERT_COLUMNS, TARGET_COLUMNS
from qortcli.cli.book import POSITION_COLUMNS
from qortcli.cli.check import FINDING_COLUMNS
from qortcli.cli.risk import GRID_COLUMNS
from qortcli.cli.vol import FORECAST_COLUMNS, MODELS
from qortcli.store import connect, ensure_schema, ops, read, schema
from qortcli.timeutils import utcnow

from conftest import FIXTURES, copied_store

CHAINS = ("deribit_options_snapshot_20260110T211832Z.csv",     # 24 h before the latest: the OI change
          "deribit_options_snapshot_20260111T091434Z.csv",     # a second chain on 11 January: prune thins it
          "deribit_options_snapshot_20260111T211857Z.csv")
POSITIONS = FIXTURES / "deribit_get_positions_20260111T211857Z.json"
POSITIONS_CSV = FIXTURES / "positions_20260105.csv"
runner = CliRunner()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    """The three recorded chains collected, the latest priced and surfaced, the recorded positions as book main."""
    from qortcli.steps.book import run_book_import
    from qortcli.steps.collect import run_collect_file
    from qortcli.steps.price import run_price
    from qortcli.steps.surface import run_surface

    path = tmp_path_factory.mktemp("clicsv") / "db"
    db = connect(str(path))
    ensure_schema(db)
    for name in CHAINS:
        run_collect_file(db, FIXTURES / name)
    run_price(db)
    run_surface(db)
    run_book_import(db, POSITIONS, book="main")
    db.close()
    return path


@pytest.fixture
def store(seeded, tmp_path) -> Path:
    return copied_store(seeded, tmp_path)


def invoke(store: Path | None, *args: str, code: int = 0, env: dict | None = None):
    result = runner.invoke(app, [*(["--db", str(store)] if store else []), *args], env=env)
    assert result.exit_code == code, (args, result.output)
    return result


def with_json(store: Path | None, tmp_path: Path, *args: str, code: int = 0, env: dict | None = None):
    """(CSV rows, header, JSON output) of one invocation with --csv FILE --json."""
    out = tmp_path / "out.csv"
    result = invoke(store, *args, "--csv", str(out), "--json", code=code, env=env)
    with open(out, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    return rows, tuple(reader.fieldnames or ()), json.loads(result.stdout)


def on_stdout(store: Path | None, *args: str, code: int = 0, env: dict | None = None) -> list[dict]:
    """`--csv -` with -v after the subcommand: CSV on stdout (nothing else), the exit code as asked."""
    result = invoke(store, *args, "--csv", "-", "-v", code=code, env=env)
    return list(csv.DictReader(io.StringIO(result.stdout)))


def number(cell: str) -> float | None:
    return None if cell == "" else float(cell)


# ------------------------------------------------------------------------------------------ market

def test_market_csv_is_the_by_expiry_table_with_its_oi_change(store, tmp_path):
    rows, header, view = with_json(store, tmp_path, "market")
    assert header[:5] == ("currency", "snapshot_id", "spot_usd", "expiry_code", "expiry")
    assert {"oi_calls_coin", "pcr_oi", "max_pain_coin_payoff_usd", "gex_usd_per_pct_marks", "atm_iv_marks",
            "implied_move_fraction_marks", "oi_change_coin", "earlier_snapshot_id"} <= set(header)
    db = connect(str(store), read_only=True)
    try:                       # the store's own count: unexpired expiries of each currency's latest snapshot
        want = Counter()
        for cur in ("BTC", "ETH"):
            latest = read.snapshots(db, cur)[-1]
            docs = ops.snapshot_documents(db, latest.snapshot_id)
            want[cur] = len({d["expiry"] for d in docs if d["expiry"] > latest.timestamp})
    finally:
        db.close()
    assert Counter(r["currency"] for r in rows) == want
    shown = {(c["currency"], e["expiry_code"]): (e, c) for c in view["currencies"] for e in c["expiries"]}
    assert len(shown) == len(rows)
    for row in rows:
        expiry, cur = shown[(row["currency"], row["expiry_code"])]
        assert number(row["gex_usd_per_pct_marks"]) == expiry["gex_usd_per_pct_marks"]      # full precision
        assert number(row["atm_iv_marks"]) == expiry["atm_iv_marks"]                        # a fraction
        moved = {e["expiry_code"]: e for e in cur["change"]["by_expiry"]}[row["expiry_code"]]
        assert number(row["oi_change_coin"]) == moved["oi_change_coin"]
        assert row["earlier_snapshot_id"] == f"{row['currency']}-20260110T211832Z"
    assert on_stdout(store, "market") == rows


# ------------------------------------------------------------------------------------------ risk

def test_risk_csv_is_every_cell_of_the_scenario_grid(store, tmp_path):
    from qortcli.steps.risk import grid_from_settings

    rows, header, summary = with_json(store, tmp_path, "risk")     # the table shows horizon 0; the CSV has all
    assert header == GRID_COLUMNS
    grid = grid_from_settings()
    held = {p["instrument_name"].split("-")[0] for p in json.loads(POSITIONS.read_text())["result"] if p["size"]}
    cells = len(grid.horizons_days) * len(grid.vol_shifts) * len(grid.spot_moves)
    assert len(rows) == len(held) * cells and held == {"BTC", "ETH"}
    reports = {r["currency"]: r["grid"] for r in summary["reports"]}
    for row in rows:
        g = reports[row["currency"]]
        h = g["horizons_days"].index(float(row["horizon_days"]))
        j = g["vol_shifts"].index(float(row["vol_shift"]))
        m = g["spot_moves"].index(float(row["spot_move"]))
        assert number(row["pnl_usd"]) == g["pnl_usd"][h][j][m] and number(row["pnl_coin"]) == g["pnl_coin"][h][j][m]
        assert number(row["spot_usd"]) == g["spot_usd"][m]
    assert on_stdout(store, "risk", "--horizon", "all") == rows
    empty = on_stdout(store, "risk", "--book", "nobody", "--skip-missing")
    assert empty == [] and invoke(store, "risk", "--book", "nobody", "--skip-missing", "--csv", "-").stdout \
        .splitlines() == [",".join(GRID_COLUMNS)]                                          # the header only


# ------------------------------------------------------------------------------------------ book

def test_book_csv_is_the_positions_after_each_subcommand(store, tmp_path):
    recorded = [p for p in json.loads(POSITIONS.read_text())["result"] if p["size"] != 0]   # flat ones are skipped
    rows, header, summary = with_json(store, tmp_path, "book", "list")
    assert header == POSITION_COLUMNS and len(rows) == len(recorded) == len(summary["positions"])
    by_name = {p["instrument"]: p for p in summary["positions"]}
    for row in rows:
        position = by_name[row["instrument"]]
        for key in ("size_coin", "size_usd", "entry_price_coin", "entry_price_usd", "strike_usd"):
            assert number(row[key]) == position[key], (row["instrument"], key)
    call = "BTC-27MAR26-100000-C"
    before = number({r["instrument"]: r for r in rows}[call]["size_coin"])
    added, _, _ = with_json(store, tmp_path, "book", "add", call, "1.5", "--price", "0.05")
    assert len(added) == len(rows) and number({r["instrument"]: r for r in added}[call]["size_coin"]) == before + 1.5
    removed = on_stdout(store, "book", "remove", "BTC-PERPETUAL")
    assert len(removed) == len(rows) - 1 and "BTC-PERPETUAL" not in {r["instrument"] for r in removed}
    assert {r["revision"] for r in removed} == {str(int(rows[0]["revision"]) + 2)}
    imported = on_stdout(store, "book", "import", str(POSITIONS_CSV), "--book", "other")
    with open(POSITIONS_CSV, newline="") as fh:
        lines = [r for r in csv.DictReader(fh) if float(r["size"]) != 0]
    assert sorted(r["instrument"] for r in imported) == sorted(r["instrument"] for r in lines)
    assert {r["book"] for r in imported} == {"other"}


# ------------------------------------------------------------------------------------------ prune

def test_prune_csv_is_what_is_removed_per_currency(store, tmp_path):
    db = connect(str(store), read_only=True)
    try:                      # by hand: chains older than the 30-day window keep the last of each UTC day
        cutoff = (utcnow() - timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0)
        want = {}
        for cur in ("BTC", "ETH"):
            days: dict[str, list[str]] = {}
            for snap in read.snapshots(db, cur):
                if snap.timestamp < cutoff:
                    days.setdefault(f"{snap.timestamp:%Y-%m-%d}", []).append(snap.snapshot_id)
            gone = [sid for ids in days.values() for sid in ids[:-1]]
            want[cur] = (len(gone), sum(db[schema.OPTIONS].count_documents({"snapshot_id": sid}) for sid in gone))
    finally:
        db.close()
    assert [n for n, _ in want.values()] == [1, 1]           # the 09:14 chain of 11 January, in each currency
    rows, header, summary = with_json(store, tmp_path, "prune", "--dry-run")
    assert header == ("currency", "dry_run", "full_chains_days", "cutoff", "protected_from", "snapshots",
                      "documents", "kept_daily")
    assert {r["currency"]: (int(r["snapshots"]), int(r["documents"])) for r in rows} == want
    assert {r["dry_run"] for r in rows} == {"True"} and len(rows) == len(summary["currencies"])
    assert [number(r["full_chains_days"]) for r in rows] == [summary["full_chains_days"]] * 2
    done = on_stdout(store, "prune")
    assert {r["currency"]: (int(r["snapshots"]), int(r["documents"])) for r in done} == want
    assert {r["dry_run"] for r in done} == {"False"}
    db = connect(str(store), read_only=True)
    try:
        assert {cur: len(read.snapshots(db, cur)) for cur in ("BTC", "ETH")} == {"BTC": 2, "ETH": 2}
    finally:
        db.close()


# ------------------------------------------------------------------------------------------ vol

def test_vol_csv_is_the_forecasts_with_their_out_of_sample_scores(tmp_path):
    from vol_store import vol_store

    path = vol_store(tmp_path / "vol")
    rows, header, view = with_json(path, tmp_path, "vol", "-c", "BTC")
    assert header == FORECAST_COLUMNS
    assert sorted((r["model"], int(r["horizon_days"])) for r in rows) == sorted(
        (m, h) for m in MODELS for h in (7, 30))                      # five models at the 7- and 30-day horizons
    cur = view["currencies"][0]
    forecasts = {(f["model"], f["horizon_days"]): f for f in cur["forecasts"]}
    scores = {(s["model"], s["horizon_days"]): s for s in cur["evaluation"]["scores"]}
    for row in rows:
        key = (row["model"], int(row["horizon_days"]))
        assert number(row["forecast_vol"]) == forecasts[key]["vol"]
        assert number(row["qlike"]) == scores[key]["qlike"] and number(row["mse"]) == scores[key]["mse"]
    assert {(r["model"], int(r["horizon_days"])) for r in rows if r["best"] == "True"} == \
        {(b["model"], b["horizon_days"]) for b in cur["best"] if b["model"]}
    assert on_stdout(path, "vol", "-c", "BTC") == rows


# ------------------------------------------------------------------------------------------ stream

def test_stream_csv_is_the_session_summary_per_currency(tmp_path):
    from test_stream import BOOK_A, BOOK_B, feed_b, rest_server
    from ws_replay_server import WsReplayServer

    def session(run):          # a fresh session: the REST seed, then the replayed feed for 2 s after it
        with rest_server(BOOK_A, BOOK_B) as rest, WsReplayServer([feed_b]) as ws:
            return run("stream", "--currency", "BTC", "--url", ws.url, "--rest-url", rest.url + "/api/v2",
                       "--snapshot-every", "1h", "--duration", "2s")

    db = tmp_path / "db"
    rows, header, summary = session(lambda *args: with_json(db, tmp_path, *args))
    again = session(lambda *args: on_stdout(db, *args))
    assert header[:6] == ("currency", "instruments", "index_usd", "atm_iv_30d_marks", "rr25_front_marks",
                          "marks_age_s")
    assert {"started_at", "ended_at", "stop_reason", "messages", "updates", "snapshots", "latency_p50_ms"} <= set(header)
    assert [r["currency"] for r in rows] == ["BTC"] == [r["currency"] for r in again]   # one row per currency
    (row,), (live,) = rows, summary["live"]
    assert int(row["instruments"]) == live["instruments"] > 0
    assert number(row["index_usd"]) == live["index_usd"] and number(row["atm_iv_30d_marks"]) == live["atm_iv_30d_marks"]
    assert int(row["messages"]) == summary["messages"] and row["stop_reason"] == summary["stop_reason"]
    assert row["stop_reason"].startswith("duration")


# ------------------------------------------------------------------------------------------ alerts

def test_alerts_csv_on_run_list_ack_and_test(store, tmp_path, monkeypatch):
    from webhook_receiver import Receiver

    with Receiver() as rx:
        monkeypatch.setenv("QORT_TEST_CSV_HOOK", rx.url)
        settings = tmp_path / "alerts.toml"
        settings.write_text(
            '[schedule]\nmisfire_grace_seconds = 60\nheartbeat_seconds = 0\n\n[schedule.jobs]\n'
            'collect_deribit = { every = "5m" }\n\n'
            f'[alerts]\nlog_file = "{tmp_path / "alerts.jsonl"}"\n\n'
            '[[alerts.webhooks]]\nname = "team"\nurl_env = "QORT_TEST_CSV_HOOK"\nbackoff = "0.05s"\n\n'
            '[[alerts.rules]]\nname = "stale"\nkind = "stale_data"\n\n'
            '[[alerts.rules]]\nname = "term"\nkind = "term_inversion"\nmax_age = "3650d"\n')
        monkeypatch.setenv("QORT_SETTINGS", str(settings))
        ran, header, summary = with_json(store, tmp_path, "alerts", "run")
        assert header == ("event", *ALERT_COLUMNS)
        db = connect(str(store), read_only=True)
        try:
            stored = {d["_id"]: d for d in db[schema.ALERTS].find({})}
        finally:
            db.close()
        assert ran and len(ran) == len(stored) and {r["event"] for r in ran} == {"opened"}   # a store without alerts
        assert {r["id"] for r in ran} == set(stored) and {r["status"] for r in ran} == {"open"}
        assert len(rx.posts()) == len(ran)                          # each opened alert was delivered once

        listed, header, view = with_json(store, tmp_path, "alerts", "list", "--all")
        assert header == ALERT_COLUMNS and len(listed) == len(stored) == len(view["open"]) + len(view["closed"])
        durations = {a["id"]: a["duration_s"] for a in view["open"]}
        assert all(number(r["duration_s"]) == durations[r["id"]] for r in listed)
        readings = {a["id"]: a["values"] for a in view["open"]}
        assert all(json.loads(r["values"]).keys() == readings[r["id"]].keys() for r in listed)   # a JSON object
        first = listed[0]
        (acked,) = on_stdout(store, "alerts", "ack", first["short_id"])
        assert acked["id"] == first["id"] and acked["status"] == "acknowledged" and acked["acknowledged_at"]
        assert len(on_stdout(store, "alerts")) == len(stored)      # the group's own `qortcli alerts`

        tested, header, result = with_json(store, tmp_path, "alerts", "test")
        assert header == TARGET_COLUMNS and [r["target"] for r in tested] == ["team", "log"]   # 1 webhook + the log
        assert {r["ok"] for r in tested} == {"True"} and [int(r["attempts"]) for r in tested] == [1, 1]
        assert [number(r["seconds"]) for r in tested] == [sum(a["seconds"] for a in t["attempts"])
                                                          for t in result["targets"]]


# ------------------------------------------------------------------------------------------ check, backup

def _garble_one_document(path: Path) -> None:
    """Overwrite one stored document's body (the file's SQLite structure stays readable)."""
    conn = sqlite3.connect(str(path))
    try:
        rid = conn.execute("SELECT rid FROM docs ORDER BY rid LIMIT 1").fetchone()[0]
        conn.execute("UPDATE docs SET body = ? WHERE rid = ?", (b"\x01" + bytes(range(7, 250)), rid))
        conn.commit()
    finally:
        conn.close()


def test_check_csv_is_one_row_per_problem(store, tmp_path):
    healthy = invoke(store, "check", "--csv", "-", "-v")
    assert healthy.stdout.splitlines() == [",".join(FINDING_COLUMNS)]          # no problem: the header only
    db = connect(str(store))
    try:
        ops.upsert_many(db, schema.OPTIONS, [{"snapshot_id": "BTC-20990101T000000Z", "symbol": "BTC-1JAN99-1-C",
                                              "currency": "BTC"}])            # a document of no snapshot
    finally:
        db.close()
    surfaces = store / "qortfolio" / f"{schema.SURFACES}.sqlite"
    _garble_one_document(surfaces)
    rows, header, report = with_json(store, tmp_path, "check", code=1)
    assert header == FINDING_COLUMNS
    assert sorted((r["kind"], r["subject"]) for r in rows) == [("collection", schema.SURFACES),
                                                               ("orphan documents", "BTC-20990101T000000Z")]
    assert len(rows) == report["damage_remaining"] == 2 and all(r["repaired"] == "" for r in rows)
    assert {r["file"] for r in rows if r["kind"] == "collection"} == {str(surfaces)}
    repaired = {r["kind"]: r for r in on_stdout(store, "check", "--repair", code=1)}   # a garbled body stays
    assert repaired["orphan documents"]["repaired"] and not repaired["collection"]["repaired"]


def test_backup_csv_is_one_row_per_file_written(store, tmp_path):
    rows, header, summary = with_json(store, tmp_path, "backup", str(tmp_path / "copy"))
    assert header == ("collection", "file", "documents", "bytes")
    files = sorted((tmp_path / "copy").rglob("*.sqlite"))
    assert sorted(r["file"] for r in rows) == [str(f) for f in files] and len(rows) == len(summary["files"])
    copy = connect(str(tmp_path / "copy"), read_only=True)
    try:
        assert {r["collection"]: int(r["documents"]) for r in rows} == \
            {r["collection"]: copy[r["collection"]].count_documents({}) for r in rows}
    finally:
        copy.close()
    assert [int(r["bytes"]) for r in rows] == [f["bytes"] for f in summary["files"]]
    assert len(on_stdout(store, "backup", str(tmp_path / "again"))) == len(rows)
