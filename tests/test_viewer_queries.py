"""The viewer's page data (viewer/qortview/queries.py, `PAGE_LOADS`) on a store filled by the real pipeline from
two recorded January 2026 chains, read through a read-only handle: every value against the recorded CSV rows,
the stored documents, or an independent computation written here (SVI evaluated from the stored parameters,
medians, the nearest-30-day rule). No browser here."""

from __future__ import annotations

import json
import math
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qortcli.errors import UsageError
from qortcli.store import connect, ensure_schema, read, schema
from qortcli.store.readonly import ReadOnlyDatabase

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "viewer"))
from qortview import queries as q  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
EARLY, LATE = "20260110T211832Z", "20260111T211857Z"
LATE_TS = datetime(2026, 1, 11, 21, 18, 57, 100000, tzinfo=timezone.utc)


def _csv(stamp: str) -> pd.DataFrame:
    return pd.read_csv(FIXTURES / f"deribit_options_snapshot_{stamp}.csv")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two recorded snapshots (BTC + ETH each), priced and surfaced; two optimiser portfolios, suggestions for
    both currencies, a book with its risk report."""
    from qortcli.steps.book import run_book_import
    from qortcli.steps.collect import run_collect_file, run_collect_prices_csv
    from qortcli.steps.optimize import run_optimize
    from qortcli.steps.price import run_price
    from qortcli.steps.risk import run_risk
    from qortcli.steps.suggest import run_suggest
    from qortcli.steps.surface import run_surface

    root = tmp_path_factory.mktemp("viewerq")
    chains = root / "chains"
    chains.mkdir()
    for stamp in (EARLY, LATE):
        shutil.copy(FIXTURES / f"deribit_options_snapshot_{stamp}.csv", chains)
    db = connect(str(root / "db"))
    ensure_schema(db)
    run_collect_file(db, chains)
    run_collect_prices_csv(db, FIXTURES / "prices")
    run_price(db)
    run_surface(db)
    portfolios = [run_optimize(db)["portfolio_id"], run_optimize(db, model="min-risk", by_sector=True,
                                                                 max_sector=0.6)["portfolio_id"]]
    # recorded chains: expiries judged as of the snapshot's own time
    run_suggest(db, currency="BTC", strategies=["short_strangle", "iron_condor"], top=3, as_of_snapshot=True)
    run_suggest(db, currency="ETH", strategies=["long_straddle"], top=2, as_of_snapshot=True)
    run_book_import(db, FIXTURES / "positions_20260105.csv")
    run_risk(db)
    yield {"db": db, "ro": ReadOnlyDatabase(db), "path": root / "db", "portfolios": portfolios}
    db.close()


def test_every_page_load_is_plain_json_and_served_by_indexes(store):
    """Each registered page loads with its default selection (the embedded engine refuses unindexed queries)."""
    assert set(q.PAGE_LOADS) >= {"overview", "chain", "volatility", "portfolio", "suggestions", "market", "book"}
    for name, load in q.PAGE_LOADS.items():
        data = load(store["ro"])
        json.dumps(data, allow_nan=False)
        assert q.page_version(store["ro"], name, {}), name


def test_overview_cards_runs_and_counts(store):
    data = q.overview(store["ro"])
    late = _csv(LATE)
    cards = {c["currency"]: c for c in data["currencies"]}
    assert set(cards) == {"BTC", "ETH"}
    for cur, card in cards.items():
        rows = late[late["currency"] == cur]
        summary = store["db"][schema.SUMMARIES].find_one({"_id": f"{cur}-{LATE}"})
        assert card["snapshot_id"] == f"{cur}-{LATE}" and card["summary_snapshot_id"] == f"{cur}-{LATE}"
        assert card["instruments"] == len(rows) and card["snapshots"] == 2
        # the spot is the summary's: the median index of the recorded rows
        assert card["index_usd"] == pytest.approx(float(rows["index_price"].median()))
        for field in ("atm_iv_30d_marks", "atm_iv_30d_svi", "vs_vol_30d_svi", "rr25_30d_marks", "pcr_oi"):
            assert card[field] == pytest.approx(summary[field]), field
        calls, puts = rows[rows.option_type == "call"], rows[rows.option_type == "put"]
        assert card["pcr_oi"] == pytest.approx(puts["open_interest"].sum() / calls["open_interest"].sum())
    counts = data["counts"]
    assert counts[schema.OPTIONS] == len(late) + len(_csv(EARLY))
    assert counts[schema.PRICES] == store["db"][schema.PRICES].count_documents({})
    jobs = {j["job"]: j for j in data["jobs"]}
    assert jobs["collect_deribit"]["last"]["step"] == "collect" and "snapshots" in jobs["collect_deribit"]["last"]["counts"]
    assert "symbols" in jobs["collect_prices"]["last"]["counts"]
    assert jobs["collect_deribit"]["cadence_s"] == 300.0 and jobs["optimize"]["cadence_s"] == 86400.0
    for job in ("price", "surface", "optimize", "suggest", "risk"):
        assert jobs[job]["last"]["status"] == "ok", job
    newest = [r for r in store["db"][schema.JOB_RUNS].find({}).sort("started_at", -1).limit(12)]
    assert [r["step"] for r in data["runs"]] == [r["step"] for r in newest]
    assert data["price_day"] == "2023-03-31" and len(data["price_symbols"]) == 10


def _days(code: str, now: datetime) -> float:
    expiry = datetime.strptime(code, "%d%b%y").replace(hour=8, tzinfo=timezone.utc)
    return (expiry - now).total_seconds() / 86400


def test_chain_has_every_strike_of_the_expiry_with_both_sides(store):
    data = q.chain_page(store["ro"], "ETH")
    late = _csv(LATE)
    late = late[late["currency"] == "ETH"]
    assert data["snapshot_id"] == f"ETH-{LATE}" and data["basis"] == "ACT/365"
    listed = [c for c in data["expiries"] if _days(c, LATE_TS) > 0]
    assert data["expiries"] == listed == sorted(listed, key=lambda c: _days(c, LATE_TS))
    assert data["expiry"] == min(listed, key=lambda c: abs(_days(c, LATE_TS) - 30))
    grp = late[late["instrument_name"].str.contains(f"-{data['expiry']}-")]
    rows = data["rows"]
    assert rows["strike_usd"] == sorted(grp["strike"].unique()) and data["strikes_total"] == grp["strike"].nunique()
    assert data["forward_usd"] == pytest.approx(float(grp["underlying"].median()))
    assert data["atm_strike_usd"] == min(grp["strike"].unique(), key=lambda k: abs(k - data["forward_usd"]))
    docs = {d["symbol"]: d for d in store["db"][schema.OPTIONS].find({"snapshot_id": f"ETH-{LATE}"})}
    by_symbol = grp.set_index("instrument_name")
    checked = 0
    for i, strike in enumerate(rows["strike_usd"]):
        for side, suffix in (("call", "C"), ("put", "P")):
            symbol = rows[f"{side}_instrument"][i]
            if not symbol:
                continue
            src, doc = by_symbol.loc[symbol], docs[symbol]
            assert symbol.endswith(f"-{suffix}") and src["strike"] == strike
            for name, col in (("bid_coin", "bid_price"), ("ask_coin", "ask_price"), ("mark_coin", "mark_price"),
                              ("mark_iv", "implied_volatility"), ("oi_coin", "open_interest"), ("volume_coin", "volume")):
                got, want = rows[f"{side}_{name}"][i], src[col]
                if got is None:
                    assert pd.isna(want) or (want == 0 and name in ("bid_coin", "ask_coin")), (symbol, name)
                else:
                    assert got == pytest.approx(want, rel=1e-5), (symbol, name)
            # USD is spot-USD: coin × the row's index
            assert rows[f"{side}_mark_usd"][i] == pytest.approx(src["mark_price"] * src["index_price"], rel=1e-5)
            if rows[f"{side}_bid_coin"][i] is not None:
                assert rows[f"{side}_bid_usd"][i] == pytest.approx(src["bid_price"] * src["index_price"], rel=1e-5)
            # greeks and bid/ask IVs are the price step's
            model = doc["model"]
            for name in ("delta", "gamma", "vega", "theta"):
                assert rows[f"{side}_{name}"][i] == pytest.approx(model[name], rel=1e-5), (symbol, name)
            for name in ("iv_bid", "iv_ask"):
                want = model[name]
                assert (rows[f"{side}_{name}"][i] is None) == (want is None) and \
                    (want is None or rows[f"{side}_{name}"][i] == pytest.approx(want, rel=1e-5))
            checked += 1
    assert checked == len(grp)
    from qortview.state import chain_rows, gamma_exponent

    exp = gamma_exponent(rows)                       # gamma shown in one power of ten per expiry
    biggest = max(abs(v) for side in ("call", "put") for v in rows[f"{side}_gamma"] if v)
    assert 1 <= biggest / 10 ** exp < 10
    shown = chain_rows(rows, data["forward_usd"], data["atm_strike_usd"], "all strikes", "strike", False, exp)
    assert float(shown[0].c_gamma) == pytest.approx(rows["call_gamma"][0] / 10 ** exp, abs=0.006)
    assert data["greeks_source"].startswith("Black-76") and data["live"] is None
    assert q.chain_page(store["ro"], "BTC")["snapshot_id"] == f"BTC-{LATE}"
    far = q.chain_page(store["ro"], "ETH", data["expiries"][-1])
    assert far["expiry"] == data["expiries"][-1] and far["strikes_total"] > 0
    with pytest.raises(UsageError, match="no expiry 1JAN20"):
        q.chain_page(store["ro"], "ETH", "1JAN20")
    with pytest.raises(UsageError, match="no currency SOL"):
        q.chain_page(store["ro"], "SOL")


def test_volatility_smiles_fit_and_surface(store):
    from qortcli.quant.svi import svi_total_variance

    vol = q.volatility(store["ro"], "BTC")
    surface = store["db"][schema.SURFACES].find_one({"_id": f"BTC-{LATE}"})
    summary = store["db"][schema.SUMMARIES].find_one({"_id": f"BTC-{LATE}"})
    late = _csv(LATE)
    late = late[late["currency"] == "BTC"]
    assert vol["surface_snapshot_id"] == f"BTC-{LATE}" and vol["summary_source"] == "stored summary"
    listed = sorted({c for c in late["instrument_name"].str.split("-").str[1] if _days(c, LATE_TS) > 0},
                    key=lambda c: _days(c, LATE_TS))
    assert [s["expiry"] for s in vol["smiles"]] == listed          # a smile for every listed expiry
    slices = {sl["expiry"].strftime("%d%b%y").upper().lstrip("0"): sl for sl in surface["slices"] if sl.get("params")}
    for s in vol["smiles"]:
        grp = late[late["instrument_name"].str.contains(f"-{s['expiry']}-")]
        forward = float(grp["underlying"].median())
        otm = grp[((grp["strike"] >= forward) & (grp["option_type"] == "call"))
                  | ((grp["strike"] < forward) & (grp["option_type"] == "put"))]
        otm = otm[otm["implied_volatility"] > 0].sort_values("strike")
        assert s["strike_usd"] == pytest.approx(otm["strike"].tolist())
        assert s["mark_iv"] == pytest.approx(otm["implied_volatility"].tolist(), rel=1e-5)
        sl = slices.get(s["expiry"])
        if sl is None:
            continue
        p = sl["params"]
        k = np.asarray(s["fit_k"])
        assert k[0] == pytest.approx(math.log(otm["strike"].min() / forward), abs=1e-5)   # the quoted range only
        assert k[-1] == pytest.approx(math.log(otm["strike"].max() / forward), abs=1e-5)
        w = svi_total_variance(k, p["a"], p["b"], p["rho"], p["m"], p["sigma"])
        np.testing.assert_allclose(s["fit_iv"], np.sqrt(w / sl["t_years"]), rtol=1e-5)
    # the 3D surface: z = ln(K/F) / √w(0), each row inside its expiry's quoted range
    grid = vol["surface"]
    assert grid["expiries"] == [s["expiry"] for s in vol["smiles"] if s["expiry"] in slices]
    for row, code in zip(grid["iv"], grid["expiries"]):
        p = slices[code]["params"]
        s = next(x for x in vol["smiles"] if x["expiry"] == code)
        s0 = math.sqrt(svi_total_variance(0.0, p["a"], p["b"], p["rho"], p["m"], p["sigma"]))
        for z, iv in zip(grid["z"], row):
            k = z * s0
            inside = s["fit_k"][0] - 1e-4 <= k <= s["fit_k"][-1] + 1e-4
            if not inside:
                assert iv is None
            elif iv is not None:
                w = svi_total_variance(k, p["a"], p["b"], p["rho"], p["m"], p["sigma"])
                assert iv == pytest.approx(math.sqrt(w / slices[code]["t_years"]), rel=1e-4)
        assert any(v is not None for v in row)
    # term structure and constant maturities are the stored summary's
    assert [t["expiry"] for t in vol["term"]] == [t["expiry_code"] for t in summary["term_structure"] if t["t_years"] > 0]
    for got, want in zip(vol["term"], summary["term_structure"]):
        assert got["atm_iv_marks"] == pytest.approx(want["atm_iv_marks"]) and got["rr25_svi"] == pytest.approx(want["rr25_svi"])
    tenors = {t["tenor_days"]: t for t in vol["tenors"]}
    assert tenors[30.0]["atm_iv_marks"] == pytest.approx(summary["atm_iv_30d_marks"])
    assert vol["vs_vol_30d_svi"] == pytest.approx(summary["vs_vol_30d_svi"])
    cal = surface["diagnostics"]["calendar"]
    diag = vol["diagnostics"]
    assert diag["calendar_outside_quotes"] + len(diag["calendar_in_quotes"]) == len(cal["violations"])
    assert (not diag["calendar_in_quotes"]) == cal["ok_in_quoted_range"]


def test_volatility_without_a_stored_summary_computes_it_with_the_surface_steps_function(tmp_path):
    from qortcli.quant import smile
    from qortcli.steps.collect import run_collect_file

    db = connect(str(tmp_path / "db"))
    ensure_schema(db)
    run_collect_file(db, FIXTURES / f"deribit_options_snapshot_{LATE}.csv")
    ro = ReadOnlyDatabase(db)
    vol = q.volatility(ro, "ETH")
    assert vol["summary_source"].startswith("computed") and vol["surface"] is None and "qortcli surface" in vol["surface_note"]
    want = smile.summary_stats(read.latest_chain(db, "ETH").frame, None, read.SUMMARY_TENORS_DAYS, 365.0).fields()
    assert vol["atm_iv_30d_marks"] == pytest.approx(want["atm_iv_30d_marks"]) and vol["atm_iv_30d_svi"] is None
    assert all(s["fit_k"] == [] for s in vol["smiles"])
    db.close()


def test_portfolio_selector_lists_optimiser_portfolios_not_books(store):
    data = q.portfolio_page(store["ro"])
    ids = sorted(store["portfolios"])                       # what the two optimize runs reported
    assert sorted(data["ids"]) == ids and len(ids) == 2 and read.book_names(store["db"]) == ["main"]
    for pid in ids:
        page = q.portfolio_page(store["ro"], pid)
        doc = list(store["db"][schema.PORTFOLIOS].find({"portfolio_id": pid}).sort("timestamp", -1).limit(1))[0]
        assert page["portfolio_id"] == pid
        assert {r["symbol"]: r["weight"] for r in page["assets"]} == pytest.approx(doc["weights"])
        assert [r["weight"] for r in page["assets"]] == sorted((r["weight"] for r in page["assets"]), reverse=True)
        assert {r["sector"]: r["weight"] for r in page["sectors"]} == pytest.approx(doc["sector_weights"])
        names = {m["key"]: m for m in page["in_sample"]}
        assert names["sharpe"]["name"] == "Sharpe ratio (rf 0)" and names["max_drawdown"]["name"] == "Maximum drawdown"
        assert names["sharpe"]["portfolio"] == pytest.approx(doc["metrics"]["in_sample"]["portfolio"]["sharpe"])
        assert not any("_" in m["name"] for m in page["in_sample"])
        assert len(page["backtest"]["equity"]) == len(page["backtest"]["dates"]) == len(doc["backtest"]["dates"])
        assert page["backtest"]["out_of_sample"] == bool(doc["metrics"]["out_of_sample"])
    with pytest.raises(UsageError, match="no portfolio nope"):
        q.portfolio_page(store["ro"], "nope")


def test_suggestions_of_every_currency_with_net_greeks(store):
    data = q.suggestions_page(store["ro"])
    docs = {str(d["_id"]): d for d in store["db"][schema.SUGGESTIONS].find({})}
    assert [g["currency"] for g in data["groups"]] == ["BTC", "ETH"]
    assert data["total"] == len(docs) == data["listed"]
    for g in data["groups"]:
        assert g["snapshot_id"] == f"{g['currency']}-{LATE}" == g["chain_snapshot_id"]
        assert [c["score"] for c in g["cards"]] == sorted((c["score"] for c in g["cards"]), reverse=True)
        for card in g["cards"]:
            doc = docs[card["id"]]
            assert [leg["instrument"] for leg in card["legs"]] == [leg["instrument"] for leg in doc["legs"]]
            m = doc["metrics"]
            assert card["premium_usd"] == pytest.approx(m["net_premium_usd"]) and card["pop"] == pytest.approx(m["pop"])
            assert card["net_greeks"]["vega_spot_usd"] == pytest.approx(m["net_greeks"]["vega_spot_usd"])
            assert card["net_greeks"]["delta"] == pytest.approx(sum(l["side_sign"] * l["size"] * l["delta"] for l in doc["legs"]))
            assert len(card["payoff"]["s_usd"]) == len(card["payoff"]["pnl_usd"]) > 10


def test_versions_change_with_the_store_and_only_then(store, tmp_path):
    from qortcli.steps.collect import run_collect_file

    path = tmp_path / "db"
    shutil.copytree(store["path"], path)
    db = connect(str(path))
    ro = ReadOnlyDatabase(db)
    before = {p: q.page_version(ro, p, {}) for p in q.PAGE_LOADS}
    assert before == {p: q.page_version(ro, p, {}) for p in q.PAGE_LOADS}           # stable while nothing is written
    run_collect_file(db, FIXTURES / "deribit_options_snapshot_20260111T152811Z.csv")  # an older chain: a new run
    after = {p: q.page_version(ro, p, {}) for p in q.PAGE_LOADS}
    assert all(after[p] != before[p] for p in q.PAGE_LOADS)
    db.close()


def test_every_page_on_an_empty_store_says_what_fills_it(tmp_path):
    db = connect(str(tmp_path / "empty"))
    ensure_schema(db)
    ro = ReadOnlyDatabase(db)
    assert q.overview(ro)["currencies"] == [] and q.overview(ro)["hints"][schema.OPTIONS].endswith("`qortcli collect sample`")
    assert q.chain_page(ro)["empty"] == q.NO_CHAIN and q.volatility(ro)["empty"] == q.NO_CHAIN
    assert q.portfolio_page(ro)["empty"] == "no data yet — run `qortcli optimize`"
    assert q.suggestions_page(ro)["empty"] == "no data yet — run `qortcli suggest`"
    assert q.empty_hint(schema.ALERTS) == ""
    db.close()
