"""The one document → frame adapter: `options_data` documents of one snapshot as a typed chain frame.

Every step, job and viewer page that needs a chain reads it through `qortcli.store.read` (which calls
`chain_frame`), so there is one column vocabulary. Columns (units in the names; NaN where the source
has no value):

=====================  ===========================================================================
instrument             Deribit name, e.g. BTC-27MAR26-90000-C
currency               BTC, ETH
option_type / is_call  "call" | "put" / bool
strike_usd             strike, USD
expiry                 datetime64[ns, UTC] (08:00 UTC);  expiry_code  27MAR26
t_years                years from the snapshot time to expiry on the frame's basis (attrs["basis"])
forward_usd            the row's forward (Deribit underlying_price: each row is stamped separately)
expiry_forward_usd     the expiry's forward: median of its rows' forward_usd
forward_index          the forward's source (BTC-27MAR26 future or SYN.BTC-3APR26 synthetic)
index_usd              spot index, USD
mark_coin, bid_coin, ask_coin, mid_coin   premiums in coin per option
mark_iv                Deribit's mark IV as a fraction (0.52)
open_interest_coin     open interest in contracts (1 contract = 1 coin)
volume_coin            24 h volume in contracts; volume_usd  in USD
interest_rate          as sent (Deribit prices with 0)
delta_deribit, gamma_deribit, vega_deribit, theta_deribit, rho_deribit
                       Deribit's published Black-76 USD greeks (when the source has them)
--- written by `price` (NaN / False when the snapshot is not priced):
priced                 bool: the row carries model fields
iv_mark, iv_bid, iv_ask    implied vols solved from the mark/bid/ask coin prices (fractions)
iv_flag                "" or why the row's mark IV is unusable (missing_vol, non_positive_vol, vol_above_max):
                       `model.iv_flag` once priced, else the document's own `iv_flag` from collect;
                       such rows have no model price or greeks
model_price_coin       Black-76 coin premium from mark_iv
delta, gamma, vega, theta, rho                       Black-76 forward-USD greeks (Deribit's set)
delta_coin, delta_pa, gamma_coin, vega_coin, theta_coin   greeks of the coin premium V(F)
=====================  ===========================================================================

`frame.attrs` holds `snapshot_id`, `currency`, `timestamp` (UTC datetime) and `basis`.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from qortcli.timeutils import BASES, DEFAULT_BASIS, SECONDS_PER_DAY, require_utc

#: raw field → frame column (float columns)
RAW_FLOATS = {"strike": "strike_usd", "forward": "forward_usd", "index_price": "index_usd",
              "premium_crypto": "mark_coin", "bid_crypto": "bid_coin", "ask_crypto": "ask_coin",
              "mid_crypto": "mid_coin", "implied_volatility": "mark_iv", "open_interest": "open_interest_coin",
              "volume": "volume_coin", "volume_usd": "volume_usd", "interest_rate": "interest_rate"}
PUBLISHED_GREEKS = ("delta", "gamma", "vega", "theta", "rho")
MODEL_FLOATS = ("iv_mark", "iv_bid", "iv_ask", "model_price_coin", "delta", "gamma", "vega", "theta", "rho",
                "delta_coin", "delta_pa", "gamma_coin", "vega_coin", "theta_coin")

CHAIN_COLUMNS = (("instrument", "currency", "option_type", "is_call", "strike_usd", "expiry", "expiry_code",
                  "t_years", "forward_usd", "expiry_forward_usd", "forward_index", "index_usd", "mark_coin",
                  "bid_coin", "ask_coin", "mid_coin", "mark_iv", "open_interest_coin", "volume_coin",
                  "volume_usd", "interest_rate")
                 + tuple(f"{g}_deribit" for g in PUBLISHED_GREEKS) + ("priced", "iv_flag") + MODEL_FLOATS)

_MONTHS = np.array(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])


def _floats(values) -> np.ndarray:
    """A float array from a list of maybe-None/maybe-str values (anything not a number → NaN)."""
    try:
        return np.array([np.nan if v is None else v for v in values], dtype=float)
    except (TypeError, ValueError):
        out = np.full(len(values), np.nan)
        for i, v in enumerate(values):
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                pass
        return out


def _codes(expiry: pd.Series) -> np.ndarray:
    """Deribit expiry codes (27MAR26) for a UTC datetime Series, vectorised."""
    day = expiry.dt.day.astype(str).to_numpy()
    month = _MONTHS[expiry.dt.month.to_numpy() - 1]
    year = (expiry.dt.year % 100).map("{:02d}".format).to_numpy()
    return np.char.add(np.char.add(day.astype(str), month.astype(str)), year.astype(str))


def empty_chain_frame(attrs: dict | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=float) for c in CHAIN_COLUMNS})
    frame["expiry"] = pd.Series(dtype="datetime64[ns, UTC]")
    frame.attrs.update(attrs or {})
    return frame


def chain_frame(docs: list[dict], timestamp: datetime, basis: str = DEFAULT_BASIS,
                snapshot_id: str | None = None, currency: str | None = None) -> pd.DataFrame:
    """`options_data` documents of one snapshot → the chain frame (columns above), sorted by
    expiry, strike, calls first. `timestamp` is the snapshot time (t_years is measured from it)."""
    if basis not in BASES:
        raise ValueError(f"unknown day-count basis {basis!r}; use one of {sorted(BASES)}")
    timestamp = require_utc(timestamp, "snapshot time")
    attrs = {"snapshot_id": snapshot_id, "currency": currency, "timestamp": timestamp, "basis": basis}
    if not docs:
        return empty_chain_frame(attrs)
    n = len(docs)
    cols: dict[str, object] = {
        "instrument": [d.get("symbol") for d in docs],
        "currency": [d.get("underlying") for d in docs],
        "option_type": [d.get("option_type") for d in docs],
        "forward_index": [d.get("forward_index") for d in docs],
    }
    for field, column in RAW_FLOATS.items():
        cols[column] = _floats([d.get(field) for d in docs])
    published = [d.get("greeks") if isinstance(d.get("greeks"), dict) else {} for d in docs]
    for g in PUBLISHED_GREEKS:
        cols[f"{g}_deribit"] = _floats([p.get(g) for p in published])
    models = [d.get("model") if isinstance(d.get("model"), dict) else None for d in docs]
    cols["priced"] = np.array([m is not None for m in models], dtype=bool)
    empty: dict = {}
    for name in MODEL_FLOATS:
        cols[name] = _floats([(m or empty).get(name) for m in models])
    cols["iv_flag"] = [str((m or empty).get("iv_flag") or d.get("iv_flag") or "") for m, d in zip(models, docs)]
    frame = pd.DataFrame(cols)
    frame["is_call"] = frame["option_type"].eq("call").to_numpy()
    frame["expiry"] = pd.to_datetime(pd.Series([d.get("expiry") for d in docs]), utc=True, errors="coerce")
    seconds = (frame["expiry"] - pd.Timestamp(timestamp)).dt.total_seconds().to_numpy(dtype=float)
    frame["t_years"] = seconds / (BASES[basis] * SECONDS_PER_DAY)
    frame["expiry_code"] = _codes(frame["expiry"]) if frame["expiry"].notna().all() else [
        "" if pd.isna(e) else f"{e.day}{_MONTHS[e.month - 1]}{e.year % 100:02d}" for e in frame["expiry"]]
    frame["expiry_forward_usd"] = frame.groupby("expiry")["forward_usd"].transform("median")
    frame = frame.sort_values(["expiry", "strike_usd", "is_call"], ascending=[True, True, False], kind="stable")
    frame = frame.reset_index(drop=True)[list(CHAIN_COLUMNS)]
    frame.attrs.update(attrs)
    assert len(frame) == n
    return frame
