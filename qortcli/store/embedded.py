"""The embedded on-disk store: litemongo (SQLite engine) behind the pymongo interface.

litemongo's SQLite connections may only be used in the thread that opened them, so the handle
keeps one client per thread; all of them read and write the same files.
"""

from __future__ import annotations

import threading
from pathlib import Path

from qortcli.errors import StoreError


class EmbeddedCollection:
    """A collection name bound to the per-thread litemongo client (pymongo Collection interface)."""

    def __init__(self, database: "EmbeddedDatabase", name: str):
        self._database = database
        self.name = name

    def _target(self):
        return self._database._native()[self.name]

    def __getattr__(self, attr):
        return getattr(self._target(), attr)

    def __repr__(self) -> str:
        return f"EmbeddedCollection({self._database.path}, {self.name!r})"


class EmbeddedDatabase:
    """A pymongo-style Database over litemongo files in `path`, usable from any thread."""

    is_embedded = True

    def __init__(self, path: Path, name: str):
        self.path = Path(path).expanduser()
        self.name = name
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the embedded store at {self.path}: {exc.strerror}") from None
        self._native()  # open once now so a bad path fails here, not in the middle of a step

    def _native(self):
        database = getattr(self._local, "database", None)
        if database is None:
            import litemongo

            try:
                client = litemongo.connect(str(self.path), tz_aware=True)
            except Exception as exc:  # litemongo raises sqlite3/OS errors of several kinds
                raise StoreError(f"cannot open the embedded store at {self.path}: {exc}") from None
            with self._lock:
                self._clients.append(client)
            database = self._local.database = client[self.name]
        return database

    def __getitem__(self, name: str) -> EmbeddedCollection:
        return EmbeddedCollection(self, name)

    def __getattr__(self, attr):
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self._native(), attr)

    def describe(self) -> str:
        return f"embedded store at {self.path} (database {self.name!r})"

    def close(self) -> None:
        with self._lock:
            for client in self._clients:
                try:
                    client.close()
                except Exception:
                    pass
            self._clients.clear()
        self._local = threading.local()
