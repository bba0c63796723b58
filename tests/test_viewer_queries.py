"""The viewer's queries (viewer/qortview/queries.py) on stores filled from the recorded January 2026
chains: values checked against the CSV rows themselves, Deribit's published deltas, hand computations
and the quant library's own SVI function. No browser here."""

from __future__ import annotations

import math
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qortcli.store import connect, ensure_schema
from qortcli.store.readonly import ReadOnlyDatabase

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "viewer"))
from qortview import queries as q  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
EARLY, LATE = "20260110T211832Z", "20260111T211857Z"


def _csv(stamp: str) -> pd.DataFrame:
    return pd.read_csv(FIXTURES / f"deribit_options_snapshot_{stamp}.csv")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two recorded snapshots (BTC + ETH each), priced and surfaced, plus a portfolio and suggestions."""
    from qortcli.steps.collect import run_collect_file, run_collect_prices_csv
    from qortcli.steps.optimize import run_optimize
    from qortcli.steps.price import run_price
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
    run_optimize(db)
    run_suggest(db, currency="BTC", strategies=["short_strangle", "iron_condor"], top=3,
                as_of_snapshot=True)  # recorded chains: expiries judged as of the snapshot's own time
    yield {"db": db, "ro": ReadOnlyDatabase(db)}
    db.close()


@pytest.mark.slow
def test_overview_reads_the_latest_snapshot_of_each_currency(store):
    data = q.overview(store["ro"])
    late = _csv(LATE)
    cards = {c["currency"]: c for c in data["currencies"]}
    assert set(cards) == {"BTC", "ETH"}
    for cur, card in cards.items():
        rows = late[late["currency"] == cur]
        assert card["snapshot_id"] == f"{cur}-{LATE}"
        assert card["instruments"] == len(rows)
        assert card["spot_usd"] == pytest.approx(float(rows["index_price"].median()))
        assert card["snapshots"] == 2 and card["has_surface"]
        assert card["priced"] == len(rows)
        assert 0.2 < card["atm_iv_30d_marks"] < 1.5 and card["basis"] == "ACT/365"
    assert data["counts"]["options_data"] == len(late) + len(_csv(EARLY))
    assert data["counts"]["price_data"] == store["db"]["price_data"].count_documents({})
    assert {r["step"] for r in data["last_per_step"]} >= {"collect", "price", "surface", "optimize", "suggest"}
    assert all(r["status"] == "ok" for r in data["last_per_step"])


def test_constant_maturity_atm_by_hand():
    from qortcli.quant.smile import interpolate_total_variance

    t, atm = [20 / 365, 40 / 365], [0.5, 0.6]
    # total variance linear in T: w(30d) = (0.25·20 + 0.36·40)/2 /365, σ = √(w / (30/365))
    assert interpolate_total_variance(t, atm, 30 / 365)[0] == pytest.approx(math.sqrt((0.25 * 20 + 0.36 * 40) / 2 / 30),
                                                                             rel=1e-12)
    assert interpolate_total_variance(t, atm, 10 / 365)[0] == 0.5 and interpolate_total_variance(t, atm, 90 / 365)[0] == 0.6
    assert interpolate_total_variance([], [], 30 / 365)[0] is None


def test_25_delta_vols_with_computed_deltas_match_deribits_published_deltas():
    """RR25/BF25 from Black-76 deltas computed off the marks agree with the ones from Deribit's own deltas."""
    rows = _csv(LATE)
    rows = rows[rows["currency"] == "BTC"]
    as_of = datetime(2026, 1, 11, 21, 18, 57, tzinfo=timezone.utc)
    docs = [{"strike": r.strike, "forward": r.underlying, "index_price": r.index_price, "implied_volatility": r.implied_volatility,
             "option_type": r.option_type, "expiry": datetime.fromisoformat(r.expiry_datetime),
             "greeks": {"delta": r.delta}} for r in rows.itertuples()]
    published = {s["expiry"]: s for s in q.term_rows(q.chain_frame(docs, as_of), None, 365.0)}
    for d in docs:
        d["greeks"] = None
    computed = {s["expiry"]: s for s in q.term_rows(q.chain_frame(docs, as_of), None, 365.0)}
    checked = 0
    for code, s in computed.items():
        if s["days"] < 7 or s["rr25_marks"] is None or published[code]["rr25_marks"] is None:
            continue
        assert s["atm_iv_marks"] == published[code]["atm_iv_marks"]  # ATM does not use deltas
        assert s["call25_iv_marks"] == pytest.approx(published[code]["call25_iv_marks"], abs=0.003)
        assert s["put25_iv_marks"] == pytest.approx(published[code]["put25_iv_marks"], abs=0.003)
        assert s["rr25_marks"] < 0  # BTC puts over calls in this week's marks
        checked += 1
    assert checked >= 5


def test_atm_iv_lies_between_the_otm_marks_bracketing_the_forward():
    rows = _csv(LATE)
    rows = rows[(rows["currency"] == "ETH")]
    as_of = datetime(2026, 1, 11, 21, 18, 57, tzinfo=timezone.utc)
    docs = [{"strike": r.strike, "forward": r.underlying, "implied_volatility": r.implied_volatility, "option_type": r.option_type,
             "expiry": datetime.fromisoformat(r.expiry_datetime)} for r in rows.itertuples()]
    for s in q.term_rows(q.chain_frame(docs, as_of), None, 365.0):
        grp = rows[rows["expiry_datetime"].str.startswith(s["expiry_date"])]
        f = s["forward_usd"]
        below = grp[(grp["strike"] <= f) & (grp["option_type"] == "put")].sort_values("strike").iloc[-1]
        above = grp[(grp["strike"] >= f) & (grp["option_type"] == "call")].sort_values("strike").iloc[0]
        lo, hi = sorted([below["implied_volatility"], above["implied_volatility"]])
        assert lo - 1e-12 <= s["atm_iv_marks"] <= hi + 1e-12


@pytest.mark.slow
def test_chain_puts_calls_and_puts_side_by_side_around_the_forward(store):
    data = q.chain(store["ro"], "ETH")
    late = _csv(LATE)
    late = late[late["currency"] == "ETH"]
    assert data["snapshot_id"] == f"ETH-{LATE}"
    # default expiry: the listed one nearest 30 days
    days = {c: (datetime.strptime(c, "%d%b%y").replace(hour=8, tzinfo=timezone.utc)
                - datetime(2026, 1, 11, 21, 18, 57, tzinfo=timezone.utc)).total_seconds() / 86400 for c in data["expiries"]}
    assert data["expiry"] == min(days, key=lambda c: abs(days[c] - 30))
    grp = late[late["instrument_name"].str.contains(f"-{data['expiry']}-")]
    assert data["forward_usd"] == pytest.approx(float(grp["underlying"].median()))
    by_symbol = grp.set_index("instrument_name")
    strikes = [r["strike"] for r in data["rows"]]
    assert strikes == sorted(strikes)
    atm = [r for r in data["rows"] if r["atm"]]
    assert len(atm) == 1
    assert atm[0]["strike"] == min(grp["strike"].unique(), key=lambda k: abs(k - data["forward_usd"]))
    for r in data["rows"]:
        for side, suffix in (("call", "C"), ("put", "P")):
            cell = r[side]
            if not cell:
                continue
            src = by_symbol.loc[cell["symbol"]]
            assert cell["symbol"].endswith(f"-{suffix}") and src["strike"] == r["strike"]
            assert cell["premium_coin"] == pytest.approx(src["mark_price"])
            assert cell["premium_usd"] == pytest.approx(src["mark_price"] * src["index_price"])
            assert cell["mark_iv"] == pytest.approx(src["implied_volatility"])
            assert cell["model_iv"] == pytest.approx(src["implied_volatility"], abs=2e-3)  # price step's own inversion
            assert cell["open_interest"] == pytest.approx(src["open_interest"])
    other = q.chain(store["ro"], "ETH", data["expiries"][-1])
    assert other["expiry"] == data["expiries"][-1] and other["rows"]


@pytest.mark.slow
def test_volatility_smiles_use_the_stored_svi_fit(store):
    from qortcli.quant.svi import svi_total_variance

    vol = q.volatility(store["ro"], "BTC")
    surface = store["db"]["volatility_surfaces"].find_one({"_id": f"BTC-{LATE}"})
    assert vol["has_surface"] and surface is not None
    fitted = [s for s in vol["smiles"] if s["fit_k"]]
    assert len(fitted) >= 5
    slices = {q.expiry_code(sl["expiry"]): sl for sl in surface["slices"] if sl.get("params")}
    for s in fitted:
        p = slices[s["expiry"]]["params"]
        k = np.asarray(s["fit_k"])
        w = svi_total_variance(k, p["a"], p["b"], p["rho"], p["m"], p["sigma"])
        np.testing.assert_allclose(s["fit_iv"], np.sqrt(w / slices[s["expiry"]]["t_years"]), rtol=1e-12)
    grid = vol["surface"]
    assert len(grid["days"]) == len(surface["grid"]["t_years"]) and len(grid["k"]) == len(surface["grid"]["k"])
    assert grid["iv"][0][0] == pytest.approx(surface["grid"]["implied_vol"][0][0])
    stored = surface["diagnostics"]["atm_iv_30d_svi"]
    stored = stored["vol"] if isinstance(stored, dict) else stored
    assert vol["diagnostics"]["atm_iv_30d_svi"] == pytest.approx(stored)
    overview = {c["currency"]: c for c in q.overview(store["ro"])["currencies"]}
    assert overview["BTC"]["atm_iv_30d_svi"] == pytest.approx(stored)
    # the surface's 30-day ATM (SVI) and the viewer's (marks) agree within a vol point
    assert overview["BTC"]["atm_iv_30d_marks"] == pytest.approx(stored, abs=0.01)
    # every term row carries both sources, each labelled, and the SVI one is the stored slice's
    by_code = {q.expiry_code(sl["expiry"]): sl for sl in surface["slices"] if sl.get("params")}
    for row in vol["term"]:
        if row["expiry"] in by_code:
            assert row["rr25_svi"] == pytest.approx(by_code[row["expiry"]]["rr25_svi"], abs=1e-12)


@pytest.mark.slow
def test_portfolio_rows_match_the_stored_document(store):
    data = q.portfolio(store["ro"])
    doc = list(store["db"]["portfolio_data"].find({}).sort("timestamp", -1).limit(1))[0]
    assert {r["symbol"]: r["weight"] for r in data["assets"]} == pytest.approx(doc["weights"])
    assert sum(r["weight"] for r in data["assets"]) == pytest.approx(1.0, abs=1e-6)
    assert [r["weight"] for r in data["assets"]] == sorted((r["weight"] for r in data["assets"]), reverse=True)
    assert {r["sector"]: r["weight"] for r in data["sectors"]} == pytest.approx(doc["sector_weights"])
    from qortcli.sectors import load_sectors

    taxonomy = load_sectors()
    for row in data["assets"]:  # each asset's sector is the taxonomy's
        assert row["sector"] == taxonomy.by_ticker()[row["symbol"]].sector
    sharpe = next(m for m in data["in_sample"] if m["name"] == "sharpe")
    assert sharpe["portfolio"] == pytest.approx(doc["metrics"]["in_sample"]["portfolio"]["sharpe"])
    assert data["headline"] == ("out_of_sample" if doc["metrics"]["out_of_sample"] else "in_sample")
    assert len(data["backtest"]["equity"]) == len(data["backtest"]["dates"]) == len(doc["backtest"]["dates"])


@pytest.mark.slow
def test_suggestion_cards_carry_legs_metrics_and_payoff(store):
    data = q.suggestions(store["ro"], "BTC")
    docs = {str(d["_id"]): d for d in store["db"]["strategy_suggestions"].find({})}
    assert data["cards"] and data["track"]["total"] == len(docs)
    for card in data["cards"]:
        doc = docs[card["id"]]
        assert [leg["symbol"] for leg in card["legs"]] == [leg["instrument"] for leg in doc["legs"]]
        assert card["premium_usd"] == pytest.approx(doc["metrics"]["net_premium_usd"])
        assert card["pop"] == pytest.approx(doc["metrics"]["pop"])
        assert card["breakevens_usd"] == pytest.approx(doc["metrics"]["breakevens_usd"])
        assert len(card["payoff"]["s_usd"]) == len(card["payoff"]["pnl_usd"]) > 10


def test_every_page_query_on_an_empty_store_says_no_data_yet(tmp_path):
    db = connect(str(tmp_path / "empty"))
    ensure_schema(db)
    ro = ReadOnlyDatabase(db)
    data = q.overview(ro)
    assert data["currencies"] == [] and all(data["empty"].values())
    assert q.chain(ro, "BTC")["rows"] == []
    assert q.volatility(ro, "BTC")["smiles"] == []
    assert q.portfolio(ro) is None
    assert q.suggestions(ro)["cards"] == []
    assert q.empty_hint("portfolio_data") == "no data yet — run `qortcli optimize`"
    db.close()


def test_documents_stored_before_the_renames_still_read():
    """Surfaces stored with `atm_vol_30d`/`vs_vol_30d` and portfolios with top-level metrics still show."""
    old_surface = {"diagnostics": {"atm_vol_30d": {"vol": 0.41}, "vs_vol_30d": {"vol": 0.44}}, "slices": []}
    diag = q._diagnostics(old_surface)
    assert diag["atm_iv_30d_svi"] == 0.41 and diag["vs_vol_30d_svi"] == 0.44
    new_surface = {"diagnostics": {"atm_iv_30d_svi": {"vol": 0.40}, "atm_vol_30d": {"vol": 0.99}}, "slices": []}
    assert q._diagnostics(new_surface)["atm_iv_30d_svi"] == 0.40
