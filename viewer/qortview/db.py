"""The viewer's only store access: one read-only handle, used from one dedicated thread.

The handle comes from `qortcli.store.readonly.open_readonly`: for the embedded store it is opened read-only
at the engine level (no file is ever created, changed or locked, even through introspection, and a missing
collection reads as empty); for MongoDB queries with server-side JavaScript are refused and the server
user should have the `read` role only (docker-compose creates one).
All reads go through `run(fn, *args)`, which calls `fn(readonly_db, *args)` on a single worker thread and
returns `(result, error_line, milliseconds)`. `warm_loop()` (a Reflex lifespan task) touches the indexed
fields every refresh period so the first page load after a writer changed the store is not the slow one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from qortcli.errors import StoreError
from qortcli.store import schema
from qortcli.store.readonly import open_readonly
from qortview import queries

log = logging.getLogger("qortview")
_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qortview-db")
_HANDLE: dict = {"db": None, "error": ""}
_CACHE: dict = {"price_stats": None, "price_stats_at": 0.0}
STATS_EVERY_S = 120.0


def refresh_seconds() -> float:
    """Seconds between page refreshes (QORT_VIEWER_REFRESH_S, default 30)."""
    try:
        return max(1.0, float(os.environ.get("QORT_VIEWER_REFRESH_S", "30")))
    except ValueError:
        return 30.0


def _handle():
    if _HANDLE["db"] is None:
        _HANDLE["db"] = open_readonly()
    return _HANDLE["db"]


def _call(fn, args):
    clock = time.perf_counter()
    try:
        db = _handle()
    except StoreError as exc:
        return None, str(exc), (time.perf_counter() - clock) * 1000
    try:
        result = fn(db, *args)
    except StoreError as exc:
        return None, str(exc), (time.perf_counter() - clock) * 1000
    except Exception as exc:  # a page must show the problem, not die
        log.exception("query %s failed", getattr(fn, "__name__", fn))
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"{type(exc).__name__}: {line}", (time.perf_counter() - clock) * 1000
    return result, "", (time.perf_counter() - clock) * 1000


async def run(fn, *args):
    """`fn(db, *args)` on the store thread → (result, error line or "", milliseconds)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_EXECUTOR, _call, fn, args)


def describe() -> str:
    db = _HANDLE["db"]
    return db.describe() if db is not None else ""


def _warm(db) -> None:
    for name, field in ((schema.SNAPSHOTS, "kind"), (schema.OPTIONS, "snapshot_id"), (schema.PRICES, "symbol"),
                        (schema.SURFACES, "currency"), (schema.PORTFOLIOS, "portfolio_id"),
                        (schema.SUGGESTIONS, "snapshot_id"), (schema.JOB_RUNS, "step")):
        db[name].find_one({field: "__warm__"}, {"_id": 1})
    if _CACHE["price_stats"] is None or time.monotonic() - _CACHE["price_stats_at"] > STATS_EVERY_S:
        _CACHE["price_stats"] = queries.price_stats(db)
        _CACHE["price_stats_at"] = time.monotonic()


def cached_price_stats(db) -> dict:
    """`queries.price_stats`, recomputed by the warm-up loop at most every STATS_EVERY_S (call on the store thread)."""
    if _CACHE["price_stats"] is None:
        _CACHE["price_stats"] = queries.price_stats(db)
        _CACHE["price_stats_at"] = time.monotonic()
    return _CACHE["price_stats"]


def overview(db) -> dict:
    return queries.overview(db, cached_price_stats(db))


async def warm_loop() -> None:
    """Lifespan task: keep the store's query indexes warm (first pass at start-up) and the price stats fresh."""
    while True:
        _, error, ms = await run(_warm)
        log.info("store warm-up %.0f ms %s", ms, error)
        await asyncio.sleep(refresh_seconds())
