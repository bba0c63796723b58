"""The viewer's Book page data (viewer/qortview/book.py) through a read-only handle: it shows exactly what
`qortcli risk` stored, and says which command fills an empty store. Figures are built from it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from chain_fixtures import FIXTURES
from qortcli.store import connect, ensure_schema, read
from qortcli.store.readonly import ReadOnlyDatabase

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "viewer"))
from qortview import book_figures  # noqa: E402
from qortview.book import EMPTY_BOOKS, book_page  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from qortcli.steps.book import run_book_import
    from qortcli.steps.collect import run_collect_file
    from qortcli.steps.risk import run_risk
    from qortcli.steps.surface import run_surface

    db = connect(str(tmp_path_factory.mktemp("viewerbook") / "db"))
    ensure_schema(db)
    run_collect_file(db, FIXTURES / "deribit_options_snapshot_20260111T211857Z.csv")
    run_surface(db)
    run_book_import(db, FIXTURES / "positions_20260105.csv")
    run_book_import(db, FIXTURES / "deribit_get_positions_20260111T211857Z.json", book="hedge")
    run_risk(db)
    yield db
    db.close()


def test_book_page_shows_the_stored_risk_document(store):
    ro = ReadOnlyDatabase(store)
    page = book_page(ro, None, None)
    stored = read.latest_risk(store, "main", "BTC")
    assert page["books"] == ["hedge", "main"] and page["book"] == "main"
    assert page["currencies"] == ["BTC", "ETH"] and page["currency"] == "BTC" and page["has_risk"]
    assert page["snapshot_id"] == stored["snapshot_id"] and page["index_usd"] == stored["index_usd"]
    assert page["totals"] == stored["totals"] and page["account"] == stored["account"]
    assert page["account"]["collateral_coin"] == 1.5                     # the CSV's `BTC,1.5`
    assert [p["instrument"] for p in page["positions"]] == [p["instrument"] for p in stored["positions"]]
    assert [p["pnl_usd"] for p in page["positions"]] == [p["pnl_usd"] for p in stored["positions"]]
    assert page["grid"]["pnl_coin"] == stored["grid"]["pnl_coin"] and page["worst"] == stored["worst"]
    assert [e["expiry_code"] for e in page["by_expiry"]] == [e["expiry_code"] for e in stored["by_expiry"]]
    eth = book_page(ro, "main", "ETH")
    assert eth["currency"] == "ETH" and len(eth["positions"]) == 1
    # a book with no stored report yet says which command makes one
    hedge = book_page(ro, "hedge", None)
    assert not hedge["has_risk"] and hedge["empty"] == "no risk stored for book hedge yet — run `qortcli risk --book hedge`"


def test_book_page_figures(store):
    page = book_page(ReadOnlyDatabase(store), "main", "BTC")
    heat = book_figures.grid_heatmap(page, "pnl_usd", 2)
    assert list(heat.data[0].z[0]) == page["grid"]["pnl_usd"][2][0]
    assert list(heat.data[0].x) == [100 * m for m in page["grid"]["spot_moves"]]
    worst = min(v for row in page["grid"]["pnl_usd"][2] for v in row)
    assert f"{worst:,.0f}" in heat.data[1].name
    greeks = book_figures.greeks_by_expiry(page)
    assert [list(t.y) for t in greeks.data][0] == [e["delta"] for e in page["by_expiry"]]


def test_book_page_on_an_empty_store(tmp_path):
    db = connect(str(tmp_path / "db"))
    ensure_schema(db)
    page = book_page(ReadOnlyDatabase(db), None, None)
    assert page == {"books": [], "book": "", "currencies": [], "currency": "", "has_risk": False, "empty": EMPTY_BOOKS}
    assert book_figures.grid_heatmap(page).layout.annotations[0].text == "no scenario grid stored"
    db.close()
