"""Typed results with read access by field name, so a result and the document stored from it read alike.

`Record` is a mixin for frozen dataclasses: ``result.delta`` and ``result["delta"]`` are the same field,
``result.get(name, default)`` and ``result.keys()`` work as on a dict, and ``to_dict()`` turns the record
(and records nested in it, in lists, tuples and dicts) into plain dicts. Values are not converted:
numpy arrays and scalars stay as they are (the store's write path converts them).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator


class Record:
    """Mapping-style read access to the fields of a (frozen) dataclass."""

    def keys(self) -> list[str]:
        """The field names, in declaration order."""
        return [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]

    def __getitem__(self, name: str) -> Any:
        if name not in self.keys():
            raise KeyError(name)
        return getattr(self, name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def get(self, name: str, default: Any = None) -> Any:
        """The field `name`, or `default` when the record has no such field."""
        return getattr(self, name) if name in self.keys() else default

    def to_dict(self) -> dict:
        """The record as a dict (nested records too); values are not converted."""
        return {name: plain_records(getattr(self, name)) for name in self.keys()}


def plain_records(value: Any) -> Any:
    """`value` with every `Record` inside it (lists, tuples, dicts) turned into a dict (values and units unchanged)."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: plain_records(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_records(v) for v in value]
    return value
