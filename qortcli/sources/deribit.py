"""Deribit option chains as plain records: parsing of book-summary rows and whole-chain CSVs, and the
live public JSON-RPC client.

No store access here: everything returns `OptionRecord`s (units in the field names: `_coin` premiums
in the underlying coin, `strike_usd`/`forward_usd`/`index_price_usd` in USD, vols as fractions).

One parsing path serves every source: book-summary rows (from a recorded file or from the live API)
go through `records_from_book_summary`; the January 2026 whole-chain CSVs through `records_from_chain_csv`.
Every row is validated before it becomes a record; a row that fails is skipped and counted with its
reason (`ParsedChain.skipped`), never stored:
  malformed_name, other_currency, unknown_instrument, bad_instrument (get_instruments sent unusable
  terms: strike, expiry or type not matching the name), expired, missing_mark, bad_field (a missing or
  non-numeric value where a number belongs), bad_strike (≤ 0), bad_forward / bad_index (not positive
  and finite), mark_out_of_bounds (mark < 0, a call above 1 coin, a put above K/F coin), duplicate (a
  second row of the same instrument: the first is kept).
A row whose mark IV is unusable (missing/NaN, ≤ 0, or above 10 = 1000 %) is kept — its marks are data —
with `mark_iv` None and `iv_flag` naming why (missing_vol, non_positive_vol, vol_above_max); the price
step then leaves its model fields empty.

The live client bounds every request: a total deadline (retries, Retry-After waits and a slow body
included), a capped Retry-After, a response-size cap and an instrument-count bound (settings [deribit]).
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from qortcli.errors import StepError
from qortcli.redact import redact
from qortcli.timeutils import parse_instrument

log = logging.getLogger(__name__)

#: Deribit's JSON-RPC error code for "too_many_requests" (sent with HTTP 429 or inside a 200/400 body).
TOO_MANY_REQUESTS = 10028

#: Why rows get skipped (the keys of `ParsedChain.skipped`).
SKIP_MALFORMED = "malformed_name"
SKIP_UNKNOWN = "unknown_instrument"
SKIP_BAD_INSTRUMENT = "bad_instrument"
SKIP_EXPIRED = "expired"
SKIP_NO_MARK = "missing_mark"
SKIP_BAD_FIELD = "bad_field"
SKIP_OTHER_CURRENCY = "other_currency"
SKIP_BAD_STRIKE = "bad_strike"
SKIP_BAD_FORWARD = "bad_forward"
SKIP_BAD_INDEX = "bad_index"
SKIP_MARK_BOUNDS = "mark_out_of_bounds"
SKIP_DUPLICATE = "duplicate"

#: Why a kept row's mark IV is unusable (`OptionRecord.iv_flag`, stored as the document's `iv_flag`).
IV_MISSING = "missing_vol"
IV_NON_POSITIVE = "non_positive_vol"
IV_ABOVE_MAX = "vol_above_max"
#: the largest mark IV accepted, as a fraction (1000 %)
MAX_VOL = 10.0
#: slack on the no-arbitrage bounds of a coin mark (one Deribit tick, 0.0001 coin)
MARK_TOLERANCE_COIN = 1e-4

GREEK_NAMES = ("delta", "gamma", "vega", "theta", "rho")


class DeribitError(StepError):
    """A Deribit response or file that cannot be used; the message names what was wrong."""


class NotAChain(DeribitError):
    """A recorded file that is not a Deribit chain at all (e.g. a Yahoo chart JSON): skipped in folders."""


@dataclass(slots=True)
class OptionRecord:
    """One option of a chain at one snapshot time.

    strike_usd, forward_usd (the expiry's forward, Deribit `underlying_price`), index_price_usd (spot
    index) in USD; mark/bid/ask/mid in coin per option; mark_iv as a fraction (0.52), None when unusable
    (`iv_flag` says why); volume and open_interest in contracts (coin), volume_usd in USD; greeks are
    Deribit's published ones (delta, gamma per USD, vega/theta/rho USD per point/day) or None.
    """

    symbol: str
    underlying: str
    strike_usd: float
    expiry: datetime
    option_type: str
    forward_usd: float
    forward_index: str | None
    index_price_usd: float
    mark_coin: float
    bid_coin: float | None
    ask_coin: float | None
    mid_coin: float | None
    mark_iv: float | None
    volume: float | None
    volume_usd: float | None
    open_interest: float | None
    interest_rate: float | None
    greeks: dict | None = None
    iv_flag: str | None = None


@dataclass
class ParsedChain:
    """The records of one currency's chain at `timestamp`, plus what was skipped and why."""

    currency: str
    timestamp: datetime
    records: list[OptionRecord]
    skipped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def expiries(self) -> int:
        return len({r.expiry for r in self.records})

    @property
    def iv_flagged(self) -> dict[str, int]:
        """Kept rows whose mark IV is unusable, by reason."""
        return dict(Counter(r.iv_flag for r in self.records if r.iv_flag))


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """Static terms of one option from `public/get_instruments` (strike USD, expiry UTC)."""

    name: str
    strike_usd: float
    expiry: datetime
    option_type: str


class _RowSkip(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------- helpers

def _number(row: Mapping, key: str, required: bool = False, what: str = "") -> float | None:
    """A finite float from row[key]; None when absent/null/NaN unless `required` (then a _RowSkip).

    A value that is not a number (a string, a bool, a list) is always a _RowSkip naming the field.
    """
    value = row.get(key)
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if required:
            raise _RowSkip(SKIP_BAD_FIELD, f"{what}: missing field {key!r}")
        return None
    if isinstance(value, bool):
        raise _RowSkip(SKIP_BAD_FIELD, f"{what}: field {key!r} is not a number: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise _RowSkip(SKIP_BAD_FIELD, f"{what}: field {key!r} is not a number: {value!r:.40}") from None
    if not math.isfinite(number):
        if required:
            raise _RowSkip(SKIP_BAD_FIELD, f"{what}: field {key!r} is not finite: {value!r}")
        return None
    return number


def _vol(row: Mapping, key: str, scale: float, what: str) -> tuple[float | None, str | None]:
    """(mark IV as a fraction, None) or (None, why it is unusable); `scale` turns percent into a fraction
    (0.01: the value is divided by 100, as Deribit's percent becomes a fraction everywhere else)."""
    raw = row.get(key)
    if isinstance(raw, float) and not math.isfinite(raw):
        return None, IV_MISSING
    value = _number(row, key, what=what)
    if value is None:
        return None, IV_MISSING
    value = value / round(1.0 / scale) if scale != 1.0 else value
    if value <= 0:
        return None, IV_NON_POSITIVE
    if value > MAX_VOL:
        return None, IV_ABOVE_MAX
    return value, None


def _check_values(what: str, strike: float, option_type: str, forward: float, spot: float, mark: float) -> None:
    """The row rules every source shares (see the module docstring)."""
    if not (math.isfinite(strike) and strike > 0):
        raise _RowSkip(SKIP_BAD_STRIKE, f"{what}: strike {strike!r} is not positive")
    if option_type not in ("call", "put"):
        raise _RowSkip(SKIP_BAD_INSTRUMENT, f"{what}: option type {option_type!r} is neither call nor put")
    if not forward > 0:
        raise _RowSkip(SKIP_BAD_FORWARD, f"{what}: forward {forward!r} is not positive")
    if not spot > 0:
        raise _RowSkip(SKIP_BAD_INDEX, f"{what}: index price {spot!r} is not positive")
    if mark < 0:
        raise _RowSkip(SKIP_MARK_BOUNDS, f"{what}: mark {mark!r} coin is negative")
    bound = 1.0 if option_type == "call" else strike / forward
    if mark > bound + MARK_TOLERANCE_COIN:
        side = "a call is worth at most 1 coin" if option_type == "call" else \
            f"a put is worth at most K/F = {bound:.6g} coin"
        raise _RowSkip(SKIP_MARK_BOUNDS, f"{what}: mark {mark!r} coin is above the option's bound ({side})")


def ms_to_datetime(ms: float) -> datetime:
    """Deribit millisecond epoch → timezone-aware UTC datetime (millisecond precision)."""
    return datetime.fromtimestamp(int(ms) / 1000.0, tz=timezone.utc)


def _floor_ms(moment: datetime) -> datetime:
    """Drop sub-millisecond digits (BSON datetimes hold milliseconds, so stored times round-trip)."""
    return moment.replace(microsecond=(moment.microsecond // 1000) * 1000)


def _finish(chain: ParsedChain, skips: Counter, examples: list[str]) -> ParsedChain:
    chain.skipped = dict(skips)
    chain.examples = examples[:5]
    if chain.skipped:
        log.warning("%s %s: skipped %d rows (%s); first: %s", chain.source, chain.currency, chain.skipped_total,
                    ", ".join(f"{k}={v}" for k, v in chain.skipped.items()), examples[0] if examples else "")
    return chain


def check_snapshot_time(chain: ParsedChain, now: datetime, skew_seconds: float) -> None:
    """DeribitError when the chain is dated later than `now` + `skew_seconds` (it would shadow newer chains)."""
    if chain.timestamp > now + timedelta(seconds=skew_seconds):
        ahead = (chain.timestamp - now).total_seconds()
        raise DeribitError(f"{chain.currency} chain ({chain.source}) is dated {chain.timestamp:%Y-%m-%d %H:%M:%S} UTC, "
                           f"{ahead:,.0f} s in the future (allowed clock skew {skew_seconds:g} s): refused")


# --------------------------------------------------------------------------- book summary

def book_summary_rows(payload: Any, what: str = "book summary") -> list[dict]:
    """The rows of a `public/get_book_summary_by_currency` response: the JSON-RPC envelope or its bare
    `result` list. A JSON-RPC `error` envelope or any other shape is a DeribitError naming it."""
    if isinstance(payload, dict):
        if payload.get("error") is not None:
            raise DeribitError(f"{what}: {describe_rpc_error(payload['error'])}")
        if "result" not in payload:
            raise DeribitError(f"{what}: JSON-RPC envelope has no 'result' field (keys: {', '.join(sorted(payload))})")
        payload = payload["result"]
    if not isinstance(payload, list):
        raise DeribitError(f"{what}: expected a list of book-summary rows, got {type(payload).__name__}")
    bad = next((i for i, row in enumerate(payload) if not isinstance(row, dict)), None)
    if bad is not None:
        raise DeribitError(f"{what}: row {bad} is not an object: {payload[bad]!r:.80}")
    return payload


def looks_like_book_summary(payload: Any) -> bool:
    """Whether a parsed JSON document is (meant to be) a Deribit JSON-RPC response or book-summary rows."""
    if isinstance(payload, dict):
        return "jsonrpc" in payload or "result" in payload or ("error" in payload and "usIn" in payload)
    if isinstance(payload, list):
        return not payload or any(isinstance(r, dict) and "instrument_name" in r for r in payload[:50])
    return False


def describe_rpc_error(error: Any) -> str:
    """One line for a JSON-RPC error object: `Deribit error 10028 too_many_requests (data...)`."""
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message", "")
        data = error.get("data")
        extra = f" ({json.dumps(data, separators=(',', ':'), default=str)[:120]})" if data else ""
        return f"Deribit error {code} {message}{extra}".strip()
    return f"Deribit error {error!r:.160}"


def book_summary_time(rows: Iterable[Mapping]) -> datetime:
    """Snapshot time of a book summary: the latest `creation_timestamp` (ms) of its rows."""
    stamps = [r.get("creation_timestamp") for r in rows]
    stamps = [s for s in stamps if isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s)]
    if not stamps:
        raise DeribitError("book summary: no row has a numeric 'creation_timestamp'; cannot date the snapshot")
    try:
        return ms_to_datetime(max(stamps))
    except (OverflowError, OSError, ValueError):
        raise DeribitError(f"book summary: creation_timestamp {max(stamps)!r} is not a valid time") from None


def records_from_book_summary(rows: list[Mapping], currency: str, snapshot_time: datetime | None = None,
                              instruments: Mapping[str, InstrumentSpec] | None = None,
                              index_price_usd: float | None = None, source: str = "book_summary",
                              rejected: Mapping[str, str] | None = None) -> ParsedChain:
    """Book-summary rows → validated `OptionRecord`s of one currency.

    Terms come from `instruments` (live `get_instruments`; a row whose name is not there is skipped as
    unknown, one `rejected` by `parse_instruments` as a bad instrument) or, without it, from the
    instrument name (`parse_instrument`). Spot is `index_price_usd` when given (live `get_index_price`),
    else each row's `estimated_delivery_price`. Rows are checked by the rules of the module docstring;
    a duplicate instrument keeps its first row. `snapshot_time` defaults to the latest `creation_timestamp`.
    """
    currency = currency.upper()
    timestamp = snapshot_time or book_summary_time(rows)
    chain = ParsedChain(currency=currency, timestamp=timestamp, records=[], source=source)
    skips: Counter = Counter()
    examples: list[str] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        name = row.get("instrument_name")
        what = f"row {i} ({name})" if isinstance(name, str) else f"row {i}"
        try:
            if isinstance(name, str) and name in seen:
                raise _RowSkip(SKIP_DUPLICATE, f"{what}: a second row of {name} (the first is kept)")
            if rejected and isinstance(name, str) and name in rejected:
                raise _RowSkip(SKIP_BAD_INSTRUMENT, f"{what}: {rejected[name]}")
            chain.records.append(_book_row(row, currency, timestamp, instruments, index_price_usd, what))
            seen.add(name)
        except _RowSkip as skip:
            skips[skip.reason] += 1
            examples.append(str(skip))
    return _finish(chain, skips, examples)


def _terms(name: Any, currency: str, instruments: Mapping[str, InstrumentSpec] | None, what: str):
    if not isinstance(name, str) or not name:
        raise _RowSkip(SKIP_BAD_FIELD, f"{what}: missing field 'instrument_name'")
    try:
        parsed = parse_instrument(name)
    except ValueError as exc:
        raise _RowSkip(SKIP_MALFORMED, f"{what}: {exc}") from None
    if parsed.underlying != currency:
        raise _RowSkip(SKIP_OTHER_CURRENCY, f"{what}: instrument of {parsed.underlying}, not {currency}")
    if instruments is not None:
        spec = instruments.get(name)
        if spec is None:
            raise _RowSkip(SKIP_UNKNOWN, f"{what}: unknown instrument {name!r} (not listed by public/get_instruments)")
        return spec.strike_usd, spec.expiry, spec.option_type
    return parsed.strike, parsed.expiry, parsed.option_type


def _book_row(row: Mapping, currency: str, timestamp: datetime, instruments, index_price_usd, what) -> OptionRecord:
    name = row.get("instrument_name")
    strike, expiry, option_type = _terms(name, currency, instruments, what)
    if expiry <= timestamp:
        raise _RowSkip(SKIP_EXPIRED, f"{what}: expired at {expiry:%Y-%m-%d %H:%M} UTC, snapshot {timestamp:%Y-%m-%d %H:%M:%S}")
    mark = _number(row, "mark_price", what=what)
    if mark is None:
        raise _RowSkip(SKIP_NO_MARK, f"{what}: no mark_price")
    forward = _number(row, "underlying_price", required=True, what=what)
    spot = index_price_usd if index_price_usd is not None else _number(row, "estimated_delivery_price", required=True, what=what)
    _check_values(what, strike, option_type, forward, spot, mark)
    iv, flag = _vol(row, "mark_iv", 0.01, what)
    index_name = row.get("underlying_index")
    return OptionRecord(
        symbol=name, underlying=currency, strike_usd=strike, expiry=expiry, option_type=option_type,
        forward_usd=forward, forward_index=index_name if isinstance(index_name, str) else None,
        index_price_usd=spot, mark_coin=mark,
        bid_coin=_number(row, "bid_price", what=what), ask_coin=_number(row, "ask_price", what=what),
        mid_coin=_number(row, "mid_price", what=what), mark_iv=iv, iv_flag=flag,
        volume=_number(row, "volume", what=what), volume_usd=_number(row, "volume_usd", what=what),
        open_interest=_number(row, "open_interest", what=what),
        interest_rate=_number(row, "interest_rate", what=what), greeks=None)


def _read(path: Path, max_bytes: int | None) -> bytes:
    from qortcli.sources.files import read_regular_file

    return read_regular_file(path, max_bytes)


def load_json_file(path: Path | str, max_bytes: int | None = None) -> Any:
    """Parse a JSON file (a regular file within the size cap); a missing, truncated or malformed file is
    an error naming it."""
    path = Path(path)
    data = _read(path, max_bytes)
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise DeribitError(f"{path.name}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise DeribitError(f"{path.name}: malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def chains_from_book_summary_file(path: Path | str, max_bytes: int | None = None) -> list[ParsedChain]:
    """A recorded `get_book_summary_by_currency` response file → one chain per currency in it."""
    path = Path(path)
    payload = load_json_file(path, max_bytes)
    if not looks_like_book_summary(payload):
        keys = f" (top-level keys: {', '.join(sorted(map(str, payload))[:6])})" if isinstance(payload, dict) else ""
        raise NotAChain(f"{path.name}: a JSON file that is not a Deribit book summary{keys}")
    rows = book_summary_rows(payload, what=path.name)
    if not rows:
        raise DeribitError(f"{path.name}: the book summary has no rows")
    by_currency: dict[str, list] = {}
    for row in rows:
        cur = row.get("base_currency")
        if not isinstance(cur, str):
            name = row.get("instrument_name")
            cur = name.split("-", 1)[0] if isinstance(name, str) and "-" in name else "?"
        by_currency.setdefault(cur.upper(), []).append(row)
    return [records_from_book_summary(cur_rows, cur, snapshot_time=book_summary_time(cur_rows), source="book_summary_file")
            for cur, cur_rows in sorted(by_currency.items())]


# --------------------------------------------------------------------------- whole-chain CSV (January 2026)

CHAIN_CSV_COLUMNS = ("timestamp", "instrument_name", "underlying", "underlying_name", "mark_price",
                     "implied_volatility", "currency", "index_price")


def _csv_header(data: bytes) -> list[str]:
    first = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip().lstrip("\ufeff")
    return [c.strip() for c in first.split(",")]


def chains_from_chain_csv(path: Path | str, max_bytes: int | None = None) -> list[ParsedChain]:
    """A whole-chain CSV (BTC and ETH in one file) → one chain per currency.

    Snapshot time = the `timestamp` column (latest per currency, millisecond precision); forward =
    `underlying`, forward index = `underlying_name`, spot = each row's `index_price`, IV already a
    fraction, greeks = the file's published `delta`/`vega` (gamma/theta/rho None: not in the file).
    Strike/expiry/type come from the instrument name, as for book summaries.
    """
    import pandas as pd

    path = Path(path)
    data = _read(path, max_bytes)
    header = _csv_header(data)
    if "instrument_name" not in header:
        hint = " (looks like Yahoo daily prices: use `collect prices --from-csv`)" if "Close" in header else ""
        raise NotAChain(f"{path.name}: a CSV without an instrument_name column, not a whole-chain CSV{hint}")
    missing = [c for c in CHAIN_CSV_COLUMNS if c not in header]
    if missing:
        raise DeribitError(f"{path.name}: not a whole-chain CSV, missing column(s) {', '.join(missing)}")
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype={"instrument_name": str, "currency": str, "underlying_name": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DeribitError(f"{path.name}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    stamps = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="ISO8601")
    frame = frame.assign(_ts=stamps)
    frame["currency"] = frame["currency"].fillna(frame["instrument_name"].str.split("-").str[0]).astype(str).str.upper()
    chains = []
    for currency, part in frame.groupby("currency", sort=True):
        if part["_ts"].isna().all():
            raise DeribitError(f"{path.name}: {currency} rows have no parsable 'timestamp'")
        timestamp = _floor_ms(part["_ts"].max().to_pydatetime())
        rows = part.drop(columns=["_ts"]).astype(object).where(part.drop(columns=["_ts"]).notna(), None).to_dict("records")
        chains.append(_chain_from_csv_rows(rows, str(currency), timestamp))
    return chains


def _chain_from_csv_rows(rows: list[dict], currency: str, timestamp: datetime) -> ParsedChain:
    chain = ParsedChain(currency=currency, timestamp=timestamp, records=[], source="snapshot_csv")
    skips: Counter = Counter()
    examples: list[str] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        name = row.get("instrument_name")
        what = f"row {i} ({name})"
        try:
            if isinstance(name, str) and name in seen:
                raise _RowSkip(SKIP_DUPLICATE, f"{what}: a second row of {name} (the first is kept)")
            strike, expiry, option_type = _terms(name, currency, None, what)
            if expiry <= timestamp:
                raise _RowSkip(SKIP_EXPIRED, f"{what}: expired at {expiry:%Y-%m-%d %H:%M} UTC")
            mark = _number(row, "mark_price", what=what)
            if mark is None:
                raise _RowSkip(SKIP_NO_MARK, f"{what}: no mark_price")
            forward = _number(row, "underlying", required=True, what=what)
            spot = _number(row, "index_price", required=True, what=what)
            _check_values(what, strike, option_type, forward, spot, mark)
            iv, flag = _vol(row, "implied_volatility", 1.0, what)
            greeks = {g: _number(row, g, what=what) for g in GREEK_NAMES}
            index_name = row.get("underlying_name")
            chain.records.append(OptionRecord(
                symbol=name, underlying=currency, strike_usd=strike, expiry=expiry,
                option_type=option_type, forward_usd=forward,
                forward_index=index_name if isinstance(index_name, str) else None,
                index_price_usd=spot, mark_coin=mark,
                bid_coin=_number(row, "bid_price", what=what), ask_coin=_number(row, "ask_price", what=what),
                mid_coin=_number(row, "mid_price", what=what), mark_iv=iv, iv_flag=flag,
                volume=_number(row, "volume", what=what), volume_usd=_number(row, "volume_usd", what=what),
                open_interest=_number(row, "open_interest", what=what), interest_rate=None,
                greeks=greeks if any(v is not None for v in greeks.values()) else None))
            seen.add(name)
        except _RowSkip as skip:
            skips[skip.reason] += 1
            examples.append(str(skip))
    return _finish(chain, skips, examples)


def chains_from_file(path: Path | str, max_bytes: int | None = None) -> list[ParsedChain]:
    """A recorded chain file → chains: `.json` = book summary, `.csv` = whole-chain snapshot CSV.

    Only a regular file within the size cap is read (`qortcli.sources.files`); a file of another kind
    (a Yahoo chart JSON, a price CSV) is NotAChain; a broken chain file a DeribitError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return chains_from_book_summary_file(path, max_bytes)
    if suffix == ".csv":
        return chains_from_chain_csv(path, max_bytes)
    raise NotAChain(f"{path.name}: unknown chain file type (expected .json book summary or .csv chain)")


# --------------------------------------------------------------------------- live client

def parse_instruments(result: Any, max_instruments: int | None = None) -> tuple[dict[str, InstrumentSpec], dict[str, str]]:
    """`public/get_instruments` rows → ({name: spec} of the usable ones, {name: why} of the rejected ones).

    A row is rejected when its strike is not a positive number, its expiry is not a millisecond time,
    its option type is not call/put, or its terms disagree with its name. More rows than
    `max_instruments` is a DeribitError (a runaway or hostile response)."""
    if not isinstance(result, list):
        raise DeribitError(f"public/get_instruments: expected a list, got {type(result).__name__}")
    if max_instruments is not None and len(result) > max_instruments:
        raise DeribitError(f"public/get_instruments: {len(result):,} instruments, over the sanity bound of "
                           f"{max_instruments:,} (settings [deribit] max_instruments)")
    specs: dict[str, InstrumentSpec] = {}
    rejected: dict[str, str] = {}
    for i, row in enumerate(result):
        if not isinstance(row, dict):
            continue  # no name to attach a reason to: its book row, if any, is an unknown instrument
        name = row.get("instrument_name")
        if not isinstance(name, str):
            continue
        problem = _instrument_problem(row, name)
        if problem:
            rejected[name] = f"get_instruments row {i}: {problem}"
            continue
        specs[name] = InstrumentSpec(name=name, strike_usd=float(row["strike"]),
                                     expiry=ms_to_datetime(row["expiration_timestamp"]),
                                     option_type=str(row["option_type"]).lower())
    return specs, rejected


def _instrument_problem(row: dict, name: str) -> str | None:
    missing = [k for k in ("strike", "expiration_timestamp", "option_type") if row.get(k) is None]
    if missing:
        return f"lacks {', '.join(missing)}"
    strike, stamp, kind = row["strike"], row["expiration_timestamp"], row["option_type"]
    if isinstance(strike, bool) or not isinstance(strike, (int, float)) or not math.isfinite(strike) or strike <= 0:
        return f"strike {strike!r:.40} is not a positive number"
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not math.isfinite(stamp) or stamp <= 0:
        return f"expiration_timestamp {stamp!r:.40} is not a millisecond time"
    if not isinstance(kind, str) or kind.lower() not in ("call", "put"):
        return f"option_type {kind!r:.40} is neither call nor put"
    try:
        parsed = parse_instrument(name)
        expiry = ms_to_datetime(stamp)
    except (ValueError, OverflowError, OSError) as exc:
        return str(exc)
    if abs(parsed.strike - float(strike)) > 1e-9 * max(1.0, parsed.strike):
        return f"strike {strike!r} does not match the name's {parsed.strike:g}"
    if parsed.option_type != kind.lower():
        return f"option_type {kind!r} does not match the name's {parsed.option_type}"
    if parsed.expiry.date() != expiry.date():
        return f"expiry {expiry:%Y-%m-%d} does not match the name's {parsed.expiry:%Y-%m-%d}"
    return None


def _retry_time():
    """urllib3's `time` module as the Retry code sees it (tests replace it to record the waits)."""
    import urllib3.util.retry as retry_module

    return retry_module.time


def _bounded_retry_class():
    from urllib3.util.retry import Retry

    class BoundedRetry(Retry):
        """urllib3 Retry that never sleeps past the request's deadline and is exhausted once it has passed."""

        deadline: float | None = None  # time.monotonic() by which the request must have ended

        def new(self, **kw):
            out = super().new(**kw)
            out.deadline = self.deadline
            return out

        def remaining(self) -> float:
            return math.inf if self.deadline is None else self.deadline - time.monotonic()

        def is_exhausted(self) -> bool:
            return super().is_exhausted() or self.remaining() <= 0

        def sleep_for_retry(self, response) -> bool:
            retry_after = self.get_retry_after(response)
            if retry_after:
                wait = max(0.0, min(retry_after, self.remaining()))
                if wait > 0:
                    _retry_time().sleep(wait)
                return True
            return False

        def _sleep_backoff(self) -> None:
            backoff = min(self.get_backoff_time(), max(0.0, self.remaining()))
            if backoff > 0:
                _retry_time().sleep(backoff)

    return BoundedRetry


class DeribitClient:
    """The public Deribit JSON-RPC API over HTTPS GET (requests Session with a bounded urllib3 `Retry`).

    HTTP 429/500/502/503/504 are retried by urllib3 with exponential backoff and jitter, honouring
    `Retry-After` up to `retry_after_max` seconds; Deribit's error 10028 (too_many_requests) in a JSON-RPC
    body is retried the same way. `timeout` = (connect, read) seconds per socket operation; `deadline`
    bounds each whole call (attempts, waits and the streamed body); a body over `max_bytes` is refused.
    Defaults come from settings [deribit]. Errors are one-line DeribitErrors with credentials redacted.
    """

    def __init__(self, base_url: str | None = None, timeout: tuple[float, float] | None = None,
                 retries: int | None = None, backoff_factor: float = 0.5, backoff_jitter: float = 0.25,
                 backoff_max: float = 30.0, session=None, sleep: Callable[[float], None] | None = None,
                 deadline: float | None = None, retry_after_max: float | None = None, max_bytes: int | None = None,
                 max_instruments: int | None = None):
        from qortcli.config import get_settings

        settings = get_settings()
        cfg = settings.deribit
        self.base_url = (base_url or settings.deribit_url).rstrip("/")
        self.display_url = redact(self.base_url)
        self.timeout = timeout or (cfg.connect_timeout_seconds, cfg.read_timeout_seconds)
        self.deadline = float(deadline if deadline is not None else cfg.request_deadline_seconds)
        self.retry_after_max = float(retry_after_max if retry_after_max is not None else cfg.retry_after_max_seconds)
        self.max_bytes = int(max_bytes if max_bytes is not None else cfg.max_response_mb * 1024 * 1024)
        self.max_instruments = int(max_instruments if max_instruments is not None else cfg.max_instruments)
        retries = cfg.retries if retries is None else retries
        self.retry = self._make_retry(retries, backoff_factor, backoff_jitter, min(backoff_max, self.deadline),
                                      self.retry_after_max)
        self.session = session or self._make_session(self.retry)
        self.sleep = sleep or time.sleep
        self.calls: Counter = Counter()   # requests made per method (attempts seen by the app layer)
        self.rate_limited = 0              # 10028 replies retried

    @staticmethod
    def _make_retry(retries, backoff_factor, backoff_jitter, backoff_max, retry_after_max):
        return _bounded_retry_class()(
            total=retries, connect=retries, read=retries, status=retries, other=0,
            status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset({"GET"}),
            backoff_factor=backoff_factor, backoff_jitter=backoff_jitter, backoff_max=backoff_max,
            respect_retry_after_header=True, raise_on_status=True, retry_after_max=int(math.ceil(retry_after_max)))

    @staticmethod
    def _make_session(retry):
        import requests
        from requests.adapters import HTTPAdapter

        session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = "qortcli (qortfolio)"
        return session

    def _arm(self, deadline_at: float) -> None:
        """Give this call's deadline to the adapters' Retry objects."""
        from requests.adapters import HTTPAdapter

        for adapter in self.session.adapters.values():
            if isinstance(adapter, HTTPAdapter) and hasattr(adapter.max_retries, "deadline"):
                retry = adapter.max_retries.new()
                retry.deadline = deadline_at
                adapter.max_retries = retry

    def _past(self, method: str, deadline_at: float) -> DeribitError | None:
        if time.monotonic() >= deadline_at:
            return DeribitError(f"{method}: no complete response within the {self.deadline:g} s deadline "
                                f"({self.display_url})")
        return None

    def call(self, method: str, **params) -> Any:
        """GET `{base}/{method}?params` and return the JSON-RPC `result`; errors are one-line DeribitErrors."""
        import requests

        url = f"{self.base_url}/{method}"
        query = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items() if v is not None}
        retry = self.retry
        deadline_at = time.monotonic() + self.deadline
        self._arm(deadline_at)
        while True:
            self.calls[method] += 1
            remaining = deadline_at - time.monotonic()
            timeout = (min(self.timeout[0], max(remaining, 0.01)), min(self.timeout[1], max(remaining, 0.01)))
            try:
                response = self.session.get(url, params=query, timeout=timeout, stream=True)
            except requests.exceptions.RetryError as exc:
                raise self._past(method, deadline_at) or DeribitError(
                    f"{method}: gave up after {self.retry.total} retries ({_reason(exc)})") from None
            except requests.exceptions.Timeout:
                raise self._past(method, deadline_at) or DeribitError(
                    f"{method}: timed out after {self.timeout[1]:g} s ({self.display_url})") from None
            except requests.exceptions.ConnectionError as exc:
                past = self._past(method, deadline_at)
                if past is not None:
                    raise past from None
                if "timed out" in str(exc).lower():
                    raise DeribitError(f"{method}: timed out after {self.timeout[1]:g} s, {self.retry.total} "
                                       f"retries ({self.display_url})") from None
                raise DeribitError(f"{method}: cannot connect to {self.display_url} ({_reason(exc)})") from None
            except requests.exceptions.RequestException as exc:
                raise DeribitError(f"{method}: request failed ({_reason(exc)})") from None
            try:
                body = self._body(method, response, deadline_at)
            finally:
                response.close()
            payload = self._decode(method, response, body)
            error = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(error, dict) and error.get("code") == TOO_MANY_REQUESTS:
                try:
                    retry = retry.increment(method="GET", url=url, error=None)
                except Exception:
                    raise DeribitError(f"{method}: {describe_rpc_error(error)} persisted after "
                                       f"{self.retry.total} retries") from None
                self.rate_limited += 1
                wait = retry.get_backoff_time()
                retry_after = response.headers.get("Retry-After")
                if retry_after and retry_after.strip().isdigit():
                    wait = max(wait, min(float(retry_after), self.retry_after_max))
                wait = min(wait, self.retry_after_max)
                if time.monotonic() + wait >= deadline_at:
                    raise DeribitError(f"{method}: {describe_rpc_error(error)}: the retry would end past the "
                                       f"{self.deadline:g} s deadline") from None
                log.info("%s: Deribit 10028 too_many_requests, retrying in %.2f s", method, wait)
                self.sleep(wait)
                continue
            if error is not None:
                raise DeribitError(f"{method}: {describe_rpc_error(error)}")
            if response.status_code >= 400:
                raise DeribitError(f"{method}: HTTP {response.status_code} from {self.display_url}")
            if not isinstance(payload, dict) or "result" not in payload:
                raise DeribitError(f"{method}: response has no 'result' field")
            return payload["result"]

    def _body(self, method: str, response, deadline_at: float) -> bytes:
        """The response body, read as it arrives: refused past the size cap or the deadline."""
        declared = response.headers.get("Content-Length")
        if declared and declared.strip().isdigit() and int(declared) > self.max_bytes:
            raise DeribitError(f"{method}: response of {int(declared) / 1048576:,.1f} MB is over the "
                               f"{self.max_bytes / 1048576:,.0f} MB cap (settings [deribit] max_response_mb)")
        chunks, size = [], 0
        raw = response.raw
        while True:
            past = self._past(method, deadline_at)
            if past is not None:
                raise past
            try:
                # decoded (gzip/deflate, as requests would): the cap bounds what the body inflates to
                chunk = raw.read1(65536, decode_content=True) if hasattr(raw, "read1") else \
                    raw.read(65536, decode_content=True)
            except Exception as exc:  # urllib3 read errors of several kinds (timeouts, resets, bad chunks)
                past = self._past(method, deadline_at)
                if past is not None:
                    raise past from None
                raise DeribitError(f"{method}: the response body broke off ({_reason(exc)})") from None
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.max_bytes:
                raise DeribitError(f"{method}: response body over the {self.max_bytes / 1048576:,.0f} MB cap "
                                   "(settings [deribit] max_response_mb)")
            chunks.append(chunk)

    def _decode(self, method: str, response, body: bytes) -> Any:
        try:
            return json.loads(body)
        except ValueError:
            if response.status_code >= 400:
                raise DeribitError(f"{method}: HTTP {response.status_code} from {self.display_url}") from None
            kind = "empty" if not body.strip() else "truncated or malformed JSON"
            raise DeribitError(f"{method}: {kind} response body (HTTP {response.status_code}, {len(body)} bytes)") from None

    # The three calls a chain needs.
    def get_instruments(self, currency: str) -> dict[str, InstrumentSpec]:
        """Live, unexpired options of `currency` keyed by name (strike USD, expiry from expiration_timestamp)."""
        return self.instruments(currency)[0]

    def instruments(self, currency: str) -> tuple[dict[str, InstrumentSpec], dict[str, str]]:
        """(usable specs, rejected names with why) of `public/get_instruments` (see `parse_instruments`)."""
        result = self.call("public/get_instruments", currency=currency.upper(), kind="option", expired=False)
        return parse_instruments(result, self.max_instruments)

    def get_book_summary(self, currency: str) -> list[dict]:
        result = self.call("public/get_book_summary_by_currency", currency=currency.upper(), kind="option")
        rows = book_summary_rows(result, what="public/get_book_summary_by_currency")
        if len(rows) > self.max_instruments:
            raise DeribitError(f"public/get_book_summary_by_currency: {len(rows):,} rows, over the sanity bound of "
                               f"{self.max_instruments:,} (settings [deribit] max_instruments)")
        return rows

    def get_index_price(self, currency: str) -> float:
        """Spot index in USD (`{cur}_usd`)."""
        result = self.call("public/get_index_price", index_name=f"{currency.lower()}_usd")
        if not isinstance(result, dict) or result.get("index_price") is None:
            raise DeribitError("public/get_index_price: response lacks 'index_price'")
        value = result["index_price"]
        try:
            price = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            raise DeribitError(f"public/get_index_price: index_price is not a number: {value!r:.40}") from None
        if not (math.isfinite(price) and price > 0):
            raise DeribitError(f"public/get_index_price: index_price {value!r:.40} is not a positive number")
        return price

    def fetch_chain(self, currency: str) -> ParsedChain:
        """A whole chain in three calls: instruments (terms), book summary (marks) and the spot index."""
        instruments, rejected = self.instruments(currency)
        rows = self.get_book_summary(currency)
        if not rows:
            raise DeribitError(f"public/get_book_summary_by_currency: no {currency.upper()} options returned")
        spot = self.get_index_price(currency)
        return records_from_book_summary(rows, currency, instruments=instruments, index_price_usd=spot,
                                         source="deribit-live", rejected=rejected)


def _reason(exc: Exception) -> str:
    text = str(getattr(exc, "args", [exc])[0] if getattr(exc, "args", None) else exc)
    reason = getattr(getattr(exc, "args", [None])[0], "reason", None)
    if reason is not None:
        text = str(reason)
    return redact(text.splitlines()[0][:160]) if text else type(exc).__name__
