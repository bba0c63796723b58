"""Time to expiry in years and Deribit instrument names.

Deribit expiries are at 08:00 UTC. Year fractions use a named day-count basis:
ACT/365 (Deribit's own: it reproduces Deribit's marks) or ACT/365.25 (the original design's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

SECONDS_PER_DAY = 86_400.0
BASES = {"ACT/365": 365.0, "ACT/365.25": 365.25}
DEFAULT_BASIS = "ACT/365"
EXPIRY_HOUR_UTC = 8

_MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
_NAME = re.compile(r"^(?P<cur>[A-Z0-9_]+)-(?P<day>\d{1,2})(?P<mon>[A-Z]{3})(?P<yy>\d{2})-(?P<strike>\d+(?:d\d+)?)-(?P<cp>[CP])$")


def require_utc(moment: datetime, what: str = "datetime") -> datetime:
    """Return `moment` converted to UTC; a naive datetime is rejected with ValueError."""
    if not isinstance(moment, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        raise ValueError(f"{what} is naive ({moment.isoformat()}); pass a timezone-aware UTC datetime")
    return moment.astimezone(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """A datetime read back from a store, as timezone-aware UTC: BSON datetimes are UTC, so a naive one
    (from a client without tz_aware) is UTC too."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def year_fraction(now: datetime, expiry: datetime, basis: str = DEFAULT_BASIS) -> float:
    """Years from `now` to `expiry` (both timezone-aware) on `basis` ("ACT/365" or "ACT/365.25").

    Negative when the expiry is past.
    """
    try:
        days_per_year = BASES[basis]
    except KeyError:
        raise ValueError(f"unknown day-count basis {basis!r}; use one of {sorted(BASES)}") from None
    seconds = (require_utc(expiry, "expiry") - require_utc(now, "now")).total_seconds()
    return seconds / (days_per_year * SECONDS_PER_DAY)


def year_fractions(now: datetime, expiries_epoch_s: np.ndarray, basis: str = DEFAULT_BASIS) -> np.ndarray:
    """Vectorised `year_fraction` for expiries given as POSIX seconds (float array), in years."""
    now_s = require_utc(now, "now").timestamp()
    return (np.asarray(expiries_epoch_s, dtype=float) - now_s) / (BASES[basis] * SECONDS_PER_DAY)


@dataclass(frozen=True)
class Instrument:
    """A parsed Deribit option name: strike in USD, expiry at 08:00 UTC."""

    name: str
    underlying: str
    expiry: datetime
    strike: float
    option_type: str  # "call" or "put"


def parse_instrument(name: str) -> Instrument:
    """Parse a Deribit option name like ``BTC-29MAR25-50000-C``; ValueError names what is wrong."""
    if not isinstance(name, str):
        raise ValueError(f"instrument name must be a string, got {name!r}")
    match = _NAME.match(name.strip())
    if not match:
        raise ValueError(f"malformed option instrument name {name!r}: expected CUR-DDMONYY-STRIKE-C|P")
    month = _MONTHS.get(match["mon"])
    if month is None:
        raise ValueError(f"malformed option instrument name {name!r}: unknown month {match['mon']!r}")
    try:
        expiry = datetime(2000 + int(match["yy"]), month, int(match["day"]), EXPIRY_HOUR_UTC, tzinfo=timezone.utc)
    except ValueError as exc:
        raise ValueError(f"malformed option instrument name {name!r}: {exc}") from None
    strike = float(match["strike"].replace("d", "."))
    return Instrument(name=name.strip(), underlying=match["cur"], expiry=expiry, strike=strike,
                      option_type="call" if match["cp"] == "C" else "put")


def expiry_code(expiry: datetime) -> str:
    """Deribit's expiry code for a date, e.g. 27MAR26."""
    expiry = require_utc(expiry, "expiry")
    return f"{expiry.day}{expiry.strftime('%b').upper()}{expiry:%y}"


def expiry_time(code: str) -> datetime | None:
    """The moment an expiry code (e.g. 27MAR26) expires, 08:00 UTC; None when `code` is not such a code."""
    try:
        return datetime.strptime(str(code), "%d%b%y").replace(hour=EXPIRY_HOUR_UTC, tzinfo=timezone.utc)
    except ValueError:
        return None


def utcnow() -> datetime:
    """The current time, timezone-aware UTC, to the millisecond (what BSON stores)."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
