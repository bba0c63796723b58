"""The vol step on a real store (21 daily Deribit chains 2025-12-30…2026-01-19 imported and summarised, Mario-SO
daily prices imported from CSV): the stored document against the quant core run on the recorded files directly
(no store), hand computations of RV and of the rank/percentile, re-runs, the as-of cut, n/a reasons, the IV
source in the key, the read functions and the regime keys the IV-vs-forecast rules read."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from qortcli.errors import StepError, UsageError
from qortcli.quant import strategies as strat
from qortcli.quant.vol import vol_report
from qortcli.steps.vol import CANDIDATES, forecast_regime, run_vol
from qortcli.store import connect, ops, read, schema

from vol_fixtures import bars, reference_rolling_rv
from vol_store import DAILY, daily_summaries, vol_store

UTC = timezone.utc


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    db = connect(str(vol_store(tmp_path_factory.mktemp("vol") / "db")))
    summary = run_vol(db)
    yield db, summary
    db.close()


def close(a, b, rel=1e-9, abs_=1e-12) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rel, abs_tol=abs_)
    return a == b


def same_record(stored: dict, record, skip=()) -> None:
    """Every field of a result dataclass equals the stored value (datetimes to the millisecond)."""
    for name in (f.name for f in dataclasses.fields(record)):
        if name in skip or name not in stored:
            continue
        want = ops.to_plain(getattr(record, name))
        got = stored[name]
        if isinstance(want, float) or isinstance(got, float):
            assert close(got, want), (name, got, want)
        elif isinstance(want, dict):
            assert set(got) == set(want) and all(close(got[k], want[k]) for k in want), name
        else:
            assert got == want, (name, got, want)


def test_daily_chains_cover_21_consecutive_days():
    days = [p.name.split("_")[-1][:8] for p in DAILY]
    assert len(days) == 21 and days[0] == "20251230" and days[-1] == "20260119"
    assert len(set(days)) == 21


def test_stored_document_equals_the_report_and_the_quant_core_on_the_recorded_files(store):
    db, summary = store
    assert [r.currency for r in summary.results] == ["BTC", "ETH"] and summary.stored == 2
    btc = summary.results[0]
    doc = read.latest_vol(db, "BTC")
    assert doc["_id"] == "BTC|marks|2026-08-21" == btc.document["_id"]
    assert doc["as_of"] == datetime(2026, 8, 21, tzinfo=UTC) and doc["source"] == "marks" and doc["basis"] == "ACT/365"
    # the same numbers from the recorded files with no store in between: prices through the Yahoo importer, the
    # summaries' smile fields from the CSVs
    prices = bars("btc")
    ref = vol_report(prices, daily_summaries("btc"))
    report = btc.report
    for mine, theirs in zip(report.realised, ref.realised):
        assert (mine.estimator, mine.window_days) == (theirs.estimator, theirs.window_days)
        assert close(mine.vol, theirs.vol)
    for measure in ref.ranks:
        for mine, theirs in zip(report.ranks[measure], ref.ranks[measure]):
            assert close(mine.value, theirs.value, rel=1e-9) and close(mine.percentile, theirs.percentile)
    for mine, theirs in zip(report.evaluation.scores, ref.evaluation.scores):
        assert (mine.model, mine.horizon_days, mine.n) == (theirs.model, theirs.horizon_days, theirs.n)
        assert close(mine.qlike, theirs.qlike, rel=1e-7) and close(mine.mse, theirs.mse, rel=1e-7)

    # every stored figure is the report's
    for stored, record in zip(doc["realised"], report.realised):
        same_record(stored, record, skip=("as_of", "days_per_year"))
    ranks = [(m, r) for m, rows in report.ranks.items() for r in rows]
    assert len(doc["ranks"]) == len(ranks) == 16
    for stored, (measure, record) in zip(doc["ranks"], ranks):
        assert stored["measure"] == measure and stored["column"] == f"{measure}_marks"
        same_record(stored, record, skip=("as_of",))
    for stored, record in zip(doc["cone"]["rows"], report.cone.rows):
        same_record(stored, record)
    for stored, record in zip(doc["premium"]["now"], report.premium.now):
        same_record(stored, record)
    for stored, record in zip(doc["forecasts"], report.forecasts):
        same_record(stored, record)
    ev = report.evaluation
    assert doc["evaluation"]["eval_start"] == ev.eval_start and doc["evaluation"]["n_refits"] == len(ev.refit_days)
    for stored, record in zip(doc["evaluation"]["scores"], ev.scores):
        same_record(stored, record)
    assert [r["tenor_days"] for r in doc["iv_now"]] == sorted(report.iv_now)
    assert doc["iv_as_of"] == datetime(2026, 1, 19, tzinfo=UTC) and doc["iv_age_days"] == 214

    # the paths are √ of the evaluation's variances, origin by origin
    paths = doc["paths"]
    assert len(paths["origin"]) == len(ev.paths)
    for series in paths["series"]:
        want = np.sqrt(ev.paths[(series["horizon_days"], series["model"])].to_numpy())
        got = np.array([np.nan if v is None else v for v in series["vol"]])
        assert np.allclose(got, want, equal_nan=True)
    json.dumps(summary.to_dict(), allow_nan=False)


def test_realised_vol_and_ranks_by_hand(store):
    db, _ = store
    doc = read.latest_vol(db, "BTC")
    prices = bars("btc")
    rv30 = next(r for r in doc["realised"] if (r["estimator"], r["window_days"]) == ("close_to_close", 30))
    assert rv30["vol"] == pytest.approx(reference_rolling_rv(prices, 30).iloc[-1], rel=1e-12)
    # 30 calendar days to 2026-08-21 hold the gaps of 07-22, 07-30, 08-03: 2 missing days, 3 dropped returns
    assert (rv30["n_returns"], rv30["n_missing_days"], rv30["n_gap_returns"]) == (25, 2, 3)
    closes = prices["close"].asfreq("D").loc["2026-07-23":"2026-08-21"]
    r = np.log(closes / closes.shift(1)).dropna()
    assert len(r) == 25 and rv30["vol"] == pytest.approx(math.sqrt(365 * np.mean(r ** 2)), rel=1e-12)

    iv = daily_summaries("btc")["atm_iv_30d_marks"]           # one chain a day: the day's last is the chain
    x, hist = iv.iloc[-1], iv.iloc[:-1].to_numpy()
    for row in (r for r in doc["ranks"] if r["measure"] == "atm_iv_30d"):
        assert row["n_points"] == 21 and row["value"] == pytest.approx(x, rel=1e-12)
        assert row["percentile"] == pytest.approx(np.sum(hist < x) / 20, abs=1e-15)
        assert row["rank"] == pytest.approx((x - iv.min()) / (iv.max() - iv.min()), rel=1e-12)
        assert row["span_start"] == datetime(2025, 12, 30, tzinfo=UTC)           # one point per UTC day
        assert row["span_end"] == datetime(2026, 1, 19, tzinfo=UTC)
        assert row["covers_lookback"] is False                                     # 21 days of a 30..365-day window
    cone30 = next(r for r in doc["cone"]["rows"] if r["window_days"] == 30)
    assert cone30["current_iv"] == pytest.approx(x, rel=1e-12)
    assert cone30["current_rv"] == pytest.approx(rv30["vol"], rel=1e-12)   # prefix sums vs a window mean


def test_best_forecast_is_the_lowest_out_of_sample_qlike_among_the_models(store):
    db, _ = store
    doc = read.latest_vol(db, "BTC")
    scores = {(s["model"], s["horizon_days"]): s for s in doc["evaluation"]["scores"]}
    for best in doc["best"]:
        h = best["horizon_days"]
        candidates = {m: scores[(m, h)]["qlike"] for m in CANDIDATES if scores[(m, h)]["qlike"] is not None}
        assert best["model"] == min(candidates, key=candidates.get)
        assert best["score"] == candidates[best["model"]] and best["n_scored"] == scores[(best["model"], h)]["n"] == 21
        assert best["implied_score"] == scores[("implied", h)]["qlike"]
        assert best["beats_implied"] == (best["score"] < best["implied_score"])
        today = next(f for f in doc["forecasts"] if f["model"] == best["model"] and f["horizon_days"] == h)
        assert best["vol"] == today["vol"] and best["origin"] == doc["as_of"]


def test_rerun_replaces_and_records_runs(store):
    db, first = store
    before = db[schema.VOL_FORECASTS].count_documents({})
    runs = db[schema.JOB_RUNS].count_documents({"step": "vol"})
    again = run_vol(db, currency="btc")
    assert [r.currency for r in again.results] == ["BTC"]
    assert db[schema.VOL_FORECASTS].count_documents({}) == before          # replaced, not added
    doc = read.latest_vol(db, "BTC")
    assert doc["computed_at"] > first.results[0].document["computed_at"]
    assert doc["realised"] == first.results[0].document["realised"]
    run = db[schema.JOB_RUNS].find_one({"_id": doc["run_id"]})
    assert run["status"] == "ok" and run["counts"] == {"currencies": 1, "stored": 1, "not_available": 0}
    assert db[schema.JOB_RUNS].count_documents({"step": "vol"}) == runs + 1


def test_as_of_cut_gives_its_own_document_and_clear_na_reasons(store):
    db, _ = store
    result = run_vol(db, currency="BTC", now=datetime(2026, 1, 4, 23, 59, tzinfo=UTC)).results[0]
    doc = result.document
    assert doc["_id"] == "BTC|marks|2026-01-04" and doc["prices"]["last"] == datetime(2026, 1, 4, tzinfo=UTC)
    assert doc["summaries"]["n_days"] == 6 and doc["summaries"]["last"] < datetime(2026, 1, 5, tzinfo=UTC)
    assert {r["reason"] for r in doc["ranks"]} == {"n/a: needs 20 points, has 6"}
    assert all(r["rank"] is None and r["percentile"] is None for r in doc["ranks"])   # never a number from 6 points
    assert doc["evaluation"] is None and doc["evaluation_reason"].startswith("n/a: no evaluation origins")
    assert all(b["model"] is None and b["reason"] == doc["evaluation_reason"] for b in doc["best"])
    # the full-data document is still the latest
    assert read.latest_vol(db, "BTC")["_id"] == "BTC|marks|2026-08-21"

    # nine days of prices: every window, model and cone row says what it needs
    tiny = run_vol(db, currency="BTC", now=datetime(2014, 9, 26, tzinfo=UTC)).results[0].document
    by = {(r["estimator"], r["window_days"]): r for r in tiny["realised"]}
    assert by[("close_to_close", 7)]["vol"] is not None
    assert by[("close_to_close", 30)]["reason"] == "n/a: needs 18 returns, has 9"
    fc = {(f["model"], f["horizon_days"]): f for f in tiny["forecasts"]}
    assert fc[("har", 30)]["reason"] == "n/a: HAR needs 365 training origins, has 0"
    assert fc[("garch", 7)]["reason"] == "n/a: garch needs 365 returns, has 9" and fc[("garch", 7)]["vol"] is None
    assert fc[("implied", 7)]["reason"] == "n/a: no implied vol series for this horizon"
    assert tiny["cone"]["rows"][0]["reason"] == "n/a: needs 20 RV values, has 5"
    assert tiny["iv_as_of"] is None and tiny["iv_now"] == [] and tiny["premium"]["now"] == []

    with pytest.raises(StepError, match=r"no BTC prices in price_data up to 2010-01-01: run `qortcli collect prices`"):
        run_vol(db, currency="BTC", now=datetime(2010, 1, 1, tzinfo=UTC))
    with pytest.raises(UsageError, match="unknown IV source 'mid'"):
        run_vol(db, source="mid")
    with pytest.raises(UsageError, match="unknown day-count basis"):
        run_vol(db, basis="30/360")


def test_svi_source_has_its_own_document(store):
    db, _ = store
    result = run_vol(db, currency="BTC", source="svi").results[0]
    doc = result.document
    assert doc["_id"] == "BTC|svi|2026-08-21" and read.latest_vol(db, "BTC", "svi")["_id"] == doc["_id"]
    assert read.latest_vol(db, "BTC")["source"] == "marks" and read.vol_sources(db, "BTC") == ["marks", "svi"]
    # only the latest chain was fitted (`surface` on the latest snapshot): one SVI point
    assert {r["column"] for r in doc["ranks"]} == {"atm_iv_30d_svi", "rr25_30d_svi", "bf25_30d_svi", "term_slope_svi"}
    assert {r["reason"] for r in doc["ranks"]} == {"n/a: needs 20 points, has 1"}
    surface = read.latest_summary(db, "BTC")
    assert surface["snapshot_id"] == "BTC-20260119T212024Z"
    iv30 = next(r["iv"] for r in doc["iv_now"] if r["tenor_days"] == 30)
    assert iv30 == pytest.approx(surface["atm_iv_30d_svi"], rel=1e-12) and iv30 != surface["atm_iv_30d_marks"]


def test_a_currency_without_prices_is_reported_not_fatal(embedded_db, tmp_path):
    from vol_store import price_dir
    from qortcli.steps.collect import run_collect_file, run_collect_prices_csv
    from qortcli.steps.surface import run_backfill

    run_collect_prices_csv(embedded_db, price_dir(tmp_path, {"BTC-USD.csv": DAILY[0].parent.parent / "prices_mario"
                                                              / "btc.csv"}))
    run_collect_file(embedded_db, DAILY[-1])
    run_backfill(embedded_db)
    summary = run_vol(embedded_db)
    btc, eth = summary.results
    assert btc.document is not None and eth.document is None and summary.stored == 1
    assert eth.reason.startswith("n/a: no ETH prices in price_data: run `qortcli collect prices`")
    assert summary.to_dict()["currencies"][1] == {"currency": "ETH", "source": "marks", "reason": eth.reason}
    # one summary day: ranks n/a, the premium and the cone's IV from that one chain
    assert {r["reason"] for r in btc.document["ranks"]} == {"n/a: needs 20 points, has 1"}
    assert btc.document["iv_as_of"] == datetime(2026, 1, 19, tzinfo=UTC)
    with pytest.raises(StepError, match="no ETH prices"):
        run_vol(embedded_db, currency="ETH")


def test_latest_vol_reads_by_key_order_on_both_stores(any_db):
    docs = [{"currency": "BTC", "source": s, "as_of": datetime(2026, m, d, tzinfo=UTC), "n": i}
            for i, (s, m, d) in enumerate([("marks", 1, 2), ("marks", 3, 1), ("svi", 2, 1), ("marks", 2, 28)])]
    docs.append({"currency": "BTCX", "source": "marks", "as_of": datetime(2027, 1, 1, tzinfo=UTC), "n": 9})
    ops.upsert_many(any_db, schema.VOL_FORECASTS, docs)
    assert read.latest_vol(any_db, "btc")["n"] == 1 and read.latest_vol(any_db, "BTC", "svi")["n"] == 2
    assert read.latest_vol(any_db, "ETH") is None and read.vol_sources(any_db, "BTC") == ["marks", "svi"]


def test_forecast_regime_feeds_the_rules(store):
    db, _ = store
    doc = read.latest_vol(db, "BTC")
    best30 = next(b for b in doc["best"] if b["horizon_days"] == 30)
    seen = datetime(2026, 8, 22, 12, tzinfo=UTC)          # half a day after the close of the origin day
    regime = forecast_regime(doc, 30, seen)
    assert regime["forecast_rv_30d"] == best30["vol"] and regime["forecast_model"] == best30["model"]
    assert regime["forecast_age_days"] == pytest.approx(0.5) and regime["forecast_n_scored"] == 21
    assert regime["forecast_as_of"] == doc["as_of"] and regime["forecast_reason"] is None
    cfg = dict(strat_cfg(), iv_tenor_days=30)
    rich = strat.evaluate_rules({**regime, "atm_iv_30d_marks": best30["vol"] + 0.06}, cfg)
    fired = {r.name: r for r in rich}
    assert fired["iv_rich_vs_forecast"].fired and not fired["iv_cheap_vs_forecast"].fired
    assert fired["iv_rich_vs_forecast"].inputs["forecast_model"] == best30["model"]
    stale = forecast_regime(doc, 30, seen + timedelta(days=10))
    rule = next(r for r in strat.evaluate_rules({**stale, "atm_iv_30d_marks": 0.9}, cfg) if r.name == "iv_rich_vs_forecast")
    assert not rule.evaluated and "stale" in rule.note
    assert forecast_regime(None, 30, seen)["forecast_reason"] == "n/a: no stored vol forecast: run `qortcli vol`"
    assert forecast_regime(doc, 14, seen)["forecast_reason"] == "n/a: no 14-day forecast (horizons 7, 30)"


def strat_cfg() -> dict:
    from qortcli.config import get_settings

    return get_settings().section("suggest")
