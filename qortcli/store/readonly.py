"""A read-only view of the store for readers that must never write (the viewer).

`ReadOnlyDatabase(db)` wraps any handle from `qortcli.store.connect` (MongoDB or embedded) and exposes
only `list_collection_names()`, `describe()`, `close()` and `db[name]`, a `ReadOnlyCollection` with
`find`, `find_one`, `count_documents` and `distinct`. The writable handle is held in
closures, not in attributes, so no attribute path (`.collection`, `.database`, `._db`, ...) leads
back to insert/update/delete/replace/bulk_write/drop/create_index; `find` returns a `ReadOnlyCursor`
(sort/limit/skip/iteration only). There is no `aggregate`: a pipeline can write (`$out`, `$merge`) or run
server-side JavaScript (`$function`, `$accumulator`).
Every write method name raises `ReadOnlyError`.
"""

from __future__ import annotations

from typing import Iterator

from qortcli.errors import StoreError

READ_METHODS = ("find", "find_one", "count_documents", "distinct")
WRITE_METHODS = ("aggregate", "insert_one", "insert_many", "update_one", "update_many", "replace_one", "delete_one",
                 "delete_many", "bulk_write", "drop", "create_index", "create_indexes", "drop_index",
                 "drop_indexes", "find_one_and_update", "find_one_and_replace", "find_one_and_delete",
                 "rename", "create_collection", "drop_collection", "command", "insert", "update",
                 "remove", "save")


class ReadOnlyError(StoreError):
    """A write was attempted through a read-only store handle."""


def _refuse(owner: str, name: str):
    def refused(*_args, **_kwargs):
        raise ReadOnlyError(f"{owner} is read-only: {name}() is not allowed")
    refused.__name__ = name
    return refused


class ReadOnlyCursor:
    """Iteration over a query's documents with `sort`, `limit` and `skip` (chainable, pymongo-style)."""

    __slots__ = ("_next", "_sort", "_limit", "_skip")

    def __init__(self, cursor):
        # Only bound methods are kept, never the cursor object (which leads back to its collection).
        self._next = cursor.__next__
        self._sort = cursor.sort
        self._limit = cursor.limit
        self._skip = cursor.skip

    def sort(self, key_or_list, direction=None) -> "ReadOnlyCursor":
        self._sort(key_or_list, direction) if direction is not None else self._sort(key_or_list)
        return self

    def limit(self, n: int) -> "ReadOnlyCursor":
        self._limit(n)
        return self

    def skip(self, n: int) -> "ReadOnlyCursor":
        self._skip(n)
        return self

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        return self._next()

    def to_list(self) -> list[dict]:
        return list(self)


class ReadOnlyCollection:
    """One collection, reads only: find, find_one, count_documents, distinct."""

    __slots__ = ("name", "_reads")

    def __init__(self, collection, name: str):
        self.name = name

        def find(filter: dict | None = None, projection: dict | None = None, **kwargs) -> ReadOnlyCursor:
            return ReadOnlyCursor(collection.find(filter or {}, projection, **kwargs))

        def find_one(filter: dict | None = None, projection: dict | None = None, **kwargs) -> dict | None:
            return collection.find_one(filter or {}, projection, **kwargs)

        def count_documents(filter: dict | None = None, **kwargs) -> int:
            return collection.count_documents(filter or {}, **kwargs)

        def distinct(key: str, filter: dict | None = None, **kwargs) -> list:
            return list(collection.distinct(key, filter or {}, **kwargs))

        self._reads = {"find": find, "find_one": find_one, "count_documents": count_documents,
                       "distinct": distinct}

    def find(self, filter: dict | None = None, projection: dict | None = None, **kwargs) -> ReadOnlyCursor:
        """Documents matching `filter` (optionally projected), as a ReadOnlyCursor."""
        return self._reads["find"](filter, projection, **kwargs)

    def find_one(self, filter: dict | None = None, projection: dict | None = None, **kwargs) -> dict | None:
        """The first document matching `filter`, or None."""
        return self._reads["find_one"](filter, projection, **kwargs)

    def count_documents(self, filter: dict | None = None, **kwargs) -> int:
        """How many documents match `filter`."""
        return self._reads["count_documents"](filter, **kwargs)

    def distinct(self, key: str, filter: dict | None = None, **kwargs) -> list:
        """Distinct values of `key` among documents matching `filter`."""
        return self._reads["distinct"](key, filter, **kwargs)

    def __getattr__(self, attr: str):
        if attr in WRITE_METHODS:
            return _refuse(f"collection {self.name!r}", attr)
        raise AttributeError(f"read-only collection {self.name!r} has no attribute {attr!r}")

    def __repr__(self) -> str:
        return f"ReadOnlyCollection({self.name!r})"


class ReadOnlyDatabase:
    """A store handle that can only read: `db[name]` is a ReadOnlyCollection."""

    __slots__ = ("name", "is_embedded", "_ops")
    is_read_only = True

    def __init__(self, db):
        if isinstance(db, ReadOnlyDatabase):
            raise TypeError("ReadOnlyDatabase wraps a store handle from qortcli.store.connect, not another ReadOnlyDatabase")
        self.name = str(getattr(db, "name", ""))
        self.is_embedded = bool(getattr(db, "is_embedded", False))

        def collection(name: str) -> ReadOnlyCollection:
            return ReadOnlyCollection(db[name], name)

        def list_collection_names() -> list[str]:
            return list(db.list_collection_names())

        def describe() -> str:
            text = db.describe() if hasattr(db, "describe") else repr(db)
            return f"{text}, read-only"

        def close() -> None:
            if hasattr(db, "close"):
                db.close()

        self._ops = {"collection": collection, "list_collection_names": list_collection_names,
                     "describe": describe, "close": close}

    def __getitem__(self, name: str) -> ReadOnlyCollection:
        return self._ops["collection"](name)

    def get_collection(self, name: str) -> ReadOnlyCollection:
        return self._ops["collection"](name)

    def list_collection_names(self) -> list[str]:
        return self._ops["list_collection_names"]()

    def describe(self) -> str:
        return self._ops["describe"]()

    def close(self) -> None:
        self._ops["close"]()

    def __getattr__(self, attr: str):
        if attr in WRITE_METHODS:
            return _refuse(f"database {self.name!r}", attr)
        raise AttributeError(f"read-only database has no attribute {attr!r}")

    def __repr__(self) -> str:
        return f"ReadOnlyDatabase({self.name!r})"


def open_readonly(url: str | None = None, db_name: str | None = None, timeout_ms: int | None = None) -> ReadOnlyDatabase:
    """Connect to the store at `url` (default: QORT_DB) and return a read-only handle.

    An embedded store path that does not exist yet raises StoreError (nothing is created for a reader).
    """
    from pathlib import Path

    from qortcli.config import get_settings
    from qortcli.store.connect import connect, is_mongo_url

    target = url or get_settings().db_url
    if not is_mongo_url(target) and "://" not in target and not Path(target).expanduser().is_dir():
        raise StoreError(f"no store at {target}: run `qortcli collect` first (or set QORT_DB)")
    return ReadOnlyDatabase(connect(target, db_name, timeout_ms))


__all__ = ["ReadOnlyDatabase", "ReadOnlyCollection", "ReadOnlyCursor", "ReadOnlyError", "open_readonly",
           "READ_METHODS", "WRITE_METHODS"]
