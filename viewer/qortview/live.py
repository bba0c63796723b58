"""The live chain for the viewer: marks and greeks from `live_marks` (written by `qortcli stream`) with their age.

`live_chain(db, currency, expiry=None)` returns a plain dict (JSON-able) shaped like `queries.chain`: calls
and puts side by side around the forward for one expiry, each side with its coin and spot-USD mark, Deribit's
mark IV, the IV solved from the mark, the Black-76 greeks (delta, gamma per USD, vega USD per vol point, theta
USD per day) and the mark's age in seconds; plus the document's age (`age_s`, since it was written) and
the marks' age (`marks_age_s`, since Deribit stamped them). One primary-key read
(`qortcli.store.read.live_marks`); nothing is written.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd

from qortcli.store import read
from qortcli.timeutils import BASES, DEFAULT_BASIS

CM_DAYS = 30.0
SIDE_FIELDS = ("mark_coin", "mark_usd", "mark_iv", "iv_mark", "delta", "gamma", "vega", "theta", "delta_coin")


def _num(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _age(now: datetime, moment) -> float | None:
    """Seconds from `moment` (datetime or pandas Timestamp, UTC) to `now`; None when unknown."""
    if moment is None or pd.isna(moment):
        return None
    return max(0.0, (pd.Timestamp(now) - pd.Timestamp(moment)).total_seconds())


def _side(row, now: datetime) -> dict:
    if row is None:
        return {}
    return {"symbol": row["instrument"], "age_s": _age(now, row["mark_time"]),
            **{name: _num(row[name]) for name in SIDE_FIELDS}}


def live_chain(db, currency: str, expiry: str | None = None, window: int = 12, now: datetime | None = None) -> dict:
    """The live chain of `currency` for one expiry (Deribit code like 27MAR26; default the listed expiry
    nearest 30 days), `window` strikes each side of the forward. `available` is False (with a `hint`)
    when no stream has written live marks for the currency."""
    currency = currency.upper()
    now = now or datetime.now(timezone.utc)
    live = read.live_marks(db, currency)
    if live is None:
        return {"currency": currency, "available": False, "expiries": [], "expiry": None, "rows": [],
                "hint": f"no live marks for {currency}: run `qortcli stream --currency {currency}` "
                        "(or the worker with [schedule] chains = \"stream\")"}
    frame, expiries = live.frame, live.expiries
    base = {"currency": currency, "available": True, "updated_at": _iso(live.updated_at),
            "age_s": _age(now, live.updated_at), "marks_at": _iso(live.marks_at), "marks_age_s": _age(now, live.marks_at),
            "index_usd": _num(live.index_usd), "connected": bool(live.stream.get("connected")),
            "reconnects": live.stream.get("reconnects"), "last_snapshot_id": live.stream.get("last_snapshot_id"),
            "atm_iv_30d_marks": _num(live.atm_iv_30d_marks), "front_expiry": live.front_expiry,
            "rr25_front_marks": _num(live.rr25_front_marks), "basis": live.basis,
            "expiries": expiries["expiry_code"].tolist(), "expiry": None, "rows": []}
    if expiries.empty or frame.empty:
        return base
    codes = expiries["expiry_code"].tolist()
    days_per_year = BASES.get(live.basis, BASES[DEFAULT_BASIS])
    if expiry not in codes:
        days = expiries["t_years"].to_numpy(dtype=float) * days_per_year
        expiry = codes[int(np.argmin(np.abs(days - CM_DAYS)))]
    stats = expiries[expiries["expiry_code"] == expiry].iloc[0]
    group = frame[frame["expiry_code"] == expiry]
    forward = _num(stats["forward_usd"])
    strikes = np.unique(group["strike_usd"].to_numpy(dtype=float))
    calls = {float(r["strike_usd"]): r for _, r in group[group["is_call"]].iterrows()}
    puts = {float(r["strike_usd"]): r for _, r in group[~group["is_call"].astype(bool)].iterrows()}
    atm_i = int(np.argmin(np.abs(strikes - forward))) if forward and strikes.size else strikes.size // 2
    lo, hi = max(0, atm_i - window), min(strikes.size, atm_i + window + 1)
    rows = [{"strike": float(k), "atm": i == atm_i, "call": _side(calls.get(float(k)), now),
             "put": _side(puts.get(float(k)), now)} for i, k in enumerate(strikes) if lo <= i < hi]
    return {**base, "expiry": expiry, "expiry_date": stats["expiry"].strftime("%Y-%m-%d %H:%M UTC"),
            "days": float(stats["t_years"]) * days_per_year, "forward_usd": forward,
            "forward_source": stats["forward_source"], "atm_iv_marks": _num(stats["atm_iv_marks"]),
            "rr25_marks": _num(stats["rr25_marks"]), "bf25_marks": _num(stats["bf25_marks"]),
            "strikes_total": int(strikes.size), "rows": rows}
