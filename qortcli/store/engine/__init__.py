"""qortfolio's embedded document store: pymongo's interface over SQLite files with real on-disk indexes.

Why our own layer: measured on this project's real chains, litemongo (mongomock's Python engine over SQLite)
rebuilds its indexes in every process, so every step's cost grew with the whole history; tinymongo's SQLite
backend sorts in Python, has no `bulk_write` and no descending keys; montydb does not enforce unique indexes.
This package supports exactly the subset the project uses (`collection.py` lists it), each query served by an
SQLite index (or refused with a clear error), and nothing more.

Layout: `<root>/qortstore.json` (format marker) and `<root>/<database>/<collection>.sqlite` (see `files.py`).
A directory holding a store of the previous engine (litemongo: collection files without a suffix) is
recognised and refused with the command that upgrades it (`qortcli migrate --upgrade-store`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from qortcli.errors import StoreError
from qortcli.store.engine import files
from qortcli.store.engine.collection import Cursor, EmbeddedCollection, ReadOnlyStoreError
from qortcli.store.engine.query import QueryError

MARKER = "qortstore.json"
MARKER_CONTENT = {"format": "qortfolio-embedded", "version": files.FORMAT_VERSION}
UPGRADE_HINT = "upgrade it with `qortcli migrate --upgrade-store` (it keeps the old files as a backup)"

__all__ = ["EmbeddedDatabase", "EmbeddedCollection", "Cursor", "QueryError", "ReadOnlyStoreError", "LegacyStoreError",
           "legacy_collections", "MARKER"]


class LegacyStoreError(StoreError):
    """The directory holds a store of the previous embedded engine (litemongo)."""


def legacy_collections(db_dir: Path) -> list[Path]:
    """Collection files of a litemongo store in `db_dir` (SQLite files without a suffix holding `documents`)."""
    if not db_dir.is_dir():
        return []
    found = []
    for path in sorted(db_dir.iterdir()):
        if not path.is_file() or path.suffix or path.name.endswith(("-wal", "-shm", "-journal")):
            continue
        try:
            with open(path, "rb") as fh:
                if fh.read(16) != b"SQLite format 3\x00":
                    continue
        except OSError:
            continue
        found.append(path)
    return found


def _writable(root: Path, db_dir: Path) -> bool:
    """Whether this process can create and change files of the store (the folder, its database folder and
    the files already in it); `os.access` answers EROFS for a read-only mount, even to root."""
    import os

    folders = [root] + ([db_dir] if db_dir.is_dir() else [])
    if not all(os.access(folder, os.W_OK | os.X_OK) for folder in folders):
        return False
    if db_dir.is_dir():
        return all(os.access(p, os.W_OK) for p in db_dir.glob(f"*{files.SUFFIX}"))
    return True


class EmbeddedDatabase:
    """A pymongo-style Database over one directory of collection files, usable from any thread.

    `read_only=True` never creates, changes or locks a file (a missing store is a StoreError, a missing
    collection reads as empty). `scannable`: collections small enough to evaluate unindexed queries in Python.
    """

    is_embedded = True

    def __init__(self, path, name: str = "qortfolio", read_only: bool = False, busy_s: float = files.DEFAULT_BUSY_S,
                 scannable: frozenset[str] | set[str] = frozenset()):
        self.path = Path(path).expanduser()
        self.name = name
        self.dir = self.path / name
        self.read_only = read_only
        self.busy_s = busy_s
        self.scannable = frozenset(scannable)
        self.url = str(self.path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._states: list = []          # every thread's open collection states (their connections)
        self._collections: dict[str, EmbeddedCollection] = {}
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"the embedded store path {self.path} is a file, not a directory")
        legacy = legacy_collections(self.dir)
        if legacy:
            raise LegacyStoreError(f"{self.path} holds a store of the previous embedded engine (litemongo, "
                                   f"{len(legacy)} collection files); {UPGRADE_HINT}")
        self.read_only_reason = "opened read-only" if read_only else ""
        if not read_only and self.path.is_dir() and not _writable(self.path, self.dir):
            # a store on a read-only mount, or owned by another user: readable, every write a clear error
            # (it used to fail every command, reads included, with "attempt to write a readonly database")
            self.read_only = read_only = True
            self.read_only_reason = "its folder is not writable by this process"
        if read_only:
            if not self.path.is_dir():
                raise StoreError(f"no store at {self.path}: run `qortcli collect` first (or set QORT_DB / --db)")
        else:
            self._ensure_dir()

    # ------------------------------------------------------------------ internals used by collections

    def _ensure_dir(self) -> None:
        if self.read_only:
            raise ReadOnlyStoreError(f"{self.describe()} is read-only")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            marker = self.path / MARKER
            if not marker.exists():
                marker.write_text(json.dumps(MARKER_CONTENT) + "\n")
        except OSError as exc:
            raise StoreError(f"cannot create the embedded store at {self.path}: {exc.strerror}") from None

    def _thread_states(self) -> dict:
        states = getattr(self._local, "states", None)
        if states is None:
            states = self._local.states = {}
        return states

    def _register(self, state) -> None:
        with self._lock:
            self._states.append(state)


    # ------------------------------------------------------------------ pymongo Database interface

    def __getitem__(self, name: str) -> EmbeddedCollection:
        coll = self._collections.get(name)
        if coll is None:
            coll = self._collections[name] = EmbeddedCollection(self, name)
        return coll

    def get_collection(self, name: str, **_options) -> EmbeddedCollection:
        return self[name]

    def __getattr__(self, attr: str):
        if attr.startswith("_"):
            raise AttributeError(attr)
        return self[attr]

    def list_collection_names(self, **_options) -> list[str]:
        if not self.dir.is_dir():
            return []
        names = sorted(p.name[: -len(files.SUFFIX)] for p in self.dir.glob(f"*{files.SUFFIX}"))
        return [n for n in names if self[n].exists()]

    def create_collection(self, name: str, **_options) -> EmbeddedCollection:
        coll = self[name]
        coll.create()
        return coll

    def drop_collection(self, name: str) -> None:
        self[name].drop()

    def command(self, name, *args, **kwargs):
        if name == "ping" or name == {"ping": 1}:
            return {"ok": 1.0}
        raise QueryError(f"database command {name!r} is not supported by the embedded store")

    def describe(self) -> str:
        suffix = ""
        if self.read_only:
            suffix = ", read-only" if self.read_only_reason in ("", "opened read-only") else \
                f", read-only: {self.read_only_reason}"
        return f"embedded store at {self.path} (database {self.name!r}{suffix})"

    def close(self) -> None:
        """Close every thread's connections; a statement running in another thread finishes first (each
        connection's lock), and that thread's next call on this handle opens a new connection."""
        with self._lock:
            states, self._states = self._states, []
            self._local = threading.local()
        for state in states:
            with state.lock:
                try:
                    state.conn.close()
                except sqlite3.Error:
                    pass
                state.closed = True

    def __repr__(self) -> str:
        return f"EmbeddedDatabase({str(self.path)!r}, {self.name!r}, read_only={self.read_only})"
