"""A trader's positions as typed records: Deribit `private/get_positions` responses, a CSV, a coin holding.

No store access here. Every record says its units in its field names:

=================  ====================================================================================
kind "option"      Deribit coin-settled option (BTC-27MAR26-90000-C): `size_coin` contracts of one coin,
                   signed (+ long, − short); `entry_price_coin` the average premium paid, coin per option.
kind "future"      Deribit inverse future (BTC-27MAR26, BTC-PERPETUAL): `size_usd` USD contracts, signed
                   (Deribit's own unit: a BTC future contract is worth 10 USD, settled in coin);
                   `entry_price_usd` the average entry price of the future, USD per coin.
kind "spot"        coin held in the account (BTC 1.5): `size_coin` coin; `entry_price_usd` an optional
                   USD cost, informational only (a coin is worth one coin: its coin P/L is zero).
=================  ====================================================================================

Sources and their units (Deribit API reference, `private/get_positions`):
- options: `size` in coin (base currency), `average_price` in coin;
- futures: `size` in USD (quote currency, inverse contracts), `size_currency` the same position in coin
  at the current mark, `average_price` in USD;
- `direction` "buy" | "sell" | "zero". The sign of a position comes from `direction`; `size` may be
  signed (Deribit sends −3 for a short) or unsigned, but a negative size on a "buy" is malformed.
  Flat rows (direction "zero" or size 0) are skipped and listed.

CSV convention (one position per line, header optional: `instrument,size,avg_price_coin`):
- every `size` is in **coin**, signed: options in coin contracts, a spot holding in coin, and futures in
  coin too (the USD contracts are `size × price`: −0.5 BTC of BTC-27MAR26 at 91,500 USD is
  −45,750 USD contracts);
- the price column is the instrument's own quote unit: coin per option for options, USD per coin for
  futures (Deribit quotes inverse futures in USD), empty (or a USD cost) for a spot holding (`BTC,1.5`).
Blank lines and lines starting with `#` are ignored; repeated instruments are netted (`combine`).

Only coin-settled (inverse) BTC/ETH-style instruments are supported; linear USDC instruments
(`BTC_USDC-PERPETUAL`) and combos are rejected with the row named.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from qortcli.errors import StepError
from qortcli.timeutils import as_utc, parse_instrument

OPTION, FUTURE, SPOT = "option", "future", "spot"
KINDS = (OPTION, FUTURE, SPOT)

_CURRENCY = re.compile(r"^[A-Z][A-Z0-9]{1,9}$")
_FUTURE = re.compile(r"^(?P<cur>[A-Z][A-Z0-9]{1,9})-(?P<code>\d{1,2}[A-Z]{3}\d{2}|PERPETUAL)$")
CSV_HEADER = ("instrument", "size", "avg_price_coin")
_PRICE_HEADERS = ("avg_price_coin", "avg_price", "price")


class PositionsError(StepError):
    """A positions file or row that cannot be used; the message names the file and the row."""


@dataclass(frozen=True)
class Position:
    """One position of a book (units in the names; see the module docstring).

    Exactly one of `size_coin` (options, spot) and `size_usd` (futures) is set. `expiry` is 08:00 UTC
    (None for perpetual futures and spot), `strike_usd` and `option_type` ("call"|"put") only for options.
    `source` says where the record came from (file and row), for messages; it is not stored.
    """

    instrument: str
    kind: str
    currency: str
    size_coin: float | None = None
    size_usd: float | None = None
    entry_price_coin: float | None = None
    entry_price_usd: float | None = None
    expiry: datetime | None = None
    strike_usd: float | None = None
    option_type: str | None = None
    perpetual: bool = False
    source: str = field(default="", compare=False)

    @property
    def size(self) -> float:
        """The signed size in its own unit (`size_unit`)."""
        return float(self.size_usd if self.kind == FUTURE else self.size_coin)

    @property
    def size_unit(self) -> str:
        return "usd" if self.kind == FUTURE else "coin"

    @property
    def entry_price(self) -> float | None:
        """The entry price in its own unit (`price_unit`): coin for options, USD for futures and spot."""
        return self.entry_price_coin if self.kind == OPTION else self.entry_price_usd

    @property
    def price_unit(self) -> str:
        return "coin" if self.kind == OPTION else "usd"

    def to_doc(self) -> dict:
        """The plain dict stored in a book document (without `source`)."""
        doc = asdict(self)
        doc.pop("source")
        return doc

    @classmethod
    def from_doc(cls, doc: dict, source: str = "") -> "Position":
        """A stored position back as a record (stored datetimes normalised to UTC)."""
        known = {k: doc.get(k) for k in ("instrument", "kind", "currency", "size_coin", "size_usd",
                                         "entry_price_coin", "entry_price_usd", "expiry", "strike_usd",
                                         "option_type")}
        if known["expiry"] is not None:
            known["expiry"] = as_utc(known["expiry"])
        return cls(**known, perpetual=bool(doc.get("perpetual")), source=source)


@dataclass(frozen=True)
class Terms:
    """What an instrument name says: kind, currency, expiry (None: perpetual/spot), option terms."""

    kind: str
    currency: str
    expiry: datetime | None
    strike_usd: float | None = None
    option_type: str | None = None
    perpetual: bool = False


@dataclass(frozen=True)
class ParsedPositions:
    """The positions of one file, the flat rows skipped, and the file's identity (name, sha256)."""

    positions: tuple[Position, ...]
    skipped_flat: tuple[str, ...]
    source: str
    sha256: str
    format: str


def instrument_terms(name: str) -> Terms:
    """Kind and terms from a Deribit name: `BTC-27MAR26-90000-C` (option), `BTC-27MAR26` /
    `BTC-PERPETUAL` (inverse future), `BTC` (a coin held). ValueError says what is wrong."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("empty instrument name")
    name = name.strip()
    if "_" in name.split("-", 1)[0]:
        raise ValueError(f"{name}: linear (USDC/USDT-settled) instruments are not supported; "
                         "only coin-settled options, inverse futures and coin holdings")
    if _CURRENCY.match(name):
        return Terms(kind=SPOT, currency=name, expiry=None)
    future = _FUTURE.match(name)
    if future:
        if future["code"] == "PERPETUAL":
            return Terms(kind=FUTURE, currency=future["cur"], expiry=None, perpetual=True)
        # the expiry code is read by the one Deribit name parser (an option name on the same code)
        try:
            expiry = parse_instrument(f"{future['cur']}-{future['code']}-1-C").expiry
        except ValueError as exc:
            raise ValueError(f"malformed future name {name!r}: {str(exc).rsplit(': ', 1)[-1]}") from None
        return Terms(kind=FUTURE, currency=future["cur"], expiry=expiry)
    if name.count("-") == 3:
        parsed = parse_instrument(name)
        return Terms(kind=OPTION, currency=parsed.underlying, expiry=parsed.expiry, strike_usd=parsed.strike,
                     option_type=parsed.option_type)
    raise ValueError(f"{name!r} is not an option (CUR-DDMONYY-STRIKE-C|P), a future (CUR-DDMONYY, CUR-PERPETUAL) "
                     "or a coin (BTC)")


def make_position(instrument: str, size: float, price: float | None, source: str = "",
                  future_size_unit: str = "usd") -> Position:
    """A position from a name, a signed size and a price in the instrument's own units.

    `size`: options and spot in coin; futures in USD contracts (`future_size_unit="usd"`, Deribit's) or in
    coin (`"coin"`, the CSV convention: converted to USD contracts at `price`). `price`: coin per option,
    USD per coin for futures, optional USD cost for spot. ValueError says what is wrong.
    """
    terms = instrument_terms(instrument)
    size = _finite(size, "size")
    if size == 0:
        raise ValueError("size is zero (a flat position)")
    price = None if price is None else _finite(price, "price")
    name = instrument.strip()
    if terms.kind == OPTION:
        if price is None or price < 0:
            raise ValueError(f"{name}: an option needs its entry premium in coin (≥ 0), got {price}")
        return Position(name, OPTION, terms.currency, size_coin=size, entry_price_coin=price, expiry=terms.expiry,
                        strike_usd=terms.strike_usd, option_type=terms.option_type, source=source)
    if terms.kind == FUTURE:
        if price is None or price <= 0:
            raise ValueError(f"{name}: a future needs its entry price in USD (> 0), got {price}")
        if future_size_unit not in ("usd", "coin"):
            raise ValueError(f"future_size_unit must be 'usd' or 'coin', got {future_size_unit!r}")
        size_usd = size * price if future_size_unit == "coin" else size
        return Position(name, FUTURE, terms.currency, size_usd=size_usd, entry_price_usd=price, expiry=terms.expiry,
                        perpetual=terms.perpetual, source=source)
    if price is not None and price < 0:
        raise ValueError(f"{name}: a spot holding's USD cost must be ≥ 0, got {price}")
    return Position(name, SPOT, terms.currency, size_coin=size, entry_price_usd=price, source=source)


def combine(held: Position, added: Position) -> tuple[Position | None, float]:
    """Net `added` into `held` (same instrument): (the resulting position or None when flat, realised P/L coin).

    Increasing a position averages the entry: options and spot by size (coin per option); inverse futures
    harmonically, as Deribit does (N / F_avg = Σ Nᵢ / Fᵢ, since a USD contract is worth N/F coin).
    Reducing keeps the entry and realises, per closed contract, (exit − entry) coin for an option and
    N (1/F_entry − 1/F_exit) coin for a future; crossing through zero opens the rest at the new price.
    """
    if held.instrument != added.instrument:
        raise ValueError(f"cannot combine {held.instrument} with {added.instrument}")
    a, b = held.size, added.size
    pa, pb = held.entry_price, added.entry_price
    total = a + b
    realised = 0.0
    if a * b < 0 and pa is not None and pb is not None:
        closed = math.copysign(min(abs(a), abs(b)), a)
        if held.kind == OPTION:
            realised = closed * (pb - pa)
        elif held.kind == FUTURE:
            realised = closed * (1.0 / pa - 1.0 / pb)
    if math.isclose(total, 0.0, abs_tol=1e-12 * max(abs(a), abs(b), 1.0)):
        return None, realised
    if a * b > 0:                                       # adding to the position: average entry
        if pa is None or pb is None:
            price = pa if pb is None else pb if pa is None else None
        elif held.kind == FUTURE:
            price = total / (a / pa + b / pb)
        else:
            price = (a * pa + b * pb) / total
    elif a * total > 0:                                 # reduced, same side: entry unchanged
        price = pa
    else:                                               # flipped: the remainder opened at the new price
        price = pb
    if held.kind == FUTURE:
        merged = replace(held, size_usd=total, entry_price_usd=price)
    elif held.kind == OPTION:
        merged = replace(held, size_coin=total, entry_price_coin=price)
    else:
        merged = replace(held, size_coin=total, entry_price_usd=price)
    return merged, realised


def net_positions(positions: Iterable[Position]) -> list[Position]:
    """Positions with repeated instruments netted (`combine`), first-seen order, flat ones dropped."""
    out: dict[str, Position | None] = {}
    for p in positions:
        held = out.get(p.instrument)
        out[p.instrument] = p if held is None else combine(held, p)[0]
    return [p for p in out.values() if p is not None]


# ------------------------------------------------------------------------------------- get_positions

def get_positions_rows(payload: Any, what: str) -> list[dict]:
    """The `result` list of a `private/get_positions` response (the JSON-RPC envelope or the bare list)."""
    if isinstance(payload, dict):
        if payload.get("error") is not None:
            error = payload["error"]
            detail = (f"{error.get('code')} {error.get('message', '')}".strip() if isinstance(error, dict)
                      else repr(error)[:120])
            raise PositionsError(f"{what}: the response is a JSON-RPC error ({detail})")
        if "result" not in payload:
            raise PositionsError(f"{what}: JSON-RPC envelope has no 'result' (keys: {', '.join(sorted(payload))})")
        payload = payload["result"]
    if not isinstance(payload, list):
        raise PositionsError(f"{what}: expected a list of positions, got {type(payload).__name__}")
    return payload


def positions_from_get_positions(payload: Any, what: str = "get_positions") -> tuple[list[Position], list[str]]:
    """(positions, flat rows skipped) of a recorded `private/get_positions` response; PositionsError names
    the first malformed row (`what` result[i] (instrument): why)."""
    positions, flat = [], []
    for i, row in enumerate(get_positions_rows(payload, what)):
        label = f"{what} result[{i}]"
        if not isinstance(row, dict):
            raise PositionsError(f"{label}: not an object: {row!r:.80}")
        name = row.get("instrument_name")
        if isinstance(name, str):
            label += f" ({name})"
        try:
            position = _deribit_row(row, label)
        except ValueError as exc:
            raise PositionsError(f"{label}: {exc}") from None
        if position is None:
            flat.append(label)
        else:
            positions.append(position)
    return positions, flat


def _deribit_row(row: dict, label: str) -> Position | None:
    name = row.get("instrument_name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("missing 'instrument_name'")
    terms = instrument_terms(name)
    kind = row.get("kind", terms.kind)
    if kind in ("future_combo", "option_combo"):
        raise ValueError(f"{kind} positions are not supported (list the legs instead)")
    if kind not in (OPTION, FUTURE) or kind != terms.kind:
        raise ValueError(f"kind {kind!r} does not fit the instrument name (a {terms.kind})")
    direction = row.get("direction")
    if direction not in ("buy", "sell", "zero"):
        raise ValueError(f"direction must be buy, sell or zero, got {direction!r}")
    size = _finite(row.get("size"), "size")
    if direction == "zero" or size == 0:
        return None
    if direction == "buy" and size < 0:
        raise ValueError(f"size {size:g} is negative on a 'buy' position")
    signed = abs(size) if direction == "buy" else -abs(size)
    price = _finite(row.get("average_price"), "average_price")
    if kind == FUTURE and row.get("size_currency") is not None:
        _finite(row.get("size_currency"), "size_currency")       # present: must be a number (coin, informational)
    return make_position(name, signed, price, source=label, future_size_unit="usd")


# ------------------------------------------------------------------------------------- CSV

def positions_from_csv(text: str, what: str = "positions.csv") -> tuple[list[Position], list[str]]:
    """(positions, flat rows skipped) of a positions CSV (convention in the module docstring); PositionsError
    names the first malformed line (`what` line N: why)."""
    positions, flat = [], []
    reader = csv.reader(io.StringIO(text))
    header_seen = False
    for line_no, fields in enumerate(reader, start=1):
        cells = [c.strip() for c in fields]
        if not cells or all(c == "" for c in cells) or cells[0].startswith("#"):
            continue
        label = f"{what} line {line_no}"
        if not header_seen and cells[0].lower() == "instrument":
            header_seen = True
            if len(cells) < 2 or cells[1].lower() != "size" or (len(cells) > 2 and cells[2].lower() not in _PRICE_HEADERS):
                raise PositionsError(f"{label}: header must be {','.join(CSV_HEADER)}, got {','.join(cells)}")
            continue
        header_seen = True
        if len(cells) > 3 and any(cells[3:]):
            raise PositionsError(f"{label}: expected instrument,size,avg_price_coin, got {len(cells)} fields")
        if len(cells) < 2 or not cells[1]:
            raise PositionsError(f"{label} ({cells[0]}): missing size")
        try:
            size = _number(cells[1], "size")
            price = _number(cells[2], "avg_price_coin") if len(cells) > 2 and cells[2] else None
            if size == 0:
                flat.append(f"{label} ({cells[0]})")
                continue
            positions.append(make_position(cells[0], size, price, source=f"{label} ({cells[0]})",
                                           future_size_unit="coin"))
        except ValueError as exc:
            raise PositionsError(f"{label} ({cells[0]}): {exc}") from None
    return positions, flat


# ------------------------------------------------------------------------------------- files

def load_positions(path: str | Path) -> ParsedPositions:
    """Positions of a file: a recorded `get_positions` JSON (envelope or bare list) or a positions CSV.

    The format is the suffix (.json / .csv), else the first character ("{" or "[" → JSON). Repeated
    instruments are netted. PositionsError names the file and row of the first problem.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PositionsError(f"positions file not found: {path}") from None
    except OSError as exc:
        raise PositionsError(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PositionsError(f"{path.name}: not UTF-8 text") from None
    digest = hashlib.sha256(raw).hexdigest()
    is_json = path.suffix.lower() == ".json" or (path.suffix.lower() != ".csv" and text.lstrip()[:1] in ("{", "["))
    if is_json:
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PositionsError(f"{path.name}: malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        positions, flat = positions_from_get_positions(payload, path.name)
        fmt = "deribit_get_positions"
    else:
        positions, flat = positions_from_csv(text, path.name)
        fmt = "csv"
    return ParsedPositions(positions=tuple(net_positions(positions)), skipped_flat=tuple(flat), source=path.name,
                           sha256=digest, format=fmt)


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return number


def _number(text: str, what: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    return _finite(number, what)
