"""End to end: the viewer, served by `scripts/viewer` over a store holding the pipeline's output on the
recorded January 2026 week, opened page by page in headless Chromium (Python playwright driving
Debian's /usr/bin/chromium).

Each page is awaited until its own data has arrived from the backend (the page's `#load-status`
counter), then checked for values read independently from the store (an instrument and its mark IV,
the spot, the surface's 30-day ATM vol, the largest portfolio weight, a suggested leg), and saved as
`tests/artifacts/viewer-<page>.png`. The page's data-load time (backend query, ms) and the time to
content in the browser are logged to `tests/artifacts/viewer-timings.txt` (not asserted).

Needs (else skipped, naming the missing piece): chromium, the playwright package, reflex, and the
viewer set up once with `scripts/viewer --setup-only` (bun in the cache, frontend packages installed).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
BUN_DIR = Path(os.environ.get("QORT_BUN_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qortfolio" / "bun")
CHROMIUM = os.environ.get("QORT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
START_TIMEOUT_S = 900
PAGE_TIMEOUT_MS = 120_000


def missing_piece() -> str | None:
    """What the browser test lacks on this machine, or None."""
    if not Path(CHROMIUM).exists():
        return f"chromium not found at {CHROMIUM} (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python package playwright missing (pip install playwright; no `playwright install` needed)"
    try:
        import reflex  # noqa: F401
    except ImportError:
        return "reflex missing (pip install -e '.[viewer]')"
    if not (BUN_DIR / "node_modules" / ".bin" / "bun").exists():
        return f"bun missing from {BUN_DIR} (run scripts/viewer --setup-only)"
    if not (ROOT / "viewer" / ".web" / "node_modules").is_dir():
        return "viewer frontend packages not installed (run scripts/viewer --setup-only)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log(line: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(line)
    with open(ARTIFACTS / "viewer-timings.txt", "a") as fh:
        fh.write(line + "\n")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """An embedded store with the pipeline's output on the recorded week, and values read back from it."""
    reason = missing_piece()
    if reason:
        pytest.skip(f"VIEWER BROWSER TEST SKIPPED: {reason}")
    from qortcli.store import connect, ops, schema
    from tests.e2e.seed import seed

    path = tmp_path_factory.mktemp("viewer") / "db"
    db = connect(str(path))
    clock = time.perf_counter()
    summary = seed(db, log=_log)
    _log(f"seeded store in {time.perf_counter() - clock:.1f} s: {summary}")
    facts = {"path": str(path), "skipped_steps": summary["skipped"]}
    snap = ops.latest_snapshot(db, "options", "BTC")
    assert snap is not None, "seeding stored no BTC snapshot"
    facts["btc_snapshot"] = snap["_id"]
    docs = list(db[schema.OPTIONS].find({"snapshot_id": snap["_id"]}))
    facts["btc_docs"] = {d["symbol"]: d for d in docs}
    facts["btc_spot"] = statistics.median(d["index_price"] for d in docs)  # the overview's spot: median over the snapshot
    facts["surface"] = db[schema.SURFACES].find_one({"_id": snap["_id"]})
    found = list(db[schema.PORTFOLIOS].find({}).sort("timestamp", -1).limit(1))
    facts["portfolio"] = found[0] if found else None
    facts["suggestions"] = list(db[schema.SUGGESTIONS].find({}))
    db.close()
    return facts


@pytest.fixture(scope="module")
def server(seeded):
    """`scripts/viewer` serving the seeded store on a free port (page + backend on one port)."""
    port = _free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "viewer-server.log"
    env = dict(os.environ, QORT_PYTHON=sys.executable, QORT_VIEWER_REFRESH_S="3", QORT_DB_NAME="qortfolio")
    clock = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(ROOT / "scripts" / "viewer"), "--port", str(port), "--db", seeded["path"]],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"scripts/viewer exited with {proc.returncode}: see {log_path}\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"viewer did not answer on {url} within {START_TIMEOUT_S} s: see {log_path}")
            time.sleep(2)
        _log(f"viewer started (build + serve) in {time.perf_counter() - clock:.1f} s on port {port}")
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                    "--disable-dev-shm-usage"])
        yield b
        b.close()


def open_page(browser, url: str, route: str, name: str, ready_selector: str, plots: int = 0):
    """Open `route`, wait for the page's own backend data, `ready_selector` and `plots` drawn plotly charts;
    screenshot; returns the page."""
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    clock = time.perf_counter()
    page.goto(url + route, wait_until="domcontentloaded", timeout=PAGE_TIMEOUT_MS)
    page.wait_for_function("() => Number(document.getElementById('load-status')?.dataset.loads || 0) > 0",
                           timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector(ready_selector, timeout=PAGE_TIMEOUT_MS)
    content_s = time.perf_counter() - clock
    load_ms = page.get_attribute("#load-status", "data-load-ms")
    if plots:  # plotly's bundle loads lazily: wait until the charts are drawn
        page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {plots}",
                               timeout=PAGE_TIMEOUT_MS)
    error = page.locator("#error")
    assert error.count() == 0, f"{route} shows an error: {error.inner_text()}"
    page.wait_for_timeout(1500)  # let plotly finish drawing before the screenshot
    page.screenshot(path=str(ARTIFACTS / f"viewer-{name}.png"), full_page=True)
    _log(f"page {route:<13} backend data load {load_ms} ms, content visible {content_s:.2f} s after navigation")
    return page


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def test_overview_shows_latest_snapshots_spot_and_runs(browser, server, seeded):
    page = open_page(browser, server, "/", "overview", ".currency-card")
    text = page.inner_text("body")
    assert seeded["btc_snapshot"] in text
    assert f"${seeded['btc_spot']:,.2f}" in text
    runs = page.inner_text("#runs-table")
    assert "collect" in runs and "ok" in runs
    page.close()


def test_overview_refreshes_on_the_timer_without_reload(browser, server, seeded):
    page = browser.new_page()
    page.goto(server + "/", timeout=PAGE_TIMEOUT_MS)
    page.wait_for_function("() => Number(document.getElementById('load-status')?.dataset.loads || 0) > 0",
                           timeout=PAGE_TIMEOUT_MS)
    page.evaluate("() => { window.__qortMarker = 'same document'; }")
    first = int(page.get_attribute("#load-status", "data-loads"))
    page.wait_for_function(f"() => Number(document.getElementById('load-status').dataset.loads) >= {first + 2}",
                           timeout=60_000)
    assert page.evaluate("() => window.__qortMarker") == "same document"  # no reload happened
    page.close()


def test_chain_shows_store_instruments_with_their_marks(browser, server, seeded):
    page = open_page(browser, server, "/chain", "chain", "#chain-table tbody tr")
    cells = page.locator("#chain-table tbody tr td[title]")
    symbols = {cells.nth(i).get_attribute("title") for i in range(min(cells.count(), 60))}
    symbols.discard("—")
    known = symbols & set(seeded["btc_docs"])
    assert known, f"no chain instrument from {seeded['btc_snapshot']} on the page: {sorted(symbols)[:5]}"
    # the ATM row carries the mark IVs of its call and put from the store
    atm = page.locator("#chain-table tr.atm-row")
    assert atm.count() == 1
    atm_cells = atm.locator("td")
    call_symbol = atm_cells.nth(0).get_attribute("title")
    doc = seeded["btc_docs"][call_symbol]
    row_text = atm.inner_text()
    assert pct(doc["implied_volatility"]) in row_text
    assert f"{doc['strike']:,.0f}" in row_text
    page.close()


def test_volatility_shows_the_surface_and_term_structure(browser, server, seeded):
    page = open_page(browser, server, "/volatility", "volatility", "#term-table tbody tr", plots=4)
    text = page.inner_text("body")
    assert page.locator("#surface-plot .main-svg, #surface-plot canvas").count() > 0
    assert page.locator("#surface-plot .gl-container, #surface-plot canvas").count() > 0  # the 3D scene
    surface = seeded["surface"]
    if "surface" in seeded["skipped_steps"] or surface is None:
        pytest.fail("the surface step did not store a surface for the latest BTC snapshot")
    atm30 = surface["diagnostics"]["atm_iv_30d_svi"]
    atm30 = atm30["vol"] if isinstance(atm30, dict) else atm30
    assert pct(atm30) in page.inner_text("#fit-line")
    assert seeded["btc_snapshot"] in text
    page.close()


def test_portfolio_shows_weights_and_metrics(browser, server, seeded):
    doc = seeded["portfolio"]
    if doc is None:
        pytest.fail("the optimize step stored no portfolio")
    page = open_page(browser, server, "/portfolio", "portfolio", "#weights-table tbody tr", plots=3)
    symbol, weight = max(doc["weights"].items(), key=lambda kv: kv[1])
    weights = page.inner_text("#weights-table")
    assert symbol in weights and pct(weight, 2) in weights
    assert "sharpe" in page.inner_text("#metrics-table")
    page.close()


def test_suggestions_show_legs_and_track_record(browser, server, seeded):
    if not seeded["suggestions"]:
        pytest.fail("the suggest step stored no suggestion")
    page = open_page(browser, server, "/suggestions", "suggestions", "#track-table tbody tr", plots=1)
    text = page.inner_text("body")
    instruments = {leg.get("instrument") for s in seeded["suggestions"] for leg in s.get("legs", [])}
    assert any(i and i in text for i in instruments), "no suggested leg instrument on the page"
    assert f"{len(seeded['suggestions'])} suggestions" in page.inner_text("#track-summary")
    page.close()
