"""End to end: the viewer served by `scripts/viewer` over a store holding the pipeline's output on the recorded
January 2026 week (and a book with its risk), opened in headless Chromium (Python playwright driving Debian's
/usr/bin/chromium) through a TCP forwarder on another port — the way a proxy or a tunnel serves it — with
`--public-url` naming the forwarder.

Every page at 1440×900 and 390×844: no error, no horizontal page overflow, its key values equal the store's
(read here through `qortcli.store.read`), screenshots in tests/artifacts/viewer-<page>-<width>.png, timings in
tests/artifacts/viewer-timings.txt. Then: the websocket went through the forwarder, nothing answered 4xx/5xx
(favicon included), the store's bytes are unchanged after the browsing; a chain written while the pages are
open shows without a reload, keeping the selections (currency, expiry, strike range, sort) and the zoom; live
marks written by the stream show within a second (where the stream's read is present); SIGTERM stops the server
and its workers within 5 s.

Needs (else skipped, naming the missing piece): chromium, the playwright package, reflex, and the viewer set up
once with `scripts/viewer --setup-only` (bun in the cache, frontend packages installed).
"""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e import viewer_harness as vh

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "viewer"))

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
FIXTURES = ROOT / "tests" / "fixtures"
WEEK = sorted(FIXTURES.glob("deribit_options_snapshot_202601*.csv"))
HELD_BACK = WEEK[-1]                  # collected during the test: the refresh brings it in
SIZES = ((1440, 900), (390, 844))
TIMEOUT_MS = 120_000
REFRESH_S = 3


def _log(line: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(line)
    with open(ARTIFACTS / "viewer-timings.txt", "a") as fh:
        fh.write(line + "\n")


def _tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A store with the pipeline's output on the recorded week but its last chain, a book and its risk report;
    and the values the pages must show, read back through the read vocabulary."""
    reason = vh.missing_piece()
    if reason:
        pytest.skip(f"VIEWER BROWSER TEST SKIPPED: {reason}")
    from qortcli.steps.book import run_book_import
    from qortcli.steps.risk import run_risk
    from qortcli.store import connect, read
    from tests.e2e.seed import seed

    path = tmp_path_factory.mktemp("viewer") / "db"
    db = connect(str(path))
    clock = time.perf_counter()
    summary = seed(db, week_files=WEEK[:-1], log=_log)
    run_book_import(db, FIXTURES / "positions_20260105.csv")
    run_risk(db)
    _log(f"seeded store in {time.perf_counter() - clock:.1f} s: {summary}")
    facts = {"path": path, "skipped": summary["skipped"]}
    for cur in ("BTC", "ETH"):
        chain = read.latest_chain(db, cur)
        facts[cur] = {"snapshot": chain.snapshot.snapshot_id, "frame": chain.frame, "summary": read.latest_summary(db, cur),
                      "surface": read.surface_at(db, chain.snapshot.snapshot_id)}
    facts["portfolios"] = [h.portfolio_id for h in read.portfolio_heads(db)]
    facts["portfolio"] = read.latest_portfolio(db, facts["portfolios"][0]) if facts["portfolios"] else None
    facts["suggestions"] = {cur: read.latest_suggestions(db, cur) for cur in read.suggestion_currencies(db)}
    facts["risk"] = read.latest_risk(db, "main", "BTC")
    db.close()
    facts["bytes"] = _tree(path)
    return facts


@pytest.fixture(scope="module")
def served(seeded):
    """`scripts/viewer` on the seeded store, reached through a forwarder on another port (`--public-url` names it)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = vh.free_port()
    proxy = vh.Forwarder(target=port).start()
    server = vh.Server(str(seeded["path"]), port=port, public_url=f"http://localhost:{proxy.port}", refresh_s=REFRESH_S,
                       log_path=ARTIFACTS / "viewer-server.log")
    try:
        _log(f"viewer started (build + serve) in {server.wait_ready():.1f} s on port {port}, proxied on {proxy.port}")
    except RuntimeError as exc:
        server.stop()
        pytest.fail(str(exc))
    info = {"server": server, "proxy": proxy, "url": f"http://localhost:{proxy.port}", "http_errors": [], "stopped": None}
    yield info
    if info["stopped"] is None:
        server.stop()
    proxy.close()


@pytest.fixture(scope="module")
def browser(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = vh.launch(p)
        yield b
        b.close()


def visit(browser, served, route: str, size=(1440, 900), shot: str | None = None):
    """Open `route` at `size`; wait for its data and charts; check errors and overflow; screenshot."""
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    context.on("response", lambda r: served["http_errors"].append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page, timing = vh.open_timed(context, served["url"], route, TIMEOUT_MS)
    error = page.locator("#error")
    assert error.count() == 0, f"{route} shows an error: {error.inner_text()}"
    overflow = page.evaluate(vh.OVERFLOW_JS)
    assert overflow <= 0, f"{route} at {size[0]}×{size[1]} overflows the page sideways by {overflow} px"
    if shot:
        page.wait_for_timeout(800)
        page.screenshot(path=str(ARTIFACTS / f"viewer-{shot}-{size[0]}.png"), full_page=True)
    _log(f"page {route:<13} {size[0]}×{size[1]}: data {timing.data_s:.2f} s, charts {timing.charts_s:.2f} s, "
         f"{timing.frame_bytes / 1e3:.1f} KB in {timing.frames} frames")
    return page


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


# ============================================================================ every page, both sizes

@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_page_draws_without_overflow(browser, served, size):
    from qortview import pages

    for spec in pages.available():
        name = spec.route.strip("/") or "overview"
        visit(browser, served, spec.route, size, shot=name).context.close()


def test_overview_values_are_the_stores(browser, served, seeded):
    page = visit(browser, served, "/")
    cards = page.inner_text("#overview-cards")
    for cur in ("BTC", "ETH"):
        assert seeded[cur]["snapshot"] in cards
        assert f"${seeded[cur]['summary']['index_usd']:,.2f}" in cards
        assert pct(seeded[cur]["summary"]["atm_iv_30d_marks"]) in cards
    jobs = page.inner_text("#jobs-table")
    assert "collect_deribit" in jobs and "every 5 min" in jobs       # the runs are fresh: seeded just now
    assert "stale" in page.inner_text("#ages")                          # the data is not: January 2026 chains
    page.context.close()


def test_chain_shows_every_strike_when_asked_with_the_stores_values(browser, served, seeded):
    page = visit(browser, served, "/chain")
    frame = seeded["BTC"]["frame"]
    info = page.inner_text("#chain-info")
    code = page.locator("#expiry-select").inner_text().strip()
    assert info.startswith(seeded["BTC"]["snapshot"])
    page.locator("#range-select").click()
    page.get_by_role("option", name="all strikes").click()
    group = frame[(frame["expiry_code"] == code)]
    strikes = sorted(group["strike_usd"].unique())
    page.wait_for_function(f"() => document.querySelectorAll('#chain-table tbody tr').length === {len(strikes)}",
                           timeout=TIMEOUT_MS)
    shown = [float(t.replace(",", "")) for t in page.locator("#chain-table td.pin-k").all_inner_texts()]
    assert shown == strikes
    atm = page.locator("#chain-table tr.atm-row")
    assert atm.count() == 1
    call = atm.locator("td[title$='-C']").first.get_attribute("title")
    row = group[group["instrument"] == call].iloc[0]
    text = atm.inner_text()
    assert pct(row["mark_iv"]) in text and f"{row['strike_usd']:,.0f}" in text
    assert f"{row['mark_coin']:.4f}" in text or f"{row['mark_coin']:.5f}".rstrip("0") in text
    page.context.close()


def test_chain_keeps_its_key_columns_in_view_on_a_phone(browser, served):
    page = visit(browser, served, "/chain", (390, 844))
    page.wait_for_timeout(400)                                  # the centring script runs after the data
    for cls in ("pin-cm", "pin-k", "pin-pm"):
        box = page.locator(f"#chain-table tr.atm-row td.{cls}").bounding_box()
        assert box and 0 <= box["x"] and box["x"] + box["width"] <= 390, (cls, box)
    page.context.close()


def test_volatility_shows_the_fit_and_a_smile_per_expiry(browser, served, seeded):
    page = visit(browser, served, "/volatility")
    surface = seeded["BTC"]["surface"]
    assert surface is not None, f"the surface step stored no surface ({seeded['skipped']})"
    assert pct(seeded["BTC"]["summary"]["atm_iv_30d_svi"]) in page.inner_text("#fit-line")
    assert page.locator("#surface-plot .gl-container canvas").count() > 0        # the 3D scene is drawn
    page.locator("#smile-select").click()
    options = page.get_by_role("option").all_inner_texts()
    listed = sorted(set(seeded["BTC"]["frame"].query("t_years > 0")["expiry_code"]))
    assert sorted(o for o in options if o != "all expiries") == listed and "all expiries" in options
    page.get_by_role("option", name=options[-1]).click()
    page.wait_for_function(f"() => document.getElementById('smile-note').innerText.startsWith('{options[-1]}')",
                           timeout=TIMEOUT_MS)
    page.context.close()


def test_portfolio_selector_and_values(browser, served, seeded):
    page = visit(browser, served, "/portfolio")
    doc = seeded["portfolio"]
    symbol, weight = max(doc["weights"].items(), key=lambda kv: kv[1])
    weights = page.inner_text("#weights-table")
    assert symbol in weights and pct(weight, 2) in weights
    assert "Sharpe ratio" in page.inner_text("#metrics-table") and "sharpe" not in page.inner_text("#metrics-table")
    page.locator("#portfolio-select").click()
    assert sorted(page.get_by_role("option").all_inner_texts()) == sorted(seeded["portfolios"])
    page.keyboard.press("Escape")
    page.context.close()


def test_suggestions_of_every_currency(browser, served, seeded):
    page = visit(browser, served, "/suggestions")
    text = page.inner_text("#suggestion-cards")
    for cur, (sid, docs) in seeded["suggestions"].items():
        assert cur in page.inner_text("#groups-table") and sid in page.inner_text("#groups-table")
        for d in docs:
            assert all(leg["instrument"] in text for leg in d["legs"])
    assert ("debit" in text) or ("credit" in text)
    page.context.close()


def test_market_and_book_values(browser, served, seeded):
    page = visit(browser, served, "/market")
    summary = seeded["BTC"]["summary"]
    assert f"{summary['pcr_oi']:,.2f}" in page.inner_text("#market-pcr-oi")
    page.context.close()
    page = visit(browser, served, "/book")
    risk = seeded["risk"]
    assert risk["snapshot_id"] in page.inner_text("#book-info")
    positions = page.inner_text("#book-positions")
    assert all(p["instrument"] in positions for p in risk["positions"])
    page.context.close()


def test_the_page_reaches_its_backend_through_the_proxy_and_nothing_is_missing(served):
    assert served["proxy"].websockets >= 1, "no websocket went through the forwarder: --public-url was not honoured"
    assert served["http_errors"] == [], served["http_errors"]


def test_browsing_left_the_stores_bytes_unchanged(served, seeded):
    assert _tree(seeded["path"]) == seeded["bytes"]


# ============================================================================ refresh with new data (writes the store)

def _zoom(page, plot_id: str) -> list[float]:
    """Drag a zoom box over the middle of a 2D chart; returns the zoomed x range."""
    drag = page.locator(f"#{plot_id} .nsewdrag").first
    drag.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    box = drag.bounding_box()
    full = page.evaluate(f"() => document.getElementById('{plot_id}')._fullLayout.xaxis.range.slice()")
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y + 5, steps=8)
    page.mouse.move(box["x"] + box["width"] * 0.6, y + 10, steps=8)
    page.mouse.up()
    page.wait_for_timeout(500)
    zoomed = page.evaluate(f"() => document.getElementById('{plot_id}')._fullLayout.xaxis.range.slice()")
    assert zoomed[1] - zoomed[0] < 0.5 * (full[1] - full[0]), f"the drag did not zoom: {full} → {zoomed}"
    return zoomed


def test_new_data_shows_without_reload_keeping_selections_and_zoom(browser, served, seeded):
    chain = visit(browser, served, "/chain")
    chain.locator("#currency-select").click()
    chain.get_by_role("option", name="ETH").click()
    chain.wait_for_function("() => document.getElementById('chain-info').innerText.startsWith('ETH')", timeout=TIMEOUT_MS)
    chain.locator("#expiry-select").click()
    expiries = chain.get_by_role("option").all_inner_texts()
    chosen = expiries[2]
    chain.get_by_role("option", name=chosen).click()
    chain.locator("#range-select").click()
    chain.get_by_role("option", name="all strikes").click()
    chain.locator("#chain-table th", has_text="OI · vol").first.click()            # sort by call OI
    chain.wait_for_timeout(800)
    chain.evaluate("() => { window.__qortMarker = 'same document'; }")
    loads = int(chain.get_attribute("#load-status", "data-loads"))
    rows_before = chain.locator("#chain-table tbody tr").count()

    vol = visit(browser, served, "/volatility")
    zoomed = _zoom(vol, "term-plot")
    vol_loads = int(vol.get_attribute("#load-status", "data-loads"))

    # the worker (here: this test) stores a newer chain; the open pages pick it up on their refresh clock
    env = {"QORT_DB": str(seeded["path"]), "PYTHONPATH": str(ROOT)}
    clock = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "qortcli", "collect", "deribit", "--from-file", str(HELD_BACK)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    subprocess.run([sys.executable, "-m", "qortcli", "surface"], env={**os.environ, **env},
                   capture_output=True, text=True, timeout=300)
    stamp = HELD_BACK.stem.split("_")[-1]
    chain.wait_for_function(f"() => document.getElementById('chain-info').innerText.startsWith('ETH-{stamp}')",
                            timeout=TIMEOUT_MS)
    _log(f"a new chain showed {time.monotonic() - clock:.1f} s after its write (refresh every {REFRESH_S} s)")
    assert chain.evaluate("() => window.__qortMarker") == "same document"          # no reload
    assert int(chain.get_attribute("#load-status", "data-loads")) > loads
    assert chain.locator("#currency-select").inner_text().strip() == "ETH"
    assert chain.locator("#expiry-select").inner_text().strip() == chosen
    assert chain.locator("#range-select").inner_text().strip() == "all strikes"
    assert "▼" in chain.locator("#chain-table th.sorted").first.inner_text()
    assert chain.locator("#chain-table tbody tr").count() >= rows_before - 2       # all strikes of the new chain

    vol.wait_for_function(f"() => Number(document.getElementById('load-status').dataset.loads) > {vol_loads}",
                          timeout=TIMEOUT_MS)
    vol.wait_for_timeout(800)
    after = vol.evaluate("() => document.getElementById('term-plot')._fullLayout.xaxis.range.slice()")
    assert after == pytest.approx(zoomed, rel=1e-6), "the refresh reset the user's zoom"
    chain.context.close()
    vol.context.close()


def test_live_marks_show_within_a_second(browser, served, seeded):
    from datetime import datetime, timezone

    import numpy as np

    from qortcli.sources.deribit import chains_from_file
    from qortcli.steps.live_chain import LiveChain, live_marks_document, reprice
    from qortcli.store import connect, ops, schema

    chain = next(c for c in chains_from_file(HELD_BACK) if c.currency == "BTC")
    live = LiveChain.from_parsed(chain)
    writer = connect(str(seeded["path"]))
    ops.upsert_many(writer, schema.LIVE_MARKS, [live_marks_document(reprice(live.freeze(), "ACT/365"),
                                                                    datetime.now(timezone.utc), {"connected": True})])
    page = visit(browser, served, "/chain")
    page.wait_for_selector("#live-line", timeout=TIMEOUT_MS)            # the page found the stream's marks
    page.wait_for_timeout(1500)
    atm_call = page.locator("#chain-table tr.atm-row td[title$='-C']").first.get_attribute("title")
    delays = []
    for scale in (1.5, 2.0, 2.5):
        view = reprice(live.freeze(), "ACT/365")
        i = list(view.rows["instrument"]).index(atm_call)
        view.rows["mark_coin"] = np.where(np.arange(len(view.rows["instrument"])) == i,
                                          view.rows["mark_coin"] * scale, view.rows["mark_coin"])
        want = f"{view.rows['mark_coin'][i]:.4f}"
        clock = time.monotonic()
        ops.upsert_many(writer, schema.LIVE_MARKS, [live_marks_document(view, datetime.now(timezone.utc),
                                                                        {"connected": True})])
        page.wait_for_function(f"() => document.querySelector('#chain-table tr.atm-row td.pin-cm').innerText"
                               f".includes('{want}')", timeout=10_000, polling=20)
        delays.append(time.monotonic() - clock)
    writer.close()
    _log(f"live marks on the page {', '.join(f'{d:.2f}' for d in delays)} s after their write")
    assert statistics.median(delays) < 1.0
    page.context.close()


# ============================================================================ shutdown

def test_sigterm_stops_the_server_and_its_workers_within_5_s(served):
    gone = served["server"].stop(grace_s=5.0)
    served["stopped"] = gone
    assert gone is not None, f"processes left after SIGTERM: {served['server'].group_alive()}"
    _log(f"SIGTERM: server and workers gone in {gone:.2f} s")


def test_a_missing_store_is_a_clear_line_not_a_page_loading_forever(browser, served, tmp_path):
    """(after the SIGTERM test: the module's server is stopped) A server on a store path that does not exist."""
    missing = tmp_path / "no-store-here"
    server = vh.Server(str(missing), refresh_s=REFRESH_S, log_path=ARTIFACTS / "viewer-server-missing.log")
    try:
        server.wait_ready()
        for route in ("/", "/volatility"):
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            page = context.new_page()
            page.goto(server.url + route, timeout=TIMEOUT_MS)
            page.wait_for_selector("#error", timeout=TIMEOUT_MS)
            assert f"no store at {missing}" in page.inner_text("#error")
            assert "loading" not in page.inner_text("#load-status")
            context.close()
        assert not missing.exists()                     # the viewer created nothing
    finally:
        server.stop()
