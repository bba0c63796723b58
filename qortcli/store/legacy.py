"""Stores of the previous embedded engine (litemongo 0.2, qortfolio 0.1): read them, and upgrade in place.

A litemongo store is `<root>/<database>/<collection>` — one SQLite file per collection, no suffix, with a
`documents(_id, doc)` table of BSON documents keyed by an encoded id, and an `info` table holding the key
format. `LegacyDatabase` reads such a directory read-only with nothing but sqlite3 and bson (litemongo
need not be installed), with just what the copy of `qortcli.store.transfer` uses.

`upgrade_store(root)`: copy every collection into a new-format store built beside it, verify document
counts and content hashes of every collection, then swap the directories — the old files are kept in
`<root>/legacy-litemongo-<stamp>/` (delete them once satisfied). Nothing is changed if anything fails.
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import bson

from qortcli.errors import StoreError
from qortcli.store.engine import MARKER, MARKER_CONTENT, legacy_collections
from qortcli.store.engine.codec import CODEC_OPTIONS

KEY_FORMAT_LEGACY, KEY_FORMAT_TYPED = 1, 2


def _key(value, key_format: int) -> str:
    if key_format == KEY_FORMAT_LEGACY:
        return str(value)
    if isinstance(value, str):
        return "s:" + value
    if isinstance(value, bool):
        return "B:" + str(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return "n:" + repr(value)
    if isinstance(value, bson.ObjectId):
        return "o:" + str(value)
    raise StoreError(f"legacy store: cannot look up an _id of type {type(value).__name__}")


class _LegacyCursor:
    def __init__(self, docs: list[dict]):
        self._docs = docs

    def sort(self, *_args, **_kwargs):
        raise StoreError("legacy store reader: sort is not supported")

    def __iter__(self):
        return iter(self._docs)


class LegacyCollection:
    """One litemongo collection file, read-only: `find({})`, `find({"_id": {"$in": ids}})`, `count_documents({})`."""

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name
        try:
            self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            row = self._conn.execute("SELECT value FROM info WHERE key = 'key_format'").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: not a readable litemongo collection ({exc})") from None
        self._format = int(row[0]) if row else KEY_FORMAT_LEGACY

    def _decode(self, blob) -> dict:
        return bson.decode(bytes(blob), codec_options=CODEC_OPTIONS)

    def find(self, filter: dict | None = None, projection=None):
        filter = filter or {}
        try:
            if not filter:
                rows = self._conn.execute("SELECT doc FROM documents ORDER BY ROWID").fetchall()
            elif list(filter) == ["_id"] and isinstance(filter["_id"], dict) and list(filter["_id"]) == ["$in"]:
                keys = [_key(v, self._format) for v in filter["_id"]["$in"]]
                rows = []
                for start in range(0, len(keys), 500):
                    chunk = keys[start:start + 500]
                    rows += self._conn.execute(f"SELECT doc FROM documents WHERE _id IN ({', '.join('?' * len(chunk))})",
                                               chunk).fetchall()
            else:
                raise StoreError(f"legacy store reader: unsupported filter {filter!r}")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None
        docs = [self._decode(r[0]) for r in rows]
        if projection == {"_id": 1}:
            docs = [{"_id": d["_id"]} for d in docs]
        return _LegacyCursor(docs)

    def count_documents(self, filter: dict | None = None) -> int:
        if filter:
            raise StoreError("legacy store reader: count_documents takes no filter")
        return int(self._conn.execute("SELECT count(*) FROM documents").fetchone()[0])

    def close(self) -> None:
        self._conn.close()


class LegacyDatabase:
    """A litemongo store directory opened read-only (what `copy_store` and the verification read)."""

    is_embedded = True

    def __init__(self, root: Path, name: str):
        self.path = Path(root)
        self.name = name
        self.dir = self.path / name
        self._collections = {p.name: LegacyCollection(p) for p in legacy_collections(self.dir)}
        if not self._collections:
            raise StoreError(f"{self.path}: no litemongo store here (no collection files in {self.dir})")

    def __getitem__(self, name: str) -> LegacyCollection:
        if name not in self._collections:
            raise StoreError(f"legacy store has no collection {name!r}")
        return self._collections[name]

    def list_collection_names(self) -> list[str]:
        return sorted(self._collections)

    def describe(self) -> str:
        return f"litemongo store at {self.path} (database {self.name!r})"

    def close(self) -> None:
        for coll in self._collections.values():
            coll.close()


def upgrade_store(root: str | Path, name: str = "qortfolio", progress: Callable | None = None) -> dict:
    """Upgrade a litemongo store at `root` in place (see the module docstring); returns the verification."""
    from qortcli.store.transfer import compare_collection, copy_store
    from qortcli.store.engine import EmbeddedDatabase
    from qortcli.store.schema import SCANNABLE

    root = Path(root).expanduser()
    legacy = LegacyDatabase(root, name)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    staging = root / f".upgrade-{stamp}"
    backup = root / f"legacy-litemongo-{stamp}"
    try:
        target = EmbeddedDatabase(staging, name, scannable=SCANNABLE)
        try:
            summary = copy_store(legacy, target, progress=progress)
        finally:
            target.close()
        # swap: old files to the backup folder, the new ones into place, then verify in place
        backup.mkdir()
        shutil.move(str(root / name), str(backup / name))
        shutil.move(str(staging / name), str(root / name))
        (root / MARKER).write_text(__import__("json").dumps(MARKER_CONTENT) + "\n")
        shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        legacy.close()
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if backup.exists() and not (root / name).exists():
            shutil.move(str(backup / name), str(root / name))   # put the original back
            shutil.rmtree(backup, ignore_errors=True)
        raise
    legacy.close()
    old = LegacyDatabase(backup, name)
    new = EmbeddedDatabase(root, name, read_only=True, scannable=SCANNABLE)
    try:
        rows = []
        for coll in old.list_collection_names():
            verdict = compare_collection(old, new, coll)
            rows.append({"collection": coll, "documents": verdict["verified_count"], "hash": verdict["source_hash"],
                         "match": verdict["match"], "detail": verdict["detail"]})
    finally:
        old.close()
        new.close()
    bad = [r for r in rows if not r["match"]]
    if bad:
        raise StoreError(f"upgrade verification failed for {', '.join(r['collection'] for r in bad)}; the original "
                         f"files are in {backup}")
    return {"store": str(root), "backup": str(backup), "collections": rows, "ok": True,
            "seconds": summary.get("seconds")}
