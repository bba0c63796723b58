"""Driving the real viewer for the browser tests and `scripts/bench_viewer.py`: `scripts/viewer` as a
subprocess (its own process group, stopped by SIGTERM and timed), a byte-counting TCP forwarder on 127.0.0.1
(a proxy or tunnel in front of the viewer), headless Chromium (Python playwright on Debian's /usr/bin/chromium)
and the page timings: time to the page's own data (`#load-status` data-loads > 0) and to every chart drawn.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("QORT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
BUN_DIR = Path(os.environ.get("QORT_BUN_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
               / "qortfolio" / "bun")
DATA_READY_JS = "() => Number(document.getElementById('load-status')?.dataset.loads || 0) > 0"
#: every chart box holds a drawn plotly plot (2D: its svg; 3D: its WebGL canvas)
CHARTS_READY_JS = """() => {
  const boxes = [...document.querySelectorAll('.qv-plot')];
  return boxes.every(b => b.querySelector('.js-plotly-plot .main-svg') &&
                          (!b.querySelector('.gl-container [id^=scene]') || b.querySelector('.gl-container canvas')));
}"""
OVERFLOW_JS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
BROWSER_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking", "--use-gl=swiftshader",
                "--enable-webgl", "--ignore-gpu-blocklist"]


def missing_piece() -> str | None:
    """What driving the viewer lacks on this machine, or None."""
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`scripts/viewer --port PORT --db STORE [--public-url URL]` in its own process group."""

    def __init__(self, store: str, port: int | None = None, public_url: str | None = None, refresh_s: float = 30,
                 log_path: Path | None = None, env: dict | None = None):
        self.port = port or free_port()
        self.url = f"http://localhost:{self.port}"
        self.log_path = log_path or Path(os.devnull)
        args = [str(ROOT / "scripts" / "viewer"), "--port", str(self.port), "--db", str(store),
                "--refresh", str(refresh_s)]
        if public_url:
            args += ["--public-url", public_url]
        full_env = {**os.environ, "QORT_PYTHON": sys.executable, "QORT_DB_NAME": "qortfolio",
                    "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
                    **(env or {})}
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.pgid = self.proc.pid

    def wait_ready(self, timeout_s: float = 900) -> float:
        """Seconds until the page answers (RuntimeError with the log's tail if the server exits or times out)."""
        clock = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"scripts/viewer exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=5) as resp:
                    if resp.status == 200:
                        return time.monotonic() - clock
            except OSError:
                pass
            if time.monotonic() - clock > timeout_s:
                raise RuntimeError(f"viewer did not answer on {self.url} within {timeout_s:.0f} s: {self.tail()}")
            time.sleep(1)

    def tail(self, n: int = 3000) -> str:
        try:
            return Path(self.log_path).read_text()[-n:]
        except OSError:
            return ""

    def group_alive(self) -> list[int]:
        """The pids still in the server's process group."""
        out = subprocess.run(["pgrep", "-g", str(self.pgid)], capture_output=True, text=True).stdout.split()
        return [int(p) for p in out]

    def stop(self, grace_s: float = 5.0, whole_group: bool = False) -> float | None:
        """SIGTERM the server (only its main process, as `docker stop` does, unless `whole_group`); seconds until
        every process of its group is gone, or None if some were still there after `grace_s` (then killed)."""
        clock = time.monotonic()
        try:
            if whole_group:
                os.killpg(self.pgid, signal.SIGTERM)
            else:
                self.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        gone = None
        while time.monotonic() - clock < grace_s:
            self.proc.poll()
            if not self.group_alive():
                gone = time.monotonic() - clock
                break
            time.sleep(0.1)
        if gone is None:
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        return gone


@dataclass
class Forwarder:
    """A TCP forwarder 127.0.0.1:port → 127.0.0.1:target (a proxy or tunnel on another port), counting the
    connections and the websocket upgrades that went through it."""

    target: int
    port: int = 0
    connections: int = 0
    websockets: int = 0
    _server: socket.socket | None = field(default=None, repr=False)

    def start(self) -> "Forwarder":
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, inbound: bool) -> None:
        first = True
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if inbound and first and b"upgrade: websocket" in data[:4096].lower():
                    self.websockets += 1
                first = False
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)


@dataclass
class Timing:
    route: str
    data_s: float
    charts_s: float
    frames: int
    frame_bytes: int


def open_timed(context, url: str, route: str, timeout_ms: int = 120_000):
    """Open `route` in a new page of `context`: (page, Timing) with the time to data and to every chart drawn
    and the websocket frames received until then."""
    page = context.new_page()
    frames: list[int] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(len(payload))))
    clock = time.perf_counter()
    page.goto(url + route, wait_until="commit", timeout=timeout_ms)
    page.wait_for_function(DATA_READY_JS, timeout=timeout_ms, polling=25)
    data_s = time.perf_counter() - clock
    page.wait_for_function(CHARTS_READY_JS, timeout=timeout_ms, polling=25)
    charts_s = time.perf_counter() - clock
    page._qort_frames = frames  # the list keeps filling: idle_bytes reads it later
    return page, Timing(route, data_s, charts_s, len(frames), sum(frames))


def idle_bytes(page, seconds: float) -> tuple[int, int]:
    """(frames, bytes) the page receives over the next `seconds` (refreshes with nothing new)."""
    frames = page._qort_frames
    n0, b0 = len(frames), sum(frames)
    page.wait_for_timeout(seconds * 1000)
    return len(frames) - n0, sum(frames) - b0
