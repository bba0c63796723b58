"""The Deribit JSON-RPC websocket feed as typed events (asyncio, on the `websockets` library).

    stream = DeribitStream(StreamConfig(currencies=("BTC", "ETH")))
    async for event in stream.events():      # reconnects by itself until stream.close()
        ...                                   # MarkPrices | IndexPrice | InstrumentState | Connected | Disconnected

One connection at a time: `public/set_heartbeat`, then one `public/subscribe` to, per currency,
`markprice.options.{cur}_usd` (coin marks and mark IVs of every option), `deribit_price_index.{cur}_usd`
(spot index, USD) and `instrument.state.option.{CUR}` (listings and expiries). Notifications are
`{"jsonrpc": "2.0", "method": "subscription", "params": {"channel": ..., "data": ...}}`; heartbeats are
`{"method": "heartbeat", "params": {"type": "heartbeat" | "test_request"}}` and a `test_request` is answered
at once with `public/test` (Deribit closes the connection otherwise).

Failure handling, every wait bounded:
- a connection silent for `heartbeat_s × missed_heartbeat_factor` seconds has missed its heartbeat: it is
  closed and replaced (counted in `missed_heartbeats`);
- a dropped or refused connection is retried after an exponential backoff with jitter
  (`backoff_initial_s` doubling up to `backoff_max_s`, each delay drawn in [(1 − jitter)·d, d]); the
  backoff resets once a connection has stayed up `stable_after_s`;
- Deribit error 10028 `too_many_requests` (which Deribit follows by closing the session) closes the
  connection and waits the rate-limit backoff (`rate_limit_backoff_s` doubling, same cap and jitter)
  before connecting again;
- a message that is not JSON, or a notification whose data do not have the documented shape, is logged
  (one line) and skipped (`malformed`); mark entries lacking a name or a finite mark are dropped.

No store access here; parsing stays light (the JSON decode and one pass building arrays) so the event loop
is free to answer heartbeats.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Awaitable, Callable, NamedTuple, Union

import numpy as np

from qortcli.sources.deribit import TOO_MANY_REQUESTS, describe_rpc_error, ms_to_datetime

log = logging.getLogger(__name__)

DEFAULT_WS_URL = "wss://www.deribit.com/ws/api/v2"
#: instrument.state values (Deribit: created, started, settled, closed, terminated): a new listing ...
NEW_STATES = frozenset({"created", "started"})
#: ... the end of an instrument's life ("settled" ends an option only once its expiry has passed)
ENDED_STATES = frozenset({"closed", "terminated"})
SETTLED = "settled"


# --------------------------------------------------------------------------- typed events

class MarkPrices(NamedTuple):
    """One `markprice.options.{index}` notification: coin marks and mark IVs of options of `currency`.

    `mark_coin` coin per option; `mark_iv` fraction (Deribit sends `iv` as a fraction, 0.5364);
    `mark_time_ms` Deribit's epoch milliseconds per entry; `timestamp` the latest of them (UTC);
    `received_s` the local `time.perf_counter()` when the frame arrived (latency bookkeeping).
    """

    currency: str
    index_name: str
    timestamp: datetime
    instruments: tuple[str, ...]
    mark_coin: np.ndarray
    mark_iv: np.ndarray
    mark_time_ms: np.ndarray
    received_s: float


class IndexPrice(NamedTuple):
    """One `deribit_price_index.{index}` notification: the spot index in USD at `timestamp` (UTC)."""

    currency: str
    index_name: str
    price_usd: float
    timestamp: datetime
    received_s: float


class InstrumentState(NamedTuple):
    """One `instrument.state.option.{CUR}` notification: `state` is created/started/settled/closed/terminated."""

    currency: str
    instrument: str
    state: str
    timestamp: datetime
    received_s: float


class Connected(NamedTuple):
    """A connection is up and subscribed (`reconnect` when it replaces an earlier one: a gap to fill)."""

    url: str
    connection: int
    reconnect: bool
    channels: tuple[str, ...]
    at: datetime
    down_s: float | None          # seconds since the previous connection dropped (None for the first)


class Disconnected(NamedTuple):
    """A connection ended; the next attempt starts in `retry_in_s` seconds."""

    url: str
    reason: str
    at: datetime
    retry_in_s: float
    rate_limited: bool


Event = Union[MarkPrices, IndexPrice, InstrumentState, Connected, Disconnected]


# --------------------------------------------------------------------------- configuration and counters

@dataclass(frozen=True)
class StreamConfig:
    """Where to connect, what to subscribe and every deadline (seconds)."""

    url: str = DEFAULT_WS_URL
    currencies: tuple[str, ...] = ("BTC", "ETH")
    heartbeat_s: float = 10.0                 # public/set_heartbeat interval (Deribit accepts ≥ 10)
    missed_heartbeat_factor: float = 2.5      # silence longer than this many intervals = missed heartbeat
    request_timeout_s: float = 10.0           # a JSON-RPC reply (set_heartbeat, subscribe)
    open_timeout_s: float = 10.0              # TCP + TLS + websocket handshake
    close_timeout_s: float = 2.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    backoff_jitter: float = 0.5               # each delay drawn in [(1 - jitter)·d, d]
    rate_limit_backoff_s: float = 5.0         # first wait after a 10028 (doubles while it repeats)
    stable_after_s: float = 30.0              # a connection up this long resets the backoff
    max_message_bytes: int = 16 * 2 ** 20

    def __post_init__(self):
        if not (self.url.startswith("ws://") or self.url.startswith("wss://")):
            raise ValueError(f"websocket URL must start with ws:// or wss://, got {self.url!r}")
        if not self.currencies:
            raise ValueError("no currency to subscribe")
        for name in ("heartbeat_s", "request_timeout_s", "open_timeout_s", "backoff_initial_s", "backoff_max_s",
                     "rate_limit_backoff_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not 0 <= self.backoff_jitter < 1:
            raise ValueError(f"backoff_jitter must be in [0, 1), got {self.backoff_jitter!r}")

    @property
    def channels(self) -> tuple[str, ...]:
        out = []
        for cur in self.currencies:
            index = index_name(cur)
            out += [f"markprice.options.{index}", f"deribit_price_index.{index}", f"instrument.state.option.{cur.upper()}"]
        return tuple(out)

    @property
    def silence_limit_s(self) -> float:
        return self.heartbeat_s * self.missed_heartbeat_factor


@dataclass
class StreamStats:
    """Counters of one `DeribitStream` (all connections)."""

    frames: int = 0                 # websocket messages received
    notifications: int = 0          # subscription notifications parsed into events
    marks: int = 0
    index: int = 0
    states: int = 0
    heartbeats: int = 0
    test_requests: int = 0          # answered with public/test
    malformed: int = 0              # messages logged and skipped
    dropped_entries: int = 0        # mark entries without a name / finite mark
    connections: int = 0            # connections subscribed
    reconnects: int = 0             # connections after the first
    failed_attempts: int = 0        # connection attempts that did not get subscribed
    missed_heartbeats: int = 0
    rate_limited: int = 0           # 10028 replies
    connected: bool = False
    last_frame_at: datetime | None = None
    waits: list = field(default_factory=list)     # backoff delays slept, seconds (last 100)

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()}


def index_name(currency: str) -> str:
    """Deribit's index of a currency's options: BTC → btc_usd."""
    return f"{currency.lower()}_usd"


def backoff_delay(attempt: int, initial_s: float, cap_s: float, jitter: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: d = min(cap, initial·2^(attempt−1)), drawn in [(1 − jitter)·d, d]."""
    base = min(cap_s, initial_s * 2.0 ** max(0, attempt - 1))
    return base * (1.0 - jitter * rng.random())


class RateLimited(Exception):
    """Deribit answered 10028 too_many_requests."""


class _ConnectionLost(Exception):
    """The connection ended (closed by the peer, missed heartbeat, protocol error): reconnect."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------- parsing (pure)

def _finite_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def parse_marks(channel: str, data: Any, received_s: float) -> tuple[MarkPrices | None, int, str]:
    """A markprice.options notification's data → (MarkPrices or None, entries dropped, why None)."""
    index = channel.rsplit(".", 1)[-1]
    currency = index.split("_", 1)[0].upper()
    if not isinstance(data, list):
        return None, 0, f"data is {type(data).__name__}, not a list of marks"
    try:  # fast path: every entry well formed
        names = tuple(e["instrument_name"] for e in data)
        mark = np.array([e["mark_price"] for e in data], dtype=float)
        iv = np.array([e["iv"] for e in data], dtype=float)
        stamp = np.array([e["timestamp"] for e in data], dtype=float)
        if not all(type(n) is str for n in names) or not (np.isfinite(mark).all() and np.isfinite(stamp).all()):
            raise ValueError("needs checking")
        dropped = 0
    except (KeyError, TypeError, ValueError):
        keep_names, keep = [], []
        for e in data:
            if not isinstance(e, dict) or not isinstance(e.get("instrument_name"), str):
                continue
            m, s = _finite_float(e.get("mark_price")), _finite_float(e.get("timestamp"))
            if m is None or s is None:
                continue
            v = _finite_float(e.get("iv"))
            keep_names.append(e["instrument_name"])
            keep.append((m, np.nan if v is None else v, s))
        dropped = len(data) - len(keep)
        if not keep:
            return None, dropped, f"none of its {len(data)} mark entries has a name, a finite mark_price and a timestamp"
        names = tuple(keep_names)
        mark, iv, stamp = (np.array(col, dtype=float) for col in zip(*keep))
    if not len(names):
        return None, 0, "empty list of marks"
    iv = np.where(iv > 0, iv, np.nan)
    event = MarkPrices(currency=currency, index_name=index, timestamp=ms_to_datetime(float(stamp.max())),
                       instruments=names, mark_coin=mark, mark_iv=iv, mark_time_ms=stamp, received_s=received_s)
    return event, dropped, ""


def parse_index(channel: str, data: Any, received_s: float) -> tuple[IndexPrice | None, str]:
    index = channel.rsplit(".", 1)[-1]
    if not isinstance(data, dict):
        return None, f"data is {type(data).__name__}, not an object"
    price, stamp = _finite_float(data.get("price")), _finite_float(data.get("timestamp"))
    if price is None or price <= 0 or stamp is None:
        return None, "needs a positive 'price' and a numeric 'timestamp'"
    return IndexPrice(currency=index.split("_", 1)[0].upper(), index_name=index, price_usd=price,
                      timestamp=ms_to_datetime(stamp), received_s=received_s), ""


def parse_state(channel: str, data: Any, received_s: float) -> tuple[InstrumentState | None, str]:
    currency = channel.rsplit(".", 1)[-1].upper()
    if not isinstance(data, dict):
        return None, f"data is {type(data).__name__}, not an object"
    name, state, stamp = data.get("instrument_name"), data.get("state"), _finite_float(data.get("timestamp"))
    if not isinstance(name, str) or not isinstance(state, str) or stamp is None:
        return None, "needs 'instrument_name', 'state' and a numeric 'timestamp'"
    return InstrumentState(currency=currency, instrument=name, state=state.lower(), timestamp=ms_to_datetime(stamp),
                           received_s=received_s), ""


# --------------------------------------------------------------------------- the client

class DeribitStream:
    """A self-reconnecting subscription to the option channels of `config.currencies` (see the module doc).

    `sleep` (async) and `rng` are injectable for tests; `stats` counts what happened.
    """

    def __init__(self, config: StreamConfig | None = None, sleep: Callable[[float], Awaitable] | None = None,
                 rng: random.Random | None = None):
        self.config = config or StreamConfig()
        self.stats = StreamStats()
        self._sleep = sleep or asyncio.sleep
        self._rng = rng or random.Random()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._next_id = 0
        self._pending: dict[int, asyncio.Future] = {}
        self._closing = False
        self._runner: asyncio.Task | None = None

    # --- public ----------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """Every event, in arrival order, until `close()` (a bug in the connection loop is re-raised here)."""
        self._runner = asyncio.create_task(self._run(), name="deribit-ws")
        try:
            while True:
                getter = asyncio.ensure_future(self._queue.get())
                done, _ = await asyncio.wait({getter, self._runner}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                    continue
                getter.cancel()
                while not self._queue.empty():
                    yield self._queue.get_nowait()
                self._runner.result()  # re-raises the loop's exception, if any
                return
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop reconnecting and close the connection (bounded by `close_timeout_s`)."""
        self._closing = True
        runner, self._runner = self._runner, None
        if runner is not None and not runner.done():
            runner.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(runner), self.config.close_timeout_s + 1.0)
            except (asyncio.CancelledError, asyncio.TimeoutError, Exception):
                pass

    # --- connection loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

        cfg = self.config
        attempt = 0          # consecutive failures (connection backoff)
        limited = 0          # consecutive 10028s (rate-limit backoff)
        down_since: float | None = None   # when the feed went down (the first failure since the last connection)
        while not self._closing:
            rate_limited = False
            started = time.monotonic()
            try:
                async with connect(cfg.url, open_timeout=cfg.open_timeout_s, close_timeout=cfg.close_timeout_s,
                                   max_size=cfg.max_message_bytes, user_agent_header="qortcli (qortfolio)",
                                   compression=None) as ws:
                    await self._session(ws, down_since)
                reason = "closed by the server"
            except RateLimited as exc:
                rate_limited, reason = True, str(exc)
            except _ConnectionLost as exc:
                reason = str(exc)
            except ConnectionClosed as exc:
                reason = f"connection closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
            except InvalidURI as exc:
                raise ValueError(f"invalid websocket URL {cfg.url!r}: {exc}") from None
            except (OSError, InvalidHandshake, asyncio.TimeoutError, TimeoutError) as exc:
                reason = f"cannot connect to {cfg.url} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            finally:
                self._fail_pending()
                was_connected, self.stats.connected = self.stats.connected, False
            if self._closing:
                return
            up_s = time.monotonic() - started
            if was_connected and up_s >= cfg.stable_after_s:
                attempt = 0
            if rate_limited:
                limited += 1
                self.stats.rate_limited += 1
                delay = backoff_delay(limited, cfg.rate_limit_backoff_s, cfg.backoff_max_s, cfg.backoff_jitter, self._rng)
            else:
                limited = 0
                attempt += 1
                if not was_connected:
                    self.stats.failed_attempts += 1
                delay = backoff_delay(attempt, cfg.backoff_initial_s, cfg.backoff_max_s, cfg.backoff_jitter, self._rng)
            if was_connected or down_since is None:
                down_since = time.monotonic()
            log.warning("Deribit websocket: %s; reconnecting in %.2f s", reason, delay)
            self._queue.put_nowait(Disconnected(cfg.url, reason, _now(), delay, rate_limited))
            self.stats.waits = (self.stats.waits + [round(delay, 4)])[-100:]
            await self._sleep(delay)

    async def _session(self, ws, down_since: float | None) -> None:
        """One connection: heartbeat, subscribe, then read until it ends (raises why)."""
        cfg = self.config
        reader = asyncio.create_task(self._read(ws), name="deribit-ws-reader")
        try:
            await self._call(ws, reader, "public/set_heartbeat", {"interval": cfg.heartbeat_s})
            result = await self._call(ws, reader, "public/subscribe", {"channels": list(cfg.channels)})
            subscribed = tuple(result) if isinstance(result, list) else ()
            missing = [c for c in cfg.channels if c not in subscribed]
            if missing:
                log.warning("Deribit websocket: not subscribed to %s", ", ".join(missing))
            self.stats.connections += 1
            reconnect = self.stats.connections > 1
            self.stats.reconnects += int(reconnect)
            self.stats.connected = True
            down = None if down_since is None else time.monotonic() - down_since
            self._queue.put_nowait(Connected(cfg.url, self.stats.connections, reconnect, subscribed, _now(), down))
            await reader
        finally:
            if not reader.done():
                reader.cancel()
                try:
                    await reader
                except (asyncio.CancelledError, Exception):
                    pass

    async def _call(self, ws, reader: asyncio.Task, method: str, params: dict) -> Any:
        """Send a JSON-RPC request and wait (bounded) for its reply; 10028 → RateLimited."""
        future = await self._request(ws, method, params)
        done, _ = await asyncio.wait({future, reader}, timeout=self.config.request_timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if future not in done:
            if reader in done:
                reader.result()  # raises why the connection ended
            raise _ConnectionLost(f"no reply to {method} within {self.config.request_timeout_s:g} s")
        reply = future.result()
        error = reply.get("error")
        if error is not None:
            if isinstance(error, dict) and error.get("code") == TOO_MANY_REQUESTS:
                raise RateLimited(f"{method}: {describe_rpc_error(error)}")
            raise _ConnectionLost(f"{method} refused: {describe_rpc_error(error)}")
        return reply.get("result")

    async def _request(self, ws, method: str, params: dict, wait: bool = True) -> asyncio.Future | None:
        """Send one request; with `wait`, returns the future its reply will resolve."""
        self._next_id += 1
        future = None
        if wait:
            future = asyncio.get_running_loop().create_future()
            self._pending[self._next_id] = future
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}))
        return future

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.cancel()
        self._pending.clear()

    async def _read(self, ws) -> None:
        """Read frames until the connection ends; dispatch replies, heartbeats and notifications."""
        from websockets.exceptions import ConnectionClosed

        cfg = self.config
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=cfg.silence_limit_s)
            except asyncio.TimeoutError:
                self.stats.missed_heartbeats += 1
                raise _ConnectionLost(f"missed heartbeat: nothing received for {cfg.silence_limit_s:g} s "
                                      f"(heartbeat every {cfg.heartbeat_s:g} s)") from None
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else "no close frame"
                raise _ConnectionLost(f"connection closed by the server ({code})") from None
            received = time.perf_counter()
            self.stats.frames += 1
            self.stats.last_frame_at = _now()
            await self._dispatch(ws, raw, received)

    async def _dispatch(self, ws, raw: str | bytes, received_s: float) -> None:
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._malformed(f"not JSON ({exc})", raw)
        if not isinstance(message, dict):
            return self._malformed(f"a JSON {type(message).__name__}, not an object", raw)
        if "id" in message and ("result" in message or "error" in message):
            future = self._pending.pop(message.get("id"), None) if isinstance(message.get("id"), int) else None
            if future is not None and not future.done():
                future.set_result(message)
            elif message.get("error") is not None:
                error = message["error"]
                if isinstance(error, dict) and error.get("code") == TOO_MANY_REQUESTS:
                    raise RateLimited(describe_rpc_error(error))
                log.warning("Deribit websocket: error reply to request %s: %s", message.get("id"),
                            describe_rpc_error(error))
            return None
        method = message.get("method")
        params = message.get("params")
        if method == "heartbeat":
            kind = params.get("type") if isinstance(params, dict) else None
            if kind == "test_request":
                self.stats.test_requests += 1
                await self._request(ws, "public/test", {}, wait=False)  # its reply is not waited for
            else:
                self.stats.heartbeats += 1
            return None
        if method != "subscription":
            log.debug("Deribit websocket: ignored message with method %r", method)
            return None
        if not isinstance(params, dict) or not isinstance(params.get("channel"), str) or "data" not in params:
            return self._malformed("subscription without 'channel' and 'data'", raw)
        channel, data = params["channel"], params["data"]
        if channel.startswith("markprice.options."):
            event, dropped, why = parse_marks(channel, data, received_s)
            self.stats.dropped_entries += dropped
            if dropped and event is not None:
                log.warning("Deribit websocket: %s: dropped %d malformed mark entries", channel, dropped)
            self.stats.marks += event is not None
        elif channel.startswith("deribit_price_index."):
            event, why = parse_index(channel, data, received_s)
            self.stats.index += event is not None
        elif channel.startswith("instrument.state."):
            event, why = parse_state(channel, data, received_s)
            self.stats.states += event is not None
        else:
            log.debug("Deribit websocket: ignored channel %s", channel)
            return None
        if event is None:
            return self._malformed(f"{channel}: {why}", raw)
        self.stats.notifications += 1
        self._queue.put_nowait(event)
        return None

    def _malformed(self, why: str, raw) -> None:
        self.stats.malformed += 1
        text = raw if isinstance(raw, str) else repr(raw)
        log.warning("Deribit websocket: malformed message skipped: %s: %.120s", why, text)
