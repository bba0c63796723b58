"""`qortcli collect prices` through yfinance's real `download`, its HTTP layer served by the replay server.

yfinance accepts a plain `requests.Session`; the session here sends every https:// request to
tests/replay_server.py on 127.0.0.1, which answers `/v8/finance/chart/BTC-USD` with the recorded
Yahoo chart response (`response.bodyJson` of the gadicc/node-yahoo-finance2 fixture, BTC-USD
2020-01-01…03). Other symbols get error replies built in Yahoo's chart-error format (404 "No data
found, symbol may be delisted") or HTTP 429 (rate limit).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from urllib.parse import urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

from qortcli.sources import yahoo as yahoo_src
from qortcli.steps.collect import run_collect_prices
from qortcli.store import schema

from conftest import FIXTURES
from replay_server import Reply, ReplayServer

CHART = json.loads((FIXTURES / "gadicc_node-yahoo-finance2_chart-BTC-USD-2020-01-01-to-2020-01-03.json").read_text())
BODY = CHART["response"]["bodyJson"]
DELISTED = {"chart": {"result": None, "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"}}}


class _ToReplay(HTTPAdapter):
    """Send every request to the replay server, keeping path and query."""

    def __init__(self, base: str):
        super().__init__()
        self.base = base

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        request.url = self.base + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **kwargs)


@pytest.fixture
def yahoo(tmp_path, monkeypatch):
    """A replay server for Yahoo plus a `download` that is yfinance's own, on a session pointed at it."""
    import yfinance as yf
    from yfinance.data import YfData

    yf.set_tz_cache_location(str(tmp_path / "yf-cache"))
    with ReplayServer() as server:
        server.add("/", Reply.text(""))
        server.add("/v1/test/getcrumb", Reply.text("replaycrumb", headers={"Content-Type": "text/plain"}))
        server.add("/v8/finance/chart/BTC-USD", Reply.json(BODY))
        session = requests.Session()
        session.mount("https://", _ToReplay(server.url))
        session.mount("http://", _ToReplay(server.url))

        def download(tickers, **kwargs):
            return yf.download(tickers, session=session, **kwargs)

        server.download = download
        yield server
    YfData(session=requests.Session())  # leave yfinance's singleton off the dead server


def _recorded_bars():
    quote = BODY["chart"]["result"][0]["indicators"]["quote"][0]
    days = [datetime.fromtimestamp(t, tz=timezone.utc) for t in BODY["chart"]["result"][0]["timestamp"]]
    return days, quote, BODY["chart"]["result"][0]["indicators"]["adjclose"][0]["adjclose"]


def test_real_download_of_recorded_chart_is_stored_and_errors_reported(embedded_db, yahoo):
    yahoo.add("/v8/finance/chart/DOGE-USD", Reply.json(DELISTED, status=404))
    yahoo.add("/v8/finance/chart/SAND-USD", Reply.text("Too Many Requests", status=429,
                                                       headers={"Content-Type": "text/plain"}))
    summary = run_collect_prices(embedded_db, sector="Digital Assets", since="2020-01-01",
                                 download=yahoo.download, today=date(2020, 1, 3))
    days, quote, adj = _recorded_bars()
    (btc,) = summary["symbols"]
    assert btc["symbol"] == "BTC" and btc["stored"] == len(days) == 3
    docs = list(embedded_db[schema.PRICES].find({"symbol": "BTC"}).sort("timestamp", 1))
    assert [d["timestamp"] for d in docs] == days
    for i, doc in enumerate(docs):
        assert doc["close"] == pytest.approx(quote["close"][i], rel=1e-9) and doc["price_usd"] == doc["close"]
        assert doc["open"] == pytest.approx(quote["open"][i], rel=1e-9)
        assert doc["adj_close"] == pytest.approx(adj[i], rel=1e-9)
        assert doc["volume_24h"] == quote["volume"][i]
        assert doc["sector"] == "Digital Assets" and doc["source"] == "yfinance"
    # The recorded chart agrees with the recorded Yahoo CSV of the same days (SOURCES.md says so).
    csv = (FIXTURES / "prices" / "BTC-USD.csv").read_text()
    assert "2020-01-02,7202.551270,7212.155273,6935.270020,6985.470215" in csv
    assert docs[1]["close"] == pytest.approx(6985.470215, abs=1e-5)

    errors = summary["errors"]
    assert "delisted" in errors["DOGE-USD"].lower() or "404" in errors["DOGE-USD"]
    assert "YFRateLimitError" in errors["SAND-USD"] or "delisted" in errors["SAND-USD"].lower()
    assert len(errors) == 23  # every other Digital Assets coin: no route → reported, not fatal


def test_next_run_fetches_only_days_after_the_last_stored_one(embedded_db, yahoo):
    calls = []

    def spy(tickers, **kwargs):
        calls.append((list(tickers), kwargs["start"], kwargs["end"]))
        return yahoo.download(tickers, **kwargs)

    run_collect_prices(embedded_db, sector="Digital Assets", since="2020-01-01", download=spy, today=date(2020, 1, 3))
    again = run_collect_prices(embedded_db, sector="Digital Assets", since="2020-01-01", download=spy,
                               today=date(2020, 1, 3))
    assert "BTC" in again["up_to_date"] and "BTC-USD" not in calls[1][0]
    assert again["stored"] == 0 and embedded_db[schema.PRICES].count_documents({}) == 3
    later = run_collect_prices(embedded_db, sector="Digital Assets", since="2020-01-01", download=spy,
                               today=date(2020, 1, 5))
    (btc_call,) = [c for c in calls[2:] if "BTC-USD" in c[0]]
    assert btc_call[0] == ["BTC-USD"] and btc_call[1] == "2020-01-04"  # day after the last stored one
    assert len(calls) == 2 + 2  # that run: one batch for BTC, one for the symbols with nothing stored
    assert embedded_db[schema.PRICES].count_documents({}) == 3 and later["stored"] == 0


def test_download_daily_reports_a_batch_failure_per_symbol():
    def broken(tickers, **kwargs):
        from yfinance.exceptions import YFRateLimitError

        raise YFRateLimitError()

    result = yahoo_src.download_daily(["BTC-USD", "ETH-USD"], date(2020, 1, 1), download=broken)
    assert set(result.errors) == {"BTC-USD", "ETH-USD"} and not result.series
    assert all("YFRateLimitError" in e for e in result.errors.values())


def test_unknown_sector_is_a_usage_error(embedded_db):
    from qortcli.errors import UsageError

    with pytest.raises(UsageError, match="unknown sector"):
        run_collect_prices(embedded_db, sector="Nope", download=lambda *a, **k: None)
