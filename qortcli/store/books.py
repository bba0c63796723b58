"""Book writes: one `portfolio_data` document per named book (kind "book"), replaced in place.

`load_book(db, name)` returns the stored book or an empty one (revision 0); `save_book(db, name, positions,
change)` writes the new positions with one more history entry (`change` plus revision and time) through
`qortcli.store.ops.upsert_many` (the document's `_id` is `book|<name>`, so a save never duplicates).
The document (docs/CONTRACTS.md): `kind: "book"`, `book`, `portfolio_id: "book:<name>"` (unique next to the
optimiser's portfolio ids; books carry no `timestamp`, so "the newest optimiser portfolio" readers that sort
by timestamp never pick one), `positions`, `revision`, `created_at`, `updated_at`, `source`, `history`.
"""

from __future__ import annotations

from qortcli.store import ops, schema
from qortcli.store.read.books import BOOK_KIND, BookRecord, book
from qortcli.timeutils import utcnow


def load_book(db, name: str) -> BookRecord:
    """The stored book `name`, or an empty book (no positions, revision 0) when there is none."""
    found = book(db, name)
    return found if found is not None else BookRecord(name=name, positions=[], revision=0, created_at=None,
                                                      updated_at=None, history=[], source=None)


def save_book(db, name: str, positions: list[dict], change: dict, source: dict | None = None) -> BookRecord:
    """Replace book `name`'s positions with `positions` (plain dicts) and append `change` (what was done:
    action, instrument, sizes, file, ...) to its history with the new revision and time; returns the book."""
    current = load_book(db, name)
    now = utcnow()
    revision = current.revision + 1
    entry = {**change, "revision": revision, "at": now, "positions_after": len(positions)}
    doc = {"kind": BOOK_KIND, "book": name, "portfolio_id": f"book:{name}", "positions": list(positions),
           "revision": revision, "created_at": current.created_at or now, "updated_at": now,
           "source": source if source is not None else current.source, "history": [*current.history, entry]}
    ops.upsert_many(db, schema.PORTFOLIOS, [doc])
    return BookRecord.from_doc(ops.to_plain(doc))
