"""A database wrapper for tests that checks every document written survives a BSON round trip unchanged."""

from __future__ import annotations

import bson
from bson.codec_options import CodecOptions
from datetime import timezone

CODEC = CodecOptions(tz_aware=True, tzinfo=timezone.utc)


class BsonViolation(AssertionError):
    pass


def assert_bson_roundtrip(doc: dict, where: str = "") -> None:
    """Raise BsonViolation unless `doc` encodes to BSON and decodes to an equal document."""
    try:
        decoded = bson.decode(bson.encode(doc), codec_options=CODEC)
    except Exception as exc:
        raise BsonViolation(f"{where}: not encodable as BSON: {exc}") from None
    if not strict_equal(doc, decoded):
        raise BsonViolation(f"{where}: changed by a BSON round trip: {_first_difference(doc, decoded)}")


def strict_equal(a, b) -> bool:
    """Equal values of the same types all the way down (a numpy float64 is not a float here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


def _first_difference(a, b, path="") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a:
            if key not in b or not strict_equal(a[key], b[key]):
                return _first_difference(a[key], b.get(key), f"{path}.{key}")
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b)):
            if not strict_equal(x, y):
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path or '<doc>'}: {a!r} ({type(a).__name__}) became {b!r} ({type(b).__name__})"


def _payloads(method: str, args, kwargs) -> list[dict]:
    if method in ("insert_one",):
        return [args[0]]
    if method == "insert_many":
        return list(args[0])
    if method == "replace_one":
        return [args[1]]
    if method in ("update_one", "update_many"):
        update = args[1]
        return [v for k, v in update.items() if k in ("$set", "$setOnInsert", "$push") and isinstance(v, dict)]
    if method == "bulk_write":
        docs = []
        for op in args[0]:
            doc = getattr(op, "_doc", None)
            if isinstance(doc, dict):
                if any(k.startswith("$") for k in doc):
                    docs.extend(v for v in doc.values() if isinstance(v, dict))
                else:
                    docs.append(doc)
        return docs
    return []


class CheckedCollection:
    def __init__(self, target, log):
        self._target = target
        self._log = log

    def __getattr__(self, attr):
        value = getattr(self._target, attr)
        if attr in ("insert_one", "insert_many", "replace_one", "update_one", "update_many", "bulk_write"):
            def checked(*args, **kwargs):
                for doc in _payloads(attr, args, kwargs):
                    assert_bson_roundtrip(doc, f"{self._target.name}.{attr}")
                    self._log.append((self._target.name, doc))
                return value(*args, **kwargs)
            return checked
        return value


class CheckedDatabase:
    """Wraps a store handle; `written` lists (collection, document) of every checked write."""

    def __init__(self, db):
        self._db = db
        self.written: list[tuple[str, dict]] = []

    def __getitem__(self, name):
        return CheckedCollection(self._db[name], self.written)

    def __getattr__(self, attr):
        return getattr(self._db, attr)
