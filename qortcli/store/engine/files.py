"""One SQLite file per collection: opening it for writing or reading, its tables, and error messages.

Layout of a collection file (`<store>/<database>/<collection>.sqlite`, WAL journal, synchronous=NORMAL):

    docs(rid INTEGER PRIMARY KEY, idh, id, body BLOB, f_<field>…)   documents; idh = an 8-byte hash of `_id`
                                          (indexed: 8-byte keys instead of 40-byte ones), id = the `_id` itself
    meta(key TEXT PRIMARY KEY, value)     format, document count, which columns hold datetimes
    dicts(id, data, base)                 compression dictionaries: bases, and composites = base + tail (codec.py)
    indexes(name TEXT PRIMARY KEY, spec TEXT)  the MongoDB-style index specs (JSON)

Writers use `BEGIN IMMEDIATE` transactions with a busy timeout, so several processes (worker, CLI, viewer)
share a store; a write that waits longer than the timeout is one clear StoreError, never a traceback.

Readers of a read-only handle never create or change a file: a collection whose file does not exist
reads as empty; while a writer has the file open (its `-wal` exists) they open it `mode=ro`; otherwise
there is no writer and they open it `immutable=1` (which works on a read-only mount) and re-check after
the read that the file did not change underneath (it would be re-read if it did).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from qortcli.errors import StoreError

FORMAT_VERSION = 1
SUFFIX = ".sqlite"
DEFAULT_BUSY_S = 30.0

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS docs (rid INTEGER PRIMARY KEY, idh INTEGER NOT NULL, id NOT NULL, body BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS docs_idh ON docs(idh)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value)",
    "CREATE TABLE IF NOT EXISTS dicts (id INTEGER PRIMARY KEY, data BLOB NOT NULL, base INTEGER)",
    "CREATE TABLE IF NOT EXISTS indexes (name TEXT PRIMARY KEY, spec TEXT NOT NULL)",
)


def store_error(path: Path, exc: BaseException, doing: str = "") -> StoreError:
    """One line naming the file for any SQLite failure."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    what = f" while {doing}" if doing else ""
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        hint = "another process holds the write lock; try again when it finishes"
    elif "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
        hint = "the file is damaged: run `qortcli check` (and restore it from `qortcli backup` if needed)"
    elif "disk is full" in lowered or "disk i/o" in lowered:
        hint = "free disk space; nothing of this write was kept"
    elif "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        hint = "check the store's path and permissions"
    else:
        hint = ""
    return StoreError(f"{path}: {text}{what}" + (f" ({hint})" if hint else ""))


def open_writer(path: Path, busy_s: float = DEFAULT_BUSY_S) -> sqlite3.Connection:
    """A read-write connection to a collection file (created with its tables if missing)."""
    try:
        conn = sqlite3.connect(str(path), timeout=busy_s, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_s * 1000)}")
        _set_wal(conn, busy_s)
        conn.execute("PRAGMA synchronous = NORMAL")
        if conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'docs'").fetchone()[0] == 0:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in SCHEMA:
                    conn.execute(statement)
                conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('format', ?)", (FORMAT_VERSION,))
                conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('count', 0)")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        check_format(conn, path)
        return conn
    except sqlite3.Error as exc:
        raise store_error(path, exc, "opening") from None


def _set_wal(conn: sqlite3.Connection, busy_s: float) -> None:
    """Switch a new file to WAL. SQLite answers "database is locked" at once, without its busy handler, when
    another process is creating the same file at that moment (two first writers of a fresh store): retry
    until the busy timeout instead of failing."""
    import time

    deadline = time.monotonic() + busy_s
    pause = 0.005
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


def check_format(conn: sqlite3.Connection, path: Path) -> None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    if row is None or int(row[0]) != FORMAT_VERSION:
        raise StoreError(f"{path}: not a qortfolio collection file of format {FORMAT_VERSION} (found {row and row[0]})")


def wal_exists(path: Path) -> bool:
    return os.path.exists(str(path) + "-wal")


def stat_token(path: Path) -> tuple | None:
    """What changes when SQLite writes the file (inode, size, mtime), or None if it is gone."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, wal_exists(path)


def open_reader(path: Path, busy_s: float = DEFAULT_BUSY_S) -> tuple[sqlite3.Connection, bool]:
    """(connection, immutable) for reading without creating or writing any file."""
    uri_path = str(path.resolve()).replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    try:
        if wal_exists(path):
            try:
                conn = sqlite3.connect(f"file:{uri_path}?mode=ro", uri=True, timeout=busy_s,
                                       isolation_level=None, check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout = {int(busy_s * 1000)}")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return conn, False
            except sqlite3.OperationalError:
                pass  # e.g. a read-only mount without the -shm file: fall back to an immutable read
        conn = sqlite3.connect(f"file:{uri_path}?immutable=1", uri=True, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA query_only = 1")
        return conn, True
    except sqlite3.Error as exc:
        raise store_error(path, exc, "opening read-only") from None
