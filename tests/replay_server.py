"""A local HTTP server on 127.0.0.1 that replays recorded responses (reusable by any test).

    with ReplayServer() as server:
        server.add("/api/v2/public/get_index_price", Reply.json({"jsonrpc": "2.0", "result": {...}}))
        server.add("/api/v2/public/get_book_summary_by_currency",
                   Reply(429, b"", {"Retry-After": "0"}), Reply.json(recorded))   # 429 then success
        client = SomeClient(base_url=server.url + "/api/v2")
        ...
        assert server.count("/api/v2/public/get_book_summary_by_currency") == 2

Replies of one route are served in order; the last one repeats. A route may require query
parameters (`query={"currency": "BTC"}`); requests that match no route get HTTP 404 with a JSON-RPC
error body. Every request is recorded (`server.requests`: path and parsed query).

Fault modes (for the bounded-fetch tests): `Reply.slow_drip(body, every=0.2, size=1)` sends its headers at
once, then the body `size` bytes at a time every `every` seconds; `Reply.huge(n_bytes, declare=True)`
sends `n_bytes` of JSON-looking filler (declared in Content-Length, or streamed until the connection
closes); the book-summary helpers `future_dated`, `bad_typed` and `duplicate_rows` derive hostile
responses from a recorded one.

Deribit helpers at the bottom build the replies the recorded book summary lacks
(`get_instruments`, `get_index_price`) from that book summary's own fields.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    """One HTTP response: status, body bytes, headers; `delay` seconds before answering (timeouts);
    `drip`/`drip_bytes` send the body slowly; `filler` bytes of padding follow the body (`declare`:
    whether Content-Length announces them, else the connection is closed after them)."""

    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0
    drip_bytes: int = 1
    filler: int = 0
    declare: bool = True

    @classmethod
    def slow_drip(cls, obj, every: float = 0.2, size: int = 1) -> "Reply":
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        return cls(200, body, {"Content-Type": "application/json"}, drip=every, drip_bytes=size)

    @classmethod
    def huge(cls, n_bytes: int, declare: bool = True) -> "Reply":
        """`{"jsonrpc": "2.0", "result": [` followed by spaces: n_bytes of a body that never ends as JSON."""
        return cls(200, b'{"jsonrpc": "2.0", "result": [', {"Content-Type": "application/json"}, filler=n_bytes,
                   declare=declare)

    @classmethod
    def json(cls, obj, status: int = 200, headers: dict | None = None, delay: float = 0.0) -> "Reply":
        return cls(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})}, delay)

    @classmethod
    def text(cls, text: str | bytes, status: int = 200, headers: dict | None = None) -> "Reply":
        body = text.encode() if isinstance(text, str) else text
        return cls(status, body, {"Content-Type": "application/json", **(headers or {})})


@dataclass
class _Route:
    path: str
    replies: list
    query: dict
    served: int = 0

    def matches(self, path: str, query: dict) -> bool:
        return path == self.path and all(query.get(k) == [str(v)] for k, v in self.query.items())

    def next(self) -> Reply:
        reply = self.replies[min(self.served, len(self.replies) - 1)]
        self.served += 1
        return reply


class ReplayServer:
    """Threaded HTTP server on 127.0.0.1 (ephemeral port) serving scripted replies; a context manager."""

    def __init__(self):
        self.routes: list[_Route] = []
        self.requests: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server API)
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                reply = server._reply(parts.path, query)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    if reply.declare:
                        self.send_header("Content-Length", str(len(reply.body) + reply.filler))
                    else:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    self.end_headers()
                    if reply.drip:
                        for start in range(0, len(reply.body), reply.drip_bytes):
                            self.wfile.write(reply.body[start:start + reply.drip_bytes])
                            self.wfile.flush()
                            time.sleep(reply.drip)
                    else:
                        self.wfile.write(reply.body)
                    left = reply.filler
                    block = b" " * 65536
                    while left > 0:
                        self.wfile.write(block[:min(left, len(block))])
                        left -= len(block)
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):  # the client gave up
                    pass

            def log_message(self, *args):  # keep test output clean
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, *replies: Reply, query: dict | None = None) -> "ReplayServer":
        """Serve `replies` in order on `path` (the last repeats); routes added later win."""
        with self._lock:
            self.routes.insert(0, _Route(path, list(replies), dict(query or {})))
        return self

    def count(self, path: str) -> int:
        """How many requests reached `path`."""
        return sum(1 for p, _ in self.requests if p == path)

    def _reply(self, path: str, query: dict) -> Reply:
        with self._lock:
            self.requests.append((path, query))
            for route in self.routes:
                if route.matches(path, query):
                    return route.next()
        return Reply.json({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}}, status=404)

    def __enter__(self) -> "ReplayServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------- Deribit replies

MONTHS = {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), start=1)}


def instruments_reply(book_summary: dict) -> dict:
    """A `public/get_instruments?kind=option&expired=false` envelope built from a recorded book summary:
    one instrument per row, strike/expiry (08:00 UTC)/type read off the instrument name (parsed here by
    hand, independently of the code under test), currencies from the row."""
    result = []
    for row in book_summary["result"]:
        cur, code, strike, cp = row["instrument_name"].split("-")
        expiry = datetime(2000 + int(code[-2:]), MONTHS[code[-5:-2]], int(code[:-5]), 8, tzinfo=timezone.utc)
        result.append({"instrument_name": row["instrument_name"], "kind": "option", "strike": float(strike),
                       "expiration_timestamp": int(expiry.timestamp() * 1000),
                       "option_type": "call" if cp == "C" else "put", "base_currency": row["base_currency"],
                       "quote_currency": row["quote_currency"], "settlement_period": "day", "is_active": True})
    return {"jsonrpc": "2.0", "result": result, "usIn": book_summary.get("usIn"), "usOut": book_summary.get("usOut"),
            "testnet": False}


def index_price_reply(book_summary: dict) -> dict:
    """A `public/get_index_price` envelope whose index is the book summary's `estimated_delivery_price`."""
    price = book_summary["result"][0]["estimated_delivery_price"]
    return {"jsonrpc": "2.0", "result": {"index_price": price, "estimated_delivery_price": price},
            "usIn": book_summary.get("usIn"), "usOut": book_summary.get("usOut"), "testnet": False}


def deribit_server(book_summary: dict, currency: str = "BTC", prefix: str = "/api/v2") -> ReplayServer:
    """A ReplayServer answering the three chain calls for `currency` with the recorded book summary."""
    server = ReplayServer()
    server.add(f"{prefix}/public/get_instruments", Reply.json(instruments_reply(book_summary)),
               query={"currency": currency})
    server.add(f"{prefix}/public/get_book_summary_by_currency", Reply.json(book_summary), query={"currency": currency})
    server.add(f"{prefix}/public/get_index_price", Reply.json(index_price_reply(book_summary)),
               query={"index_name": f"{currency.lower()}_usd"})
    return server


def future_dated(book_summary: dict, seconds: float) -> dict:
    """The recorded book summary with every row's creation_timestamp moved `seconds` after now."""
    stamp = int((time.time() + seconds) * 1000)
    return dict(book_summary, result=[dict(r, creation_timestamp=stamp) for r in book_summary["result"]])


def bad_typed(book_summary: dict) -> tuple[dict, dict[str, str]]:
    """The recorded book summary with strings where numbers belong in its first rows, and which rows
    carry which bad field: (envelope, {instrument_name: field})."""
    rows = [dict(r) for r in book_summary["result"]]
    damage = {}
    for row, (key, value) in zip(rows, (("mark_price", "0.01abc"), ("underlying_price", "n/a"),
                                        ("volume_usd", [1, 2]), ("bid_price", "cheap"), ("mark_iv", "high"))):
        row[key] = value
        damage[row["instrument_name"]] = key
    return dict(book_summary, result=rows), damage


def duplicate_rows(book_summary: dict, n: int = 5) -> dict:
    """The recorded book summary with its first `n` rows sent twice (the copies at the end)."""
    rows = list(book_summary["result"])
    return dict(book_summary, result=rows + [dict(r) for r in rows[:n]])
