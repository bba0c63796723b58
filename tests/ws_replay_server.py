"""A local websocket server on 127.0.0.1 that plays Deribit's JSON-RPC side of the feed (reusable by tests).

    async def feed(peer):                       # one script per connection (the last one repeats)
        await peer.send(index_notification("btc_usd", 90645.4, ts_ms))
        await peer.send(markprice_notification("btc_usd", marks_from_book(rows, ts_ms)))
        await peer.heartbeats(every_s=0.2)      # keep the connection alive until the client leaves

    with WsReplayServer([feed]) as server:
        ... connect to server.url ...
        assert server.connections == 1 and server.requests_of("public/subscribe")

The server answers `public/set_heartbeat` ("ok"), `public/subscribe` (the channels, or the error given in
`subscribe_errors` for that connection number, after which it closes the connection as Deribit does after
10028) and `public/test`, records every request (`requests`: connection number, monotonic time, message)
and, once a connection is subscribed, runs that connection's script with a `Peer`. It runs in its own
thread and event loop, so synchronous code under test can connect to it.

Message builders below use the shapes of Deribit's API documentation (notifications
`{"jsonrpc": "2.0", "method": "subscription", "params": {"channel", "data"}}`, heartbeats
`{"method": "heartbeat", "params": {"type"}}`); `book_from_chain_csv` turns a recorded whole-chain CSV
(tests/fixtures) into a `public/get_book_summary_by_currency` reply, and `marks_from_book` the rows of such a
reply into `markprice.options` entries (see tests/fixtures/SOURCES.md).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import pandas as pd


# --------------------------------------------------------------------------- message shapes

def notification(channel: str, data: Any) -> dict:
    return {"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": data}}


def heartbeat(kind: str = "heartbeat") -> dict:
    """`kind` "heartbeat" or "test_request" (the client must answer the latter with public/test)."""
    return {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": kind}}


def markprice_notification(index: str, entries: list[dict]) -> dict:
    return notification(f"markprice.options.{index}", entries)


def index_notification(index: str, price: float, ts_ms: int) -> dict:
    return notification(f"deribit_price_index.{index}", {"index_name": index, "price": price, "timestamp": ts_ms})


def state_notification(currency: str, instrument: str, state: str, ts_ms: int) -> dict:
    return notification(f"instrument.state.option.{currency}",
                        {"timestamp": ts_ms, "state": state, "instrument_name": instrument})


def rpc_error(request_id, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message},
            "usIn": 0, "usOut": 0, "usDiff": 0, "testnet": False}


def _none_if_nan(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def book_from_chain_csv(path: Path, currency: str) -> dict:
    """A `get_book_summary_by_currency?kind=option` envelope from one currency's rows of a recorded chain CSV.

    Field by field: mark_price, bid_price, ask_price, mid_price, open_interest, volume, volume_usd as
    recorded; mark_iv = implied_volatility × 100 rounded to 4 decimals (Deribit quotes it in percent with 2);
    underlying_price = underlying (the expiry's forward), underlying_index = underlying_name,
    estimated_delivery_price = index_price, creation_timestamp = the row's timestamp (ms), interest_rate 0.0
    (Deribit's), base/quote currency = the row's currency. Missing values (NaN) become null.
    """
    frame = pd.read_csv(path)
    frame = frame[frame["currency"] == currency]
    stamps = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    ms = ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).tolist()
    rows = []
    for (_, r), stamp in zip(frame.iterrows(), ms):
        rows.append({
            "instrument_name": r["instrument_name"], "mark_price": float(r["mark_price"]),
            "mark_iv": round(float(r["implied_volatility"]) * 100.0, 4),
            "bid_price": _none_if_nan(r["bid_price"]), "ask_price": _none_if_nan(r["ask_price"]),
            "mid_price": _none_if_nan(r["mid_price"]), "open_interest": float(r["open_interest"]),
            "volume": float(r["volume"]), "volume_usd": float(r["volume_usd"]),
            "underlying_price": float(r["underlying"]), "underlying_index": r["underlying_name"],
            "estimated_delivery_price": float(r["index_price"]), "creation_timestamp": int(stamp),
            "interest_rate": 0.0, "base_currency": currency, "quote_currency": currency})
    return {"jsonrpc": "2.0", "result": rows, "usIn": 0, "usOut": 0, "usDiff": 0, "testnet": False}


def marks_from_book(rows: list[dict], ts_ms: int) -> list[dict]:
    """`markprice.options` entries (documented shape) from book-summary rows: iv = mark_iv / 100 (a fraction)."""
    return [{"timestamp": ts_ms, "mark_price": r["mark_price"], "iv": r["mark_iv"] / 100.0,
             "instrument_name": r["instrument_name"]} for r in rows]


# --------------------------------------------------------------------------- the server

@dataclass
class Peer:
    """The server side of one connection, handed to that connection's script."""

    number: int
    ws: Any
    server: "WsReplayServer"

    async def send(self, message: dict | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def heartbeats(self, every_s: float = 0.2, count: int | None = None) -> None:
        """Send `heartbeat` messages every `every_s` (forever unless `count`)."""
        sent = 0
        while count is None or sent < count:
            await self.send(heartbeat("heartbeat"))
            sent += 1
            await asyncio.sleep(every_s)

    async def close(self, code: int = 1011, reason: str = "server going away") -> None:
        await self.ws.close(code, reason)


Script = Callable[[Peer], Awaitable[None]]


class WsReplayServer:
    """Websocket server on 127.0.0.1 (ephemeral port) in a background thread; a context manager."""

    def __init__(self, scripts: list[Script], subscribe_errors: dict[int, dict] | None = None):
        if not scripts:
            raise ValueError("give at least one connection script")
        self.scripts = list(scripts)
        self.subscribe_errors = dict(subscribe_errors or {})
        self.requests: list[tuple[int, float, dict]] = []
        self.opened: list[float] = []         # monotonic time each connection was accepted
        self.closed_at: dict[int, float] = {}
        self.errors: list[str] = []
        self.connections = 0
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="ws-replay")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def requests_of(self, method: str) -> list[tuple[int, dict]]:
        """(connection number, request) for every request with `method`."""
        return [(n, m) for n, _, m in self.requests if m.get("method") == method]

    def __enter__(self) -> "WsReplayServer":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the websocket replay server did not start")
        return self

    def __exit__(self, *exc) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0, compression=None, max_size=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _handle(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        self.connections += 1
        number = self.connections
        self.opened.append(time.monotonic())
        peer = Peer(number, ws, self)
        script = self.scripts[min(number, len(self.scripts)) - 1]
        player: asyncio.Task | None = None
        try:
            async for raw in ws:
                message = json.loads(raw)
                self.requests.append((number, time.monotonic(), message))
                method, rid = message.get("method"), message.get("id")
                if method == "public/set_heartbeat":
                    await ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "result": "ok"}))
                elif method == "public/subscribe":
                    error = self.subscribe_errors.get(number)
                    if error is not None:
                        await ws.send(json.dumps(rpc_error(rid, error["code"], error["message"])))
                        await ws.close(1008, error["message"])   # Deribit ends the session after 10028
                        return
                    channels = message.get("params", {}).get("channels", [])
                    await ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "result": channels}))
                    player = asyncio.create_task(self._play(script, peer))
                elif method == "public/test":
                    await ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"version": "1.2.26"}}))
                else:
                    await ws.send(json.dumps(rpc_error(rid, -32601, "Method not found")))
        except ConnectionClosed:
            pass
        finally:
            self.closed_at[number] = time.monotonic()
            if player is not None and not player.done():
                player.cancel()

    async def _play(self, script: Script, peer: Peer) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await script(peer)
        except (ConnectionClosed, asyncio.CancelledError):
            pass
        except Exception as exc:  # a broken script must show up in the test, not vanish
            self.errors.append(f"connection {peer.number}: {type(exc).__name__}: {exc}")
