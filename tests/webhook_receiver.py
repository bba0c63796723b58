"""A webhook receiver on 127.0.0.1 for the alerts tests: an `http.server` thread recording every POST.

`Receiver(script)` answers the POSTs in turn from `script` (then 200 for the rest): an int is that HTTP status,
("sleep", seconds) holds the reply that long before answering 200 (a timeout for a client waiting less), and
("status", code, headers) a status with headers (e.g. 429 with Retry-After). `received` lists every request
as {path, headers, body (bytes), json (parsed or None)}; `url` carries a secret-looking path token.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = "T0KEN-sEcReT-7f3a9"


class Receiver:
    def __init__(self, script=(), path: str = f"/hooks/{SECRET}/alerts"):
        self.script = list(script)
        self.received: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                return

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                with receiver.lock:
                    receiver.received.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                              "json": parsed})
                    step = receiver.script.pop(0) if receiver.script else 200
                headers = {}
                if isinstance(step, tuple) and step[0] == "sleep":
                    time.sleep(step[1])
                    step = 200
                elif isinstance(step, tuple) and step[0] == "status":
                    step, headers = step[1], step[2]
                try:
                    self.send_response(step)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def posts(self) -> list[dict]:
        with self.lock:
            return list(self.received)


def closed_port_url() -> str:
    """A 127.0.0.1 URL nothing listens on (connection refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/{SECRET}/down"
