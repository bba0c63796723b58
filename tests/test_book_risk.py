"""`qortcli book` and `qortcli risk` end to end on an embedded store holding the recorded 2026-01-11 21:18 UTC
BTC + ETH chain (collected, priced, surfaced, with stored suggestions): book storage and its history,
the checks against the latest chain, the risk documents, the CLI (exit codes, 100-column tables, --json
carrying every figure shown) and the worker job."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bsoncheck import CheckedDatabase
from chain_fixtures import FIXTURES
from qortcli.cli import app
from qortcli.errors import StepError, UsageError
from qortcli.quant import risk as qrisk
from qortcli.store import connect, ensure_schema, read, schema
from qortcli.store.books import save_book
from qortcli.steps.book import (positions_frame, run_book_add, run_book_add_suggestion, run_book_import,
                                run_book_list, run_book_remove)
from qortcli.steps.risk import grid_from_settings, run_risk
from qortcli.errors import ConfigError
from qortcli.timeutils import as_utc

CHAIN = "deribit_options_snapshot_20260111T211857Z.csv"
GET_POSITIONS = FIXTURES / "deribit_get_positions_20260111T211857Z.json"
CSV = FIXTURES / "positions_20260105.csv"
SID = "BTC-20260111T211857Z"
runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from qortcli.steps.collect import run_collect_file
    from qortcli.steps.price import run_price
    from qortcli.steps.suggest import run_suggest
    from qortcli.steps.surface import run_surface

    root = tmp_path_factory.mktemp("bookrisk")
    path = root / "db"
    db = connect(str(path))
    ensure_schema(db)
    run_collect_file(db, FIXTURES / CHAIN)
    run_price(db)
    run_surface(db)
    suggested = run_suggest(db, currency="BTC", strategies=["short_strangle"], top=1, as_of_snapshot=True)
    ids = [s["_id"] for c in suggested["currencies"] for s in c["suggestions"]]
    yield {"db": db, "path": path, "suggestions": ids, "root": root}
    db.close()


def _recorded(db, step, *args, **kwargs) -> tuple[object, dict]:
    """Call `step` and return (its result or the exception it raised, the run record it wrote)."""
    from qortcli.store.runs import run_context

    with run_context("test") as ids:
        try:
            outcome = step(db, *args, **kwargs)
        except Exception as exc:   # noqa: BLE001 - returned for the test to check
            outcome = exc
    assert len(ids) == 1
    return outcome, db[schema.JOB_RUNS].find_one({"_id": ids[0]})


# ------------------------------------------------------------------------------------------ book

def test_import_recorded_positions_and_reimport_replaces(store):
    db = CheckedDatabase(store["db"])          # every book write must survive a BSON round trip
    first = run_book_import(db, GET_POSITIONS, book="imp")
    assert first.revision == 1 and len(first.positions) == 7 and first.skipped == (f"{GET_POSITIONS.name} result[7] (BTC-23JAN26)",)
    again = run_book_import(db, GET_POSITIONS, book="imp")
    assert again.revision == 2 and again.positions == first.positions
    assert store["db"][schema.PORTFOLIOS].count_documents({"kind": "book", "book": "imp"}) == 1
    record = read.book(store["db"], "imp")
    assert record.source["sha256"] == again.history[-1]["sha256"] and record.source["format"] == "deribit_get_positions"
    assert [h["action"] for h in record.history] == ["import", "import"] and record.history[-1]["unchanged"] is True
    assert record.history[0]["replaced"] == 0 and record.history[1]["replaced"] == 7
    csv = run_book_import(db, CSV, book="imp")                # another file replaces the book's positions
    assert {p["instrument"] for p in csv.positions} >= {"BTC", "BTC-27MAR26"} and len(csv.positions) == 8
    assert read.book(store["db"], "imp").history[-1]["previous"] == list(first.positions)
    assert {name for name, _ in db.written} >= {schema.PORTFOLIOS}
    _, run = _recorded(store["db"], run_book_import, CSV, book="imp")
    assert run["status"] == "ok" and run["counts"]["positions"] == 8


@pytest.mark.parametrize("line, message", [
    ("BTC-27MAR26-101000-C,1,0.02", "bad.csv line 3 (BTC-27MAR26-101000-C): unknown instrument BTC-27MAR26-101000-C "
                                    "(not in the latest BTC chain BTC-20260111T211857Z)"),
    ("BTC-9JAN26-90000-C,1,0.02", "bad.csv line 3 (BTC-9JAN26-90000-C): BTC-9JAN26-90000-C expired at 2026-01-09 "
                                  "08:00 UTC, before the latest BTC snapshot BTC-20260111T211857Z"),
    ("BTC-28MAR26,0.1,90000", "bad.csv line 3 (BTC-28MAR26): unknown future BTC-28MAR26"),
    ("SOL,10", "bad.csv line 3 (SOL): cannot check SOL: no complete SOL options snapshot"),
    ("BTC-27MAR26-100000-C,x,0.02", "bad.csv line 3 (BTC-27MAR26-100000-C): size 'x' is not a number"),
])
def test_a_bad_row_names_itself_and_stores_nothing(store, tmp_path, line, message):
    db = store["db"]
    run_book_import(db, CSV, book="guard")
    before = read.book(db, "guard")
    path = tmp_path / "bad.csv"
    path.write_text(f"instrument,size,avg_price_coin\nBTC,1\n{line}\n")
    err, run = _recorded(db, run_book_import, path, book="guard")
    assert isinstance(err, StepError) and str(err).startswith(message), str(err)
    after = read.book(db, "guard")
    assert (after.revision, after.positions) == (before.revision, before.positions)
    assert run["status"] == "failed" and run["error"].startswith(type(err).__name__)


def test_add_nets_into_the_book_at_the_mark_and_remove_drops(store):
    db = store["db"]
    chain = read.latest_chain(db, "BTC").frame
    mark = float(chain.loc[chain["instrument"] == "BTC-27MAR26-100000-C", "mark_coin"].iloc[0])
    first = run_book_add(db, "BTC-27MAR26-100000-C", 2, book="adds")
    assert first.positions[0]["entry_price_coin"] == mark and first.changes[0]["price_source"] == "mark"
    second = run_book_add(db, "BTC-27MAR26-100000-C", 1, price=0.06, book="adds")
    assert second.positions[0]["size_coin"] == 3 and second.positions[0]["entry_price_coin"] == pytest.approx((2 * mark + 0.06) / 3)
    future = run_book_add(db, "BTC-27MAR26", -0.5, book="adds")         # coin at the future's mark → USD contracts
    forward = float(chain.loc[chain["forward_index"] == "BTC-27MAR26", "forward_usd"].median())
    held = {p["instrument"]: p for p in future.positions}["BTC-27MAR26"]
    assert held["entry_price_usd"] == pytest.approx(forward) and held["size_usd"] == pytest.approx(-0.5 * forward)
    run_book_add(db, "BTC", 1.5, book="adds")
    closed = run_book_add(db, "BTC-27MAR26-100000-C", -3, price=0.05, book="adds")
    assert "BTC-27MAR26-100000-C" not in {p["instrument"] for p in closed.positions}
    assert closed.changes[0]["realised_pnl_coin"] == pytest.approx(3 * (0.05 - second.positions[0]["entry_price_coin"]))
    removed = run_book_remove(db, "BTC-27MAR26", book="adds")
    assert [p["instrument"] for p in removed.positions] == ["BTC"]
    listed = run_book_list(db, book="adds")
    assert [h["action"] for h in listed.history] == ["add", "add", "add", "add", "add", "remove"]
    with pytest.raises(StepError, match="book adds holds no BTC-27MAR26 "):
        run_book_remove(db, "BTC-27MAR26", book="adds")
    with pytest.raises(UsageError, match="not an option"):
        run_book_add(db, "BTC-27MAR26-100000", 1, book="adds")
    with pytest.raises(StepError, match="no book 'nobook'"):
        run_book_list(db, book="nobook")
    with pytest.raises(UsageError, match="book name"):
        run_book_list(db, book="bad name")


def test_add_a_stored_suggestions_legs(store):
    db = store["db"]
    sid = next(i for i in store["suggestions"] if "short_strangle" in i)
    doc = read.suggestion(db, sid)
    summary = run_book_add_suggestion(db, sid, book="sugg")
    held = {p["instrument"]: p for p in summary.positions}
    assert len(held) == len(doc["legs"]) == 2
    for leg in doc["legs"]:
        assert held[leg["instrument"]]["size_coin"] == leg["side_sign"] * leg["size"] == -1.0
        assert held[leg["instrument"]]["entry_price_coin"] == leg["price_coin"]
    assert read.book(db, "sugg").history[-1]["suggestion"] == sid
    with pytest.raises(StepError, match="no stored suggestion 'nope'"):
        run_book_add_suggestion(db, "nope", book="sugg")
    broken = {k: v for k, v in doc.items() if k != "_id"}
    broken["strategy"] = "broken"
    broken["legs"] = [{**doc["legs"][0], "size": None}]
    from qortcli.store.ops import upsert_many

    upsert_many(db, schema.SUGGESTIONS, [broken])
    key = schema.natural_key(schema.SUGGESTIONS, broken)
    with pytest.raises(StepError, match=re.escape(f"suggestion {key} leg 0: malformed leg")):
        run_book_add_suggestion(db, key, book="sugg")


# ------------------------------------------------------------------------------------------ risk

def test_risk_stores_one_document_per_currency_and_rerunning_replaces(store):
    db = CheckedDatabase(store["db"])
    run_book_import(db, GET_POSITIONS, book="riskbook")
    summary = run_risk(db, book="riskbook", skip_missing=False)
    assert [r["currency"] for r in summary.reports] == ["BTC", "ETH"] and summary.stored == 2
    ids = {f"riskbook|{r['currency']}|{r['snapshot_id']}" for r in summary.reports}
    assert {d["_id"] for d in store["db"][schema.RISK].find({"book": "riskbook"})} == ids
    _, run = _recorded(store["db"], run_risk, book="riskbook")
    assert run["status"] == "ok" and run["counts"] == {"books": 1, "currencies": 2, "positions": 7, "stored": 2}
    assert store["db"][schema.RISK].count_documents({"book": "riskbook"}) == 2
    stored = read.latest_risk(store["db"], "riskbook", "BTC")
    assert stored["snapshot_id"] == SID and stored["surface"]["same_snapshot"] is True and stored["book_revision"] == 1
    # the step is a thin layer: its figures are the quant core's on the same inputs
    chain = read.latest_chain(store["db"], "BTC")
    book = [p for p in read.book(store["db"], "riskbook").positions if p["currency"] == "BTC"]
    direct = qrisk.value_book(positions_frame(book), chain.frame, read.latest_surface(store["db"], "BTC"),
                              grid_from_settings(), 365.0)
    assert stored["totals"]["pnl_coin"] == pytest.approx(direct.totals.pnl_coin, rel=1e-12)
    np.testing.assert_allclose(np.array(stored["grid"]["pnl_usd"]), direct.grid.pnl_usd, rtol=1e-12)
    assert stored["worst"]["pnl_coin"]["value"] == pytest.approx(direct.grid.worst["pnl_coin"].value)
    assert stored["account"]["collateral_coin"] == 0.0 and len(stored["positions"]) == 6
    assert {name for name, _ in db.written} >= {schema.RISK}
    one = run_risk(store["db"], book="riskbook", currency="eth")
    assert [r["currency"] for r in one.reports] == ["ETH"]
    with pytest.raises(StepError, match="book riskbook has no SOL position"):
        run_risk(store["db"], book="riskbook", currency="SOL")


def test_an_empty_or_missing_book_is_a_clear_message_or_a_quiet_skip(store):
    db = store["db"]
    with pytest.raises(StepError, match="no book 'ghost' in the store"):
        run_risk(db, book="ghost", skip_missing=False)
    skipped, run = _recorded(db, run_risk, book="ghost")
    assert skipped.reports == () and "no book 'ghost'" in skipped.skipped
    assert run["status"] == "ok" and run["counts"] == {"books": 0, "positions": 0, "stored": 0}
    run_book_add(db, "BTC", 1, book="emptied")
    run_book_remove(db, "BTC", book="emptied")
    with pytest.raises(StepError, match="book emptied is empty — add positions with `qortcli book import FILE`"):
        run_risk(db, book="emptied", skip_missing=False)
    assert run_risk(db, book="emptied").skipped.startswith("book emptied is empty")


def test_an_expired_leg_is_a_clear_message_with_the_command_to_drop_it(store):
    db = store["db"]
    expired = {"instrument": "BTC-9JAN26-90000-C", "kind": "option", "currency": "BTC", "size_coin": 1.0,
               "size_usd": None, "entry_price_coin": 0.01, "entry_price_usd": None,
               "expiry": as_utc(read.latest_chain(db, "BTC").snapshot.timestamp).replace(day=9, hour=8, minute=0,
                                                                                            second=0, microsecond=0),
               "strike_usd": 90000.0, "option_type": "call", "perpetual": False}
    save_book(db, "stale", [expired], {"action": "test"})
    err, run = _recorded(db, run_risk, book="stale")
    assert isinstance(err, StepError) and str(err) == ("book stale: BTC-9JAN26-90000-C expired at 2026-01-09 08:00 UTC, before the latest BTC "
                              "snapshot BTC-20260111T211857Z (2026-01-11 21:18 UTC); remove it with "
                              "`qortcli book remove BTC-9JAN26-90000-C --book stale`")
    assert run["status"] == "failed"


def test_a_missing_surface_is_a_clear_message_unless_the_book_has_no_option(tmp_path):
    from qortcli.steps.collect import run_collect_file

    db = connect(str(tmp_path / "db"))
    ensure_schema(db)
    run_collect_file(db, FIXTURES / CHAIN)
    run_book_add(db, "BTC-27MAR26-100000-C", 1, book="main")
    with pytest.raises(StepError, match=re.escape("no stored volatility surface for BTC: the scenario grid takes its "
                                                  "vols from it; run `qortcli surface --currency BTC` first")):
        run_risk(db)
    run_book_remove(db, "BTC-27MAR26-100000-C")
    run_book_add(db, "BTC-PERPETUAL", 0.5)
    run_book_add(db, "BTC", 2)
    summary = run_risk(db)                      # futures and coin need no surface
    assert summary.reports[0]["surface"] is None and summary.reports[0]["account"]["collateral_coin"] == 2
    db.close()


def test_grid_settings_are_validated(monkeypatch):
    assert grid_from_settings().shape == (3, 13, 21)                  # the packaged [risk] section
    assert grid_from_settings({"spot_steps": 5, "horizons_days": [0, 3]}).shape == (2, 13, 5)
    for bad, message in (({"spot_stepz": 5}, "unknown setting(s) spot_stepz"), ({"vol_steps": "13"}, "vol_steps = '13' must be a number"),
                         ({"horizons_days": 7}, "horizons_days = 7 must be a list"), ({"spot_move_min": -2}, "above −100 %")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            grid_from_settings(bad)


# ------------------------------------------------------------------------------------------ CLI

def _numbers(text: str) -> list[float]:
    return [float(t.replace(",", "")) for t in re.findall(r"[-+]?\d[\d,]*\.?\d*(?:e[-+]?\d+)?", text)]


def _json_numbers(obj, out: list[float]) -> list[float]:
    if isinstance(obj, bool):
        return out
    if isinstance(obj, (int, float)):
        out.append(float(obj))
    elif isinstance(obj, dict):
        for v in obj.values():
            _json_numbers(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _json_numbers(v, out)
    return out


def _shown_by(cell: float, decimals: int, digits: int, values: np.ndarray) -> bool:
    """Whether some JSON value (× 1, 100 or 1/1000) prints as this cell at the cell's precision."""
    for scale in (1.0, 100.0, 1e-3):
        v = values * scale
        half = 0.5 * 10.0 ** -decimals if decimals else 0.5
        tolerance = max(half, 0.5 * 10.0 ** (np.floor(np.log10(abs(cell))) - digits + 1)) if cell else half
        if np.any(np.abs(v - cell) <= tolerance * 1.000001):
            return True
    return False


def test_risk_cli_tables_fit_100_columns_and_json_carries_every_figure(store, monkeypatch):
    from qortcli.cli import common
    from qortcli.cli.risk import header_line, report_tables

    db = store["db"]
    run_book_import(db, GET_POSITIONS, book="cli")
    monkeypatch.setenv("QORT_DB", str(store["path"]))
    monkeypatch.setenv("COLUMNS", "100")   # the console follows COLUMNS at print time
    text = runner.invoke(app, ["risk", "--book", "cli", "--horizon", "all"])
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert max(len(line) for line in lines) <= 100
    out = runner.invoke(app, ["risk", "--book", "cli", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    values = np.array(_json_numbers(summary, []))
    flat = " ".join(text.output.split())
    checked = 0
    for report in summary["reports"]:
        assert " ".join(header_line(report).split()) in flat
        for spec in report_tables(report, 100, list(range(len(report["grid"]["horizons_days"])))):
            for row in (spec.headers, *spec.rows):
                for cell in row:
                    if not re.fullmatch(r"[-+]?[\d,]*\.?\d+(e[-+]?\d+)?%?", cell.split(" ")[0]):
                        continue
                    assert cell in text.output, cell
                    token = cell.split(" ")[0].rstrip("%")
                    decimals = len(token.split(".")[1].split("e")[0]) if "." in token else 0
                    digits = len(re.sub(r"\D", "", token.split("e")[0]).lstrip("0")) or 1
                    number = float(token.replace(",", ""))
                    assert _shown_by(number, decimals, digits, values), (spec.title, cell)
                    checked += 1
    assert checked > 500
    # every horizon of the full grid is in the JSON, more than the table shows
    assert np.array(summary["reports"][0]["grid"]["pnl_coin"]).shape == (3, 13, 21)


def test_cli_exit_codes_and_book_commands(store, tmp_path, monkeypatch):
    monkeypatch.setenv("QORT_DB", str(store["path"]))
    added = runner.invoke(app, ["book", "add", "BTC-27MAR26-100000-C", "-2", "--price", "0.05", "--book", "c2"])
    assert added.exit_code == 0, added.output
    listed = json.loads(runner.invoke(app, ["book", "list", "--book", "c2", "--json"]).output)
    assert listed["positions"][0]["size_coin"] == -2.0 and listed["positions"][0]["entry_price_coin"] == 0.05
    assert runner.invoke(app, ["book", "add", "BTC-27MAR26-100000", "1"]).exit_code == 2           # malformed name
    unknown = runner.invoke(app, ["book", "add", "BTC-27MAR26-101000-C", "1", "--book", "c2"])
    assert unknown.exit_code == 1 and "unknown instrument BTC-27MAR26-101000-C" in unknown.output
    assert runner.invoke(app, ["book", "add", "--suggestion", "x", "BTC", "1"]).exit_code == 2
    assert runner.invoke(app, ["book", "import", str(CSV), "--book", "c3"]).exit_code == 0
    assert runner.invoke(app, ["book", "remove", "BTC-27MAR26", "--book", "c3"]).exit_code == 0
    assert runner.invoke(app, ["book", "remove", "BTC-27MAR26", "--book", "c3"]).exit_code == 1
    assert runner.invoke(app, ["risk", "--book", "nobody"]).exit_code == 1
    skipped = runner.invoke(app, ["risk", "--book", "nobody", "--skip-missing"])
    assert skipped.exit_code == 0 and "skipped" in skipped.output
    assert runner.invoke(app, ["risk", "--book", "c2", "--horizon", "3"]).exit_code == 2
    book_help = runner.invoke(app, ["book", "--help"])
    assert book_help.exit_code == 0 and "qortcli book import positions.json" in book_help.output
    assert "Examples" in runner.invoke(app, ["risk", "--help"]).output


# ------------------------------------------------------------------------------------------ worker

def test_worker_runs_risk_after_surface_and_skips_quietly_without_a_book(tmp_path):
    from qortcli.schedule import CATALOG, load_schedule, resolve_step
    from qortcli.store.runs import run_context

    schedule = load_schedule()
    assert [s.id for s in schedule.followers("collect_deribit")] == ["price", "surface", "risk"]
    assert schedule.job("risk").after == "surface" and "risk --skip-missing" in CATALOG["risk"][1]
    db = connect(str(tmp_path / "db"))
    ensure_schema(db)
    with run_context("scheduler", job="risk") as recorded:
        summary = resolve_step(schedule.job("risk").step)(db)
    assert summary.skipped and len(recorded) == 1
    run = db[schema.JOB_RUNS].find_one({"_id": recorded[0]})
    assert run["status"] == "ok" and run["job"] == "risk" and run["counts"]["books"] == 0
    db.close()
