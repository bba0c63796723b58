"""Open the store named by a URL: MongoDB for mongodb:// and mongodb+srv://, else the embedded store.

How a `--db` / `QORT_DB` value is read (`store_location`):
- `mongodb://…` or `mongodb+srv://…` (exactly, lower case) is MongoDB through pymongo;
- anything else is a plain directory path for the embedded store: `?`, `#` and `:` are never parsed as
  URL parts (a relative name with a colon is written `./a:b`);
- a value that looks like a mistyped URL is refused (`BadStoreUrl`, a usage error): another or
  misspelled scheme (`postgres://`, `mongdb://`, `MONGODB://`), a scheme without `//`
  (`mongodb:user:pw@host`) or `user@host:port`.
Every URL shown anywhere goes through `qortcli.redact.redact` (`redact` here is the same function).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import NamedTuple

from qortcli.errors import BadStoreUrl, StoreError
from qortcli.redact import redact

MONGO_SCHEMES = ("mongodb://", "mongodb+srv://")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_USER_HOST_PORT = re.compile(r"^[^/]*@[^/]*:\d+")


def is_mongo_url(url: str) -> bool:
    return url.startswith(MONGO_SCHEMES)


class StoreLocation(NamedTuple):
    """Where a store lives: `kind` "mongo" (with `url`) or "embedded" (with the directory `path`)."""

    kind: str
    url: str | None = None
    path: Path | None = None


def _mistyped(value: str, scheme: str, has_slashes: bool) -> str:
    shown = redact(value)
    lower = scheme.lower()
    if lower in ("mongodb", "mongodb+srv"):
        if has_slashes:
            return (f"store URL {shown!r}: the scheme must be written in lower case "
                    f"({lower}://…)")
        return (f"store URL {shown!r} lacks '//' after '{scheme}:': write {lower}://user:password@host/db "
                "(a directory whose name has a colon is written ./name)")
    near = difflib.get_close_matches(lower, ["mongodb", "mongodb+srv"], n=1, cutoff=0.6)
    hint = f" (did you mean {near[0]}://?)" if near else ""
    if has_slashes:
        return (f"unsupported store URL {shown!r}{hint}: use mongodb://, mongodb+srv:// or a directory path "
                "for the embedded store")
    return (f"store {shown!r} looks like a URL ('{scheme}:'){hint}: use mongodb://… for MongoDB, or a directory "
            "path for the embedded store (a name with a colon is written ./name)")


def store_location(value: str) -> StoreLocation:
    """Classify a `--db`/`QORT_DB` value (see the module docstring); BadStoreUrl for a mistyped URL."""
    text = (value or "").strip()
    if not text:
        raise BadStoreUrl("empty store location: give a mongodb:// URL or a directory path")
    if is_mongo_url(text):
        return StoreLocation("mongo", url=text)
    scheme = _SCHEME.match(text)
    if scheme and len(scheme.group(1)) > 1:
        raise BadStoreUrl(_mistyped(text, scheme.group(1), text[scheme.end():].startswith("//")))
    if _USER_HOST_PORT.match(text):
        raise BadStoreUrl(f"store {redact(text)!r} looks like user@host:port: a MongoDB URL starts with mongodb://")
    path = Path(text).expanduser().absolute()
    posix = path.as_posix()
    if posix.startswith("//"):  # a leading "//" would be read as a network location
        path = Path("/" + posix.lstrip("/"))
    return StoreLocation("embedded", path=path)


class MongoDatabase:
    """A pymongo Database with a `describe()` and `close()` of the same shape as the embedded one."""

    is_embedded = False

    def __init__(self, client, name: str, url: str):
        self._client = client
        self._db = client[name]
        self.url = url
        self.name = name

    def __getitem__(self, name: str):
        return self._db[name]

    def __getattr__(self, attr):
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self._db, attr)

    def describe(self) -> str:
        return f"MongoDB at {redact(self.url)} (database {self.name!r})"

    def close(self) -> None:
        self._client.close()


def connect_mongo(url: str, db_name: str, timeout_ms: int = 3000, client_factory=None, **client_options):
    """Connect to MongoDB (pymongo, or `client_factory` in tests) and check it answers within the timeout."""
    import pymongo
    from pymongo.errors import ConfigurationError, PyMongoError

    factory = client_factory or pymongo.MongoClient
    options = dict(serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
                   socketTimeoutMS=max(timeout_ms * 10, 30_000), tz_aware=True, appname="qortfolio")
    options.update(client_options)
    try:
        client = factory(url, **options)
        client.admin.command("ping")
    except ConfigurationError as exc:
        raise StoreError(redact(f"bad MongoDB URL {url}: {exc}")) from None
    except PyMongoError as exc:
        first = str(exc).split(" (configured timeouts")[0].split(", Timeout:")[0].splitlines()[0]
        raise StoreError(redact(f"MongoDB at {url} is unreachable after {timeout_ms / 1000:g} s: {first}")) from None
    return MongoDatabase(client, db_name, url)


def connect(url: str | None = None, db_name: str | None = None, timeout_ms: int | None = None,
            read_only: bool = False, auto_schema: bool = True):
    """Open the store at `url` (default: settings' QORT_DB) and return a pymongo-style database handle.

    `read_only`: the embedded engine opens without creating or writing any file (MongoDB: the handle is
    wrapped by `qortcli.store.readonly`, and the server user should be read-only too). `auto_schema`: a new
    embedded store gets its collections and indexes on first open (`qortcli migrate` opens without, to report).
    Raises StoreError with one line when it cannot be opened or reached, BadStoreUrl (a StoreError and a
    UsageError) when `url` looks like a mistyped URL (see `store_location`).
    """
    from qortcli.config import get_settings

    settings = get_settings()
    location = store_location(url or settings.db_url)
    db_name = db_name or settings.db_name
    if location.kind == "mongo":
        return connect_mongo(location.url, db_name, timeout_ms or settings.mongo_timeout_ms)
    from qortcli.store.engine import EmbeddedDatabase
    from qortcli.store.schema import MIGRATIONS, SCANNABLE, ensure_schema

    db = EmbeddedDatabase(location.path, db_name, read_only=read_only, scannable=SCANNABLE)
    if auto_schema and not read_only and not (db.dir / f"{MIGRATIONS}.sqlite").exists():
        ensure_schema(db)   # a new embedded store gets its collections and indexes when first opened
    return db
