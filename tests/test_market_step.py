"""The market step and `qortcli market` on stores filled by the collect step from real recorded chains (January 2026
BTC+ETH snapshots 24 h apart, the 2026-03-13 BTC book summary)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from chain_fixtures import recorded_chain
from qortcli.cli import app
from qortcli.cli.market import render
from qortcli.errors import StepError, UsageError
from qortcli.quant import market as mk
from qortcli.steps.collect import run_collect_file
from qortcli.steps.market import market_totals, run_market
from qortcli.store import connect, ensure_schema, schema

FIXTURES = Path(__file__).parent / "fixtures"
BOOK = FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json"
LATEST = FIXTURES / "deribit_options_snapshot_20260111T211857Z.csv"
DAY_BEFORE = FIXTURES / "deribit_options_snapshot_20260110T211832Z.csv"      # 24 h 0 min 25 s before LATEST
THIRTY_HOURS = FIXTURES / "deribit_options_snapshot_20260110T152753Z.csv"    # 29.9 h before LATEST
runner = CliRunner()


def _counts(db) -> dict:
    return {name: db[name].count_documents({}) for name in db.list_collection_names()}


def test_run_market_compares_with_the_snapshot_24_hours_earlier(embedded_db):
    for path in (DAY_BEFORE, LATEST):
        run_collect_file(embedded_db, path)
    before = _counts(embedded_db)
    summary = run_market(embedded_db)
    assert [m.currency for m in summary.markets] == ["BTC", "ETH"]
    for m in summary.markets:
        assert m.snapshot.snapshot_id == f"{m.currency}-20260111T211857Z"
        assert m.earlier.snapshot_id == f"{m.currency}-20260110T211832Z"
        assert m.change is not None and "24.0 h earlier" in m.change_note
        # the statistics are the quant core's on the same chain (read from the store = recorded frame)
        want = mk.market_statistics(recorded_chain(m.currency), days_per_year=365.0)
        assert m.stats.totals == want.totals
        want_change = mk.oi_changes(recorded_chain(m.currency), recorded_chain(m.currency, DAY_BEFORE.name))
        assert m.change.totals == pytest.approx(want_change.totals)
    # nothing is written but the run record
    after = _counts(embedded_db)
    assert after.pop(schema.JOB_RUNS) == before.pop(schema.JOB_RUNS) + 1 and after == before
    run = embedded_db[schema.JOB_RUNS].find_one({"step": "market"})
    assert run["status"] == "ok" and run["counts"] == {"currencies": 2, "options": 628 + 658, "compared": 2}

    view = summary.to_dict()
    json.dumps(view, allow_nan=False)                                  # plain JSON values throughout
    btc = view["currencies"][0]
    assert btc["selection"] == "ALL" and btc["selected"]["expiry_code"] == "ALL"
    assert btc["change"]["selected"]["oi_calls_change_coin"] == pytest.approx(
        summary.markets[0].change.totals.net_calls_change_coin)
    assert len(btc["strikes"]) == len(summary.markets[0].stats.all_by_strike)


def test_no_comparison_outside_the_tolerance(embedded_db):
    for path in (THIRTY_HOURS, LATEST):
        run_collect_file(embedded_db, path)
    (btc,) = run_market(embedded_db, currency="btc").markets
    assert btc.change is None and btc.earlier is None
    assert "within 3 h" in btc.change_note and "BTC-20260110T152753Z" in btc.change_note and "5.9 h older" in btc.change_note
    # a wider tolerance accepts it
    (btc,) = run_market(embedded_db, currency="BTC", tolerance_hours=6).markets
    assert btc.earlier.snapshot_id == "BTC-20260110T152753Z" and "29.9 h earlier" in btc.change_note
    # one snapshot only: nothing to compare with
    (eth,) = run_market(embedded_db, currency="ETH", compare_hours=48).markets
    assert eth.change is None and eth.change_note.startswith("no ETH snapshot at or before")


def test_one_expiry_and_the_errors(embedded_db):
    with pytest.raises(StepError, match="no complete options snapshot"):
        run_market(embedded_db)
    run_collect_file(embedded_db, BOOK)
    summary = run_market(embedded_db, currency="BTC", expiry="27mar26")
    (m,) = summary.markets
    assert m.expiry_code == "27MAR26" and m.change is None
    view = summary.to_dict()["currencies"][0]
    row = m.stats.expiries.set_index("expiry_code").loc["27MAR26"]
    assert view["selected"]["max_pain_coin_payoff_usd"] == row.max_pain_coin_payoff_usd
    assert view["selected"]["days"] == pytest.approx(row.t_years * 365)
    assert {r["expiry_code"] for r in view["strikes"]} == {"27MAR26"}
    assert view["gex_profile"]["gex_usd_per_pct_marks"] == pytest.approx(m.stats.gex_profile["27MAR26"].tolist())
    with pytest.raises(UsageError, match=r"no expiry 1JAN27 in BTC-20260313T190015Z; listed: 14MAR26, 15MAR26, .*25DEC26"):
        run_market(embedded_db, expiry="1JAN27")
    with pytest.raises(UsageError, match="no XRP options snapshot in the store; currencies with one: BTC"):
        run_market(embedded_db, currency="XRP")
    with pytest.raises(UsageError, match="unknown day-count basis"):
        run_market(embedded_db, basis="30/360")
    with pytest.raises(UsageError, match="unknown dealer convention"):
        run_market(embedded_db, dealer="dealers-flat")
    failed = embedded_db[schema.JOB_RUNS].find_one({"step": "market", "status": "failed", "args.expiry": "1JAN27"})
    assert "1JAN27" in failed["error"]


def test_market_totals_for_the_summaries():
    frame = recorded_chain("BTC", BOOK.name)
    totals = market_totals(frame)
    assert totals == mk.market_totals(frame, days_per_year=365.0)
    doc = totals.as_document()
    assert doc["oi_calls_coin"] == pytest.approx(frame.loc[frame.is_call, "open_interest_coin"].sum())
    assert doc["expiry_30d_code"] in set(frame["expiry_code"])
    with pytest.raises(StepError, match="market totals of BTC-20260313T190015Z: chain frame lacks column"):
        market_totals(frame.drop(columns=["mark_iv"]))


# ------------------------------------------------------------------------------------------------ CLI

@pytest.fixture
def cli_store(qort_env):
    db = connect(str(qort_env))
    ensure_schema(db)
    for path in (DAY_BEFORE, LATEST):
        run_collect_file(db, path)
    db.close()
    return qort_env


def _numbers(text: str) -> list[str]:
    return re.findall(r"[-+]?\$?\d[\d,]*(?:\.\d+)?[%kMB]?", text)


def test_cli_json_carries_every_figure_of_the_tables(cli_store):
    for args in (["market", "--currency", "BTC"], ["market", "-c", "ETH", "--expiry", "27MAR26", "--rows", "0"]):
        shown = runner.invoke(app, args, env={"COLUMNS": "160"})
        assert shown.exit_code == 0, shown.output
        raw = runner.invoke(app, [*args, "--json"])
        assert raw.exit_code == 0, raw.output
        view = json.loads(raw.stdout)
        # the tables are a function of the JSON alone: rendering the parsed JSON gives the same text
        out = io.StringIO()
        render(Console(file=out, width=160), view, rows=0 if "--rows" in args else 24)
        assert out.getvalue() == shown.stdout   # stderr carries the dim "store:" line
        # and the headline figures are the step's own
        cur = view["currencies"][0]
        assert cur["selected"]["max_pain_coin_payoff_usd"] is not None
        assert f"{cur['selected']['max_pain_coin_payoff_usd']:,.0f}" in shown.output
        assert f"{cur['spot_usd']:,.0f}" in shown.output
        assert f"{cur['selected']['gamma_flip_usd_marks']:,.0f}" in shown.output


def test_cli_renders_whole_names_and_strikes_in_100_columns(cli_store):
    result = runner.invoke(app, ["market", "--currency", "BTC", "--rows", "40"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "…" not in result.output                                # nothing truncated
    view = json.loads(runner.invoke(app, ["market", "--currency", "BTC", "--json"]).output)["currencies"][0]
    for row in view["change"]["top_instruments"]:
        assert row["instrument"] in result.output                   # whole instrument names
    strikes = [f"{r['strike_usd']:,.0f}" for r in view["strikes"] if r["oi_calls_coin"] + r["oi_puts_coin"] > 0]
    near = sorted(view["strikes"], key=lambda r: abs(r["strike_usd"] - view["spot_usd"]))[:40]
    table_strikes = {f"{r['strike_usd']:,.0f}" for r in near}
    assert table_strikes <= set(_numbers(result.output)) and table_strikes <= set(strikes)
    for code in (e["expiry_code"] for e in view["expiries"]):
        assert f" {code} " in result.output                          # whole expiry codes in the expiry table
    assert "max pain" in result.output and "γ flip" in result.output and "spot" in result.output


def test_cli_errors_are_one_line_with_exit_codes(cli_store):
    result = runner.invoke(app, ["market", "--expiry", "1JAN99"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "no expiry 1JAN99 in BTC-20260111T211857Z; listed: 12JAN26" in result.output
    result = runner.invoke(app, ["market", "--currency", "SOL"])
    assert result.exit_code == 2 and "currencies with one: BTC, ETH" in result.output
    help_text = runner.invoke(app, ["market", "--help"], env={"COLUMNS": "120"}).output
    assert "qortcli market --currency BTC --expiry 27MAR26" in help_text and "--dealer" in help_text


def test_cli_escapes_markup_in_store_strings(cli_store):
    """Strings from the store (instrument names, snapshot ids, notes) are printed literally, never as markup."""
    view = json.loads(runner.invoke(app, ["market", "--currency", "BTC", "--json"]).output)
    cur = view["currencies"][0]
    cur["change"]["top_instruments"][0]["instrument"] = "[bold red]BTC-1JAN30-1-C[/]"
    cur["snapshot_id"] = "BTC-[link=http://x]snap[/link]"
    out = io.StringIO()
    render(Console(file=out, width=200), view)
    assert "[bold red]BTC-1JAN30-1-C[/]" in out.getvalue()
    assert "BTC-[link=http://x]snap[/link]" in out.getvalue()
