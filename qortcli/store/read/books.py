"""Book reads: a trader's named books (in `portfolio_data`, kind "book"), the stored `risk` documents of a
book and the stored strategy suggestions whose legs a book can take.

`book(db, name)` → `BookRecord` (or None), `book_names(db)`, `latest_risk(db, book, currency)` → the newest
`risk` document (or None), `risk_currencies(db, book)`, `suggestion(db, id)` → one `strategy_suggestions`
document (or None). Document shapes: docs/CONTRACTS.md ("portfolio_data" books, "risk").
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from qortcli.store import schema
from qortcli.timeutils import as_utc

__all__ = ["BOOK_KIND", "BookRecord", "book_key", "book", "book_names", "latest_risk", "risk_currencies"]

BOOK_KIND = "book"


class BookRecord(NamedTuple):
    """A stored book: its positions (plain dicts, units in the field names), revision, times and history."""

    name: str
    positions: list[dict]
    revision: int
    created_at: datetime | None
    updated_at: datetime | None
    history: list[dict]
    source: dict | None          # the last imported file: {file, sha256, format}

    @classmethod
    def from_doc(cls, doc: dict) -> "BookRecord":
        def when(value):
            return as_utc(value) if isinstance(value, datetime) else None

        return cls(name=str(doc["book"]), positions=list(doc.get("positions") or []),
                   revision=int(doc.get("revision") or 0), created_at=when(doc.get("created_at")),
                   updated_at=when(doc.get("updated_at")), history=list(doc.get("history") or []),
                   source=doc.get("source"))


def book_key(name: str) -> str:
    """The `_id` of book `name` in `portfolio_data` (its natural key)."""
    return schema.natural_key(schema.PORTFOLIOS, {"kind": BOOK_KIND, "book": name})


def book(db, name: str) -> BookRecord | None:
    """The stored book `name`, or None."""
    doc = db[schema.PORTFOLIOS].find_one({"_id": book_key(name)})
    return BookRecord.from_doc(doc) if doc else None


def book_names(db) -> list[str]:
    """Names of the stored books, sorted."""
    return sorted(str(n) for n in db[schema.PORTFOLIOS].distinct("book", {"kind": BOOK_KIND}) if n)


def latest_risk(db, book: str, currency: str) -> dict | None:
    """The newest `risk` document of `book` and `currency` (latest snapshot, then latest run), or None."""
    found = list(db[schema.RISK].find({"book": book, "currency": currency.upper()})
                 .sort("timestamp", -1).limit(1))   # one document per book, currency and snapshot
    return found[0] if found else None


def risk_currencies(db, book: str) -> list[str]:
    """Currencies with a stored `risk` document for `book`, sorted."""
    return sorted(str(c) for c in db[schema.RISK].distinct("currency", {"book": book}) if c)

