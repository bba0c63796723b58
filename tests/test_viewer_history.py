"""The viewer's History page data (viewer/qortview/history.py) and figures, through a read-only handle on the real vol
store (21 daily chains + Mario-SO prices, `qortcli vol` run): values against the recorded files computed without the
store, and against the stored vol document."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qortcli.errors import UsageError
from qortcli.steps.vol import run_vol
from qortcli.store import connect, ensure_schema, read, schema
from qortcli.store.readonly import ReadOnlyDatabase

from vol_fixtures import bars, reference_rolling_rv
from vol_store import daily_summaries, vol_store

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "viewer"))
from qortview import history_figures  # noqa: E402
from qortview.history import EMPTY, history_page  # noqa: E402


@pytest.fixture(scope="module")
def ro(tmp_path_factory):
    db = connect(str(vol_store(tmp_path_factory.mktemp("viewerhistory") / "db")))
    run_vol(db)
    yield ReadOnlyDatabase(db), db
    db.close()


def values(xs) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in xs], dtype=float)


def test_history_page_against_the_recorded_files_and_the_stored_analysis(ro):
    handle, db = ro
    runs = db[schema.JOB_RUNS].count_documents({})
    page = history_page(handle)
    json.dumps(page, allow_nan=False)                                    # plain JSON values
    assert page["currencies"] == ["BTC", "ETH"] and page["currency"] == "BTC" and page["source"] == "marks"
    assert page["empty"] == "" and page["vol_note"] == "" and page["as_of"] == "2026-08-21T00:00:00+00:00"
    ref = daily_summaries("btc")
    days = pd.DatetimeIndex(ref.index.floor("D"))
    assert page["iv_rv"]["day"] == [d.isoformat() for d in days]
    assert np.allclose(values(page["iv_rv"]["atm_iv_30d"]), ref["atm_iv_30d_marks"].to_numpy(), rtol=1e-12)
    rv = reference_rolling_rv(bars("btc"), 30).reindex(days)           # pandas, from the CSV
    assert np.allclose(values(page["iv_rv"]["rv_30d"]), rv.to_numpy(), rtol=1e-12)
    assert np.allclose(values(page["skew"]["rr25_30d"]), ref["rr25_30d_marks"].to_numpy(), rtol=1e-12)
    assert np.allclose(values(page["skew"]["bf25_7d"]), ref["bf25_7d_marks"].to_numpy(), rtol=1e-12)

    doc = read.latest_vol(db, "BTC")
    best = next(b for b in doc["best"] if b["horizon_days"] == 30)
    assert page["iv_rv"]["forecast_model"] == best["model"]
    path = {(s["horizon_days"], s["model"]): s["vol"] for s in doc["paths"]["series"]}
    assert page["iv_rv"]["forecast_30d"] == path[(30, best["model"])]
    assert page["iv_rv"]["realised_next_30d"] == path[(30, "realised")]
    assert len(page["iv_rv"]["origin"]) == len(doc["paths"]["origin"])
    assert [(r["measure"], r["lookback_days"], r["percentile"]) for r in page["ranks"]] == \
        [(r["measure"], r["lookback_days"], r["percentile"]) for r in doc["ranks"]]
    assert page["cone"]["median"] == [r["median"] for r in doc["cone"]["rows"]]
    assert page["term"]["tenor_days"] == [7, 30, 60, 90, 180]
    assert page["term"]["iv"] == [r["iv"] for r in doc["iv_now"]]
    latest = read.latest_summary(db, "BTC")
    listed = [t for t in latest["term_structure"] if t["atm_iv_marks"] is not None]
    assert page["term"]["listed"]["expiry_code"] == [t["expiry_code"] for t in listed]
    assert page["term"]["listed"]["days"] == pytest.approx([t["t_years"] * 365.0 for t in listed])
    assert {(s["model"], s["horizon_days"]) for s in page["scores"]} == \
        {(m, h) for m in ("har", "garch", "gjr", "naive", "implied") for h in (7, 30)}
    assert db[schema.JOB_RUNS].count_documents({}) == runs              # the page records nothing


def test_history_figures_plot_the_page(ro):
    handle, _ = ro
    page = history_page(handle, "btc")
    fig = history_figures.iv_rv_forecast(page)
    names = [t.name for t in fig.data]
    assert names[0] == "ATM IV 30d (marks)" and names[1].startswith("RV 30d trailing")
    assert list(fig.data[0].y) == pytest.approx([100 * v for v in page["iv_rv"]["atm_iv_30d"]])
    assert "out of sample" in names[2] and len(fig.data[2].x) == len(page["iv_rv"]["origin"])
    cone = history_figures.cone(page)
    median = next(t for t in cone.data if t.name == "RV median")
    assert list(median.x) == page["cone"]["window_days"]
    assert list(median.y) == pytest.approx([100 * v for v in page["cone"]["median"]])
    term = next(t for t in cone.data if t.name and t.name.startswith("ATM IV constant maturity"))
    assert list(term.x) == [7, 30, 60, 90, 180]
    listed = next(t for t in cone.data if t.name and t.name.startswith("ATM IV listed"))
    assert all(1.0 <= d <= 216 for d in listed.x)
    ranks = history_figures.ranks(page)
    bars365 = next(t for t in ranks.data if t.name == "percentile 365d")
    assert list(bars365.y) == pytest.approx([100 * r["percentile"] for r in page["ranks"] if r["lookback_days"] == 365])
    skew = history_figures.skew_history(page)
    assert [t.name for t in skew.data] == ["RR25 30d (marks)", "BF25 30d (marks)", "RR25 7d (marks)", "BF25 7d (marks)"]


def test_without_a_vol_analysis_the_page_says_what_to_run(ro):
    handle, _ = ro
    page = history_page(handle, "BTC", "svi")            # summaries have SVI fields only on the fitted chain
    assert page["vol_note"] == "no stored vol analysis for BTC (svi): run `qortcli vol --currency BTC`"
    assert page["ranks"] == [] and page["cone"]["window_days"] == [] and page["iv_rv"]["origin"] == []
    assert sum(v is not None for v in page["iv_rv"]["atm_iv_30d"]) == 1
    assert history_figures.cone(page).layout.annotations[0].text == "no vol cone stored: run `qortcli vol`"
    assert history_figures.ranks(page).layout.annotations[0].text == "no ranks stored: run `qortcli vol`"
    with pytest.raises(UsageError, match="currencies with one: BTC, ETH"):
        history_page(handle, "SOL")
    with pytest.raises(UsageError, match="unknown IV source"):
        history_page(handle, "BTC", "mid")


def test_an_empty_store(tmp_path):
    db = connect(str(tmp_path / "db"))
    ensure_schema(db)
    try:
        page = history_page(ReadOnlyDatabase(db))
        assert page == {"currencies": [], "currency": "", "source": "marks", "empty": EMPTY}
        assert history_figures.iv_rv_forecast(page).layout.annotations[0].text == "no IV history"
    finally:
        db.close()


def test_the_page_state_formats_the_data(ro):
    from types import SimpleNamespace

    from qortview.pages.history import HistoryState

    handle, db = ro
    page = history_page(handle, "BTC")
    shown = SimpleNamespace()
    HistoryState._show(shown, page)            # the state's formatting, without a running app
    doc = read.latest_vol(db, "BTC")
    year = next(r for r in doc["ranks"] if (r["measure"], r["lookback_days"]) == ("atm_iv_30d", 365))
    assert shown.iv_pct == f"{year['percentile']:,.2f} / {year['rank']:,.2f}"
    assert shown.iv_now == f"{100 * page['iv_rv']['atm_iv_30d'][-1]:.1f}%"
    best = next(b for b in doc["best"] if b["horizon_days"] == 30)
    assert shown.forecast.startswith(f"{100 * best['vol']:.1f}%")
    assert len(shown.ranks) == 16 and shown.ranks[0].c0 == "ATM IV 30d" and shown.ranks[0].c5 == "21"
    assert [r.c0 for r in shown.scores] == ["HAR-RV", "GARCH(1,1)-t", "GJR-GARCH-t", "naive (RV persists)",
                                             "implied (ATM IV)"]
    assert shown.scores[0].c7 == "21" and shown.vol_note == ""
