"""The book steps: a named book of the trader's own positions, stored in `portfolio_data` (kind "book").

`run_book_import(db, path, book="main")` replaces the book's positions with a file's (a recorded Deribit
`private/get_positions` response or a positions CSV, `qortcli.sources.positions`): re-importing the same
file replaces, never duplicates. `run_book_add(db, instrument, size, price=None)` nets one position into the
book (size in coin, signed: options in coin contracts, spot in coin, futures in coin at the entry price,
converted to USD contracts; the price defaults to the latest mark), `run_book_add_suggestion(db, id)` adds
a stored suggestion's legs, `run_book_remove(db, instrument)` drops a position and `run_book_list(db)`
shows the book. Every instrument is checked against its currency's latest complete chain first: an unknown,
expired or malformed instrument is one clear line naming the row, and nothing is stored. Every step
records a run (`recorded_run`, step "book", args.action import|add|add_suggestion|remove|list).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qortcli.errors import StepError, UsageError
from qortcli.quant.risk import future_forwards
from qortcli.sources.positions import (FUTURE, OPTION, SPOT, Position, PositionsError, combine, instrument_terms,
                                       load_positions, make_position)
from qortcli.steps.common import day_count
from qortcli.store import read
from qortcli.store.books import load_book, save_book
from qortcli.store.read import Chain
from qortcli.store.runs import recorded_run
from qortcli.timeutils import DEFAULT_BASIS, as_utc, year_fraction

DEFAULT_BOOK = "main"
_BOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class BookSummary:
    """What a book step did: the book's positions afterwards (plain dicts), the changes, the history."""

    action: str
    book: str
    revision: int
    positions: tuple[dict, ...]
    changes: tuple[dict, ...] = ()
    skipped: tuple[str, ...] = ()
    history: tuple[dict, ...] = ()
    message: str = ""
    step: str = field(default="book")

    def to_dict(self) -> dict:
        return asdict(self)


def book_name(name: str | None) -> str:
    """A valid book name (letters, digits, `_.-`, at most 64), `main` when None; UsageError otherwise."""
    name = DEFAULT_BOOK if name is None else str(name).strip()
    if not _BOOK_NAME.match(name):
        raise UsageError(f"book name {name!r}: use letters, digits and _ . - (at most 64 characters)")
    return name


# ------------------------------------------------------------------------------------------ checks

def check_against_chain(positions: list[Position], chain: Chain, what: str = "") -> None:
    """Every position must be tradable on `chain` (its currency's latest complete snapshot): an option
    listed in it, a future not expired and listed (when the chain names its futures), a coin of that
    currency. StepError names the position's row (`Position.source`) and what is wrong."""
    snap = chain.snapshot
    frame = chain.frame
    listed = set(frame["instrument"].astype(str))
    futures = {f for f in frame["forward_index"].dropna().astype(str) if not f.startswith("SYN.")} \
        if "forward_index" in frame else set()
    when = f"{snap.timestamp:%Y-%m-%d %H:%M} UTC"
    for p in positions:
        label = p.source or what or p.instrument
        if p.currency != snap.currency:
            raise StepError(f"{label}: {p.instrument} is a {p.currency} instrument, checked against {snap.currency}")
        if p.expiry is not None and p.expiry <= snap.timestamp:
            raise StepError(f"{label}: {p.instrument} expired at {p.expiry:%Y-%m-%d %H:%M} UTC, before the latest "
                            f"{snap.currency} snapshot {snap.snapshot_id} ({when})")
        if p.kind == OPTION and p.instrument not in listed:
            raise StepError(f"{label}: unknown instrument {p.instrument} (not in the latest {snap.currency} chain "
                            f"{snap.snapshot_id})")
        if p.kind == FUTURE and not p.perpetual and futures and p.instrument not in futures:
            raise StepError(f"{label}: unknown future {p.instrument} (the latest {snap.currency} chain "
                            f"{snap.snapshot_id} lists {', '.join(sorted(futures, key=_by_expiry))} and "
                            f"{snap.currency}-PERPETUAL)")


def _by_expiry(name: str):
    try:
        return instrument_terms(name).expiry
    except ValueError:
        return None


def latest_chains_for(db, positions: list[Position], basis: str) -> dict[str, Chain]:
    """The latest complete chain of each currency in `positions` (StepError naming a row whose currency
    has no snapshot)."""
    chains: dict[str, Chain] = {}
    for p in positions:
        if p.currency in chains:
            continue
        try:
            chains[p.currency] = read.latest_chain(db, p.currency, basis)
        except StepError as exc:
            raise StepError(f"{p.source or p.instrument}: cannot check {p.instrument}: {exc}") from None
    return chains


def check_positions(db, positions: list[Position], basis: str | None = None) -> dict[str, Chain]:
    """Check every position against its currency's latest chain; returns those chains."""
    chains = latest_chains_for(db, positions, day_count(basis))
    for cur, chain in chains.items():
        check_against_chain([p for p in positions if p.currency == cur], chain)
    return chains


def mark_price(position_name: str, chain: Chain) -> float | None:
    """The latest mark in the instrument's own unit: an option's coin mark, a future's USD price (its
    options' underlying, or S for the perpetual), None for a coin."""
    terms = instrument_terms(position_name)
    frame = chain.frame
    if terms.kind == OPTION:
        row = frame.loc[frame["instrument"] == position_name, "mark_coin"]
        return float(row.iloc[0]) if len(row) and np.isfinite(row.iloc[0]) else None
    if terms.kind == FUTURE:
        spot = float(np.nanmedian(frame["index_usd"].to_numpy(dtype=float)))
        basis = frame.attrs.get("basis") or DEFAULT_BASIS
        years = np.array([np.inf if terms.expiry is None else year_fraction(chain.snapshot.timestamp, terms.expiry, basis)])
        forward, _ = future_forwards(frame, np.array([position_name]), years, np.array([terms.perpetual]), spot)
        return float(forward[0])
    return None


# ------------------------------------------------------------------------------------------ steps

def _positions(record) -> list[Position]:
    return [Position.from_doc(p, source=f"book {record.name} position {p.get('instrument')}") for p in record.positions]


def _summary(action: str, record, changes=(), skipped=(), message: str = "", history: int = 5) -> BookSummary:
    return BookSummary(action=action, book=record.name, revision=record.revision, positions=tuple(record.positions),
                       changes=tuple(changes), skipped=tuple(skipped), history=tuple(record.history[-history:]),
                       message=message)


def run_book_import(db, path: str | Path, book: str | None = None) -> BookSummary:
    """Replace book `book`'s positions with those of a file (checked against the latest chains first)."""
    name = book_name(book)
    with recorded_run(db, "book", {"action": "import", "book": name, "path": str(path)}) as run:
        parsed = load_positions(path)
        if not parsed.positions:
            raise StepError(f"{parsed.source}: no open position in the file (flat rows: {len(parsed.skipped_flat)})")
        positions = list(parsed.positions)
        check_positions(db, positions)
        current = load_book(db, name)
        docs = [p.to_doc() for p in positions]
        source = {"file": parsed.source, "sha256": parsed.sha256, "format": parsed.format}
        change = {"action": "import", **source, "positions": len(docs), "replaced": len(current.positions),
                  "unchanged": current.positions == docs and (current.source or {}).get("sha256") == parsed.sha256,
                  "previous": current.positions, "skipped_flat": list(parsed.skipped_flat)}
        record = save_book(db, name, docs, change, source=source)
        run.counts.update(positions=len(docs), replaced=len(current.positions), skipped_flat=len(parsed.skipped_flat))
    return _summary("import", record, changes=docs, skipped=parsed.skipped_flat,
                    message=f"imported {len(docs)} positions from {parsed.source} into book {name} "
                            f"(replacing {len(current.positions)})")


def _net_into(current: list[dict], added: list[Position]) -> tuple[list[dict], list[dict]]:
    """The book's positions with `added` netted in (first-seen order) and one change record per addition."""
    held = {p["instrument"]: Position.from_doc(p) for p in current}
    order = [p["instrument"] for p in current]
    changes = []
    for p in added:
        before = held.get(p.instrument)
        if before is None:
            after, realised = p, 0.0
            order.append(p.instrument)
        else:
            after, realised = combine(before, p)
        held[p.instrument] = after
        changes.append({"instrument": p.instrument, "kind": p.kind, "size": p.size, "size_unit": p.size_unit,
                        "price": p.entry_price, "price_unit": p.price_unit,
                        "before": before.to_doc() if before else None, "after": after.to_doc() if after else None,
                        "realised_pnl_coin": realised})
    positions = [held[i].to_doc() for i in dict.fromkeys(order) if held.get(i) is not None]
    return positions, changes


def run_book_add(db, instrument: str, size: float, price: float | None = None, book: str | None = None) -> BookSummary:
    """Net one position into the book: `size` signed in coin (futures: coin at `price`, converted to USD
    contracts), `price` in the instrument's own unit (coin per option, USD per coin for a future; a
    coin's optional USD cost), the latest mark when None."""
    name = book_name(book)
    args = {"action": "add", "book": name, "instrument": instrument, "size": size, "price": price}
    with recorded_run(db, "book", args) as run:
        label = f"book add {instrument}"
        try:
            terms = instrument_terms(instrument)
        except ValueError as exc:
            raise UsageError(f"{label}: {exc}") from None
        probe = Position(instrument.strip(), terms.kind, terms.currency, expiry=terms.expiry, perpetual=terms.perpetual,
                         size_coin=1.0, source=label)
        chains = check_positions(db, [probe])
        price_source = "given"
        if price is None and terms.kind != SPOT:
            price = mark_price(instrument.strip(), chains[terms.currency])
            price_source = "mark"
            if price is None:
                raise StepError(f"{label}: no mark in the latest chain; give --price")
        try:
            position = make_position(instrument, size, price, source=label, future_size_unit="coin")
        except ValueError as exc:
            raise UsageError(f"{label}: {exc}") from None
        current = load_book(db, name)
        positions, changes = _net_into(current.positions, [position])
        changes[0]["price_source"] = price_source
        record = save_book(db, name, positions, {"action": "add", **changes[0]})
        run.counts.update(positions=len(positions))
    after = changes[0]["after"]
    state = "closed" if after is None else f"now {after['size_usd'] if after['kind'] == FUTURE else after['size_coin']:g}"
    return _summary("add", record, changes=changes, message=f"book {name}: {instrument.strip()} {state}")


def suggestion_positions(doc: dict) -> list[Position]:
    """A stored suggestion's legs as positions: option legs at their entry price (coin, crossed), a coin
    holding leg ("hold") as spot. StepError names a malformed leg."""
    sid = doc.get("_id")
    legs = doc.get("legs")
    if not isinstance(legs, list) or not legs:
        raise StepError(f"suggestion {sid}: no legs stored")
    out = []
    currency = str(doc.get("currency") or "")
    for i, leg in enumerate(legs):
        label = f"suggestion {sid} leg {i}"
        if not isinstance(leg, dict):
            raise StepError(f"{label}: malformed leg {leg!r:.60}")
        try:
            if leg.get("side") == "hold" or leg.get("option_type") == "underlying":
                out.append(make_position(currency, float(leg["size"]), None, source=f"{label} (coin held)"))
                continue
            sign = leg.get("side_sign")
            sign = {"buy": 1, "sell": -1}.get(leg.get("side")) if sign is None else sign
            if sign not in (1, -1):
                raise ValueError(f"side {leg.get('side')!r} is neither buy nor sell")
            out.append(make_position(str(leg["instrument"]), sign * float(leg["size"]), float(leg["price_coin"]),
                                     source=f"{label} ({leg.get('instrument')})"))
        except (KeyError, TypeError, ValueError) as exc:
            raise StepError(f"{label}: malformed leg ({type(exc).__name__}: {exc})") from None
    return out


def run_book_add_suggestion(db, suggestion_id: str, book: str | None = None) -> BookSummary:
    """Add every leg of a stored strategy suggestion to the book (checked against the latest chain)."""
    name = book_name(book)
    with recorded_run(db, "book", {"action": "add_suggestion", "book": name, "suggestion": suggestion_id}) as run:
        doc = read.suggestion(db, suggestion_id)
        if doc is None:
            raise StepError(f"no stored suggestion {suggestion_id!r} (ids look like "
                            "BTC-20260111T211857Z|short_strangle|20260130: see `qortcli suggest --json`)")
        added = suggestion_positions(doc)
        check_positions(db, added)
        current = load_book(db, name)
        positions, changes = _net_into(current.positions, added)
        record = save_book(db, name, positions, {"action": "add_suggestion", "suggestion": suggestion_id,
                                                 "strategy": doc.get("strategy"), "legs": changes})
        run.counts.update(legs=len(added), positions=len(positions))
    return _summary("add_suggestion", record, changes=changes,
                    message=f"book {name}: added {len(added)} legs of {doc.get('strategy')} ({suggestion_id})")


def run_book_remove(db, instrument: str, book: str | None = None) -> BookSummary:
    """Drop one position from the book; StepError if the book does not hold it."""
    name = book_name(book)
    with recorded_run(db, "book", {"action": "remove", "book": name, "instrument": instrument}) as run:
        current = load_book(db, name)
        wanted = instrument.strip()
        kept = [p for p in current.positions if p.get("instrument") != wanted]
        if len(kept) == len(current.positions):
            held = ", ".join(p.get("instrument", "?") for p in current.positions) or "none"
            raise StepError(f"book {name} holds no {wanted} (positions: {held})")
        removed = [p for p in current.positions if p.get("instrument") == wanted]
        record = save_book(db, name, kept, {"action": "remove", "instrument": wanted, "removed": removed[0]})
        run.counts.update(positions=len(kept))
    return _summary("remove", record, changes=removed, message=f"book {name}: removed {wanted}")


def run_book_list(db, book: str | None = None, history: int = 10) -> BookSummary:
    """The book's positions and its last `history` changes (the book is only read; the run is recorded)."""
    name = book_name(book)
    with recorded_run(db, "book", {"action": "list", "book": name}) as run:
        record = read.book(db, name)
        if record is None:
            names = read.book_names(db)
            raise StepError(f"no book {name!r} in the store (books: {', '.join(names) or 'none'}); "
                            "create it with `qortcli book import FILE` or `qortcli book add INSTRUMENT SIZE`")
        run.counts.update(positions=len(record.positions))
    return _summary("list", record, history=history, message="" if record.positions else f"book {name} is empty")


def positions_frame(positions: list[dict | Position]) -> pd.DataFrame:
    """Stored positions as the frame `qortcli.quant.risk.value_book` takes (`POSITION_COLUMNS`)."""
    from qortcli.quant.risk import POSITION_COLUMNS

    records = [p if isinstance(p, Position) else Position.from_doc(p) for p in positions]
    frame = pd.DataFrame({
        "instrument": [p.instrument for p in records], "kind": [p.kind for p in records],
        "size_coin": [np.nan if p.size_coin is None else p.size_coin for p in records],
        "size_usd": [np.nan if p.size_usd is None else p.size_usd for p in records],
        "entry_price_coin": [np.nan if p.entry_price_coin is None else p.entry_price_coin for p in records],
        "entry_price_usd": [np.nan if p.entry_price_usd is None else p.entry_price_usd for p in records],
        "expiry": pd.to_datetime([as_utc(p.expiry) if p.expiry else pd.NaT for p in records], utc=True),
    }, columns=list(POSITION_COLUMNS))
    return frame


__all__ = ["BookSummary", "DEFAULT_BOOK", "book_name", "check_against_chain", "check_positions", "mark_price",
           "positions_frame", "run_book_add", "run_book_add_suggestion", "run_book_import", "run_book_list",
           "run_book_remove", "suggestion_positions", "PositionsError"]
