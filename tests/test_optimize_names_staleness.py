"""Issues 14.8 and 14.10: portfolio names encode the inputs, the previous allocation is the latest earlier one
or the same as-of with different weights; commands say when their input is older than its schedule.

Prices: three recorded coins (BTC, ETH, LINK), 2022-10-01…2023-03-31 of tests/fixtures/prices.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qortcli.cli import app
from qortcli.errors import UsageError
from qortcli.steps.common import staleness
from qortcli.steps.optimize import portfolio_id_for, run_optimize
from qortcli.store import connect, schema

from conftest import FIXTURES, copied_store

T0 = datetime(2026, 1, 2, 0, 30, tzinfo=timezone.utc)
FIRST, LAST = "2022-10-01", "2023-03-31"
runner = CliRunner()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    from qortcli.steps.collect import run_collect_prices_csv

    csv_dir = tmp_path_factory.mktemp("prices3")
    for sym in ("BTC", "ETH", "LINK"):
        lines = (FIXTURES / "prices" / f"{sym}-USD.csv").read_text().splitlines(keepends=True)
        (csv_dir / f"{sym}-USD.csv").write_text(lines[0] + "".join(l for l in lines[1:] if FIRST <= l[:10] <= LAST))
    path = tmp_path_factory.mktemp("opt3") / "db"
    db = connect(str(path))
    run_collect_prices_csv(db, csv_dir)
    db.close()
    return path


@pytest.fixture
def db(seeded, tmp_path):
    handle = connect(str(copied_store(seeded, tmp_path)))
    yield handle
    handle.close()


def test_names_encode_every_input():
    assert portfolio_id_for("hrp", False) == "hrp-assets"
    assert portfolio_id_for("hrp", False, assets=["ETH", "BTC"]) == "hrp-assets-btc+eth"
    six = ["A1", "B2", "C3", "D4", "E5", "F6"]
    assert portfolio_id_for("hrp", False, assets=six).startswith("hrp-assets-6assets")
    assert portfolio_id_for("hrp", False, assets=six) != portfolio_id_for("hrp", False, assets=six[:5] + ["G7"])
    assert portfolio_id_for("hrp", True, "CVaR", 0.4, start="2022-01-01", rebalance="monthly", lookback_days=180,
                            min_history_days=90) == "hrp-cvar-sectors-maxsec0.4-from2022-01-01-monthly-lb180-minhist90"


def test_a_subset_run_never_overwrites_the_full_portfolio(db):
    full = run_optimize(db, model="hrp", min_history_days=60, now=T0)
    subset = run_optimize(db, model="hrp", assets=["BTC", "ETH"], min_history_days=60, now=T0)
    windowed = run_optimize(db, model="hrp", start="2023-01-01", min_history_days=60, now=T0)
    walked = run_optimize(db, model="hrp", rebalance="monthly", lookback_days=60, min_history_days=60, now=T0)
    ids = [s["portfolio_id"] for s in (full, subset, windowed, walked)]
    assert ids == ["hrp-assets-minhist60", "hrp-assets-btc+eth-minhist60", "hrp-assets-from2023-01-01-minhist60",
                   "hrp-assets-monthly-lb60-minhist60"]
    docs = {d["portfolio_id"]: d for d in db[schema.PORTFOLIOS].find({})}
    assert set(docs) == set(ids)                                     # four portfolios, none overwritten
    assert set(docs["hrp-assets-minhist60"]["weights"]) == {"BTC", "ETH", "LINK"}
    assert set(docs["hrp-assets-btc+eth-minhist60"]["weights"]) == {"BTC", "ETH"}


def test_previous_allocation_is_the_same_as_of_with_other_weights_else_the_latest_earlier(db):
    first = run_optimize(db, model="hrp", min_history_days=60, now=T0)
    assert first["rebalancing"] is None
    # the same data again: identical weights, nothing earlier → still nothing to compare with
    again = run_optimize(db, model="hrp", min_history_days=60, now=T0 + timedelta(hours=1))
    assert again["rebalancing"] is None and again["weights"] == pytest.approx(first["weights"], abs=1e-12)
    # the stored allocation of that as-of day differs from what the data gives now (e.g. prices corrected)
    stored_id = f"hrp-assets-minhist60|{first['timestamp']:%Y%m%dT%H%M%SZ}"
    old = {"BTC": 0.5, "ETH": 0.3, "LINK": 0.2}
    db[schema.PORTFOLIOS].update_one({"_id": stored_id}, {"$set": {"weights": old}})
    third = run_optimize(db, model="hrp", min_history_days=60, now=T0 + timedelta(hours=2))
    plan = third["rebalancing"]
    assert plan is not None and plan["previous_timestamp"] == first["timestamp"]
    new = third["weights"]
    assert plan["turnover"] == pytest.approx(0.5 * sum(abs(new[a] - old[a]) for a in new), rel=1e-12)
    assert {row["asset"]: row["previous"] for row in plan["changes"]} == old
    # a later as-of day compares with the latest earlier one
    later = run_optimize(db, model="hrp", min_history_days=60, end="2023-02-28", portfolio_id="hrp-check", now=T0)
    last = run_optimize(db, model="hrp", min_history_days=60, portfolio_id="hrp-check", now=T0)
    assert later["rebalancing"] is None
    assert last["rebalancing"]["previous_timestamp"] == datetime(2023, 2, 28, tzinfo=timezone.utc)


def test_dates_are_iso_only_and_unknown_assets_are_usage_errors(db):
    with pytest.raises(UsageError, match=r"--start must be a date YYYY-MM-DD .* got '01/02/2023'"):
        run_optimize(db, start="01/02/2023", now=T0)
    with pytest.raises(UsageError, match=r"unknown asset\(s\) FOO: price_data has BTC, ETH, LINK"):
        run_optimize(db, assets=["FOO"], now=T0)
    with pytest.raises(UsageError, match="--name"):
        run_optimize(db, portfolio_id="a|b", now=T0)
    assert db[schema.PORTFOLIOS].count_documents({}) == 0


# ------------------------------------------------------------------------------------------ staleness

def test_staleness_follows_the_producing_jobs_schedule():
    now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    # collect_deribit runs every 5 min, with a 600 s misfire grace (packaged settings)
    assert staleness("chain", now - timedelta(minutes=14), "collect_deribit", now) is None
    note = staleness("BTC chain", now - timedelta(minutes=16), "collect_deribit", now)
    assert note["job"] == "collect_deribit" and note["schedule"] == "every 5 min" and note["age_hours"] == pytest.approx(16 / 60, abs=0.01)
    assert "BTC chain is 16 min old, older than its schedule" in note["message"]
    assert "qortcli collect deribit" in note["message"]
    # daily prices at 00:10 UTC: the bar of 30 Nov (valid until 1 Dec 00:00) is fresh until 00:20 on 1 Dec
    bar_end = datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert staleness("prices", bar_end, "collect_prices", datetime(2026, 12, 1, 0, 19, tzinfo=timezone.utc)) is None
    assert staleness("prices", bar_end, "collect_prices", datetime(2026, 12, 1, 0, 21, tzinfo=timezone.utc))
    # price runs after collect_deribit: its input is judged by the leader's schedule
    assert staleness("x", now - timedelta(hours=1), "price", now)["schedule"] == "every 5 min"
    assert staleness("x", now - timedelta(days=9), "no_such_job", now) is None


def test_commands_say_when_their_input_is_stale(db, tmp_path):
    from qortcli.steps.collect import run_collect_file
    from qortcli.steps.price import run_price

    run_collect_file(db, FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json")
    at_snapshot = datetime(2026, 3, 13, 19, 5, tzinfo=timezone.utc)
    assert run_price(db, now=at_snapshot)["stale"] == []
    (note,) = run_price(db, now=at_snapshot + timedelta(hours=30))["stale"]
    assert "BTC snapshot BTC-20260313T190015Z is 30.1 h old" in note["message"]
    summary = run_optimize(db, model="hrp", min_history_days=60, now=datetime(2023, 4, 1, 0, 5, tzinfo=timezone.utc))
    assert summary["stale"] == []
    summary = run_optimize(db, model="hrp", min_history_days=60, now=T0)
    assert "price_data (last day 2023-03-31)" in summary["stale"][0]["message"]
    assert run_optimize(db, model="hrp", min_history_days=60, end="2023-03-31", now=T0)["stale"] == []  # history
    # the CLI prints the notes (stderr), and under --json as JSON warnings
    store = tmp_path / "db"
    result = runner.invoke(app, ["--db", str(store), "price"], env={"COLUMNS": "160"})
    assert result.exit_code == 0 and "older than its schedule" in result.stderr
    result = runner.invoke(app, ["--db", str(store), "optimize", "--min-history", "60", "--json"])
    assert result.exit_code == 0 and '"warning"' in result.stderr and "price_data (last day" in result.stderr


def test_suggest_refuses_expired_expiries_on_the_latest_snapshot(db):
    from qortcli.errors import StepError
    from qortcli.steps.collect import run_collect_file
    from qortcli.steps.price import run_price
    from qortcli.steps.suggest import run_suggest

    run_collect_file(db, FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json")
    run_price(db)
    taken = datetime(2026, 3, 13, 19, 0, 15, tzinfo=timezone.utc)
    ok = run_suggest(db, strategies=["short_strangle"], top=0, now=taken + timedelta(minutes=1))
    assert ok["currencies"][0]["expiry"] == "3APR26"   # 20.5 days: the nearest with 14..45 days to run
    # the chain is fresh; the realised-vol prices (they end 2023-03-31) are not
    assert [n["job"] for n in ok["stale"]] == ["collect_prices"]
    later = taken + timedelta(days=30)   # 27MAR26 and 3APR26 have expired by then, 24APR26 has not
    with pytest.raises(UsageError, match=r"expiry 27MAR26 expired on 2026-03-27 08:00 UTC: the latest snapshot"):
        run_suggest(db, expiry="27MAR26", strategies=["short_strangle"], top=0, now=later)
    picked = run_suggest(db, strategies=["short_strangle"], top=0, now=later)
    cur = picked["currencies"][0]
    assert cur["expiry"] == "24APR26"                               # the nearest still tradeable with 14..45 days
    assert all(leg["expiry"] > later for s in cur["suggestions"] for leg in s["legs"])
    assert [n["job"] for n in cur["stale"]] == ["collect_deribit", "collect_prices"]
    with pytest.raises(StepError, match="the latest snapshot .* is stale"):
        run_suggest(db, top=0, strategies=["short_strangle"], now=datetime(2026, 6, 1, tzinfo=timezone.utc))
    # as of the snapshot's own time (recorded data), 27MAR26 is tradeable
    hist = run_suggest(db, expiry="27MAR26", strategies=["short_strangle"], top=0, now=later, as_of_snapshot=True)
    assert hist["currencies"][0]["expiry"] == "27MAR26"
    # ... and its inputs are judged then: the chain is fresh at its own time, the 2023 prices are still stale
    assert [n["job"] for n in hist["currencies"][0]["stale"]] == ["collect_prices"]


def test_suggest_waits_for_price_on_a_chain_collected_without_greeks(tmp_path):
    """The worker's suggest can run between a collect and its price: a newest chain without deltas (a book
    summary has no greeks) gives way to the newest priced one, with a note, instead of failing the run."""
    from qortcli.steps.collect import run_collect_file
    from qortcli.steps.price import run_price
    from qortcli.steps.suggest import run_suggest

    db = connect(str(tmp_path / "db"))
    book = json.loads((FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json").read_text())
    run_collect_file(db, FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json")
    run_price(db)
    later = dict(book, result=[dict(r, creation_timestamp=r["creation_timestamp"] + 300_000) for r in book["result"]])
    (tmp_path / "later.json").write_text(json.dumps(later))
    run_collect_file(db, tmp_path / "later.json")              # 5 minutes on, not priced
    taken = datetime(2026, 3, 13, 19, 5, 15, tzinfo=timezone.utc)
    out = run_suggest(db, strategies=["short_strangle"], top=0, now=taken + timedelta(minutes=1))
    cur = out["currencies"][0]
    assert cur["snapshot_id"] == "BTC-20260313T190015Z"                # the priced one
    assert cur["stale"][0]["job"] == "price" and "BTC-20260313T190515Z has no deltas yet" in cur["stale"][0]["message"]
    run_price(db)                                                      # once priced, the newest is used
    again = run_suggest(db, strategies=["short_strangle"], top=0, now=taken + timedelta(minutes=1))
    assert again["currencies"][0]["snapshot_id"] == "BTC-20260313T190515Z"
    assert all(n["job"] != "price" for n in again["currencies"][0]["stale"])
    db.close()
