"""The viewer's only store access: one read-only handle, page loads on one store thread, a shared cache.

The handle comes from `qortcli.store.readonly.open_readonly`: read-only at the engine level (the embedded engine
creates, changes and locks no file, so a read-only mount works; a MongoDB user that could write is warned about)
behind the `qortcli.store.readonly` wrapper (reads only). A missing store is a one-line error every page shows (and the
next refresh tries again), never a page "loading" forever.

`load(page, selection, known_version)` runs on the store thread: it takes the page's cheap version stamp
(`queries.page_version`); when the caller already has data of that version it returns at once ("same");
otherwise it returns the cached data of that version or runs `queries.PAGE_LOADS[page]` once for every
client showing that page and selection, with a content digest the states compare before touching anything.
`live_stamp(currency)` answers the chain page's fast poll on a second thread, so it never waits behind a
page load.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from qortcli.errors import StoreError, UsageError
from qortcli.store import read
from qortcli.store.connect import is_mongo_url
from qortcli.store.readonly import ReadOnlyDatabase, open_readonly
from qortview import queries

log = logging.getLogger("qortview")
_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qortview-db")
_STAMPS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qortview-stamp")
_LOCK = threading.Lock()
_HANDLE: dict = {"db": None, "error": "", "tried": 0.0}
_CACHE: "OrderedDict[tuple, tuple[str, dict, str]]" = OrderedDict()
CACHE_ENTRIES = 64
RETRY_OPEN_S = 2.0


class Load(NamedTuple):
    """A page load: `status` "same" (the caller's version is current: nothing else set), "data" or "error"."""

    status: str
    version: str
    data: dict | None
    digest: str
    error: str
    ms: float
    note: str = ""


def refresh_seconds() -> float:
    """Seconds between page refreshes (QORT_VIEWER_REFRESH_S, default 30)."""
    try:
        return max(1.0, float(os.environ.get("QORT_VIEWER_REFRESH_S", "30")))
    except ValueError:
        return 30.0


def open_store() -> ReadOnlyDatabase:
    """The store of QORT_DB / QORT_DB_NAME, read-only (StoreError naming the path when there is none)."""
    from qortcli.config import get_settings

    settings = get_settings()
    target = settings.db_url
    if not is_mongo_url(target) and "://" not in target and not Path(target).expanduser().is_dir():
        raise StoreError(f"no store at {target}: run `qortcli collect sample` (or the worker) first, "
                         "or point the viewer at one with scripts/viewer --db PATH (QORT_DB)")
    return open_readonly(target, settings.db_name)   # (warns when a MongoDB user could write)


def _handle() -> ReadOnlyDatabase:
    with _LOCK:
        if _HANDLE["db"] is not None:
            return _HANDLE["db"]
        if _HANDLE["error"] and time.monotonic() - _HANDLE["tried"] < RETRY_OPEN_S:
            raise StoreError(_HANDLE["error"])
        _HANDLE["tried"] = time.monotonic()
        try:
            _HANDLE["db"] = open_store()
            _HANDLE["error"] = ""
        except StoreError as exc:
            _HANDLE["error"] = str(exc)
            raise
        return _HANDLE["db"]


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def digest_of(data) -> str:
    """A content digest of page data (JSON, keys sorted)."""
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str, allow_nan=True).encode()).hexdigest()


def _load(page: str, selection: dict, known: str | None) -> Load:
    clock = time.perf_counter()

    def ms() -> float:
        return (time.perf_counter() - clock) * 1000

    try:
        db = _handle()
        version = queries.page_version(db, page, selection)
        if known is not None and version == known:
            return Load("same", version, None, "", "", ms())
        note = ""
        tries = [selection]
        if selection:
            tries += [{k: v for k, v in selection.items() if k != "expiry"}, {}] if "expiry" in selection else [{}]
        for attempt, chosen in enumerate(tries):
            key = (page, tuple(sorted((k, str(v)) for k, v in chosen.items())))
            hit = _CACHE.get(key)
            if hit is not None and hit[0] == version:
                _CACHE.move_to_end(key)
                return Load("data", version, hit[1], hit[2], "", ms(), note)
            try:
                data = queries.PAGE_LOADS[page](db, **chosen)
            except UsageError as exc:
                if attempt == len(tries) - 1:
                    raise
                note = f"{_line(exc)}: showing the default instead"
                continue
            digest = digest_of(data)
            _CACHE[key] = (version, data, digest)
            while len(_CACHE) > CACHE_ENTRIES:
                _CACHE.popitem(last=False)
            return Load("data", version, data, digest, "", ms(), note)
    except (StoreError, UsageError) as exc:
        return Load("error", "", None, "", _line(exc), ms())
    except Exception as exc:  # a page must show the problem, not die
        log.exception("page %s failed", page)
        return Load("error", "", None, "", f"{type(exc).__name__}: {_line(exc)}", ms())
    raise AssertionError("unreachable")


async def load(page: str, selection: dict | None = None, known_version: str | None = None) -> Load:
    """Page `page`'s data for `selection` (see the module docstring), off the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_EXECUTOR, _load, page, dict(selection or {}), known_version)


def _live_stamp(currency: str) -> str:
    try:
        return queries.iso(read.live_stamp(_handle(), currency)) or ""
    except StoreError:
        return ""


async def live_stamp(currency: str) -> str:
    """When the stream last wrote `currency`'s live marks (ISO), "" when it never did."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_STAMPS, _live_stamp, currency)


def describe() -> str:
    db = _HANDLE["db"]
    return db.describe() if db is not None else ""
