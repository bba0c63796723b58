"""Update documents of the embedded engine: `$set $unset $inc $min $max $setOnInsert $push` (dotted paths).

A replacement document (no `$` keys) replaces everything but `_id`. Any other operator raises QueryError.
"""

from __future__ import annotations

import copy
from numbers import Number

from qortcli.store.engine.query import QueryError, equality_fields

UPDATE_OPS = ("$set", "$unset", "$inc", "$min", "$max", "$setOnInsert", "$push")


def is_operator_update(update: dict) -> bool:
    if not isinstance(update, dict) or not update:
        raise QueryError("an update must be a non-empty document")
    keys = [str(k).startswith("$") for k in update]
    if any(keys) and not all(keys):
        raise QueryError("an update mixes operators ($set, …) with plain fields")
    return all(keys)


def _parent(doc: dict, path: str, create: bool):
    parts = path.split(".")
    node = doc
    for part in parts[:-1]:
        if part not in node or not isinstance(node[part], dict):
            if not create:
                return None, parts[-1]
            node[part] = {}
        node = node[part]
    return node, parts[-1]


def _get(doc: dict, path: str, default=None):
    node, leaf = _parent(doc, path, create=False)
    if node is None:
        return default
    return node.get(leaf, default)


def apply_update(doc: dict, update: dict, inserting: bool = False) -> dict:
    """A new document: `doc` with `update` applied (`inserting`: `$setOnInsert` applies)."""
    if not is_operator_update(update):
        out = copy.deepcopy(update)
        if "_id" in doc:
            if "_id" in out and out["_id"] != doc["_id"]:
                raise QueryError("a replacement cannot change _id")
            out["_id"] = doc["_id"]
        return out
    out = copy.deepcopy(doc)
    for op, fields in update.items():
        if op not in UPDATE_OPS:
            raise QueryError(f"update operator {op} is not supported by the embedded store "
                             f"(supported: {', '.join(UPDATE_OPS)})")
        if not isinstance(fields, dict):
            raise QueryError(f"{op} needs a document of fields")
        if op == "$setOnInsert" and not inserting:
            continue
        for path, value in fields.items():
            if path == "_id" and op != "$setOnInsert" and "_id" in out and value != out["_id"]:
                raise QueryError("an update cannot change _id")
            if op == "$unset":
                node, leaf = _parent(out, path, create=False)
                if node is not None:
                    node.pop(leaf, None)
                continue
            node, leaf = _parent(out, path, create=True)
            if op in ("$set", "$setOnInsert"):
                node[leaf] = copy.deepcopy(value)
            elif op == "$inc":
                current = node.get(leaf, 0)
                if not isinstance(current, Number) or not isinstance(value, Number):
                    raise QueryError(f"$inc on {path!r} needs numbers")
                node[leaf] = current + value
            elif op in ("$min", "$max"):
                if leaf not in node:
                    node[leaf] = value
                else:
                    current = node[leaf]
                    try:
                        better = value < current if op == "$min" else value > current
                    except TypeError:
                        raise QueryError(f"{op} on {path!r}: cannot compare {value!r} with {current!r}") from None
                    if better:
                        node[leaf] = value
            elif op == "$push":
                current = node.setdefault(leaf, [])
                if not isinstance(current, list):
                    raise QueryError(f"$push on {path!r}: the field is not an array")
                if isinstance(value, dict) and "$each" in value:
                    current.extend(copy.deepcopy(value["$each"]))
                else:
                    current.append(copy.deepcopy(value))
    return out


def upsert_seed(filt: dict, update: dict) -> dict:
    """The document an upsert starts from: the filter's equality fields (dotted paths expanded)."""
    seed: dict = {}
    for path, value in equality_fields(filt).items():
        node, leaf = _parent(seed, path, create=True)
        node[leaf] = value
    return seed
