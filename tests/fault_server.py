"""A hostile HTTP server on 127.0.0.1 for the fault-injection suite (tests/test_faults.py): it answers every
request with a slow drip — the status line and headers at once, announcing a large body, then one byte every
`interval` seconds, forever (or until the client hangs up). A client with only a per-read timeout never
times out against it; only a total deadline ends the request. The cli14 engineer's tests/replay_server.py
covers the other modes (huge, future-dated, bad-typed, duplicate rows).

    with SlowDripServer(interval=0.5) as server:
        client = DeribitClient(base_url=server.url + "/api/v2")
        ...
        server.connections   # how many requests reached it
"""

from __future__ import annotations

import socket
import threading
import time


class SlowDripServer:
    """Threaded TCP server speaking just enough HTTP/1.1 to start a response it never finishes."""

    def __init__(self, interval: float = 0.5, announced_bytes: int = 10_000_000):
        self.interval = interval
        self.announced_bytes = announced_bytes
        self.connections = 0
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            conn.recv(65536)  # the request line and headers (never parsed: every path gets the same drip)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {self.announced_bytes}\r\n\r\n".encode() + b'{"jsonrpc": "2.0", "result": [')
            while not self._stop.is_set():
                time.sleep(self.interval)
                conn.sendall(b" ")
        except OSError:
            pass  # the client gave up
        finally:
            conn.close()

    def __enter__(self) -> "SlowDripServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
