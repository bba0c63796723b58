"""A read-only view of the store for readers that must never write (the viewer).

`ReadOnlyDatabase(db)` wraps a handle from `qortcli.store.connect` and exposes only
`list_collection_names()`, `describe()`, `close()` and `db[name]`, a `ReadOnlyCollection` with `find`,
`find_one`, `count_documents` and `distinct`; `find` returns a `ReadOnlyCursor` (sort/limit/skip/iteration).
Every write method name raises `ReadOnlyError`; there is no `aggregate` (a pipeline can write with `$out`/
`$merge`).

Read-only for real, not only by attribute names:
- embedded store: the wrapper holds only a handle opened read-only at the engine level
  (`EmbeddedDatabase(read_only=True)`: it never creates, changes or locks a file). A writable handle given to
  `ReadOnlyDatabase` is reopened read-only, so nothing reachable from the wrapper by introspection (closures,
  `cursor._next.__self__`, the garbage collector's referents) can write, and reading a missing collection
  (or a missing database folder) creates nothing;
- MongoDB: server-side JavaScript is refused anywhere in a filter, projection or sort (`$where`, `$function`,
  `$accumulator`) before a query is sent, only the `sort`/`skip`/`limit` options pass, and the server user
  must be read-only (docker-compose's viewer uses the `read` role of docker/mongo-init/01-users.js):
  pymongo has no read-only client, so a reference to the client stays reachable by introspection and the
  server's role is what refuses writes. `open_readonly` logs a warning when the user it connects as holds
  write privileges.
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


#: operators that run JavaScript on a MongoDB server (refused anywhere in a query)
SERVER_JS = frozenset({"$where", "$function", "$accumulator"})
#: the find options a reader may pass
FIND_OPTIONS = frozenset({"sort", "skip", "limit"})


def refuse_server_js(value, where: str = "filter") -> None:
    """ReadOnlyError if `value` (a filter, projection or sort, at any depth) holds `$where`, `$function` or
    `$accumulator`."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, sub in item.items():
                if isinstance(key, str) and key in SERVER_JS:
                    raise ReadOnlyError(f"read-only store: {key} (server-side JavaScript) is not allowed in a {where}")
                stack.append(sub)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def _check_query(filter, projection=None, kwargs: dict | None = None) -> None:
    refuse_server_js(filter, "filter")
    refuse_server_js(projection, "projection")
    for key, value in (kwargs or {}).items():
        if key not in FIND_OPTIONS:
            raise ReadOnlyError(f"read-only store: the query option {key!r} is not allowed (only sort, skip, limit)")
        refuse_server_js(value, key)


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
        refuse_server_js(key_or_list, "sort")
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
            _check_query(filter, projection, kwargs)
            return ReadOnlyCursor(collection.find(filter or {}, projection, **kwargs))

        def find_one(filter: dict | None = None, projection: dict | None = None, **kwargs) -> dict | None:
            _check_query(filter, projection, kwargs)
            return collection.find_one(filter or {}, projection, **kwargs)

        def count_documents(filter: dict | None = None, **kwargs) -> int:
            _check_query(filter, None, {k: v for k, v in kwargs.items() if k not in ("skip", "limit")} or None)
            return collection.count_documents(filter or {}, **kwargs)

        def distinct(key: str, filter: dict | None = None, **kwargs) -> list:
            _check_query(filter, None, kwargs or None)
            return list(collection.distinct(key, filter or {}))

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
        db = _engine_read_only(db)
        self.name = str(getattr(db, "name", ""))
        self.is_embedded = getattr(type(db), "is_embedded", False) is True

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


def _engine_read_only(db):
    """The handle to wrap: an embedded store is (re)opened read-only at the engine level (a writable one given
    here is never kept); any other handle as it is."""
    if getattr(type(db), "is_embedded", False) is not True:
        return db
    if vars(db).get("read_only") is True:
        return db
    from qortcli.store.engine import EmbeddedDatabase

    return EmbeddedDatabase(db.path, db.name, read_only=True, busy_s=db.busy_s, scannable=db.scannable)


def mongo_write_privileges(db) -> list[str]:
    """The write actions (insert, update, remove, ...) the MongoDB user of `db` holds on its database, from the
    server's `connectionStatus`; [] when it holds none or the server cannot tell."""
    writes = {"insert", "update", "remove", "dropCollection", "createCollection", "createIndex", "dropDatabase"}
    try:
        status = db.command({"connectionStatus": 1, "showPrivileges": True})
    except Exception:
        return []
    found = set()
    for privilege in (status.get("authInfo") or {}).get("authenticatedUserPrivileges") or []:
        resource = privilege.get("resource") or {}
        if resource.get("db") in (db.name, "") or resource.get("anyResource"):
            found |= writes & set(privilege.get("actions") or [])
    return sorted(found)


def is_read_only(db) -> bool:
    """Whether a store handle cannot write: a ReadOnlyDatabase, or an embedded store opened read-only (explicitly,
    or because its folder is not writable). Attributes are not probed with getattr: a pymongo-style database
    answers any attribute name with a collection."""
    if isinstance(db, ReadOnlyDatabase):
        return True
    return getattr(type(db), "is_embedded", False) is True and vars(db).get("read_only") is True


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
    db = connect(target, db_name, timeout_ms, read_only=True)
    if is_mongo_url(target):
        writes = mongo_write_privileges(db)
        if writes:
            import logging

            logging.getLogger("qortcli.store").warning(
                "the MongoDB user of this read-only handle can write (%s): give the viewer a user with the `read` "
                "role only (docker/mongo-init/01-users.js)", ", ".join(writes))
    return ReadOnlyDatabase(db)


__all__ = ["is_read_only", "refuse_server_js", "mongo_write_privileges", "SERVER_JS", "ReadOnlyDatabase", "ReadOnlyCollection", "ReadOnlyCursor", "ReadOnlyError", "open_readonly",
           "READ_METHODS", "WRITE_METHODS"]
