"""The price step: coin-settled Black-76 prices, greeks and implied vols for the latest snapshot(s).

``run_price(db, currency=None, check=False, basis=None, expiry=None)`` reads the latest complete options
snapshot of each currency (or of ``currency``), prices every instrument from Deribit's ``mark_iv`` on its
own forward, solves implied vols from the mark/bid/ask coin prices, and writes the ``model``
sub-document (docs/CONTRACTS.md) onto each ``options_data`` document with a narrow update
(``ops.update_fields``: the collected fields are never rewritten; re-running is idempotent). The snapshot's
documents are read once, through ``read.require_latest_snapshot`` and ``read.chain_documents``. ``basis``
defaults to settings [pricing] day_count.

A row whose mark IV is unusable (the document's ``iv_flag`` from collect, or a stored
``implied_volatility`` that is missing, ≤ 0, non-finite or above 10) gets no model price and no greeks:
``model.iv_flag`` says why (the IVs solved from its mark/bid/ask prices are still written). ``expiry``
(Deribit's code) is checked against the snapshot(s) before anything is priced: an unknown or expired one
is a UsageError, recorded as a failed run.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

import numpy as np

from qortcli.errors import UsageError
from qortcli.quant import black76, implied_vol, mark_check
from qortcli.sources.deribit import IV_ABOVE_MAX, IV_MISSING, IV_NON_POSITIVE, MAX_VOL
from qortcli.steps.common import currencies_to_process, day_count, staleness
from qortcli.store import ops, read, schema
from qortcli.store.runs import recorded_run
from qortcli.timeutils import BASES, expiry_code, expiry_time, require_utc, utcnow, year_fractions

#: the greeks written under `model` (units in qortcli.quant.black76)
MODEL_GREEKS = black76.GREEK_NAMES
ROW_FIELDS = ("instrument_name", "currency", "strike", "expiry", "expiry_code", "option_type", "forward",
              "index_price", "t_years", "mark_price", "mark_iv", "bid_price", "ask_price", "model_price_coin",
              "model_price_usd", "iv_mark", "iv_bid", "iv_ask") + MODEL_GREEKS
#: model fields computed from the mark IV (left empty on a row whose vol is flagged)
FROM_MARK_IV = ("model_price_coin", "model_price_usd") + MODEL_GREEKS
_EXPIRY_CODE = re.compile(r"^(\d{1,2})(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)(\d{2})$")


def _float_array(docs: list[dict], key: str, sub: str | None = None) -> np.ndarray:
    """A float array of one field (None/missing → NaN); `sub` reads a key of a nested dict (e.g. greeks)."""
    values = []
    for doc in docs:
        value = doc.get(key)
        if sub is not None:
            value = value.get(sub) if isinstance(value, dict) else None
        values.append(np.nan if value is None else value)
    return np.asarray(values, dtype=float)


def _epoch(moment) -> float:
    return require_utc(moment, "expiry").timestamp()


def vol_flags(docs: list[dict], mark_iv: np.ndarray) -> np.ndarray:
    """Per row: "" when the mark IV (fraction) is usable, else why not (the document's own `iv_flag` first)."""
    stored = np.array([str(d.get("iv_flag") or "") for d in docs], dtype=object)
    with np.errstate(invalid="ignore"):
        computed = np.where(~np.isfinite(mark_iv), IV_MISSING,
                            np.where(mark_iv <= 0, IV_NON_POSITIVE, np.where(mark_iv > MAX_VOL, IV_ABOVE_MAX, "")))
    return np.where(stored != "", stored, computed.astype(object))


def price_documents(docs: list[dict], timestamp: datetime, basis: str = "ACT/365") -> dict[str, np.ndarray]:
    """Model arrays for one snapshot's documents: t_years, prices, IVs (and reason codes), greeks, and the
    per-row vol flag ("" or why the mark IV is unusable: those rows get NaN prices and greeks)."""
    basis = day_count(basis)
    F = _float_array(docs, "forward")
    K = _float_array(docs, "strike")
    call = np.array([d.get("option_type") == "call" for d in docs], dtype=bool)
    rate = np.nan_to_num(_float_array(docs, "interest_rate"), nan=0.0)
    t_years = year_fractions(timestamp, np.array([_epoch(d["expiry"]) for d in docs], dtype=float), basis)
    mark_iv = _float_array(docs, "implied_volatility")
    flags = vol_flags(docs, mark_iv)
    usable_iv = np.where(flags == "", mark_iv, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = black76.greeks(F, K, t_years, usable_iv, call, rate, days_per_year=BASES[basis])
    out = {"t_years": t_years, "model_price_coin": g["price_coin"],
           "model_price_usd": g["price_coin"] * _float_array(docs, "index_price"), "iv_flag": flags,
           "greeks_reason": g.reason}
    out.update({name: g[name] for name in MODEL_GREEKS})
    for name in FROM_MARK_IV:  # never a price or a greek from a garbage vol
        out[name] = np.where(flags == "", out[name], np.nan)
    for label, key in (("mark", "premium_crypto"), ("bid", "bid_crypto"), ("ask", "ask_crypto")):
        res = implied_vol.implied_vol_coin(_float_array(docs, key), F, K, t_years, call, rate)
        out[f"iv_{label}"] = res.sigma
        out[f"iv_{label}_reason"] = res.reason
    # arrays the check needs
    out.update(F=F, K=K, call=call, rate=rate, mark_iv=mark_iv, mark=_float_array(docs, "premium_crypto"),
               delta_published=_float_array(docs, "greeks", "delta"), vega_published=_float_array(docs, "greeks", "vega"))
    return out


def _model_subdocs(model: dict[str, np.ndarray], basis: str, priced_at: datetime) -> list[dict]:
    n = model["t_years"].size
    fields = ("t_years", "model_price_coin", "model_price_usd", "iv_mark", "iv_bid", "iv_ask") + MODEL_GREEKS
    columns = {name: ops.to_plain(model[name]) for name in fields}     # NaN → None
    reasons = {f"iv_{x}_reason": [implied_vol.reason_name(c) for c in model[f"iv_{x}_reason"]]
               for x in ("mark", "bid", "ask")}
    flags = [str(f) or None for f in model["iv_flag"]]
    reasons["greeks_reason"] = [black76.greek_reason_name(c) for c in model["greeks_reason"]]
    return [{**{name: columns[name][i] for name in fields}, **{k: v[i] for k, v in reasons.items()},
             "iv_flag": flags[i], "basis": basis, "priced_at": priced_at} for i in range(n)]


def _reason_counts(codes: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(codes, return_counts=True)
    return {implied_vol.reason_name(v): int(c) for v, c in zip(values, counts) if v != implied_vol.OK}


def check_report(model: dict[str, np.ndarray], names: list[str], worst: int = 5) -> dict:
    """The accuracy report of one snapshot (JSON-able): see ``qortcli.quant.mark_check.mark_check``."""
    report = mark_check.mark_check(model["F"], model["K"], model["t_years"], model["mark_iv"], model["call"],
                                   model["mark"], model["rate"], model["delta_published"],
                                   model["vega_published"], names=np.asarray(names, dtype=object), worst=worst)
    return report.summary()


def _rows(docs: list[dict], model: dict[str, np.ndarray]) -> list[dict]:
    plain = {k: ops.to_plain(model[k]) for k in ("t_years", "model_price_coin", "model_price_usd", "iv_mark",
                                                "iv_bid", "iv_ask") + MODEL_GREEKS}
    rows = []
    for i, d in enumerate(docs):
        row = {"instrument_name": d["symbol"], "currency": d.get("underlying"), "strike": d.get("strike"),
               "expiry": d.get("expiry"), "expiry_code": expiry_code(d["expiry"]), "option_type": d.get("option_type"),
               "forward": d.get("forward"), "index_price": d.get("index_price"), "mark_price": d.get("premium_crypto"),
               "mark_iv": d.get("implied_volatility"), "bid_price": d.get("bid_crypto"), "ask_price": d.get("ask_crypto")}
        row.update({k: v[i] for k, v in plain.items()})
        row["iv_mark_reason"] = implied_vol.reason_name(model["iv_mark_reason"][i])
        row["iv_flag"] = str(model["iv_flag"][i]) or None
        rows.append(row)
    return rows


def run_price(db, currency: str | None = None, check: bool = False, basis: str | None = None,
              write: bool = True, expiry: str | None = None, now: datetime | None = None) -> dict:
    """Price the latest complete snapshot of each currency (or of `currency`) and write `model` sub-documents.

    `basis` defaults to settings [pricing] day_count. `expiry` (e.g. 27MAR26) must be listed in the
    snapshot(s) (else a UsageError before anything is written). Returns {"step", "basis", "priced",
    "snapshots": [{currency, snapshot_id, timestamp, priced, expiries, iv_failures: {reason: count},
    iv_flagged: {reason: count}, check (when `check`)}], "options": [one row per instrument], "stale":
    [notes when a snapshot is older than the collect schedule], "seconds"}.
    """
    basis = day_count(basis)
    wanted = parse_expiry_code(expiry) if expiry is not None else None
    clock = time.perf_counter()
    with recorded_run(db, "price", {"currency": currency, "check": check, "basis": basis, "expiry": expiry}) as run:
        chains = []
        for cur in currencies_to_process(db, currency):   # the raw documents: price reads no chain frame
            info = read.require_latest_snapshot(db, cur)
            docs = read.chain_documents(db, info)
            docs.sort(key=lambda d: (d["expiry"], d.get("strike") or 0.0, d.get("option_type") or ""))
            chains.append((info.currency, {"_id": info.snapshot_id, "timestamp": info.timestamp}, docs))
        if wanted is not None:
            check_expiry_listed(wanted, chains)
        snapshots, rows, stale = [], [], []
        for cur, snap, docs in chains:
            timestamp = require_utc(snap["timestamp"], "snapshot time")
            model = price_documents(docs, timestamp, basis)
            priced_at = utcnow()
            if write:  # a narrow update: the collected fields are never rewritten
                subdocs = _model_subdocs(model, basis, priced_at)
                ops.update_fields(db, schema.OPTIONS, [(doc["_id"], {"model": sub}) for doc, sub in zip(docs, subdocs)])
                ops.mark_priced(db, snap["_id"], len(docs), basis, priced_at)   # every document got its model fields
            flagged = {str(k): int(v) for k, v in zip(*np.unique(model["iv_flag"][model["iv_flag"] != ""],
                                                                 return_counts=True))}
            entry = {"currency": cur, "snapshot_id": snap["_id"], "timestamp": timestamp, "priced": len(docs),
                     "expiries": len({d["expiry"] for d in docs}),
                     "iv_failures": {f"iv_{x}": _reason_counts(model[f"iv_{x}_reason"]) for x in ("mark", "bid", "ask")},
                     "iv_flagged": flagged}
            if check:
                entry["check"] = check_report(model, [d["symbol"] for d in docs])
            snapshots.append(entry)
            rows.extend(_rows(docs, model))
            note = staleness(f"{cur} snapshot {snap['_id']}", timestamp, "collect_deribit", now)
            if note:
                stale.append(note)
        run.counts.update(priced=sum(s["priced"] for s in snapshots), snapshots=len(snapshots),
                          iv_flagged=sum(sum(s["iv_flagged"].values()) for s in snapshots))
    if wanted is not None:
        rows = [r for r in rows if r["expiry_code"] == wanted]
    return {"step": "price", "basis": basis, "priced": sum(s["priced"] for s in snapshots), "snapshots": snapshots,
            "options": rows, "expiry": wanted, "stale": stale, "seconds": round(time.perf_counter() - clock, 3)}


def parse_expiry_code(code: str) -> str:
    """Deribit's expiry code normalised (e.g. " 27mar26" → "27MAR26"); UsageError if it is not one."""
    text = str(code).strip().upper()
    match = _EXPIRY_CODE.match(text)
    if not match:
        raise UsageError(f"--expiry {code!r} is not a Deribit expiry code like 27MAR26")
    day, month, year = match.groups()
    try:
        datetime.strptime(f"{int(day)}{month}{year}", "%d%b%y")
    except ValueError:
        raise UsageError(f"--expiry {code!r} is not a calendar date") from None
    return f"{int(day)}{month}{year}"


def check_expiry_listed(code: str, chains: list) -> None:
    """UsageError unless some snapshot of `chains` [(currency, snapshot, docs)] lists expiry `code`:
    an expiry before the snapshot is named expired, any other unknown one is listed against what is."""
    listed: set[str] = set()
    for _cur, _snap, docs in chains:
        listed |= {expiry_code(d["expiry"]) for d in docs}
    if code in listed:
        return
    when = expiry_time(code)
    taken = min(require_utc(snap["timestamp"], "snapshot time") for _c, snap, _d in chains)
    available = ", ".join(sorted(listed, key=lambda c: datetime.strptime(c, "%d%b%y"))) or "none"
    if when <= taken:
        raise UsageError(f"expiry {code} expired on {when:%Y-%m-%d} 08:00 UTC, before the snapshot "
                         f"({taken:%Y-%m-%d %H:%M} UTC); listed: {available}")
    raise UsageError(f"no expiry {code} in the priced snapshot(s); listed: {available}")


def filter_expiry(rows: list[dict], code: str) -> list[dict]:
    """Rows of one expiry given as Deribit's code (e.g. 27MAR26); UsageError naming the available ones."""
    wanted = parse_expiry_code(code)
    picked = [r for r in rows if r["expiry_code"] == wanted]
    if not picked:
        available = sorted({r["expiry_code"] for r in rows}, key=lambda c: datetime.strptime(c, "%d%b%y"))
        raise UsageError(f"no expiry {wanted} in the priced snapshot(s); listed: {', '.join(available) or 'none'}")
    return picked
