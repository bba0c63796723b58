"""Deribit option chains as plain records: parsing of book-summary rows and whole-chain CSVs, and the
live public JSON-RPC client.

No store access here: everything returns `OptionRecord`s (units in the field names: `_coin` premiums
in the underlying coin, `strike_usd`/`forward_usd`/`index_price_usd` in USD, vols as fractions).

One parsing path serves every source: book-summary rows (from a recorded file or from the live API)
go through `records_from_book_summary`; the January 2026 whole-chain CSVs through `records_from_chain_csv`,
which applies the same row rules (malformed name, expired, missing mark → skipped and counted).
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from qortcli.errors import StepError
from qortcli.timeutils import parse_instrument

log = logging.getLogger(__name__)

#: Deribit's JSON-RPC error code for "too_many_requests" (sent with HTTP 429 or inside a 200/400 body).
TOO_MANY_REQUESTS = 10028

#: Why rows get skipped (the keys of `ParsedChain.skipped`).
SKIP_MALFORMED = "malformed_name"
SKIP_UNKNOWN = "unknown_instrument"
SKIP_EXPIRED = "expired"
SKIP_NO_MARK = "missing_mark"
SKIP_BAD_FIELD = "bad_field"
SKIP_OTHER_CURRENCY = "other_currency"

GREEK_NAMES = ("delta", "gamma", "vega", "theta", "rho")


class DeribitError(StepError):
    """A Deribit response or file that cannot be used; the message names what was wrong."""


@dataclass(slots=True)
class OptionRecord:
    """One option of a chain at one snapshot time.

    strike_usd, forward_usd (the expiry's forward, Deribit `underlying_price`), index_price_usd (spot
    index) in USD; mark/bid/ask/mid in coin per option; mark_iv as a fraction (0.52); volume and
    open_interest in contracts (coin), volume_usd in USD; greeks are Deribit's published ones (delta,
    gamma per USD, vega/theta/rho USD per point/day) or None when the source has none.
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
    """A finite float from row[key]; None when absent/null/NaN unless `required` (then a _RowSkip)."""
    value = row.get(key)
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if required:
            raise _RowSkip(SKIP_BAD_FIELD, f"{what}: missing field {key!r}")
        return None
    if isinstance(value, bool):
        raise _RowSkip(SKIP_BAD_FIELD, f"{what}: field {key!r} is not a number: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _RowSkip(SKIP_BAD_FIELD, f"{what}: field {key!r} is not a number: {value!r}") from None
    if not math.isfinite(number):
        if required:
            raise _RowSkip(SKIP_BAD_FIELD, f"{what}: field {key!r} is not finite: {value!r}")
        return None
    return number


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


def describe_rpc_error(error: Any) -> str:
    """One line for a JSON-RPC error object: `Deribit error 10028 too_many_requests (data...)`."""
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message", "")
        data = error.get("data")
        extra = f" ({json.dumps(data, separators=(',', ':'))[:120]})" if data else ""
        return f"Deribit error {code} {message}{extra}".strip()
    return f"Deribit error {error!r:.160}"


def book_summary_time(rows: Iterable[Mapping]) -> datetime:
    """Snapshot time of a book summary: the latest `creation_timestamp` (ms) of its rows."""
    stamps = [r.get("creation_timestamp") for r in rows]
    stamps = [s for s in stamps if isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s)]
    if not stamps:
        raise DeribitError("book summary: no row has a numeric 'creation_timestamp'; cannot date the snapshot")
    return ms_to_datetime(max(stamps))


def records_from_book_summary(rows: list[Mapping], currency: str, snapshot_time: datetime | None = None,
                              instruments: Mapping[str, InstrumentSpec] | None = None,
                              index_price_usd: float | None = None, source: str = "book_summary") -> ParsedChain:
    """Book-summary rows → `OptionRecord`s of one currency.

    Terms come from `instruments` (live `get_instruments`; a row whose name is not there is skipped as
    unknown) or, without it, from the instrument name (`parse_instrument`). Spot is `index_price_usd`
    when given (live `get_index_price`), else each row's `estimated_delivery_price`. Rows with a
    malformed name, an expiry at or before the snapshot time, no mark, or a bad number are skipped and
    counted. `snapshot_time` defaults to the latest `creation_timestamp`.
    """
    currency = currency.upper()
    timestamp = snapshot_time or book_summary_time(rows)
    chain = ParsedChain(currency=currency, timestamp=timestamp, records=[], source=source)
    skips: Counter = Counter()
    examples: list[str] = []
    for i, row in enumerate(rows):
        name = row.get("instrument_name")
        what = f"row {i} ({name})" if isinstance(name, str) else f"row {i}"
        try:
            chain.records.append(_book_row(row, currency, timestamp, instruments, index_price_usd, what))
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
    iv = _number(row, "mark_iv", what=what)
    index_name = row.get("underlying_index")
    return OptionRecord(
        symbol=name, underlying=currency, strike_usd=strike, expiry=expiry, option_type=option_type,
        forward_usd=forward, forward_index=index_name if isinstance(index_name, str) else None,
        index_price_usd=spot, mark_coin=mark,
        bid_coin=_number(row, "bid_price", what=what), ask_coin=_number(row, "ask_price", what=what),
        mid_coin=_number(row, "mid_price", what=what), mark_iv=None if iv is None else iv / 100.0,
        volume=_number(row, "volume", what=what), volume_usd=_number(row, "volume_usd", what=what),
        open_interest=_number(row, "open_interest", what=what),
        interest_rate=_number(row, "interest_rate", what=what), greeks=None)


def load_json_file(path: Path | str) -> Any:
    """Parse a JSON file; a missing, truncated or malformed file is a DeribitError naming it."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DeribitError(f"file not found: {path}") from None
    except OSError as exc:
        raise DeribitError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeribitError(f"{path.name}: malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def chains_from_book_summary_file(path: Path | str) -> list[ParsedChain]:
    """A recorded `get_book_summary_by_currency` response file → one chain per currency in it."""
    path = Path(path)
    rows = book_summary_rows(load_json_file(path), what=path.name)
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


def is_chain_csv(path: Path | str) -> bool:
    """Whether `path` is a whole-chain CSV (header holds the January 2026 collector's columns)."""
    try:
        with open(path, newline="") as fh:
            header = fh.readline().strip().split(",")
    except OSError:
        return False
    return all(c in header for c in CHAIN_CSV_COLUMNS)


def chains_from_chain_csv(path: Path | str) -> list[ParsedChain]:
    """A whole-chain CSV (BTC and ETH in one file) → one chain per currency.

    Snapshot time = the `timestamp` column (latest per currency, millisecond precision); forward =
    `underlying`, forward index = `underlying_name`, spot = each row's `index_price`, IV already a
    fraction, greeks = the file's published `delta`/`vega` (gamma/theta/rho None: not in the file).
    Strike/expiry/type come from the instrument name, as for book summaries.
    """
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"instrument_name": str, "currency": str, "underlying_name": str})
    except FileNotFoundError:
        raise DeribitError(f"file not found: {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DeribitError(f"{path.name}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in CHAIN_CSV_COLUMNS if c not in frame.columns]
    if missing:
        raise DeribitError(f"{path.name}: missing column(s) {', '.join(missing)}")
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
    for i, row in enumerate(rows):
        what = f"row {i} ({row.get('instrument_name')})"
        try:
            strike, expiry, option_type = _terms(row.get("instrument_name"), currency, None, what)
            if expiry <= timestamp:
                raise _RowSkip(SKIP_EXPIRED, f"{what}: expired at {expiry:%Y-%m-%d %H:%M} UTC")
            mark = _number(row, "mark_price", what=what)
            if mark is None:
                raise _RowSkip(SKIP_NO_MARK, f"{what}: no mark_price")
            greeks = {g: _number(row, g, what=what) for g in GREEK_NAMES}
            index_name = row.get("underlying_name")
            chain.records.append(OptionRecord(
                symbol=row["instrument_name"], underlying=currency, strike_usd=strike, expiry=expiry,
                option_type=option_type, forward_usd=_number(row, "underlying", required=True, what=what),
                forward_index=index_name if isinstance(index_name, str) else None,
                index_price_usd=_number(row, "index_price", required=True, what=what), mark_coin=mark,
                bid_coin=_number(row, "bid_price", what=what), ask_coin=_number(row, "ask_price", what=what),
                mid_coin=_number(row, "mid_price", what=what),
                mark_iv=_number(row, "implied_volatility", what=what),
                volume=_number(row, "volume", what=what), volume_usd=_number(row, "volume_usd", what=what),
                open_interest=_number(row, "open_interest", what=what), interest_rate=None,
                greeks=greeks if any(v is not None for v in greeks.values()) else None))
        except _RowSkip as skip:
            skips[skip.reason] += 1
            examples.append(str(skip))
    return _finish(chain, skips, examples)


def chains_from_file(path: Path | str) -> list[ParsedChain]:
    """A recorded chain file → chains: `.json` = book summary, `.csv` = whole-chain snapshot CSV."""
    path = Path(path)
    if not path.exists():
        raise DeribitError(f"file not found: {path}")
    if path.suffix.lower() == ".json":
        return chains_from_book_summary_file(path)
    if path.suffix.lower() == ".csv":
        if not is_chain_csv(path):
            raise DeribitError(f"{path.name}: not a whole-chain CSV (needs columns {', '.join(CHAIN_CSV_COLUMNS)})")
        return chains_from_chain_csv(path)
    raise DeribitError(f"{path.name}: unknown chain file type (expected .json book summary or .csv chain)")


# --------------------------------------------------------------------------- live client

class DeribitClient:
    """The public Deribit JSON-RPC API over HTTPS GET (requests Session with urllib3 `Retry`).

    HTTP 429/500/502/503/504 are retried by urllib3 with exponential backoff and jitter, honouring
    `Retry-After`; Deribit's error 10028 (too_many_requests) in a JSON-RPC body is retried the same way
    (the same `Retry` object computes the backoff). `timeout` = (connect, read) seconds.
    """

    def __init__(self, base_url: str | None = None, timeout: tuple[float, float] = (5.0, 20.0), retries: int = 4,
                 backoff_factor: float = 0.5, backoff_jitter: float = 0.25, backoff_max: float = 30.0,
                 session=None, sleep: Callable[[float], None] | None = None):
        import time

        from qortcli.config import get_settings

        self.base_url = (base_url or get_settings().deribit_url).rstrip("/")
        self.timeout = timeout
        self.retry = self._make_retry(retries, backoff_factor, backoff_jitter, backoff_max)
        self.session = session or self._make_session(self.retry)
        self.sleep = sleep or time.sleep
        self.calls: Counter = Counter()   # requests made per method (attempts seen by the app layer)
        self.rate_limited = 0              # 10028 replies retried

    @staticmethod
    def _make_retry(retries, backoff_factor, backoff_jitter, backoff_max):
        from urllib3.util.retry import Retry

        return Retry(total=retries, connect=retries, read=retries, status=retries, other=0,
                     status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset({"GET"}),
                     backoff_factor=backoff_factor, backoff_jitter=backoff_jitter, backoff_max=backoff_max,
                     respect_retry_after_header=True, raise_on_status=True)

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

    def call(self, method: str, **params) -> Any:
        """GET `{base}/{method}?params` and return the JSON-RPC `result`; errors are one-line DeribitErrors."""
        import requests

        url = f"{self.base_url}/{method}"
        query = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items() if v is not None}
        retry = self.retry
        while True:
            self.calls[method] += 1
            try:
                response = self.session.get(url, params=query, timeout=self.timeout)
            except requests.exceptions.RetryError as exc:
                raise DeribitError(f"{method}: gave up after {self.retry.total} retries ({_reason(exc)})") from None
            except requests.exceptions.Timeout:
                raise DeribitError(f"{method}: timed out after {self.timeout[1]:g} s ({self.base_url})") from None
            except requests.exceptions.ConnectionError as exc:
                if "timed out" in str(exc).lower():
                    raise DeribitError(f"{method}: timed out after {self.timeout[1]:g} s, {self.retry.total} "
                                       f"retries ({self.base_url})") from None
                raise DeribitError(f"{method}: cannot connect to {self.base_url} ({_reason(exc)})") from None
            except requests.exceptions.RequestException as exc:
                raise DeribitError(f"{method}: request failed ({_reason(exc)})") from None
            payload = self._decode(method, response)
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
                    wait = max(wait, float(retry_after))
                log.info("%s: Deribit 10028 too_many_requests, retrying in %.2f s", method, wait)
                self.sleep(wait)
                continue
            if error is not None:
                raise DeribitError(f"{method}: {describe_rpc_error(error)}")
            if response.status_code >= 400:
                raise DeribitError(f"{method}: HTTP {response.status_code} from {self.base_url}")
            if not isinstance(payload, dict) or "result" not in payload:
                raise DeribitError(f"{method}: response has no 'result' field")
            return payload["result"]

    def _decode(self, method: str, response) -> Any:
        try:
            return response.json()
        except ValueError:
            body = response.text
            if response.status_code >= 400:
                raise DeribitError(f"{method}: HTTP {response.status_code} from {self.base_url}") from None
            kind = "empty" if not body.strip() else "truncated or malformed JSON"
            raise DeribitError(f"{method}: {kind} response body (HTTP {response.status_code}, {len(body)} bytes)") from None

    # The three calls a chain needs.
    def get_instruments(self, currency: str) -> dict[str, InstrumentSpec]:
        """Live, unexpired options of `currency` keyed by name (strike USD, expiry from expiration_timestamp)."""
        result = self.call("public/get_instruments", currency=currency.upper(), kind="option", expired=False)
        if not isinstance(result, list):
            raise DeribitError(f"public/get_instruments: expected a list, got {type(result).__name__}")
        specs: dict[str, InstrumentSpec] = {}
        for i, row in enumerate(result):
            if not isinstance(row, dict):
                raise DeribitError(f"public/get_instruments: row {i} is not an object")
            missing = [k for k in ("instrument_name", "strike", "expiration_timestamp", "option_type") if row.get(k) is None]
            if missing:
                raise DeribitError(f"public/get_instruments: row {i} ({row.get('instrument_name')}) lacks {', '.join(missing)}")
            specs[row["instrument_name"]] = InstrumentSpec(
                name=row["instrument_name"], strike_usd=float(row["strike"]),
                expiry=ms_to_datetime(row["expiration_timestamp"]), option_type=str(row["option_type"]).lower())
        return specs

    def get_book_summary(self, currency: str) -> list[dict]:
        result = self.call("public/get_book_summary_by_currency", currency=currency.upper(), kind="option")
        return book_summary_rows(result, what="public/get_book_summary_by_currency")

    def get_index_price(self, currency: str) -> float:
        """Spot index in USD (`{cur}_usd`)."""
        result = self.call("public/get_index_price", index_name=f"{currency.lower()}_usd")
        if not isinstance(result, dict) or result.get("index_price") is None:
            raise DeribitError("public/get_index_price: response lacks 'index_price'")
        try:
            return float(result["index_price"])
        except (TypeError, ValueError):
            raise DeribitError(f"public/get_index_price: index_price is not a number: {result['index_price']!r}") from None

    def fetch_chain(self, currency: str) -> ParsedChain:
        """A whole chain in three calls: instruments (terms), book summary (marks) and the spot index."""
        instruments = self.get_instruments(currency)
        rows = self.get_book_summary(currency)
        if not rows:
            raise DeribitError(f"public/get_book_summary_by_currency: no {currency.upper()} options returned")
        spot = self.get_index_price(currency)
        return records_from_book_summary(rows, currency, instruments=instruments, index_price_usd=spot,
                                         source="deribit-live")


def _reason(exc: Exception) -> str:
    text = str(getattr(exc, "args", [exc])[0] if getattr(exc, "args", None) else exc)
    reason = getattr(getattr(exc, "args", [None])[0], "reason", None)
    if reason is not None:
        text = str(reason)
    return text.splitlines()[0][:160] if text else type(exc).__name__

