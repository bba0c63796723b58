"""Filters, projections and sorts of the embedded engine: the documented subset of MongoDB's query language.

Supported filter syntax: field equality (`{"a": v}`, dotted paths, a scalar matching inside arrays),
`$eq $ne $gt $gte $lt $lte $in $nin $exists $not` on a field, and `$and $or $nor` of filters.
Anything else (`$where`, `$regex`, `$elemMatch`, `$expr`, …) raises `QueryError` — never a silent scan.

`compile_filter` splits a filter into a SQL condition on indexed columns (and `_id`) and a residual filter
evaluated in Python (`matches`) on the candidate documents the SQL condition returns. Comparisons follow
MongoDB's type bracketing: numbers compare with numbers, strings with strings, datetimes with datetimes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from numbers import Number
from typing import Any, Iterable

from qortcli.store.engine.codec import EncodeError, column_value, id_value

FIELD_OPS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not"}
LOGICAL_OPS = {"$and", "$or", "$nor"}
_SQL_CMP = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
MISSING = object()   # a path that leads nowhere (distinct from a stored None)


class QueryError(ValueError):
    """A query outside the embedded engine's documented subset, or one no index serves."""


def column_name(field: str) -> str:
    """The SQLite column holding an indexed field (`model.iv` → `f_model__iv`)."""
    if not field or not all(part.replace("_", "a").isalnum() for part in field.split(".")):
        raise QueryError(f"field name {field!r} cannot be indexed by the embedded store (letters, digits, _ and .)")
    return "f_" + field.replace(".", "__")


# ------------------------------------------------------------------------------------------ SQL part

def _sql_type_guard(col: str, value) -> str:
    """A condition restricting a comparison to values of the same MongoDB type bracket."""
    if isinstance(value, bool):
        return f"typeof({col}) = 'integer'"
    if isinstance(value, Number):
        return f"typeof({col}) IN ('integer', 'real')"
    if isinstance(value, str):
        return f"typeof({col}) = 'text'"
    if isinstance(value, datetime):
        return f"typeof({col}) = 'integer'"
    return "1"


def _encode(value, field: str):
    return id_value(value) if field == "_id" else column_value(value, field)


def _id_sql(cond) -> tuple[str, list] | None:
    """SQL for a condition on `_id`: equality and `$in` go through the hashed `idh` index (then the exact id);
    anything else is evaluated on the id column (served only if another condition narrows)."""
    from qortcli.store.engine.codec import id_hash

    try:
        if not isinstance(cond, dict) or not any(str(k).startswith("$") for k in cond):
            if isinstance(cond, (list, dict)) or cond is None:
                return None
            v = id_value(cond)
            return "(idh = ? AND id = ?)", [id_hash(v), v]
        parts, params = [], []
        for op, value in cond.items():
            if op == "$eq":
                got = _id_sql(value)
                if got is None:
                    return None
                parts.append(got[0])
                params += got[1]
            elif op == "$in":
                if not isinstance(value, (list, tuple, set)):
                    raise QueryError(f"$in needs a list, got {type(value).__name__}")
                vs = [id_value(v) for v in value if v is not None]
                if not vs:
                    parts.append("0")
                    continue
                marks = ", ".join("?" * len(vs))
                parts.append(f"(idh IN ({marks}) AND id IN ({marks}))")
                params += [id_hash(v) for v in vs] + vs
            elif op in ("$ne", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists"):
                got = _field_sql("_id", {op: value}, set(), column="id")
                if got is None:
                    return None
                parts.append(got[0])
                params += got[1]
            else:
                raise QueryError(f"operator {op} on _id is not supported by the embedded store")
        return " AND ".join(parts) if parts else "1", params
    except EncodeError:
        return None


def _field_sql(field: str, cond, columns: set[str], column: str | None = None) -> tuple[str, list] | None:
    """SQL for one field's condition, or None when it must be evaluated in Python."""
    if field == "_id" and column is None:
        return _id_sql(cond)
    col = column or (column_name(field) if field in columns else None)
    if col is None:
        return None
    try:
        if not isinstance(cond, dict) or not any(str(k).startswith("$") for k in cond):
            if isinstance(cond, (list, dict)):
                return None                      # array/document equality: Python
            if cond is None:
                return f"{col} IS NULL", []
            return f"{col} = ?", [_encode(cond, field)]
        parts: list[str] = []
        params: list = []
        for op, value in cond.items():
            if op not in FIELD_OPS:
                raise QueryError(f"operator {op} is not supported by the embedded store (supported: "
                                 f"{', '.join(sorted(FIELD_OPS | LOGICAL_OPS))})")
            if op == "$eq":
                if isinstance(value, (list, dict)):
                    return None
                if value is None:
                    parts.append(f"{col} IS NULL")
                else:
                    parts.append(f"{col} = ?")
                    params.append(_encode(value, field))
            elif op == "$ne":
                if isinstance(value, (list, dict)):
                    return None
                parts.append(f"{col} IS NOT ?")
                params.append(None if value is None else _encode(value, field))
            elif op in _SQL_CMP:
                if value is None or isinstance(value, (list, dict)):
                    return None
                parts.append(f"({col} {_SQL_CMP[op]} ? AND {_sql_type_guard(col, value)})")
                params.append(_encode(value, field))
            elif op in ("$in", "$nin"):
                values = list(value) if isinstance(value, (list, tuple, set)) else None
                if values is None:
                    raise QueryError(f"{op} needs a list, got {type(value).__name__}")
                if any(isinstance(v, (list, dict)) for v in values):
                    return None
                has_none = any(v is None for v in values)
                plain = [_encode(v, field) for v in values if v is not None]
                marks = ", ".join("?" * len(plain))
                if op == "$in":
                    options = [f"{col} IN ({marks})"] if plain else []
                    if has_none:
                        options.append(f"{col} IS NULL")
                    parts.append("(" + " OR ".join(options) + ")" if options else "0")
                else:
                    keep = [f"({col} IS NULL OR {col} NOT IN ({marks}))"] if plain else []
                    if has_none:
                        keep.append(f"{col} IS NOT NULL")
                    parts.append(" AND ".join(keep) if keep else "1")
                params.extend(plain)
            elif op == "$exists":
                parts.append(f"{col} IS NOT NULL" if value else f"{col} IS NULL")
            elif op == "$not":
                return None
        return " AND ".join(parts) if parts else "1", params
    except EncodeError:
        return None


def compile_filter(filt: dict | None, columns: set[str]) -> tuple[str, list, dict, bool]:
    """(sql, params, residual, indexed): `indexed` says whether the SQL part narrows by an index."""
    if not filt:
        return "1", [], {}, False
    if not isinstance(filt, dict):
        raise QueryError(f"a filter must be a document, got {type(filt).__name__}")
    validate(filt)
    sql_parts: list[str] = []
    params: list = []
    residual: dict = {}
    for key, cond in filt.items():
        if key == "$and":
            subs = []
            for sub in cond:
                s, p, r, _ = compile_filter(sub, columns)
                if s != "1":
                    sql_parts.append(f"({s})")
                    params.extend(p)
                if r:
                    subs.append(r)
            if subs:
                residual.setdefault("$and", []).extend(subs)
        elif key == "$or":
            compiled = [compile_filter(sub, columns) for sub in cond]
            if compiled and all(not r and s != "1" for s, _, r, _ in compiled):
                sql_parts.append("(" + " OR ".join(f"({s})" for s, _, _, _ in compiled) + ")")
                for _, p, _, _ in compiled:
                    params.extend(p)
            else:
                residual["$or"] = cond
        elif key == "$nor":
            residual["$nor"] = cond
        else:
            got = _field_sql(key, cond, columns)
            if got is None:
                residual[key] = cond
            else:
                sql_parts.append(got[0])
                params.extend(got[1])
    sql = " AND ".join(sql_parts) if sql_parts else "1"
    return sql, params, residual, bool(sql_parts)


def validate(filt: dict) -> None:
    """Raise QueryError for any operator outside the supported subset (anywhere in the filter)."""
    for key, cond in filt.items():
        if key in LOGICAL_OPS:
            if not isinstance(cond, (list, tuple)) or not cond:
                raise QueryError(f"{key} needs a non-empty list of filters")
            for sub in cond:
                if not isinstance(sub, dict):
                    raise QueryError(f"{key} needs a list of filter documents")
                validate(sub)
        elif key.startswith("$"):
            raise QueryError(f"operator {key} is not supported by the embedded store (supported: "
                             f"{', '.join(sorted(FIELD_OPS | LOGICAL_OPS))})")
        elif isinstance(cond, dict) and any(str(k).startswith("$") for k in cond):
            for op, value in cond.items():
                if op not in FIELD_OPS:
                    raise QueryError(f"operator {op} on {key!r} is not supported by the embedded store "
                                     f"(supported: {', '.join(sorted(FIELD_OPS))})")
                if op == "$not":
                    if not isinstance(value, dict):
                        raise QueryError(f"$not on {key!r} needs an operator document")
                    validate({key: value})


# ------------------------------------------------------------------------------------------ Python part

def path_values(doc: Any, path: str) -> list:
    """The values at a dotted path (arrays fan out, as in MongoDB); [MISSING] when absent."""
    current = [doc]
    for part in path.split("."):
        nxt = []
        for value in current:
            if isinstance(value, dict):
                if part in value:
                    nxt.append(value[part])
            elif isinstance(value, list):
                if part.isdigit() and int(part) < len(value):
                    nxt.append(value[int(part)])
                else:
                    for item in value:
                        if isinstance(item, dict) and part in item:
                            nxt.append(item[part])
        current = nxt
        if not current:
            return [MISSING]
    return current


def _bracket(value) -> str | None:
    if value is None or value is MISSING:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Number):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "date"
    return None


def _norm(value):
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _equal(value, target) -> bool:
    if value is MISSING:
        return target is None
    if isinstance(value, list) and not isinstance(target, list):
        return any(_equal(v, target) for v in value)
    if _bracket(value) != _bracket(target) and not (value is None and target is None):
        return value == target if isinstance(value, (list, dict)) else False
    return _norm(value) == _norm(target)


def _compare(value, target, op: str) -> bool:
    if isinstance(value, list):
        return any(_compare(v, target, op) for v in value)
    if value is MISSING or value is None or target is None:
        return False
    if _bracket(value) != _bracket(target) or _bracket(value) is None:
        return False
    a, b = _norm(value), _norm(target)
    return {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]


def _field_matches(values: list, cond) -> bool:
    if not isinstance(cond, dict) or not any(str(k).startswith("$") for k in cond):
        return any(_equal(v, cond) for v in values)
    for op, target in cond.items():
        if op == "$eq":
            ok = any(_equal(v, target) for v in values)
        elif op == "$ne":
            ok = not any(_equal(v, target) for v in values)
        elif op in _SQL_CMP:
            ok = any(_compare(v, target, op) for v in values)
        elif op == "$in":
            ok = any(_equal(v, t) for v in values for t in target)
        elif op == "$nin":
            ok = not any(_equal(v, t) for v in values for t in target)
        elif op == "$exists":
            ok = (values != [MISSING]) == bool(target)
        elif op == "$not":
            ok = not _field_matches(values, target)
        else:  # validated before
            raise QueryError(f"operator {op} is not supported")
        if not ok:
            return False
    return True


def matches(doc: dict, filt: dict) -> bool:
    """Whether `doc` satisfies the (validated) filter."""
    for key, cond in filt.items():
        if key == "$and":
            if not all(matches(doc, sub) for sub in cond):
                return False
        elif key == "$or":
            if not any(matches(doc, sub) for sub in cond):
                return False
        elif key == "$nor":
            if any(matches(doc, sub) for sub in cond):
                return False
        elif not _field_matches(path_values(doc, key), cond):
            return False
    return True


def equality_fields(filt: dict | None) -> dict:
    """The plain equality conditions of a filter (what an upsert copies into the new document)."""
    out = {}
    for key, cond in (filt or {}).items():
        if key.startswith("$"):
            continue
        if isinstance(cond, dict) and any(str(k).startswith("$") for k in cond):
            if "$eq" in cond:
                out[key] = cond["$eq"]
            continue
        out[key] = cond
    return out


# ------------------------------------------------------------------------------------------ projection, sort

def normalise_projection(projection) -> tuple[str, dict] | None:
    """(mode "include"|"exclude", {path: True}) with `_id` handled, or None for whole documents."""
    if projection is None:
        return None
    if isinstance(projection, (list, tuple)):
        projection = {p: 1 for p in projection}
    if not isinstance(projection, dict):
        raise QueryError(f"a projection must be a document or a list of fields, got {type(projection).__name__}")
    if not projection:
        return None
    want_id = bool(projection.get("_id", 1))
    rest = {k: bool(v) for k, v in projection.items() if k != "_id"}
    if any(isinstance(v, dict) for v in projection.values()):
        raise QueryError("projection operators are not supported by the embedded store")
    if not rest:
        return ("include", {"_id": True}) if want_id else ("exclude", {"_id": True})
    values = set(rest.values())
    if len(values) > 1:
        raise QueryError("a projection cannot mix inclusion and exclusion (except _id)")
    if values == {True}:
        fields = dict.fromkeys(rest, True)
        if want_id:
            fields["_id"] = True
        return "include", fields
    fields = dict.fromkeys(rest, True)
    if not want_id:
        fields["_id"] = True
    return "exclude", fields


def _copy_path(src: dict, dst: dict, parts: list[str]) -> None:
    head = parts[0]
    if head not in src:
        return
    if len(parts) == 1:
        dst[head] = src[head]
        return
    value = src[head]
    if isinstance(value, dict):
        sub = dst.setdefault(head, {})
        if isinstance(sub, dict):
            _copy_path(value, sub, parts[1:])
    elif isinstance(value, list):
        out = dst.setdefault(head, [{} if isinstance(v, dict) else None for v in value])
        for v, o in zip(value, out):
            if isinstance(v, dict) and isinstance(o, dict):
                _copy_path(v, o, parts[1:])
        dst[head] = [o for o in out if o is not None]


def _drop_path(doc: dict, parts: list[str]) -> None:
    head = parts[0]
    if head not in doc:
        return
    if len(parts) == 1:
        del doc[head]
        return
    value = doc[head]
    if isinstance(value, dict):
        _drop_path(value, parts[1:])
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict):
                _drop_path(v, parts[1:])


def project(doc: dict, spec: tuple[str, dict] | None) -> dict:
    if spec is None:
        return doc
    mode, fields = spec
    if mode == "include":
        out: dict = {}
        for path in fields:
            _copy_path(doc, out, path.split("."))
        return out
    for path in fields:
        _drop_path(doc, path.split("."))
    return doc


def normalise_sort(key_or_list, direction=None) -> list[tuple[str, int]]:
    """pymongo's sort arguments → [(field, 1|-1), ...]."""
    if isinstance(key_or_list, str):
        pairs = [(key_or_list, 1 if direction is None else direction)]
    elif isinstance(key_or_list, dict):
        pairs = list(key_or_list.items())
    else:
        pairs = list(key_or_list)
    out = []
    for item in pairs:
        field, way = (item, 1) if isinstance(item, str) else item
        if way not in (1, -1):
            raise QueryError(f"sort direction for {field!r} must be 1 or -1, got {way!r}")
        out.append((str(field), int(way)))
    return out


def sort_key_python(sort: Iterable[tuple[str, int]]):
    """A Python sort for small unindexed collections, MongoDB-like (missing/None first ascending)."""
    order = {"null": 0, "number": 1, "string": 2, "date": 4, "bool": 5}

    def key(doc):
        out = []
        for field, _ in sort:
            value = path_values(doc, field)[0]
            value = None if value is MISSING else value
            out.append((order.get(_bracket(value) or "", 9), _norm(value) if value is not None else 0))
        return out

    return key


def python_sorted(docs: list[dict], sort: list[tuple[str, int]]) -> list[dict]:
    """Documents sorted by several fields and directions (stable sorts, last key first)."""
    out = list(docs)
    for field, way in reversed(sort):
        out.sort(key=sort_key_python([(field, 1)]), reverse=way < 0)
    return out
