"""The viewer's frame without a browser: the load protocol (versions, cache, digests, fallbacks), read-only
access that writes no byte, data ages against the schedule, significant-digit formatting, the chain's display
rows (range, sort, gamma units), the figures' uirevision and axes, and the page registry."""

from __future__ import annotations

import ast
import hashlib
import math
import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from qortcli.store import connect, ensure_schema, schema
from qortcli.store.readonly import ReadOnlyDatabase

ROOT = Path(__file__).resolve().parents[1]
VIEWER = ROOT / "viewer"
sys.path.insert(0, str(VIEWER))
from qortview import ages, db, figures, fmt, queries  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
LATE = "deribit_options_snapshot_20260111T211857Z.csv"


@pytest.fixture(scope="module")
def chain_store(tmp_path_factory):
    """One recorded chain collected and surfaced (no price step: Deribit's published greeks)."""
    from qortcli.steps.collect import run_collect_file
    from qortcli.steps.surface import run_surface

    path = tmp_path_factory.mktemp("frame") / "db"
    store = connect(str(path))
    ensure_schema(store)
    run_collect_file(store, FIXTURES / LATE)
    run_surface(store)
    store.close()
    return path


def _tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------- read-only

def test_the_viewers_handle_writes_no_byte_and_creates_no_file(chain_store, tmp_path, monkeypatch):
    path = tmp_path / "db"
    shutil.copytree(chain_store, path)
    for name in (schema.LIVE_MARKS, schema.RISK, schema.ALERTS):      # collections that were never written
        for p in (path / "qortfolio").glob(f"{name}.sqlite*"):
            p.unlink()
    before = _tree(path)
    monkeypatch.setenv("QORT_DB", str(path))
    monkeypatch.setattr(db, "_HANDLE", {"db": None, "error": "", "tried": 0.0})
    handle = db.open_store()
    assert handle.is_read_only and "read-only" in handle.describe()
    for page, load in queries.PAGE_LOADS.items():
        load(handle)
        queries.page_version(handle, page, {})
    handle.close()
    assert _tree(path) == before


def test_a_missing_store_is_one_clear_line_and_is_retried(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("QORT_DB", str(missing))
    monkeypatch.setattr(db, "_HANDLE", {"db": None, "error": "", "tried": 0.0})
    res = db._load("overview", {}, None)
    assert res.status == "error" and res.error.startswith(f"no store at {missing}") and "--db" in res.error
    assert not missing.exists()
    monkeypatch.setattr(db, "RETRY_OPEN_S", 0.0)
    store = connect(str(missing))
    ensure_schema(store)
    store.close()
    assert db._load("overview", {}, None).status == "data"               # the store appeared: the next load finds it


def test_viewer_sources_query_only_through_the_read_vocabulary():
    files = [f for f in VIEWER.rglob("*.py") if ".web" not in f.parts and "__pycache__" not in f.parts]
    assert len(files) >= 12
    for f in files:
        text = f.read_text()
        assert ".find(" not in text and ".find_one(" not in text and ".distinct(" not in text, f
        assert ".count_documents(" not in text, f
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "connect":
                kw = {k.arg: k.value for k in node.keywords}
                assert isinstance(kw.get("read_only"), ast.Constant) and kw["read_only"].value is True, f


# --------------------------------------------------------------------------------------------- load protocol

def test_loads_are_versioned_cached_and_digested(chain_store, tmp_path, monkeypatch):
    from qortcli.steps.collect import run_collect_file

    path = tmp_path / "db"
    shutil.copytree(chain_store, path)
    monkeypatch.setenv("QORT_DB", str(path))
    monkeypatch.setattr(db, "_HANDLE", {"db": None, "error": "", "tried": 0.0})
    db._CACHE.clear()
    first = db._load("chain", {"currency": "ETH"}, None)
    assert first.status == "data" and first.data["currency"] == "ETH" and first.digest == db.digest_of(first.data)
    assert db._load("chain", {"currency": "ETH"}, first.version).status == "same"      # nothing new: nothing sent
    again = db._load("chain", {"currency": "ETH"}, None)
    assert again.data is first.data and again.digest == first.digest                  # one computation for all clients
    # a selection the data no longer lists falls back to the default, saying so
    stale = db._load("chain", {"currency": "ETH", "expiry": "1JAN20"}, None)
    assert stale.status == "data" and stale.data["expiry"] == first.data["expiry"] and "no expiry 1JAN20" in stale.note
    # a write moves the version: the next refresh fetches
    writer = connect(str(path))
    run_collect_file(writer, FIXTURES / "deribit_options_snapshot_20260111T152811Z.csv")
    writer.close()
    moved = db._load("chain", {"currency": "ETH"}, first.version)
    assert moved.status == "data" and moved.version != first.version


# --------------------------------------------------------------------------------------------- ages

def test_ages_against_the_schedule():
    from qortcli.schedule import load_schedule

    schedule = load_schedule({"misfire_grace_seconds": 60,
                              "jobs": {"collect_deribit": {"every": "5m"}, "price": {"after": "collect_deribit"},
                                       "suggest": {"cron": "15 * * * *"}, "optimize": {"cron": "30 0 * * 1,4"}}})
    now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    jobs, grace = ages.cadences_of(schedule, now)
    assert grace == 60 and jobs["collect_deribit"].seconds == 300 and jobs["price"].seconds == 300
    assert jobs["suggest"].seconds == 3600
    assert jobs["optimize"].seconds == 4 * 86400                     # Thu → Mon: the longest gap
    cad = (jobs, grace)
    fresh = ages.age("BTC chain", now - timedelta(seconds=359), "chain", now, cad)
    late = ages.age("BTC chain", now - timedelta(seconds=361), "chain", now, cad)
    assert not fresh.stale and late.stale and "every 5 min" in late.rule and "older than its schedule" in late.note
    assert ages.age("BTC chain", now - timedelta(seconds=200), "chain", now, cad).note == \
        ages.age("BTC chain", now - timedelta(seconds=200), "chain", now + timedelta(seconds=90), cad).note
    assert not ages.age("x", now - timedelta(days=30), "unscheduled_job", now, cad).stale
    day = ages.age("prices", datetime(2026, 12, 1, tzinfo=timezone.utc), "prices", now, cad, day=True)
    assert day.at_text == "2026-11-30 (whole day)" and day.seconds == 12 * 3600
    assert ages.age("live", now - timedelta(seconds=61), "live", now, cad).stale
    assert ages.age("none", None, "chain", now, cad).at_text == fmt.DASH


# --------------------------------------------------------------------------------------------- formatting

def test_small_amounts_keep_their_significant_digits():
    assert fmt.coin(0.0452) == "0.0452" and fmt.coin(0.000042) == "0.000042" and fmt.coin(0.0001) == "0.0001"
    assert fmt.coin(0.00012345) == "0.000123" and fmt.coin(1.23456) == "1.2346" and fmt.coin(-0.00005) == "-0.00005"
    assert fmt.usd(0.0042) == "$0.0042" and fmt.usd(0.45) == "$0.45" and fmt.usd(-1234.5) == "-$1,234.50"
    assert fmt.usd0(0.3) == "$0.30" and fmt.usd0(91234.4) == "$91,234"
    for x in (1e-7, 3.3e-6, 0.00049, 0.009):
        assert float(fmt.coin(x)) == pytest.approx(x, rel=5e-3) and fmt.coin(x) != "0.0000"
    assert fmt.coin(None) == fmt.coin(float("nan")) == fmt.DASH
    assert fmt.compact(1234) == "1.2k" and fmt.compact(2_500_000) == "2.5M" and fmt.compact(3.25) == "3.2"


# --------------------------------------------------------------------------------------------- chain rows

def test_chain_rows_range_sort_and_gamma_units(chain_store):
    from qortview.state import chain_rows, gamma_exponent

    ro = ReadOnlyDatabase(connect(str(chain_store), read_only=True))
    data = queries.chain_page(ro, "BTC")
    rows, strikes = data["rows"], data["rows"]["strike_usd"]
    everything = chain_rows(rows, data["forward_usd"], data["atm_strike_usd"], "all strikes", "strike", False)
    assert [float(r.strike.replace(",", "")) for r in everything] == strikes
    atm_i = strikes.index(data["atm_strike_usd"])
    near = chain_rows(rows, data["forward_usd"], data["atm_strike_usd"], "ATM ±10 strikes", "strike", False)
    assert [float(r.strike.replace(",", "")) for r in near] == strikes[max(0, atm_i - 10): atm_i + 11]
    assert sum(r.atm for r in near) == 1
    assert all(r.itm_call == (float(r.strike.replace(",", "")) < data["forward_usd"]) for r in near)
    band = chain_rows(rows, data["forward_usd"], data["atm_strike_usd"], "80–125 % of forward", "strike", False)
    assert all(0.8 * data["forward_usd"] <= float(r.strike.replace(",", "")) <= 1.25 * data["forward_usd"] for r in band)
    by_oi = chain_rows(rows, data["forward_usd"], data["atm_strike_usd"], "all strikes", "c_oi", True)
    oi = {float(r.strike.replace(",", "")): v for r, v in zip(everything, rows["call_oi_coin"])}
    ordered = [oi[float(r.strike.replace(",", ""))] for r in by_oi]
    known = [v for v in ordered if v is not None]
    assert known == sorted(known, reverse=True) and ordered[:len(known)] == known
    # not priced: Deribit's published set, which the recorded chains carry without gamma and theta
    assert data["greeks_source"] == "Deribit's published greeks" and rows["call_delta"][atm_i] is not None
    assert all(v is None for v in rows["call_gamma"] + rows["put_theta"]) and gamma_exponent(rows) == 0
    assert {r.c_gamma for r in everything} == {fmt.DASH}
    ro.close()


# --------------------------------------------------------------------------------------------- figures

def test_figures_keep_the_users_view_and_say_their_units(chain_store):
    ro = ReadOnlyDatabase(connect(str(chain_store), read_only=True))
    vol = queries.volatility(ro, "BTC")
    made = [figures.surface3d(vol), figures.smile(vol, vol["smiles"][3]["expiry"]), figures.smile(vol, "all"),
            figures.term_structure(vol), figures.skew(vol)]
    revisions = [f.layout.uirevision for f in made]
    assert all(revisions) and len(set(revisions)) == len(revisions)
    assert made[0].layout.scene.yaxis.type == "log" and made[0].layout.scene.uirevision == revisions[0]
    assert list(made[0].data[0].z[0]) == [None if v is None else pytest.approx(100 * v) for v in vol["surface"]["iv"][0]]
    assert made[3].layout.xaxis.type == "log"
    # the same data twice gives the same uirevision: a refresh keeps zoom and camera
    assert figures.surface3d(vol).layout.uirevision == revisions[0]
    plain = figures.plain(made[1])
    assert plain["layout"]["uirevision"] == revisions[1] and not plain["layout"].get("template")
    ro.close()


def test_payoff_axes_share_their_zero_line():
    s = [float(x) for x in range(50_000, 130_001, 5_000)]
    usd = [max(90_000 - x, 0) - 2_000 for x in s]
    coin = [u / x for u, x in zip(usd, s)]
    fig = figures.payoff({"id": "x", "index_usd": 90_000, "breakevens_usd": [88_000],
                          "payoff": {"s_usd": s, "pnl_usd": usd, "pnl_coin": coin}})
    lo, hi = fig.layout.yaxis.range
    lo2, hi2 = fig.layout.yaxis2.range
    assert -lo / (hi - lo) == pytest.approx(-lo2 / (hi2 - lo2))      # zero at the same height on both axes
    assert lo2 <= min(coin) and hi2 >= max(coin)
    eq = figures.equity({"dates": ["2023-01-01", "2023-06-01"], "equity": [1.0, 2.9], "benchmark_equity": [1.0, 0.6]}, "p")
    assert list(eq.layout.yaxis.ticktext) == ["×0.75", "×1", "×1.5", "×2"] and eq.layout.yaxis.type == "log"


# --------------------------------------------------------------------------------------------- registry

def test_every_registered_page_has_a_state_with_a_load_and_a_page_load():
    import importlib

    from qortview import pages

    routes = [s.route for s in pages.REGISTRY]
    assert routes[0] == "/" and len(set(routes)) == len(routes)
    assert not any(s.optional for s in pages.REGISTRY) and pages.available() == pages.REGISTRY
    assert len(pages.REGISTRY) == 8 and "/history" in routes
    for spec in pages.REGISTRY:
        module = importlib.import_module(spec.module)
        state = getattr(module, spec.state)
        assert callable(module.page) and hasattr(state, "load") and hasattr(state, "tick")
        assert state.PAGE in queries.PAGE_LOADS, spec
    assert math.isfinite(db.refresh_seconds())


# --------------------------------------------------------------------------------------------- live marks

def test_the_chain_shows_the_streams_live_marks_over_the_snapshot(chain_store, tmp_path):
    """With `live_marks` written by the stream, the chain's marks and greeks are the live ones (bid/ask, OI from
    the snapshot), the chain's version follows the live stamp, and the fast poll's stamp is one small read."""
    from qortcli.sources.deribit import chains_from_file
    from qortcli.steps.live_chain import LiveChain, live_marks_document, reprice
    from qortcli.store import ops, read

    path = tmp_path / "db"
    shutil.copytree(chain_store, path)
    writer = connect(str(path))
    chain = next(c for c in chains_from_file(FIXTURES / LATE) if c.currency == "BTC")
    live = LiveChain.from_parsed(chain)
    view = reprice(live.freeze(), "ACT/365")
    written = chain.timestamp + timedelta(seconds=5)
    ro = ReadOnlyDatabase(connect(str(path), read_only=True))
    before = queries.page_version(ro, "chain", {"currency": "BTC"})
    assert queries.chain_page(ro, "BTC")["live"] is None
    ops.upsert_many(writer, schema.LIVE_MARKS, [live_marks_document(view, written, {"connected": True})])
    assert read.live_stamp(ro, "BTC") == written
    assert queries.page_version(ro, "chain", {"currency": "BTC"}) != before
    now = chain.timestamp + timedelta(seconds=8)
    data = queries.chain_page(ro, "BTC", now=now)
    lf = read.live_marks(ro, "BTC").frame.set_index("instrument")
    assert data["live"]["matched"] == data["options"] and data["live"]["instruments"] == len(chain.records)
    assert data["live"]["connected"]
    rows = data["rows"]
    for i, symbol in enumerate(rows["call_instrument"]):
        if not symbol:
            continue
        assert rows["call_mark_coin"][i] == pytest.approx(lf.loc[symbol, "mark_coin"], rel=1e-5)
        assert rows["call_delta"][i] == pytest.approx(lf.loc[symbol, "delta"], rel=1e-5)
        assert rows["call_live_age_s"][i] == pytest.approx(8.0, abs=1e-3)
    writer.close()
    ro.close()


def test_the_overview_lists_the_open_alerts(chain_store, tmp_path):
    """Where the alerts module is present: the open episodes on the overview, and an acknowledgement (no step
    run) moves the overview's version."""
    from qortcli.store import ops

    path = tmp_path / "db"
    shutil.copytree(chain_store, path)
    writer = connect(str(path))
    opened = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
    alert = {"rule": "iv_rank_high", "subject": "BTC", "opened_at": opened, "last_seen_at": opened, "status": "open",
             "kind": "iv_rank", "category": "market", "severity": "warning", "title": "BTC 30d IV rank 0.93 ≥ 0.9",
             "latest": {"title": "BTC 30d IV rank 0.95 ≥ 0.9"}, "trigger": {"values": {}, "thresholds": {}}, "delivery": []}
    ops.upsert_many(writer, schema.ALERTS, [alert])
    ro = ReadOnlyDatabase(connect(str(path), read_only=True))
    data = queries.overview(ro)
    assert [a["rule"] for a in data["alerts"]] == ["iv_rank_high"] and data["alerts"][0]["latest_title"].endswith("0.95 ≥ 0.9")
    before = queries.page_version(ro, "overview", {})
    ops.upsert_many(writer, schema.ALERTS, [{**alert, "status": "acknowledged", "acknowledged_at": opened}])
    assert queries.page_version(ro, "overview", {}) != before
    assert queries.overview(ro)["alerts"][0]["acknowledged"] is True
    writer.close()
    ro.close()
