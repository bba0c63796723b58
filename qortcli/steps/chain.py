"""The `chain` step: one expiry of the latest complete snapshot as a board (calls | strike | puts).

Reads one chain through `qortcli.store.read` and writes nothing; the board itself is `qortcli.quant.board`.
"""

from __future__ import annotations

import math
from datetime import datetime

from qortcli.errors import UsageError
from qortcli.quant import board as board_mod
from qortcli.steps.common import check_currency, currencies_to_process, staleness
from qortcli.steps.price import parse_expiry_code
from qortcli.store import read
from qortcli.timeutils import BASES, DEFAULT_BASIS, expiry_time, require_utc


def parse_strikes(text: str | int | None) -> int | None:
    """--strikes: a positive count, or "all" (None)."""
    if text is None:
        return 10
    value = str(text).strip().lower()
    if value == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        raise UsageError(f"--strikes {text!r} is not a count of strikes or 'all'") from None
    if count < 1:
        raise UsageError(f"--strikes {text!r}: give at least 1 (or 'all')")
    return count


def parse_delta(text: str | None) -> tuple[float, float] | None:
    """--delta LO:HI with 0 <= LO <= HI <= 1 (absolute delta, so 0.25:0.75 keeps both sides' wings out)."""
    if text is None:
        return None
    parts = str(text).split(":")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--delta {text!r} is not a range LO:HI like 0.1:0.9") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or not 0.0 <= lo <= hi <= 1.0:
        raise UsageError(f"--delta {text!r}: need 0 <= LO <= HI <= 1 (absolute deltas)")
    return lo, hi


def run_chain(db, currency: str | None = None, expiry: str | None = None, strikes: str | int | None = None,
              delta: str | None = None, min_oi: float = 0.0, sort: str = "strike", basis: str = DEFAULT_BASIS,
              now: datetime | None = None) -> dict:
    """The board of one expiry (default: the one nearest 30 days) of the latest complete snapshot of
    `currency` (default: the first currency the store has). UsageError for an unknown currency, expiry,
    strike count, delta range, sort or a negative --min-oi — before anything is read.

    Returns {"currency", "snapshot_id", "timestamp", "source", "expiry", "expiry_date", "t_years", "t_days", "basis",
    "forward_usd", "index_usd", "atm_strike_usd", "expiries", "strikes_listed", "strikes_shown", "filters",
    "stale" (a note or None), "rows": [one flat dict per strike: strike_usd, itm_call, call_* and put_*]}.
    """
    count = parse_strikes(strikes)
    band = parse_delta(delta)
    if sort not in board_mod.SORTS:
        raise UsageError(f"--sort {sort!r}: use one of {', '.join(board_mod.SORTS)}")
    if not (isinstance(min_oi, (int, float)) and math.isfinite(min_oi) and min_oi >= 0):
        raise UsageError(f"--min-oi {min_oi!r}: give a number of contracts >= 0")
    wanted = parse_expiry_code(expiry) if expiry is not None else None
    cur = check_currency(db, currency) if currency else currencies_to_process(db, None)[0]
    chain = read.latest_chain(db, cur, basis)
    frame = chain.frame
    listed = board_mod.expiry_codes(frame)
    if wanted is None:
        wanted = board_mod.default_expiry(frame, BASES[basis])
    elif wanted not in listed:
        when = expiry_time(wanted)
        taken = require_utc(chain.snapshot.timestamp, "snapshot time")
        if when is not None and when <= taken:
            raise UsageError(f"expiry {wanted} expired on {when:%Y-%m-%d} 08:00 UTC, before the {cur} snapshot "
                             f"({taken:%Y-%m-%d %H:%M} UTC); listed: {', '.join(listed)}")
        raise UsageError(f"no expiry {wanted} in the {cur} snapshot {chain.snapshot.snapshot_id}; "
                         f"listed: {', '.join(listed)}")
    b = board_mod.board(frame, wanted)
    shown = board_mod.select(b, strikes=count, delta=band, min_oi_coin=float(min_oi), sort=sort)
    snap = chain.snapshot
    return {"currency": cur, "snapshot_id": snap.snapshot_id, "timestamp": snap.timestamp, "source": snap.source,
            "expiry": b.expiry_code, "expiry_date": b.expiry.to_pydatetime(), "t_years": b.t_years,
            "t_days": b.t_years * BASES[basis], "basis": basis,
            "forward_usd": b.forward_usd, "index_usd": b.index_usd, "atm_strike_usd": b.atm_strike_usd,
            "expiries": listed, "strikes_listed": len(b.rows), "strikes_shown": len(shown),
            "filters": {"strikes": "all" if count is None else count, "delta": list(band) if band else None,
                        "min_oi_coin": float(min_oi), "sort": sort},
            "stale": staleness(f"{cur} snapshot {snap.snapshot_id}", snap.timestamp, "collect_deribit", now),
            "rows": shown.to_dict("records")}
