"""The viewer's Market page data (viewer/qortview/market.py) and its figures, through a read-only handle on a store
filled from two real January 2026 snapshots 24 h apart: values against the options_data documents themselves."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from chain_fixtures import recorded_docs
from qortcli.errors import UsageError
from qortcli.steps.collect import run_collect_file
from qortcli.store import schema
from qortcli.store.readonly import ReadOnlyDatabase

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "viewer"))
from qortview import market_figures  # noqa: E402
from qortview.market import market_page  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
LATEST = "deribit_options_snapshot_20260111T211857Z.csv"


@pytest.fixture
def ro(embedded_db):
    for name in ("deribit_options_snapshot_20260110T211832Z.csv", LATEST):
        run_collect_file(embedded_db, FIXTURES / name)
    return ReadOnlyDatabase(embedded_db)


def test_market_page_all_expiries(ro):
    runs = ro[schema.JOB_RUNS].count_documents({})
    page = market_page(ro, None)
    json.dumps(page, allow_nan=False)                             # plain JSON values
    assert page["currencies"] == ["BTC", "ETH"] and page["currency"] == "BTC" and page["expiry"] is None
    assert page["snapshot_id"] == "BTC-20260111T211857Z" and page["empty"] == ""
    _, ts, docs = recorded_docs("BTC", LATEST)
    live = [d for d in docs if d["expiry"] > ts]
    assert page["spot_usd"] == float(np.median([d["index_price"] for d in live]))
    # OI by strike = sums of the documents' open interest
    want = defaultdict(lambda: [0.0, 0.0])
    for d in live:
        want[d["strike"]][d["option_type"] == "put"] += d["open_interest"]
    oi = page["oi"]
    assert oi["strike_usd"] == sorted(want)
    assert oi["calls_coin"] == pytest.approx([want[k][0] for k in oi["strike_usd"]])
    assert oi["puts_coin"] == pytest.approx([want[k][1] for k in oi["strike_usd"]])
    assert oi["calls_usd"] == pytest.approx([want[k][0] * page["spot_usd"] for k in oi["strike_usd"]])
    calls = sum(d["open_interest"] for d in live if d["option_type"] == "call")
    puts = sum(d["open_interest"] for d in live if d["option_type"] == "put")
    assert page["pcr"]["pcr_oi"] == pytest.approx(puts / calls)
    assert page["levels"]["forward_usd"] is None                  # no single forward for all expiries
    assert page["levels"]["max_pain_coin_payoff_usd"] in want
    assert len(page["gex"]["spot_usd"]) == len(page["gex"]["gex_usd_per_pct_marks"]) == 41
    assert sum(page["gex"]["net"]) == pytest.approx(page["gex"]["net_usd_per_pct_marks"])
    assert [m["expiry_code"] for m in page["moves"]] == page["expiries"]
    assert page["change"]["note"].startswith("against BTC-20260110T211832Z")
    assert ro[schema.JOB_RUNS].count_documents({}) == runs         # the page records nothing


def test_market_page_one_expiry_and_its_figures(ro):
    page = market_page(ro, "eth", "27MAR26")
    assert page["currency"] == "ETH" and page["expiry"] == "27MAR26"
    _, ts, docs = recorded_docs("ETH", LATEST)
    rows = [d for d in docs if d["symbol"].startswith("ETH-27MAR26-")]
    forward = float(np.median([d["forward"] for d in rows]))
    assert page["levels"]["forward_usd"] == pytest.approx(forward)
    move = next(m for m in page["moves"] if m["expiry_code"] == "27MAR26")
    atm = min({d["strike"] for d in rows}, key=lambda k: abs(k - forward))
    straddle = sum(d["premium_crypto"] for d in rows if d["strike"] == atm)
    assert move["atm_strike_usd"] == atm
    assert move["implied_move_fraction_marks"] == pytest.approx(straddle * page["spot_usd"] / forward)

    fig = market_figures.oi_by_strike(page)
    calls, puts = fig.data[0], fig.data[1]
    assert list(calls.y) == page["oi"]["calls_coin"] and list(puts.y) == [-v for v in page["oi"]["puts_coin"]]
    marked = {t.name.rsplit(" ", 1)[0]: t.x[0] for t in fig.data[2:]}    # "max pain (coin) 3,400" → level
    levels = page["levels"]
    assert marked == pytest.approx({"spot": levels["spot_usd"], "forward": forward,
                                    "max pain (coin)": levels["max_pain_coin_payoff_usd"],
                                    "max pain (USD)": levels["max_pain_usd_payoff_usd"],
                                    "gamma flip": levels["gamma_flip_usd_marks"]})
    gex = market_figures.gex_profile(page)
    assert list(gex.data[0].x) == page["gex"]["spot_usd"] and list(gex.data[0].y) == page["gex"]["gex_usd_per_pct_marks"]

    with pytest.raises(UsageError, match="no expiry 1JAN20 in ETH-20260111T211857Z; listed: 12JAN26"):
        market_page(ro, "ETH", "1JAN20")


def test_market_page_on_an_empty_store(embedded_db):
    page = market_page(ReadOnlyDatabase(embedded_db), "BTC")
    assert page["currencies"] == [] and "qortcli collect" in page["empty"]
    assert market_figures.oi_by_strike(page).layout.annotations[0].text == "no open interest"
