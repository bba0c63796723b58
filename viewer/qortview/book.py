"""The Book page's data: what `qortcli risk` stored for a book, read through `qortcli.store.read` only.

`book_page(db, book, currency)` → a dict of plain values (no Reflex): the books and currencies to choose
from, the chosen report's header, positions, totals, the account's delta, greeks by expiry, the scenario
grid (P/L coin and USD per horizon) and its worst cells, or `empty` with the command that fills it.
Nothing is recomputed here: every number is the stored `risk` document's.
"""

from __future__ import annotations

from datetime import datetime

from qortcli.store import read
from qortcli.timeutils import as_utc

DEFAULT_BOOK = "main"
EMPTY_BOOKS = "no book yet — run `qortcli book import FILE` (or `qortcli book add INSTRUMENT SIZE`), then `qortcli risk`"
EMPTY_RISK = "no risk stored for book {book} yet — run `qortcli risk --book {book}`"
POSITION_FIELDS = ("instrument", "kind", "expiry_code", "size", "size_unit", "entry_price", "price_unit", "mark_coin",
                   "model_coin", "vol", "vol_source", "value_coin", "value_usd", "pnl_coin", "pnl_usd", "delta",
                   "gamma", "vega", "theta", "delta_coin", "delta_pa", "gamma_coin", "vega_coin", "theta_coin")
EXPIRY_FIELDS = ("expiry_code", "positions", "value_coin", "pnl_coin", "pnl_usd", "delta", "gamma", "vega", "theta",
                 "delta_pa", "vega_coin", "theta_coin")


def _when(value) -> str | None:
    return f"{as_utc(value):%Y-%m-%d %H:%M} UTC" if isinstance(value, datetime) else None


def _iso(value) -> str | None:
    return as_utc(value).isoformat() if isinstance(value, datetime) else None


def book_page(db, book: str | None = None, currency: str | None = None) -> dict:
    """Everything the Book page shows for `book` (default: "main", else the first stored) and `currency`
    (default: the first with a stored report)."""
    books = read.book_names(db)
    name = book if book in books else (DEFAULT_BOOK if DEFAULT_BOOK in books else (books[0] if books else ""))
    out: dict = {"books": books, "book": name, "currencies": [], "currency": "", "has_risk": False, "empty": ""}
    if not name:
        out["empty"] = EMPTY_BOOKS
        return out
    currencies = read.risk_currencies(db, name)
    cur = currency if currency in currencies else (currencies[0] if currencies else "")
    out = {**out, "currencies": currencies, "currency": cur}
    doc = read.latest_risk(db, name, cur) if cur else None
    if doc is None:
        out["empty"] = EMPTY_RISK.format(book=name)
        return out
    grid = doc["grid"]
    surface = doc.get("surface") or {}
    report = dict(
        has_risk=True, snapshot_id=doc["snapshot_id"], timestamp=_when(doc.get("timestamp")),
        computed_at=_when(doc.get("computed_at")), timestamp_iso=_iso(doc.get("timestamp")),
        computed_at_iso=_iso(doc.get("computed_at")), book_revision=doc.get("book_revision"), basis=doc.get("basis"),
        index_usd=doc.get("index_usd"), surface_snapshot_id=surface.get("snapshot_id"),
        positions=[{k: p.get(k) for k in POSITION_FIELDS} for p in doc.get("positions", [])],
        totals=dict(doc.get("totals") or {}), account=dict(doc.get("account") or {}),
        by_expiry=[{k: e.get(k) for k in EXPIRY_FIELDS} for e in doc.get("by_expiry", [])],
        grid={"spot_moves": list(grid["spot_moves"]), "vol_shifts": list(grid["vol_shifts"]),
              "horizons_days": list(grid["horizons_days"]), "spot_usd": list(grid["spot_usd"]),
              "pnl_coin": grid["pnl_coin"], "pnl_usd": grid["pnl_usd"], "value_change_usd": grid["value_change_usd"]},
        worst={k: dict(v) for k, v in (doc.get("worst") or {}).items()},
        notes=list(doc.get("notes") or []), method=dict(doc.get("method") or {}))
    return {**out, **report}
