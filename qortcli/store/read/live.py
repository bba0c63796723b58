"""Live reads: the `live_marks` document the stream keeps per currency (replaced in place, `qortcli stream`).

`live_marks(db, currency)` is one primary-key lookup; it returns a typed `LiveMarks` with the per-instrument
columns as a frame and the per-expiry table as a frame (units as written by `qortcli.steps.live_chain`:
coin marks, spot-USD marks, vols as fractions, black76 greek units), or None when the stream never ran.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import numpy as np
import pandas as pd

from qortcli.store import schema
from qortcli.timeutils import as_utc

__all__ = ["LiveMarks", "live_marks", "EXPIRY_COLUMNS"]

EXPIRY_COLUMNS = ("expiry", "expiry_code", "t_years", "forward_usd", "forward_source", "atm_iv_marks", "rr25_marks",
                  "bf25_marks", "n")


class LiveMarks(NamedTuple):
    """One currency's live marks.

    `frame`: one row per instrument (instrument, expiry, expiry_code, option_type, is_call, strike_usd,
    mark_coin, mark_usd (spot-USD), mark_iv (Deribit's, fraction), iv_mark (solved from the coin mark),
    mark_time (UTC), delta, gamma, vega, theta, rho, delta_coin, delta_pa, gamma_coin, vega_coin,
    theta_coin), sorted by expiry, strike, calls first. `expiries`: forward (USD) and smile statistics per
    expiry. `updated_at` is the write time; `marks_at` Deribit's time of the latest marks. `stream` holds
    the session status (connected, reconnects, messages, last_snapshot_id, ...).
    """

    currency: str
    updated_at: datetime
    marks_at: datetime | None
    index_usd: float | None
    index_at: datetime | None
    basis: str
    atm_iv_30d_marks: float | None
    tenor_days: float | None
    front_expiry: str | None
    rr25_front_marks: float | None
    bf25_front_marks: float | None
    expiries: pd.DataFrame
    frame: pd.DataFrame
    stream: dict


def _maybe_utc(value) -> datetime | None:
    return as_utc(value) if isinstance(value, datetime) else None


def live_marks(db, currency: str) -> LiveMarks | None:
    """The live marks of `currency` (e.g. "BTC"), or None when no stream has written any."""
    doc = db[schema.LIVE_MARKS].find_one({"_id": currency.upper()})
    if doc is None:
        return None
    expiries = pd.DataFrame(doc.get("expiries") or [], columns=list(EXPIRY_COLUMNS))
    if not expiries.empty:
        expiries["expiry"] = pd.to_datetime(expiries["expiry"], utc=True)
    for name in ("t_years", "forward_usd", "atm_iv_marks", "rr25_marks", "bf25_marks"):
        expiries[name] = pd.to_numeric(expiries[name], errors="coerce")
    columns = dict(doc.get("instruments") or {})
    frame = pd.DataFrame({k: v for k, v in columns.items() if k not in ("expiry_i", "mark_time_ms")})
    position = np.asarray(columns.get("expiry_i") or [], dtype=np.intp)
    if len(frame):
        frame.insert(1, "expiry", expiries["expiry"].to_numpy()[position])
        frame.insert(2, "expiry_code", expiries["expiry_code"].to_numpy()[position])
        frame.insert(3, "option_type", np.where(frame["is_call"].to_numpy(dtype=bool), "call", "put"))
        frame["mark_time"] = pd.to_datetime(pd.Series(columns.get("mark_time_ms"), dtype=float), unit="ms", utc=True)
        numeric = [c for c in frame.columns if c not in ("instrument", "expiry", "expiry_code", "option_type",
                                                          "is_call", "mark_time")]
        frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    return LiveMarks(currency=str(doc.get("currency") or currency.upper()), updated_at=as_utc(doc["updated_at"]),
                     marks_at=_maybe_utc(doc.get("marks_at")), index_usd=doc.get("index_usd"),
                     index_at=_maybe_utc(doc.get("index_at")), basis=str(doc.get("basis") or ""),
                     atm_iv_30d_marks=doc.get("atm_iv_30d_marks"), tenor_days=doc.get("tenor_days"),
                     front_expiry=doc.get("front_expiry"), rr25_front_marks=doc.get("rr25_front_marks"),
                     bf25_front_marks=doc.get("bf25_front_marks"), expiries=expiries, frame=frame,
                     stream=dict(doc.get("stream") or {}))
