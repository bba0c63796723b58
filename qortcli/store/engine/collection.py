"""A collection of the embedded engine: pymongo's Collection interface over one SQLite file.

Operations (the documented subset the project uses, each behaving as on MongoDB):
`find` (filter, projection, sort, skip, limit) → `Cursor`; `find_one`; `count_documents`;
`estimated_document_count`; `distinct`; `insert_one`, `insert_many`, `replace_one`, `update_one`,
`update_many`, `delete_one`, `delete_many`, `find_one_and_update`, `bulk_write` of
InsertOne/ReplaceOne/UpdateOne/UpdateMany/DeleteOne/DeleteMany; `create_index`, `create_indexes`,
`drop_index`, `index_information`, `drop`.

Every write call is one SQLite transaction (a `bulk_write` batch is atomic: all of it or none of it).
A filter's conditions on indexed fields (and `_id`) become SQL on the index columns; the query plan of
each statement is checked once, and a query no index serves raises `QueryError` naming the fields — on a
collection the schema marks *scannable* (small bookkeeping collections) it is evaluated in Python instead.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import zlib
from typing import Any, Iterable, Iterator

import bson
import bson.errors
from pymongo import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError
from pymongo.results import BulkWriteResult, DeleteResult, InsertManyResult, InsertOneResult, UpdateResult

from qortcli.errors import StoreError
from qortcli.store.engine import codec, files
from qortcli.store.engine.query import (MISSING, QueryError, column_name, compile_filter, matches,
                                        normalise_projection, normalise_sort, path_values, project, python_sorted)
from qortcli.store.engine.update import apply_update, is_operator_update, upsert_seed

PAGE = 1000
IN_CHUNK = 500
BATCH_DICT_MIN = 32        # a write batch this large gets its own composite dictionary
RECENT_BASES = 6
NEW_BASE_IF_WORSE = 1.15   # build a new base when the best existing one compresses a batch 15 % worse
DICT_CACHE = 256


class _Dicts:
    """Compression dictionaries of one collection file, materialised on first use and cached."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.cache: dict[int, bytes] = {}

    def __getitem__(self, dict_id: int) -> bytes:
        found = self.cache.get(dict_id)
        if found is not None:
            return found
        row = self.conn.execute("SELECT data, base FROM dicts WHERE id = ?", (dict_id,)).fetchone()
        if row is None:
            raise KeyError(dict_id)
        data, base = bytes(row[0]), row[1]
        value = codec.composite(self[int(base)], data) if base is not None else data
        if len(self.cache) >= DICT_CACHE:
            self.cache.clear()
        self.cache[dict_id] = value
        return value

    def clear(self) -> None:
        self.cache.clear()


class ReadOnlyStoreError(StoreError):
    """A write through a store opened read-only."""


class _State:
    """What one thread knows about one collection file: its connection and cached schema."""

    __slots__ = ("conn", "lock", "closed", "immutable", "token", "schema_version", "columns", "date_columns", "indexes",
                 "dicts", "dict_id", "bases", "plans")

    def __init__(self, conn: sqlite3.Connection, immutable: bool = False, token=None):
        self.conn = conn
        # held while the connection is in use: only `EmbeddedDatabase.close` (from another thread) contends for
        # it, so closing never pulls a connection from under a running statement
        self.lock = threading.RLock()
        self.closed = False
        self.immutable = immutable
        self.token = token
        self.schema_version = None
        self.columns: dict[str, str] = {}      # field → column
        self.date_columns: set[str] = set()    # fields whose column holds datetimes (as ms)
        self.indexes: dict[str, dict] = {}
        self.dicts = _Dicts(conn)
        self.dict_id = 0                     # the latest base dictionary (single-document writes use it)
        self.bases: list[int] = []           # recent base dictionaries, newest first
        self.plans: dict[str, bool] = {}

    def refresh(self) -> None:
        version = self.conn.execute("PRAGMA schema_version").fetchone()[0]
        if version == self.schema_version:
            return
        cols = [row[1] for row in self.conn.execute("PRAGMA table_info(docs)")]
        self.columns = {}
        for col in cols:
            if col.startswith("f_"):
                self.columns[col[2:].replace("__", ".")] = col
        self.indexes = {name: json.loads(spec) for name, spec in self.conn.execute("SELECT name, spec FROM indexes")}
        self.date_columns = {key[5:] for (key,) in self.conn.execute("SELECT key FROM meta WHERE key LIKE 'date:%'")}
        self.plans = {}
        self.schema_version = version
        self.load_dicts()

    def load_dicts(self) -> None:
        self.dicts.clear()
        self.load_bases()

    def load_bases(self) -> None:
        """The newest compression bases (another process may have added one: a data change, not a schema one)."""
        self.bases = [int(i) for (i,) in self.conn.execute(
            "SELECT id FROM dicts WHERE base IS NULL ORDER BY id DESC LIMIT ?", (RECENT_BASES,))]
        self.dict_id = self.bases[0] if self.bases else 0


class EmbeddedCollection:
    """One collection (pymongo interface); see the module docstring for what is supported."""

    def __init__(self, database, name: str):
        if not name or "/" in name or name.startswith(".") or "\x00" in name:
            raise StoreError(f"invalid collection name {name!r}")
        self.database = None  # pymongo's attribute; kept None so nothing reaches the handle through it
        self._db = database
        self.name = name
        self.full_name = f"{database.name}.{name}"
        self.path = database.dir / f"{name}{files.SUFFIX}"

    def __repr__(self) -> str:
        return f"EmbeddedCollection({str(self.path)!r})"

    # ------------------------------------------------------------------ connections

    def _local(self) -> dict:
        return self._db._thread_states()

    def _writer(self) -> _State:
        states = self._local()
        state = states.get(self.name)
        if state is None or state.immutable:
            self._db._ensure_dir()
            state = states[self.name] = _State(files.open_writer(self.path, self._db.busy_s))
            self._db._register(state)
        return state

    def _reader(self) -> _State | None:
        """A reading state, or None if the collection's file does not exist."""
        if not self.path.exists():
            return None
        if not self._db.read_only:
            return self._writer()
        states = self._local()
        state = states.get(self.name)
        if state is not None and not state.immutable:
            return state
        token = files.stat_token(self.path)
        conn, immutable = files.open_reader(self.path, self._db.busy_s)
        state = _State(conn, immutable, token)
        if not immutable:
            states[self.name] = state
            self._db._register(state)
        return state

    def _read(self, fn):
        """fn(state) inside one consistent read; fn(None) when the collection does not exist."""
        for attempt in range(5):
            state = self._reader()
            if state is None:
                return fn(None)
            with state.lock:
                if state.closed:   # `close` ran in another thread meanwhile: the next state is a new connection
                    continue
                done, result = self._read_once(state, fn, attempt)
            if done:
                return result
        raise StoreError(f"{self.path}: the file kept changing while being read; try again")

    def _read_once(self, state: _State, fn, attempt: int) -> tuple[bool, Any]:
        """(True, fn(state)) after one consistent read, (False, None) when it must be read again."""
        try:
            if state.immutable:
                try:
                    state.refresh()
                    result = fn(state)
                finally:
                    state.conn.close()
                if files.stat_token(self.path) == state.token:
                    return True, result
                return False, None  # a writer changed the file during the read: read again
            state.refresh()
            own = not state.conn.in_transaction
            if own:
                state.conn.execute("BEGIN")
            try:
                return True, fn(state)
            finally:
                if own and state.conn.in_transaction:
                    state.conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if state.immutable and attempt < 4 and files.stat_token(self.path) != state.token:
                return False, None
            if self._db.read_only and "no such table" in str(exc):
                # a writer is creating this collection's file right now (found by a reader watching a
                # `migrate --to` target): for a reader the collection does not exist yet
                return True, fn(None)
            raise files.store_error(self.path, exc, "reading") from None
        except codec.EncodeError as exc:
            raise QueryError(str(exc)) from None

    def _write(self, fn, exists: bool = True):
        """fn(state) -> (result, count_delta) in one IMMEDIATE transaction (the collection then exists)."""
        if self._db.read_only:
            raise ReadOnlyStoreError(f"{self._db.describe()}: {self.name} is read-only")
        for _ in range(3):
            state = self._writer()
            with state.lock:
                if state.closed:   # `close` ran in another thread meanwhile: the next state is a new connection
                    continue
                return self._write_locked(state, fn, exists)
        raise StoreError(f"{self._db.describe()}: the handle kept being closed during a write")

    def _write_locked(self, state: _State, fn, exists: bool):
        conn = state.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise files.store_error(self.path, exc, "starting a write") from None
        try:
            state.refresh()
            result, delta = fn(state)
            if delta:
                conn.execute("UPDATE meta SET value = value + ? WHERE key = 'count'", (delta,))
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('exists', ?)", (int(exists),))
            conn.execute("COMMIT")
            return result
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            state.schema_version = None  # a rolled-back schema change (or dictionary) must be re-read
            state.dicts.clear()
            if isinstance(exc, sqlite3.DatabaseError):
                raise files.store_error(self.path, exc, "writing") from None
            if isinstance(exc, codec.EncodeError):
                raise QueryError(str(exc)) from None
            raise

    # ------------------------------------------------------------------ encoding

    def _encode_row(self, state: _State, doc: dict) -> tuple:
        if "_id" not in doc:
            doc["_id"] = bson.ObjectId()
        values = []
        for field in sorted(state.columns):
            got = path_values(doc, field)
            if len(got) > 1:
                raise codec.EncodeError(f"indexed field {field!r} of {doc['_id']!r} holds an array")
            values.append(self._column_value(state, field, got))
        raw = bson.encode(doc, codec_options=codec.CODEC_OPTIONS)
        return codec.id_value(doc["_id"]), raw, values

    @staticmethod
    def _column_value(state: _State, field: str, got: list) -> Any:
        """An indexed column's value from the document's `path_values` (None unless exactly one); the first date
        seen in a field marks it a date column (in `meta`)."""
        value = None if len(got) != 1 or got[0] is MISSING else got[0]
        if value is not None and hasattr(value, "tzinfo") and field not in state.date_columns:
            state.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, 1)", (f"date:{field}",))
            state.date_columns.add(field)
        return codec.column_value(value, field)

    def _new_dict(self, state: _State, data: bytes, base: int | None = None) -> int:
        cur = state.conn.execute("INSERT INTO dicts(data, base) VALUES (?, ?)", (data, base))
        return int(cur.lastrowid)

    def _batch_dict(self, state: _State, raws: list[bytes]) -> tuple[int, bytes | None]:
        """(id, dictionary) to compress a write batch with (see codec.py): the latest base for a few
        documents; for a large batch, a composite of the base that compresses a sample of it best (a new
        base when none is within NEW_BASE_IF_WORSE of a fresh one) and the batch's first documents."""
        if not raws:
            return 0, None
        state.load_bases()   # another process may have added a base since this one looked
        if len(raws) < BATCH_DICT_MIN:
            if not state.dict_id:
                data = codec.build_dictionary(raws)
                if len(data) < 256:
                    return 0, None  # too little to learn from yet: stored plain, a dictionary comes later
                state.dict_id = self._new_dict(state, data)
                state.bases.insert(0, state.dict_id)
            return state.dict_id, state.dicts[state.dict_id]
        # judged fairly: a fresh base learns from the first half, every candidate is measured (with the tail,
        # as it will be used) on a sample of the second half
        tail = b"".join(raws[:codec.TAIL_DOCS])
        half = len(raws) // 2
        sample = raws[half:][::max(1, (len(raws) - half) // 12)][:12]
        fresh = codec.build_dictionary(raws[:half])

        def cost(base: bytes) -> int:
            dictionary = codec.composite(base, tail)
            return sum(codec.compressed_size(r, dictionary) for r in sample)

        best, best_size = 0, float("inf")
        for base_id in state.bases[:RECENT_BASES]:
            size = cost(state.dicts[base_id])
            if size < best_size:
                best, best_size = base_id, size
        if not best or best_size > NEW_BASE_IF_WORSE * cost(fresh):
            best = self._new_dict(state, codec.build_dictionary(raws))
            state.bases.insert(0, best)
            del state.bases[RECENT_BASES:]
            state.dict_id = best
        composite_id = self._new_dict(state, tail, best)
        return composite_id, state.dicts[composite_id]

    def _decode(self, state: _State, body: bytes) -> dict:
        try:
            return codec.decode_body(body, state.dicts)
        except (KeyError, IndexError, ValueError, zlib.error, bson.errors.BSONError) as exc:
            # a damaged page whose SQLite structure still reads: the body itself is garbage (found by flipping
            # single bytes of a collection file: bson/zlib errors escaped without naming the file)
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"{self.path}: a stored document is unreadable ({type(exc).__name__}: {text[:120]}) "
                             "(the file is damaged: run `qortcli check` (and restore it from `qortcli backup` if "
                             "needed))") from None

    def _column_sql(self, state: _State) -> tuple[str, str, str]:
        """The indexed columns (in `_encode_row`'s order) as SQL: ", c1, c2", ", ?, ?" and ", c1 = ?, c2 = ?"."""
        cols = [state.columns[f] for f in sorted(state.columns)]
        return "".join(f", {c}" for c in cols), ", ?" * len(cols), "".join(f", {c} = ?" for c in cols)

    # ------------------------------------------------------------------ query planning

    def _sql_for(self, state: _State, filt: dict | None, sort: list | None):
        sql, params, residual, indexed = compile_filter(filt, set(state.columns))
        scannable = self.name in self._db.scannable
        if residual and not indexed and not scannable:
            raise QueryError(self._unindexed(state, filt, "filter"))
        order = ""
        python_sort = None
        if sort:
            parts = []
            for field, way in sort:
                col = "id" if field == "_id" else state.columns.get(field)
                if col is None:
                    # sorting what an index narrowed (or a small collection) costs what it returns
                    if not (scannable or indexed):
                        raise QueryError(self._unindexed(state, {field: 1}, "sort"))
                    python_sort = sort
                    parts = []
                    break
                parts.append(f"{col} {'DESC' if way < 0 else 'ASC'}")
            if parts:
                order = " ORDER BY " + ", ".join(parts) + ", rid"
        return sql, params, residual, indexed, order, python_sort

    def _check_plan(self, state: _State, sql: str, params: list, indexed: bool, ordered: bool, filt,
                    limited: bool = False) -> None:
        """Refuse a statement whose cost grows with the collection rather than with what it returns: a plan
        must SEARCH an index, except an explicit whole read (empty filter) or an index-ordered read with a
        limit."""
        if self.name in self._db.scannable or not (indexed or ordered):
            return
        key = f"{sql}|{limited}"
        ok = state.plans.get(key)
        if ok is None:
            details = [str(r[3]) for r in state.conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
            searched = any(d.startswith("SEARCH") for d in details)
            index_scan = any(d.startswith("SCAN") and "USING" in d and "INDEX" in d for d in details)
            if searched:
                ok = True
            elif not filt:
                ok = index_scan or not ordered
            else:
                ok = index_scan and limited and not any("TEMP B-TREE" in d for d in details)
            state.plans[key] = ok
        if not ok:
            raise QueryError(self._unindexed(state, filt, "query"))

    def _unindexed(self, state: _State, filt, what: str) -> str:
        fields = sorted(k for k in _fields_of(filt or {}))
        known = ", ".join(f"{n}({', '.join(f for f, _ in s['key'])})" for n, s in sorted(state.indexes.items())) or "none"
        return (f"{self.name}: no index serves this {what} on {', '.join(fields) or '(none)'} — the embedded store "
                f"does not scan a whole collection (indexes: _id, {known}); add an index in qortcli/store/schema.py")

    def _candidate_rows(self, state: _State, filt, sort, skip: int, limit: int, after_rid: int | None = None,
                        page: int | None = None, columns: str = "rid, id, body"):
        sql, params, residual, indexed, order, python_sort = self._sql_for(state, filt, sort)
        where = sql
        if after_rid is not None:
            where = f"({sql}) AND rid > ?"
            params = [*params, after_rid]
        if not order:
            order = " ORDER BY rid" if after_rid is not None or page else ""
        statement = f"SELECT {columns} FROM docs WHERE {where}{order}"
        sql_limit = None
        if not residual and not python_sort:
            sql_limit = limit if limit else None
            if page:
                sql_limit = min(sql_limit, page) if sql_limit else page
        elif page and not python_sort:
            sql_limit = page
        if sql_limit is not None or (skip and not residual and not python_sort):
            statement += f" LIMIT {int(sql_limit) if sql_limit is not None else -1}"
            if skip and not residual and not python_sort:
                statement += f" OFFSET {int(skip)}"
        self._check_plan(state, f"SELECT rid FROM docs WHERE {sql}{order if 'ORDER BY rid' not in order else ''}",
                         params[:len(params) - (after_rid is not None)], indexed,
                         bool(order.strip()) and "ORDER BY rid" not in order, filt,
                         limited=bool(limit) and not residual and not python_sort)
        return state.conn.execute(statement, params), residual, python_sort

    # ------------------------------------------------------------------ reads

    def find(self, filter: dict | None = None, projection=None, skip: int = 0, limit: int = 0, sort=None,
             **kwargs) -> "Cursor":
        """Documents matching `filter` (see the module docstring), lazily, as a Cursor."""
        _no_options(kwargs, "find")
        cursor = Cursor(self, filter, projection)
        if sort:
            cursor.sort(sort)
        if skip:
            cursor.skip(skip)
        if limit:
            cursor.limit(limit)
        return cursor

    def find_one(self, filter: Any = None, projection=None, *args, sort=None, **kwargs) -> dict | None:
        if filter is not None and not isinstance(filter, dict):
            filter = {"_id": filter}
        _no_options(kwargs, "find_one")
        cursor = self.find(filter, projection, sort=sort).limit(1)
        for doc in cursor:
            return doc
        return None

    def count_documents(self, filter: dict | None = None, **kwargs) -> int:
        _no_options(kwargs, "count_documents")

        def run(state):
            if state is None:
                return 0
            if not filter:
                row = state.conn.execute("SELECT value FROM meta WHERE key = 'count'").fetchone()
                return int(row[0]) if row else 0
            sql, params, residual, indexed, _, _ = self._sql_for(state, filter, None)
            if not residual:
                self._check_plan(state, f"SELECT rid FROM docs WHERE {sql}", params, indexed, False, filter)
                return int(state.conn.execute(f"SELECT count(*) FROM docs WHERE {sql}", params).fetchone()[0])
            rows, residual, _ = self._candidate_rows(state, filter, None, 0, 0)
            return sum(1 for _, _, body in rows if matches(self._decode(state, body), residual))

        return self._read(run)

    def estimated_document_count(self, **kwargs) -> int:
        return self.count_documents({})

    def distinct(self, key: str, filter: dict | None = None, **kwargs) -> list:
        _no_options(kwargs, "distinct")

        def run(state):
            if state is None:
                return []
            sql, params, residual, indexed, _, _ = self._sql_for(state, filter, None)
            col = "id" if key == "_id" else state.columns.get(key)
            if col is not None and not residual and key not in state.date_columns:
                self._check_plan(state, f"SELECT rid FROM docs WHERE {sql}", params, indexed, False, filter)
                rows = state.conn.execute(f"SELECT DISTINCT {col} FROM docs WHERE {sql}", params)
                return [codec.id_from_column(v) if key == "_id" else v for (v,) in rows if v is not None]
            if not filter and self.name not in self._db.scannable and col is None:
                raise QueryError(self._unindexed(state, {key: 1}, "distinct"))
            rows, residual, _ = self._candidate_rows(state, filter, None, 0, 0)
            seen: list = []
            for _, _, body in rows:
                doc = self._decode(state, body)
                if residual and not matches(doc, residual):
                    continue
                for value in path_values(doc, key):
                    values = value if isinstance(value, list) else [value]
                    for v in values:
                        if v is not MISSING and v not in seen:
                            seen.append(v)
            return seen

        return self._read(run)

    def index_information(self) -> dict:
        def run(state):
            info = {"_id_": {"key": [("_id", 1)], "v": 2}}
            if state is None:
                return info
            for name, spec in state.indexes.items():
                info[name] = {"key": [tuple(k) for k in spec["key"]], "unique": bool(spec.get("unique")), "v": 2}
            return info

        return self._read(run)

    def _index_specs(self) -> dict:
        state = self._local().get(self.name)
        return dict(state.indexes) if state is not None else {}

    def list_indexes(self) -> list[dict]:
        return [{"name": n, **s} for n, s in self.index_information().items()]

    # ------------------------------------------------------------------ writes

    def _existing(self, state: _State, ids: list) -> dict:
        """{id column value: (rid, body)} of the stored documents among `ids` (hashed index, exact id)."""
        found: dict = {}
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start:start + IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = state.conn.execute(f"SELECT rid, id, body FROM docs WHERE idh IN ({marks})",
                                      [codec.id_hash(i) for i in chunk])
            wanted = set(chunk)
            for rid, id_value, body in rows:
                if id_value in wanted:
                    found[id_value] = (rid, bytes(body))
        return found

    def _write_rows(self, state: _State, rows: list[tuple], existing: dict) -> tuple[list, int]:
        """Insert the new rows and rewrite the changed ones (an unchanged document is left as it is, so a
        re-run writes nothing); rows are (id, raw BSON, column values). Returns (inserted ids, modified)."""
        changed = []
        for row in rows:
            old = existing.get(row[0])
            if old is None or codec.unpack(old[1], state.dicts) != row[1]:
                changed.append(row)
        dict_id, dictionary = self._batch_dict(state, [r[1] for r in changed]) if changed else (0, None)
        names, marks, sets = self._column_sql(state)
        inserts, updates = [], []
        for id_value, raw, values in changed:
            body = codec.pack(raw, dict_id, dictionary)
            if id_value in existing:
                updates.append((body, *values, existing[id_value][0]))
            else:
                inserts.append((codec.id_hash(id_value), id_value, body, *values))
        if inserts:
            state.conn.executemany(f"INSERT INTO docs(idh, id, body{names}) VALUES (?, ?, ?{marks})", inserts)
        if updates:
            state.conn.executemany(f"UPDATE docs SET body = ?{sets} WHERE rid = ?", updates)
        return [codec.id_from_column(r[1]) for r in inserts], len(updates)

    def _upsert_by_id(self, state: _State, docs: list[dict]) -> tuple[int, int, list]:
        """Replace-or-insert documents keyed by `_id` (the last of duplicates wins): (inserted, modified, ids)."""
        rows = {}
        for d in docs:
            row = self._encode_row(state, dict(d))
            rows[row[0]] = row
        ordered = list(rows.values())
        inserted, modified = self._write_rows(state, ordered, self._existing(state, list(rows)))
        return len(inserted), modified, inserted

    def _update_by_id(self, state: _State, requests: list, result: dict) -> None:
        """A batch of UpdateOne({"_id": x}, {operators}) without upsert (e.g. `price`'s narrow updates):
        read the documents in one indexed pass, apply, write the changed ones with one batch dictionary."""
        ids = [codec.id_value(r._filter["_id"]) for r in requests]
        existing = self._existing(state, ids)
        docs: dict = {}
        for request, id_value in zip(requests, ids):
            if id_value not in existing:
                continue
            doc = docs.get(id_value)
            if doc is None:
                doc = self._decode(state, existing[id_value][1])
            docs[id_value] = apply_update(doc, request._doc)
            result["nMatched"] += 1
        rows = [self._encode_row(state, doc) for doc in docs.values()]
        _, modified = self._write_rows(state, rows, existing)
        result["nModified"] += modified

    def _matching(self, state: _State, filt, limit: int = 0, sort=None) -> list[tuple[int, dict]]:
        rows, residual, python_sort = self._candidate_rows(state, filt, sort, 0, limit)
        out = []
        for rid, _, body in rows:
            doc = self._decode(state, body)
            if residual and not matches(doc, residual):
                continue
            out.append((rid, doc))
            if limit and len(out) >= limit and not python_sort:
                break
        if python_sort:
            docs = python_sorted([doc for _, doc in out], python_sort)
            by_id = {id(doc): rid for rid, doc in out}
            out = [(by_id[id(doc)], doc) for doc in docs]
            if limit:
                out = out[:limit]
        return out

    def _replace_row(self, state: _State, rid: int, doc: dict) -> bool:
        """Rewrite one stored document (by row); False when its content is unchanged (nothing written)."""
        id_value, raw, values = self._encode_row(state, doc)
        old = state.conn.execute("SELECT body FROM docs WHERE rid = ?", (rid,)).fetchone()
        if old is not None and codec.unpack(bytes(old[0]), state.dicts) == raw:
            return False
        body = codec.pack(raw, *self._batch_dict(state, [raw]))
        sets = self._column_sql(state)[2]
        state.conn.execute(f"UPDATE docs SET idh = ?, id = ?, body = ?{sets} WHERE rid = ?",
                           (codec.id_hash(id_value), id_value, body, *values, rid))
        return True

    def _insert_row(self, state: _State, doc: dict) -> Any:
        id_value, raw, values = self._encode_row(state, doc)
        if self._existing(state, [id_value]):
            raise _duplicate(self, None, doc["_id"])
        names, marks, _ = self._column_sql(state)
        state.conn.execute(f"INSERT INTO docs(idh, id, body{names}) VALUES (?, ?, ?{marks})",
                           (codec.id_hash(id_value), id_value, codec.pack(raw, *self._batch_dict(state, [raw])),
                            *values))
        return doc["_id"]

    def _apply(self, state: _State, request, index: int, result: dict) -> int:
        """One bulk request inside the caller's transaction; returns the document-count delta."""
        if isinstance(request, InsertOne):
            doc = dict(request._doc)
            self._insert_row(state, doc)
            request._doc.setdefault("_id", doc["_id"])
            result["nInserted"] += 1
            return 1
        if isinstance(request, ReplaceOne):
            return self._replace(state, request._filter, request._doc, bool(request._upsert), index, result)
        if isinstance(request, (UpdateOne, UpdateMany)):
            many = isinstance(request, UpdateMany)
            return self._update(state, request._filter, request._doc, bool(request._upsert), many, index, result)
        if isinstance(request, (DeleteOne, DeleteMany)):
            found = self._matching(state, request._filter, 0 if isinstance(request, DeleteMany) else 1)
            self._delete_rids(state, [rid for rid, _ in found])
            result["nRemoved"] += len(found)
            return -len(found)
        raise QueryError(f"bulk_write: unsupported request {type(request).__name__}")

    def _replace(self, state, filt, doc, upsert, index, result) -> int:
        if is_operator_update(doc):
            raise QueryError("replace_one needs a replacement document, not operators")
        found = self._matching(state, filt, 1)
        if found:
            rid, old = found[0]
            new = apply_update(old, doc)
            result["nMatched"] += 1
            result["nModified"] += int(self._replace_row(state, rid, new))
            return 0
        if not upsert:
            return 0
        new = dict(doc)
        seed = upsert_seed(filt, {})
        if "_id" in seed and "_id" not in new:
            new["_id"] = seed["_id"]
        self._insert_row(state, new)
        result["nUpserted"] += 1
        result["upserted"].append({"index": index, "_id": new["_id"]})
        return 1

    def _update(self, state, filt, update, upsert, many, index, result) -> int:
        if not is_operator_update(update):
            raise QueryError("update_one/update_many need update operators ($set, …); use replace_one to replace")
        found = self._matching(state, filt, 0 if many else 1)
        for rid, old in found:
            new = apply_update(old, update)
            result["nMatched"] += 1
            result["nModified"] += int(self._replace_row(state, rid, new))
        if found or not upsert:
            return 0
        new = apply_update(upsert_seed(filt, update), update, inserting=True)
        self._insert_row(state, new)
        result["nUpserted"] += 1
        result["upserted"].append({"index": index, "_id": new["_id"]})
        return 1

    def _delete_rids(self, state: _State, rids: list[int]) -> None:
        for start in range(0, len(rids), IN_CHUNK):
            chunk = rids[start:start + IN_CHUNK]
            state.conn.execute(f"DELETE FROM docs WHERE rid IN ({', '.join('?' * len(chunk))})", chunk)

    @staticmethod
    def _blank() -> dict:
        return {"nInserted": 0, "nUpserted": 0, "nMatched": 0, "nModified": 0, "nRemoved": 0, "upserted": [],
                "writeErrors": [], "writeConcernErrors": []}

    def bulk_write(self, requests: Iterable, ordered: bool = True, **kwargs) -> BulkWriteResult:
        """Apply the requests in one transaction: all of them, or (on any error) none."""
        _no_options(kwargs, "bulk_write")
        requests = list(requests)
        if not requests:
            from pymongo.errors import InvalidOperation

            raise InvalidOperation("No operations to execute")

        def run(state):
            result = self._blank()
            delta = 0
            fast = [r for r in requests if isinstance(r, ReplaceOne) and r._upsert and _id_only(r._filter)
                    and not is_operator_update(r._doc)]
            if len(fast) == len(requests):
                docs = []
                for r in requests:
                    doc = dict(r._doc)
                    if "_id" in doc and doc["_id"] != r._filter["_id"]:
                        raise QueryError("ReplaceOne: the replacement's _id differs from the filter's")
                    doc["_id"] = r._filter["_id"]
                    docs.append(doc)
                try:
                    inserted, modified, ids = self._upsert_by_id(state, docs)
                except sqlite3.IntegrityError as exc:
                    raise _bulk_error(self, exc, result) from None
                result["nUpserted"] = inserted
                result["nMatched"] = len(docs) - inserted
                result["nModified"] = modified
                positions = {codec.id_value(d["_id"]): i for i, d in enumerate(docs)}
                result["upserted"] = [{"index": positions[codec.id_value(i)], "_id": i} for i in ids]
                return BulkWriteResult(result, True), inserted
            narrow = [r for r in requests if isinstance(r, UpdateOne) and not r._upsert and _id_only(r._filter)
                      and is_operator_update(r._doc)]
            if len(narrow) == len(requests):
                try:
                    self._update_by_id(state, requests, result)
                except sqlite3.IntegrityError as exc:
                    raise _bulk_error(self, exc, result) from None
                return BulkWriteResult(result, True), 0
            for index, request in enumerate(requests):
                try:
                    delta += self._apply(state, request, index, result)
                except (sqlite3.IntegrityError, DuplicateKeyError) as exc:
                    raise _bulk_error(self, exc, result, index) from None
            return BulkWriteResult(result, True), delta

        return self._write(run)

    def insert_one(self, document: dict, **kwargs) -> InsertOneResult:
        _no_options(kwargs, "insert_one")

        def run(state):
            doc = dict(document)
            try:
                self._insert_row(state, doc)
            except sqlite3.IntegrityError as exc:
                raise _duplicate(self, exc, doc.get("_id")) from None
            document.setdefault("_id", doc["_id"])
            return InsertOneResult(doc["_id"], True), 1

        return self._write(run)

    def insert_many(self, documents: Iterable[dict], ordered: bool = True, **kwargs) -> InsertManyResult:
        docs = list(documents)
        self.bulk_write([InsertOne(d) for d in docs], ordered=ordered)
        return InsertManyResult([d["_id"] for d in docs], True)

    def replace_one(self, filter: dict, replacement: dict, upsert: bool = False, **kwargs) -> UpdateResult:
        _no_options(kwargs, "replace_one")

        def run(state):
            result = self._blank()
            try:
                delta = self._replace(state, filter, replacement, upsert, 0, result)
            except sqlite3.IntegrityError as exc:
                raise _duplicate(self, exc, replacement.get("_id")) from None
            return _update_result(result), delta

        return self._write(run)

    def update_one(self, filter: dict, update: dict, upsert: bool = False, **kwargs) -> UpdateResult:
        return self._update_call(filter, update, upsert, False, kwargs)

    def update_many(self, filter: dict, update: dict, upsert: bool = False, **kwargs) -> UpdateResult:
        return self._update_call(filter, update, upsert, True, kwargs)

    def _update_call(self, filter, update, upsert, many, kwargs) -> UpdateResult:
        _no_options(kwargs, "update")

        def run(state):
            result = self._blank()
            try:
                delta = self._update(state, filter, update, upsert, many, 0, result)
            except sqlite3.IntegrityError as exc:
                raise _duplicate(self, exc, None) from None
            return _update_result(result), delta

        return self._write(run)

    def find_one_and_update(self, filter: dict, update: dict, projection=None, sort=None, upsert: bool = False,
                            return_document: bool = False, **kwargs) -> dict | None:
        """Atomically update the first match; returns it before (default) or after (`return_document=True`,
        i.e. pymongo's ReturnDocument.AFTER) the update."""
        _no_options(kwargs, "find_one_and_update")
        spec = normalise_projection(projection)
        order = normalise_sort(sort) if sort else None

        def run(state):
            found = self._matching(state, filter, 1, order)
            if found:
                rid, old = found[0]
                new = apply_update(old, update)
                self._replace_row(state, rid, new)
                return project(dict(new if return_document else old), spec), 0
            if not upsert:
                return None, 0
            new = apply_update(upsert_seed(filter, update), update, inserting=True)
            try:
                self._insert_row(state, new)
            except sqlite3.IntegrityError as exc:
                raise _duplicate(self, exc, new.get("_id")) from None
            return (project(dict(new), spec) if return_document else None), 1

        return self._write(run)

    def delete_one(self, filter: dict, **kwargs) -> DeleteResult:
        return self._delete(filter, 1, kwargs)

    def delete_many(self, filter: dict, **kwargs) -> DeleteResult:
        return self._delete(filter, 0, kwargs)

    def _delete(self, filter, limit, kwargs) -> DeleteResult:
        _no_options(kwargs, "delete")
        if not self.path.exists():
            if self._db.read_only:
                raise ReadOnlyStoreError(f"{self._db.describe()}: {self.name} is read-only")
            return DeleteResult({"n": 0}, True)

        def run(state):
            found = self._matching(state, filter, limit)
            self._delete_rids(state, [rid for rid, _ in found])
            return DeleteResult({"n": len(found)}, True), -len(found)

        return self._write(run)

    def drop(self, **kwargs) -> None:
        """Remove every document and secondary index (the file stays, emptied, so open readers see it go)."""
        if not self.path.exists():
            return None

        def run(state):
            n = state.conn.execute("SELECT value FROM meta WHERE key = 'count'").fetchone()[0]
            for name in list(state.indexes):
                state.conn.execute(f'DROP INDEX IF EXISTS "ix_{name}"')
            state.conn.execute("DELETE FROM indexes")
            state.conn.execute("DELETE FROM docs")
            return None, -int(n)

        self._write(run, exists=False)

    def exists(self) -> bool:
        """Whether the collection exists (created, or holding documents, and not dropped)."""
        def run(state):
            if state is None:
                return False
            row = state.conn.execute("SELECT value FROM meta WHERE key = 'exists'").fetchone()
            count = state.conn.execute("SELECT value FROM meta WHERE key = 'count'").fetchone()
            return bool(row and int(row[0])) or bool(count and int(count[0]))

        return self._read(run)

    def create(self) -> None:
        self._write(lambda state: (None, 0))

    # ------------------------------------------------------------------ indexes

    def create_index(self, keys, unique: bool = False, name: str | None = None, **kwargs) -> str:
        """Create (or keep) an index; its fields get columns (back-filled once from the stored documents)."""
        pairs = normalise_sort(keys)
        if [f for f, _ in pairs] == ["_id"]:
            return "_id_"
        name = name or "_".join(f"{f}_{d}" for f, d in pairs)
        spec = {"key": [[f, d] for f, d in pairs], "unique": bool(unique)}

        def run(state):
            old = state.indexes.get(name)
            if old is not None:
                if old != spec:
                    raise QueryError(f"{self.name}: index {name!r} exists with another specification ({old})")
                return name, 0
            for field, _ in pairs:
                if field != "_id" and field not in state.columns:
                    self._add_column(state, field)
            cols = ", ".join(("id" if f == "_id" else state.columns[f]) + (" DESC" if d < 0 else " ASC")
                             for f, d in pairs)
            try:
                state.conn.execute(f'CREATE {"UNIQUE " if unique else ""}INDEX "ix_{name}" ON docs({cols})')
            except sqlite3.IntegrityError as exc:
                raise _duplicate(self, exc, None) from None
            state.conn.execute("INSERT INTO indexes(name, spec) VALUES (?, ?)", (name, json.dumps(spec)))
            state.indexes[name] = spec
            state.plans = {}
            return name, 0

        return self._write(run)

    def create_indexes(self, models) -> list[str]:
        out = []
        for model in models:
            doc = model.document
            out.append(self.create_index(list(doc["key"].items()), unique=doc.get("unique", False), name=doc.get("name")))
        return out

    def drop_index(self, name: str) -> None:
        def run(state):
            if name not in state.indexes:
                raise QueryError(f"{self.name}: no index {name!r}")
            state.conn.execute(f'DROP INDEX IF EXISTS "ix_{name}"')
            state.conn.execute("DELETE FROM indexes WHERE name = ?", (name,))
            return None, 0

        self._write(run)

    def _add_column(self, state: _State, field: str) -> None:
        col = column_name(field)
        state.conn.execute(f"ALTER TABLE docs ADD COLUMN {col}")
        state.columns[field] = col
        last = 0
        while True:
            rows = state.conn.execute("SELECT rid, body FROM docs WHERE rid > ? ORDER BY rid LIMIT ?",
                                      (last, PAGE)).fetchall()
            if not rows:
                break
            updates = []
            for rid, body in rows:
                updates.append((self._column_value(state, field, path_values(self._decode(state, body), field)), rid))
            state.conn.executemany(f"UPDATE docs SET {col} = ? WHERE rid = ?", updates)
            last = rows[-1][0]

    # ------------------------------------------------------------------ maintenance (check / backup)

    def integrity_check(self, bodies: bool = True) -> list[str]:
        """SQLite's integrity check of this collection's file, the count bookkeeping and (with `bodies`) whether
        every stored document still decodes: problems found."""
        def run(state):
            if state is None:
                return []
            problems = [str(r[0]) for r in state.conn.execute("PRAGMA integrity_check") if str(r[0]) != "ok"]
            structural = bool(problems)
            stored = state.conn.execute("SELECT value FROM meta WHERE key = 'count'").fetchone()
            actual = state.conn.execute("SELECT count(*) FROM docs").fetchone()[0]
            if stored is None or int(stored[0]) != int(actual):
                problems.append(f"document count {stored and stored[0]} recorded, {actual} stored")
            if bodies and not structural:
                bad, first = 0, None
                for rid, doc_id, body in state.conn.execute("SELECT rid, id, body FROM docs"):
                    try:
                        self._decode(state, bytes(body))
                    except StoreError:
                        bad += 1
                        first = first or f"_id {codec.id_from_column(doc_id)!r}"
                if bad:
                    problems.append(f"{bad} stored document(s) unreadable, first {first}")
            return problems

        return self._read(run)

    def repair_count(self) -> int:
        def run(state):
            actual = state.conn.execute("SELECT count(*) FROM docs").fetchone()[0]
            state.conn.execute("UPDATE meta SET value = ? WHERE key = 'count'", (actual,))
            return int(actual), 0

        return self._write(run)


class Cursor:
    """A lazy query: `sort`, `skip`, `limit` before iterating (pymongo-style, chainable)."""

    def __init__(self, collection: EmbeddedCollection, filt, projection):
        if filt is not None and not isinstance(filt, dict):
            raise QueryError(f"a filter must be a document, got {type(filt).__name__}")
        self._coll = collection
        self._filter = filt or {}
        self._projection = normalise_projection(projection)
        self._sort: list | None = None
        self._skip = 0
        self._limit = 0
        self._iter: Iterator | None = None

    def _check_fresh(self):
        if self._iter is not None:
            from pymongo.errors import InvalidOperation

            raise InvalidOperation("cannot set options after executing query")

    def sort(self, key_or_list, direction=None) -> "Cursor":
        self._check_fresh()
        self._sort = normalise_sort(key_or_list, direction)
        return self

    def skip(self, n: int) -> "Cursor":
        self._check_fresh()
        if int(n) < 0:
            raise ValueError("skip must be >= 0")
        self._skip = int(n)
        return self

    def limit(self, n: int) -> "Cursor":
        self._check_fresh()
        self._limit = abs(int(n))
        return self

    def __iter__(self) -> "Cursor":
        return self

    def __next__(self) -> dict:
        if self._iter is None:
            self._iter = self._run()
        return next(self._iter)

    def to_list(self, length: int | None = None) -> list[dict]:
        out = list(self)
        return out[:length] if length else out

    def close(self) -> None:
        self._iter = iter(())

    def _ids_only(self) -> bool:
        return self._projection == ("include", {"_id": True})

    def _run(self) -> Iterator[dict]:
        coll, filt, spec = self._coll, self._filter, self._projection
        cols = "rid, id" if self._ids_only() else "rid, id, body"

        def emit(state, rows, residual):
            out = []
            for row in rows:
                if len(row) == 2:
                    if residual:
                        raise QueryError("internal: id-only read with a residual filter")
                    out.append({"_id": codec.id_from_column(row[1])})
                    continue
                doc = coll._decode(state, row[2])
                if residual and not matches(doc, residual):
                    continue
                out.append(project(doc, spec))
            return out

        def needs_body(state):
            _, _, residual, _, _, python_sort = coll._sql_for(state, filt, self._sort)
            return bool(residual or python_sort)

        if self._sort:
            # ordered: one consistent read of the whole (bounded) result
            def run(state):
                if state is None:
                    return []
                select = "rid, id, body" if cols == "rid, id" and needs_body(state) else cols
                rows, residual, python_sort = coll._candidate_rows(state, filt, self._sort, self._skip, self._limit,
                                                                   columns=select)
                docs = emit(state, rows.fetchall(), residual)
                if python_sort:
                    docs = python_sorted(docs, python_sort)
                if residual or python_sort:
                    docs = docs[self._skip:]
                    if self._limit:
                        docs = docs[:self._limit]
                return docs

            yield from coll._read(run)
            return
        # unordered: pages in rid order (memory bounded), each page one consistent read
        after = 0
        skipped = 0
        produced = 0
        while True:
            def page(state, after=after):
                if state is None:
                    return [], None
                select = "rid, id, body" if cols == "rid, id" and needs_body(state) else cols
                rows, residual, _ = coll._candidate_rows(state, filt, None, 0, 0, after_rid=after, page=PAGE,
                                                         columns=select)
                rows = rows.fetchall()
                return emit(state, rows, residual), (rows[-1][0] if rows else None)

            docs, last = coll._read(page)
            for doc in docs:
                if skipped < self._skip:
                    skipped += 1
                    continue
                yield doc
                produced += 1
                if self._limit and produced >= self._limit:
                    return
            if last is None:
                return
            after = last


def _fields_of(filt: dict) -> set[str]:
    out = set()
    for key, cond in filt.items():
        if key in ("$and", "$or", "$nor"):
            for sub in cond:
                out |= _fields_of(sub)
        elif not key.startswith("$"):
            out.add(key)
    return out


def _id_only(filt) -> bool:
    return isinstance(filt, dict) and list(filt) == ["_id"] and not isinstance(filt["_id"], dict)


def _no_options(kwargs: dict, what: str) -> None:
    unsupported = [k for k in kwargs if k not in ("session", "comment", "hint", "bypass_document_validation",
                                                   "batch_size", "no_cursor_timeout", "allow_disk_use")]
    if unsupported:
        raise QueryError(f"{what}: option(s) {', '.join(unsupported)} not supported by the embedded store")


def _update_result(result: dict) -> UpdateResult:
    upserted = result["upserted"][0]["_id"] if result["upserted"] else None
    raw = {"n": result["nMatched"] + result["nUpserted"], "nModified": result["nModified"],
           "updatedExisting": result["nMatched"] > 0}
    if upserted is not None:
        raw["upserted"] = upserted
    return UpdateResult(raw, True)


def _duplicate(coll: EmbeddedCollection, exc: sqlite3.IntegrityError | None, key) -> DuplicateKeyError:
    """E11000 for an existing `_id` (exc None) or a unique index (the SQLite error names its columns)."""
    index = "_id_"
    if exc is not None:
        cols = str(exc).rsplit(":", 1)[-1].strip()
        index = next((name for name, spec in coll._index_specs().items()
                      if ", ".join(f"docs.{column_name(f)}" for f, _ in spec["key"]) == cols), cols)
    return DuplicateKeyError(f"E11000 duplicate key error collection: {coll.full_name} index: {index} dup key: "
                             f"{{ _id: {key!r} }}" if key is not None else
                             f"E11000 duplicate key error collection: {coll.full_name} index: {index}", 11000)


def _bulk_error(coll: EmbeddedCollection, exc, result: dict, index: int = 0) -> BulkWriteError:
    dup = exc if isinstance(exc, DuplicateKeyError) else _duplicate(coll, exc, None)
    failed = dict(result)
    failed.update(nInserted=0, nUpserted=0, nMatched=0, nModified=0, nRemoved=0, upserted=[],
                  writeErrors=[{"index": index, "code": 11000, "errmsg": str(dup)}])
    return BulkWriteError(failed)
