"""The stream step (`qortcli stream`): the live Deribit chain into `live_marks`, and periodic snapshots.

    run_stream(db, currencies=["BTC", "ETH"], snapshot_every="5m", duration=None) -> summary dict

One session:
1. seeds each currency's chain from REST (`DeribitClient.fetch_chain`, today's collector) and writes its
   first `live_marks` document;
2. subscribes to the websocket feed (`qortcli.sources.deribit_ws`) and applies every event to the live
   chain (`qortcli.steps.live_chain`); a reconnect after a drop re-seeds the chain from REST (logged with the
   length of the gap);
3. writes each currency's `live_marks` document (natural key: currency, replaced in place) after every
   change, coalesced by a token bucket: at most `max_writes_per_s` (default 4) writes per second per currency
   sustained, bursts of `write_burst` (2); updates arriving while a write waits or runs go into the next one.
   At Deribit's cadence (about one mark and one index update per second per currency) nothing waits; the cap
   bounds bursts (reconnects, the 08:00 UTC expiry). Each write reprices the whole chain (greeks and IVs with `quant.black76` / `quant.implied_vol`, ATM IV and RR25 with
   `quant.regime`) in a store thread, off the event loop;
4. every `snapshot_every` refreshes each currency's quotes (one `get_book_summary_by_currency`; if that
   fails the snapshot carries no bid/ask rather than stale ones) and stores the live chain as one complete
   snapshot through `collect.store_chain` (the one snapshot write path, source "deribit-stream"), each in
   its own `collect` run record, then calls `on_snapshot(rows)` once per round (the worker runs price and
   surface from there);
5. on SIGTERM/SIGINT (main thread), a set `stop_event` (other threads: the worker) or the end of `duration`: stops the
   feed, writes the last `live_marks` (stream.connected = false) and a final snapshot of every currency
   whose marks changed since its last one, and returns; the session's own `stream` run record carries the
   counts (messages, updates, snapshots, reconnects, ...).

Store reads and writes happen in two dedicated threads (live_marks; snapshots), REST calls in a third,
each wait bounded; the event loop only parses and applies updates.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import math
import signal
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, NamedTuple

import numpy as np

from qortcli.errors import ConfigError, StepError, UsageError
from qortcli.sources import deribit as deribit_src
from qortcli.sources.deribit_ws import (Connected, DeribitStream, Disconnected, IndexPrice, InstrumentState,
                                        MarkPrices, StreamConfig)
from qortcli.steps.live_chain import SOURCE, LiveChain, live_marks_document, parsed_chain, reprice
from qortcli.steps.common import day_count
from qortcli.store import ops, schema
from qortcli.store.runs import recorded_run
from qortcli.timeutils import utcnow

log = logging.getLogger(__name__)

DEFAULT_SNAPSHOT_EVERY_S = 300.0
DEFAULT_MAX_WRITES_PER_S = 4.0   # live_marks writes per second per currency, sustained
DEFAULT_WRITE_BURST = 2
REST_TIMEOUT_S = 90.0          # bound on one REST call (the client's own timeouts and retries come first)
FLUSH_REST_TIMEOUT_S = 15.0    # the same while shutting down (the final snapshot's quotes)
STATUS_EVERY_S = 1.0

class CurrencyStatus(NamedTuple):
    """One currency in the live status line: instruments priced, spot (USD), ATM IV / RR25 (fractions)."""

    currency: str
    instruments: int
    index_usd: float
    atm_iv_30d_marks: float
    rr25_front_marks: float
    marks_age_s: float | None


class StreamStatus(NamedTuple):
    """What `status` receives about once a second."""

    at: datetime
    connected: bool
    messages: int
    updates: int
    live_writes: int
    snapshots: int
    reconnects: int
    malformed: int
    latency_p50_ms: float
    latency_p99_ms: float
    currencies: tuple[CurrencyStatus, ...]


def parse_seconds(value, option: str) -> float:
    """"30s" / "5m" / "1h" (or a number of seconds) → seconds; UsageError naming `option` otherwise."""
    from qortcli.schedule import parse_every

    try:
        return parse_every(value, option).total_seconds()
    except ConfigError:
        raise UsageError(f"{option} must be a positive duration like 30s, 5m, 1h (got {value!r})") from None


class _Latency:
    """Arrival-to-write latencies in seconds (the last 200,000)."""

    def __init__(self):
        self.values: deque = deque(maxlen=200_000)

    def add(self, seconds: Iterable[float]) -> None:
        self.values.extend(seconds)

    def percentile_ms(self, q: float) -> float:
        if not self.values:
            return float("nan")
        return float(np.percentile(np.fromiter(self.values, float, len(self.values)), q) * 1000.0)


@dataclass
class _Counts:
    updates: int = 0            # events applied (marks, index, state)
    mark_updates: int = 0
    index_updates: int = 0
    state_changes: int = 0
    live_writes: int = 0
    snapshots: int = 0
    snapshot_failures: int = 0
    quote_refresh_failures: int = 0
    reseeds: int = 0
    reseed_failures: int = 0


class StreamSession:
    """One `qortcli stream` session (see the module docstring); `await session.run()` → summary dict."""

    def __init__(self, db, currencies: list[str], ws_config: StreamConfig, rest, snapshot_every_s: float,
                 duration_s: float | None, max_writes_per_s: float, write_burst: int, basis: str, rest_url: str,
                 status: Callable[[StreamStatus], None] | None = None,
                 on_snapshot: Callable[[list[dict]], None] | None = None,
                 on_write: Callable[[str, list[float]], None] | None = None, handle_signals: bool = True,
                 stop_event: threading.Event | None = None):
        self.db = db
        self.currencies = currencies
        self.ws_config = ws_config
        self.rest = rest
        self.rest_url = rest_url
        self.snapshot_every_s = snapshot_every_s
        self.duration_s = duration_s
        self.max_writes_per_s = max_writes_per_s
        self.write_burst = write_burst
        self.basis = basis
        self.status_cb = status
        self.on_snapshot = on_snapshot
        self.on_write = on_write
        self.handle_signals = handle_signals
        self.stop_event = stop_event
        self.counts = _Counts()
        self.latency = _Latency()
        self.chains: dict[str, LiveChain] = {}
        self.views: dict[str, Any] = {}
        self.snapshot_ids: list[str] = []
        self.last_snapshot: dict[str, tuple[int, str]] = {}   # currency → (chain version, snapshot id)
        self.started_at = utcnow()
        self.stream: DeribitStream | None = None
        self.stop_reason = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._dirty: dict[str, asyncio.Event] = {}
        self._pending: dict[str, list[float]] = {}
        self._store_ex = ThreadPoolExecutor(1, thread_name_prefix="qort-stream-live")
        self._snap_ex = ThreadPoolExecutor(1, thread_name_prefix="qort-stream-snapshot")
        self._rest_ex = ThreadPoolExecutor(1, thread_name_prefix="qort-stream-rest")

    # --- plumbing ---------------------------------------------------------------------------------

    def _in(self, executor, fn, *args):
        """Run `fn(*args)` in `executor` with this context (the worker's run tags reach the run records)."""
        ctx = contextvars.copy_context()
        return self._loop.run_in_executor(executor, functools.partial(ctx.run, fn, *args))

    async def _rest(self, what: str, fn, *args, timeout_s: float = REST_TIMEOUT_S):
        try:
            return await asyncio.wait_for(self._in(self._rest_ex, fn, *args), timeout_s)
        except asyncio.TimeoutError:
            raise StepError(f"{what}: no answer within {timeout_s:g} s ({self.rest_url})") from None

    def _request_stop(self, reason: str) -> None:
        if not self.stop_reason:
            self.stop_reason = reason
        if self._stop is not None:
            self._stop.set()

    def _touch(self, currency: str, received_s: float | None = None) -> None:
        if currency in self._dirty:
            if received_s is not None:
                self._pending[currency].append(received_s)
            self._dirty[currency].set()

    def _stream_fields(self) -> dict:
        stats = self.stream.stats if self.stream else None
        return {"connected": bool(stats and stats.connected), "url": self.ws_config.url,
                "session_started_at": self.started_at, "last_message_at": stats.last_frame_at if stats else None,
                "messages": stats.frames if stats else 0, "updates": self.counts.updates,
                "reconnects": stats.reconnects if stats else 0, "malformed": stats.malformed if stats else 0,
                "max_writes_per_s": self.max_writes_per_s, "snapshot_every_s": self.snapshot_every_s,
                "last_snapshot_id": self.snapshot_ids[-1] if self.snapshot_ids else None}

    # --- the session ------------------------------------------------------------------------------

    async def run(self) -> dict:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        installed = self._install_signals()
        tasks: list[asyncio.Task] = []
        failure: BaseException | None = None
        live = False
        try:
            for cur in self.currencies:
                chain = await self._rest(f"{cur} seed", self.rest.fetch_chain, cur)
                self.chains[cur] = LiveChain.from_parsed(chain)
                self.last_snapshot[cur] = (self.chains[cur].version, "")
                self._dirty[cur] = asyncio.Event()
                self._pending[cur] = []
                log.info("%s: seeded %d instruments from REST (%s)", cur, len(chain.records), self.rest_url)
            for cur in self.currencies:  # the first live_marks right away (REST marks; the feed is not up yet)
                await self._write_live(cur)
            self.stream = DeribitStream(self.ws_config)
            live = True
            tasks = [asyncio.create_task(self._consume(), name="stream-consume"),
                     asyncio.create_task(self._snapshot_loop(), name="stream-snapshots"),
                     *[asyncio.create_task(self._writer(cur), name=f"stream-writer-{cur}") for cur in self.currencies]]
            if self.status_cb is not None:
                tasks.append(asyncio.create_task(self._status_loop(), name="stream-status"))
            if self.stop_event is not None:
                tasks.append(asyncio.create_task(self._watch_stop_event(), name="stream-stop-watch"))
            stopper = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait([stopper, *tasks], timeout=self.duration_s, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not done:
                self.stop_reason = self.stop_reason or f"duration {self.duration_s:g} s elapsed"
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception() is not None:
                    failure = task.exception()
            if failure is None and not self.stop_reason:
                self.stop_reason = "the feed ended"
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
            if self.stream is not None:
                await self.stream.close()
            try:
                if live and failure is None:
                    await self._flush()
            finally:
                self._remove_signals(installed)
                for ex in (self._store_ex, self._snap_ex, self._rest_ex):
                    ex.shutdown(wait=False, cancel_futures=True)
        if failure is not None:
            if isinstance(failure, StepError):
                raise failure
            raise StepError(f"stream session failed: {type(failure).__name__}: "
                            f"{str(failure).splitlines()[0] if str(failure) else ''}") from failure
        return self.summary()

    async def _watch_stop_event(self) -> None:
        while not self.stop_event.is_set():
            await asyncio.sleep(0.2)
        self._request_stop("stop requested")

    def _install_signals(self) -> list:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return []
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._loop.add_signal_handler(sig, self._request_stop, f"{sig.name} received")
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        return installed

    def _remove_signals(self, installed: list) -> None:
        for sig in installed:
            try:
                self._loop.remove_signal_handler(sig)
            except Exception:
                pass

    async def _flush(self) -> None:
        """Last live_marks (feed stopped) and a final snapshot of the currencies whose marks changed."""
        for cur in self.currencies:
            await self._write_live(cur)
        changed = [cur for cur in self.currencies
                   if self.chains[cur].version != self.last_snapshot.get(cur, (-1, ""))[0]]
        if changed:
            log.info("final snapshot of %s", ", ".join(changed))
            await self._snapshot_round(changed, rest_timeout_s=FLUSH_REST_TIMEOUT_S)

    # --- events -----------------------------------------------------------------------------------

    async def _consume(self) -> None:
        async for event in self.stream.events():
            if isinstance(event, MarkPrices):
                chain = self.chains.get(event.currency)
                if chain is not None and chain.apply_marks(event):
                    self.counts.updates += 1
                    self.counts.mark_updates += 1
                    self._touch(event.currency, event.received_s)
            elif isinstance(event, IndexPrice):
                chain = self.chains.get(event.currency)
                if chain is not None:
                    chain.apply_index(event)
                    self.counts.updates += 1
                    self.counts.index_updates += 1
                    self._touch(event.currency, event.received_s)
            elif isinstance(event, InstrumentState):
                chain = self.chains.get(event.currency)
                action = chain.apply_state(event) if chain is not None else ""
                if action:
                    self.counts.updates += 1
                    self.counts.state_changes += 1
                    log.info("%s: %s %s (%s)", event.currency, action, event.instrument, event.state)
                    self._touch(event.currency, event.received_s)
            elif isinstance(event, Connected):
                if event.reconnect:
                    await self._reseed(event)
                for cur in self.currencies:
                    self._touch(cur)
            elif isinstance(event, Disconnected):
                for cur in self.currencies:
                    self._touch(cur)

    async def _reseed(self, event: Connected) -> None:
        gap = f"{event.down_s:.1f} s" if event.down_s is not None else "unknown length"
        for cur in self.currencies:
            try:
                chain = await self._rest(f"{cur} re-seed", self.rest.fetch_chain, cur)
            except StepError as exc:
                self.counts.reseed_failures += 1
                log.warning("%s: reconnected after a gap of %s, but the REST re-seed failed (%s); the live "
                            "chain goes on from the feed", cur, gap, exc)
                continue
            added, removed = self.chains[cur].reseed(chain)
            self.counts.reseeds += 1
            log.warning("%s: reconnected after a gap of %s: re-seeded from REST (%d instruments, %d new, %d gone)",
                        cur, gap, len(chain.records), added, removed)

    # --- live_marks -------------------------------------------------------------------------------

    async def _writer(self, currency: str) -> None:
        """Write after each change, at most `max_writes_per_s` sustained with bursts of `write_burst`."""
        dirty, rate, burst = self._dirty[currency], self.max_writes_per_s, float(self.write_burst)
        tokens, last = burst, time.monotonic()
        while True:
            await dirty.wait()
            if math.isfinite(rate):
                now = time.monotonic()
                tokens, last = min(burst, tokens + (now - last) * rate), now
                if tokens < 1.0:
                    await asyncio.sleep((1.0 - tokens) / rate)
                    now = time.monotonic()
                    tokens, last = min(burst, tokens + (now - last) * rate), now
                tokens -= 1.0
            await self._write_live(currency)

    async def _write_live(self, currency: str) -> None:
        self._dirty[currency].clear()
        chain = self.chains[currency]
        chain.prune_expired(chain.marks_at or datetime.now(timezone.utc))   # on Deribit's clock
        inputs = chain.freeze()
        received, self._pending[currency] = self._pending[currency], []
        stream_fields = self._stream_fields()
        view = await self._in(self._store_ex, self._write_live_sync, inputs, stream_fields)
        done = time.perf_counter()
        self.counts.live_writes += 1
        self.views[currency] = view
        lags = [done - r for r in received]
        self.latency.add(lags)
        if self.on_write is not None:
            self.on_write(currency, lags)

    def _write_live_sync(self, inputs, stream_fields: dict):
        view = reprice(inputs, self.basis)
        ops.upsert_many(self.db, schema.LIVE_MARKS, [live_marks_document(view, utcnow(), stream_fields)])
        return view

    # --- snapshots --------------------------------------------------------------------------------

    async def _snapshot_loop(self) -> None:
        due = time.monotonic() + self.snapshot_every_s
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due = max(due + self.snapshot_every_s, time.monotonic() + 1.0)
            await self._snapshot_round(self.currencies)

    async def _snapshot_round(self, currencies: list[str], rest_timeout_s: float = REST_TIMEOUT_S) -> None:
        rows = []
        for cur in currencies:
            chain = self.chains[cur]
            try:
                book = await self._rest(f"{cur} quotes", self.rest.get_book_summary, cur, timeout_s=rest_timeout_s)
                chain.merge_book(book, chain.marks_at or utcnow())
            except StepError as exc:
                self.counts.quote_refresh_failures += 1
                chain.clear_quotes()
                log.warning("%s: quotes not refreshed for the snapshot (%s): stored without bid/ask", cur, exc)
            chain.prune_expired(chain.marks_at or datetime.now(timezone.utc))   # on Deribit's clock
            inputs = chain.freeze()
            parsed = parsed_chain(inputs)
            sid = ops.snapshot_id_for(cur, parsed.timestamp)
            if sid == self.last_snapshot.get(cur, (None, None))[1]:
                continue  # the same second as the last one (its id): nothing new to store
            try:
                row = await self._in(self._snap_ex, self._store_snapshot_sync, parsed)
            except StepError as exc:
                self.counts.snapshot_failures += 1
                log.warning("%s: snapshot not stored: %s", cur, exc)
                continue
            self.last_snapshot[cur] = (inputs.version, row["snapshot_id"])
            self.snapshot_ids.append(row["snapshot_id"])
            self.counts.snapshots += 1
            rows.append(row)
            log.info("%s: snapshot %s stored (%d instruments)", cur, row["snapshot_id"], row["instruments"])
        if rows and self.on_snapshot is not None:
            try:
                self.on_snapshot(rows)
            except Exception:  # a hook must not end the stream
                log.exception("on_snapshot hook failed")

    def _store_snapshot_sync(self, chain) -> dict:
        from qortcli.steps.collect import store_chain

        with recorded_run(self.db, "collect", {"source": SOURCE, "currencies": [chain.currency],
                                               "url": self.ws_config.url}) as run:
            row = store_chain(self.db, chain)
            run.counts.update(snapshots=1, stored=row["stored"], skipped=row["skipped"], failed=0)
        return row

    # --- status -----------------------------------------------------------------------------------

    def status(self) -> StreamStatus:
        now = datetime.now(timezone.utc)
        stats = self.stream.stats if self.stream else None
        per = []
        for cur in self.currencies:
            view = self.views.get(cur)
            chain = self.chains.get(cur)
            age = (now - chain.marks_at).total_seconds() if chain and chain.marks_at else None
            per.append(CurrencyStatus(cur, len(view.rows["instrument"]) if view else 0,
                                      chain.index_usd if chain else math.nan,
                                      view.atm_iv_30d_marks if view else math.nan,
                                      view.rr25_front_marks if view else math.nan, age))
        return StreamStatus(at=now, connected=bool(stats and stats.connected), messages=stats.frames if stats else 0,
                            updates=self.counts.updates, live_writes=self.counts.live_writes,
                            snapshots=self.counts.snapshots, reconnects=stats.reconnects if stats else 0,
                            malformed=stats.malformed if stats else 0,
                            latency_p50_ms=self.latency.percentile_ms(50), latency_p99_ms=self.latency.percentile_ms(99),
                            currencies=tuple(per))

    async def _status_loop(self) -> None:
        while True:
            try:
                self.status_cb(self.status())
            except Exception:
                log.exception("status callback failed")
            await asyncio.sleep(STATUS_EVERY_S)

    def summary(self) -> dict:
        stats = self.stream.stats if self.stream else None
        status = self.status()
        return {
            "step": "stream", "url": self.ws_config.url, "rest_url": self.rest_url, "currencies": self.currencies,
            "started_at": self.started_at, "ended_at": utcnow(), "stop_reason": self.stop_reason,
            "messages": stats.frames if stats else 0, "notifications": stats.notifications if stats else 0,
            **{f.name: getattr(self.counts, f.name) for f in fields(self.counts)},
            "snapshot_ids": list(self.snapshot_ids), "connections": stats.connections if stats else 0,
            "reconnects": stats.reconnects if stats else 0, "malformed": stats.malformed if stats else 0,
            "missed_heartbeats": stats.missed_heartbeats if stats else 0,
            "dropped_mark_entries": stats.dropped_entries if stats else 0,
            "rate_limited": stats.rate_limited if stats else 0,
            "test_requests": stats.test_requests if stats else 0,
            "latency_ms": {"p50": status.latency_p50_ms, "p99": status.latency_p99_ms, "n": len(self.latency.values)},
            "max_writes_per_s": self.max_writes_per_s, "write_burst": self.write_burst,
            "snapshot_every_s": self.snapshot_every_s, "backoff_waits_s": list(stats.waits) if stats else [],
            "live": [c._asdict() for c in status.currencies],
        }


def _currencies(currencies) -> list[str]:
    from qortcli.config import get_settings

    if currencies is None:
        currencies = get_settings().section("collect").get("currencies") or ["BTC", "ETH"]
    if isinstance(currencies, str):
        currencies = [currencies]
    out = [c.strip().upper() for value in currencies for c in str(value).replace(",", " ").split() if c.strip()]
    if not out:
        raise UsageError("no currency to stream (e.g. --currency BTC,ETH)")
    return list(dict.fromkeys(out))


def run_stream(db, currencies: Iterable[str] | str | None = None, url: str | None = None,
               snapshot_every: str | float = DEFAULT_SNAPSHOT_EVERY_S, duration: str | float | None = None,
               rest=None, rest_url: str | None = None, max_writes_per_s: float = DEFAULT_MAX_WRITES_PER_S,
               write_burst: int = DEFAULT_WRITE_BURST,
               ws: dict | None = None, status: Callable[[StreamStatus], None] | None = None,
               on_snapshot: Callable[[list[dict]], None] | None = None,
               on_write: Callable[[str, list[float]], None] | None = None, handle_signals: bool = True,
               stop_event: threading.Event | None = None) -> dict:
    """Run one stream session until SIGTERM/SIGINT, `stop_event` or `duration` (see the module docstring).

    `url` is the websocket URL (default wss://www.deribit.com/ws/api/v2), `rest_url` the REST base
    (default the settings' Deribit URL) or `rest` a client with `fetch_chain(currency)` and
    `get_book_summary(currency)`. `snapshot_every` / `duration`: "30s", "5m", "1h" or seconds.
    `max_writes_per_s` / `write_burst`: the live_marks write cap per currency (token bucket; inf = none). `ws`: options of
    `StreamConfig` (heartbeat_s, backoff_initial_s, ...). `status(StreamStatus)` is called about once a
    second, `on_snapshot(rows)` after each round of snapshots, `on_write(currency, lags_s)` after each
    live_marks write. `stop_event` (a threading.Event, e.g. the worker's) ends the session when set.
    Returns the summary (counts, latencies, snapshot ids) also recorded in the run.
    """
    currencies = _currencies(currencies)
    snapshot_s = parse_seconds(snapshot_every, "--snapshot-every")
    duration_s = parse_seconds(duration, "--duration") if duration not in (None, "", 0) else None
    if not (isinstance(max_writes_per_s, (int, float)) and max_writes_per_s > 0):
        raise UsageError(f"max_writes_per_s must be a positive number, got {max_writes_per_s!r}")
    if not (isinstance(write_burst, int) and write_burst >= 1):
        raise UsageError(f"write_burst must be an integer >= 1, got {write_burst!r}")
    options = dict(ws or {})
    known = {f.name for f in fields(StreamConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(f"unknown stream option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if url:
        options["url"] = url
    options["currencies"] = tuple(currencies)
    try:
        ws_config = StreamConfig(**options)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    basis = day_count()
    rest = rest or deribit_src.DeribitClient(base_url=rest_url)
    rest_url = getattr(rest, "base_url", rest_url or "")
    args = {"currencies": currencies, "url": ws_config.url, "rest_url": rest_url, "snapshot_every_s": snapshot_s,
            "duration_s": duration_s, "max_writes_per_s": max_writes_per_s}
    with recorded_run(db, "stream", args) as run:
        session = StreamSession(db, currencies, ws_config, rest, snapshot_s, duration_s, float(max_writes_per_s),
                                write_burst, basis,
                                rest_url, status=status, on_snapshot=on_snapshot, on_write=on_write,
                                handle_signals=handle_signals, stop_event=stop_event)
        try:
            summary = asyncio.run(session.run())
        finally:
            run.counts.update(_run_counts(session))
    return summary


def _run_counts(session: StreamSession) -> dict:
    stats = session.stream.stats if session.stream else None
    return {"messages": stats.frames if stats else 0, "updates": session.counts.updates,
            "live_writes": session.counts.live_writes, "snapshots": session.counts.snapshots,
            "reconnects": stats.reconnects if stats else 0, "reseeds": session.counts.reseeds,
            "malformed": stats.malformed if stats else 0, "missed_heartbeats": stats.missed_heartbeats if stats else 0,
            "rate_limited": stats.rate_limited if stats else 0,
            "snapshot_failures": session.counts.snapshot_failures,
            "quote_refresh_failures": session.counts.quote_refresh_failures}
