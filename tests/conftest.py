"""Shared fixtures: an embedded store and a mongomock-backed "real MongoDB" store, both empty."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def _patch_mongomock_bulk() -> None:
    """mongomock 4.x rejects the `sort` keyword pymongo >= 4.11 passes to bulk ops (mongomock issue 912)."""
    import mongomock.collection as mc

    builder = mc.BulkOperationBuilder
    if getattr(builder, "_qort_patched", False):
        return
    for name in ("add_replace", "add_update"):
        original = getattr(builder, name)

        def accept_sort(self, *args, _original=original, **kwargs):
            kwargs.pop("sort", None)
            return _original(self, *args, **kwargs)

        setattr(builder, name, accept_sort)
    builder._qort_patched = True


@pytest.fixture
def embedded_db(tmp_path):
    """A fresh embedded store (qortcli.store.engine) with the schema applied."""
    from qortcli.store import connect, ensure_schema

    db = connect(str(tmp_path / "db"))
    ensure_schema(db)
    yield db
    db.close()


@pytest.fixture
def mongomock_db():
    """The MongoDB code path (pymongo interface) over mongomock, with the schema applied."""
    import mongomock

    from qortcli.store import ensure_schema
    from qortcli.store.connect import connect_mongo

    _patch_mongomock_bulk()
    db = connect_mongo("mongodb://mongomock.test:27017", "qortfolio_test", client_factory=mongomock.MongoClient)
    ensure_schema(db)
    yield db
    db.close()


@pytest.fixture
def mongo_db():
    """A real MongoDB (QORT_TEST_MONGO_URL, e.g. mongodb://localhost:27017 from `docker compose up mongodb`): a
    fresh database per test, dropped afterwards. Skipped, with the reason, when the variable is not set."""
    import os
    import uuid

    url = os.environ.get("QORT_TEST_MONGO_URL")
    if not url:
        pytest.skip("REAL MONGODB NOT TESTED: set QORT_TEST_MONGO_URL=mongodb://... to run the store suite on a server")
    from qortcli.store import ensure_schema
    from qortcli.store.connect import connect_mongo

    name = f"qort_test_{uuid.uuid4().hex[:10]}"
    db = connect_mongo(url, name)
    ensure_schema(db)
    yield db
    db._client.drop_database(name)
    db.close()


@pytest.fixture(params=["embedded", "mongomock"])
def any_db(request):
    """Each test using it runs on both stores."""
    yield request.getfixturevalue(f"{request.param}_db")


@pytest.fixture(params=["embedded", "mongomock", "mongo"])
def store_db(request):
    """The store-behaviour suite's backends: the embedded engine, mongomock, and a real MongoDB when
    QORT_TEST_MONGO_URL is set (skipped loudly otherwise)."""
    yield request.getfixturevalue(f"{request.param}_db")


@pytest.fixture
def qort_env(tmp_path, monkeypatch):
    """Point QORT_DB at a fresh embedded store for CLI tests; returns its path."""
    path = tmp_path / "clidb"
    monkeypatch.setenv("QORT_DB", str(path))
    monkeypatch.delenv("QORT_DB_NAME", raising=False)
    return path


@pytest.fixture
def urllib3_sleeps(monkeypatch):
    """Record the waits urllib3's Retry asks for (backoff, Retry-After) instead of sleeping."""
    import time
    import types

    import urllib3.util.retry as retry_module

    waits: list[float] = []
    fake_time = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
    fake_time.sleep = waits.append
    monkeypatch.setattr(retry_module, "time", fake_time)
    return waits


def copied_store(seeded: Path, tmp_path: Path) -> Path:
    """A private copy of a module-scoped seeded embedded store (tests may write to it)."""
    copy = tmp_path / "db"
    shutil.copytree(seeded, copy)
    return copy
