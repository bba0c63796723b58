"""Open the store named by a URL: MongoDB for mongodb:// and mongodb+srv://, else the embedded store."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from qortcli.errors import StoreError

MONGO_SCHEMES = ("mongodb://", "mongodb+srv://")


def is_mongo_url(url: str) -> bool:
    return url.startswith(MONGO_SCHEMES)


def redact(url: str) -> str:
    """The URL with any password replaced by ***, safe to print."""
    if not is_mongo_url(url):
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


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
        raise StoreError(f"bad MongoDB URL {redact(url)}: {exc}") from None
    except PyMongoError as exc:
        first = str(exc).split(" (configured timeouts")[0].split(", Timeout:")[0].splitlines()[0]
        raise StoreError(f"MongoDB at {redact(url)} is unreachable after {timeout_ms / 1000:g} s: {first}") from None
    return MongoDatabase(client, db_name, url)


def connect(url: str | None = None, db_name: str | None = None, timeout_ms: int | None = None,
            read_only: bool = False, auto_schema: bool = True):
    """Open the store at `url` (default: settings' QORT_DB) and return a pymongo-style database handle.

    `read_only`: the embedded engine opens without creating or writing any file (MongoDB: the handle is
    wrapped by `qortcli.store.readonly`, and the server user should be read-only too). `auto_schema`: a new
    embedded store gets its collections and indexes on first open (`qortcli migrate` opens without, to report).
    Raises StoreError with one line when it cannot be opened or reached.
    """
    from qortcli.config import get_settings

    settings = get_settings()
    url = url or settings.db_url
    db_name = db_name or settings.db_name
    if is_mongo_url(url):
        return connect_mongo(url, db_name, timeout_ms or settings.mongo_timeout_ms)
    if "://" in url:
        raise StoreError(f"unsupported store URL {url!r}: use mongodb://, mongodb+srv:// or a directory path")
    from qortcli.store.engine import EmbeddedDatabase
    from qortcli.store.schema import MIGRATIONS, SCANNABLE, ensure_schema

    db = EmbeddedDatabase(url, db_name, read_only=read_only, scannable=SCANNABLE)
    if auto_schema and not read_only and not (db.dir / f"{MIGRATIONS}.sqlite").exists():
        ensure_schema(db)   # a new embedded store gets its collections and indexes when first opened
    return db
