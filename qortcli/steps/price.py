"""The price step: coin-settled Black-76 prices, greeks and implied vols for the latest snapshot(s).

``run_price(db, currency=None, check=False, basis="ACT/365")`` reads the latest complete options
snapshot of each currency (or of ``currency``), prices every instrument from Deribit's ``mark_iv`` on its
own forward, solves implied vols from the mark/bid/ask coin prices, and writes the ``model``
sub-document (docs/CONTRACTS.md) onto each ``options_data`` document through ``ops.upsert_many``
(re-running rewrites the same documents: idempotent).
"""

from __future__ import annotations

import time
from datetime import datetime

import numpy as np

from qortcli.errors import StepError, UsageError
from qortcli.quant import black76, implied_vol, mark_check
from qortcli.steps.common import latest_chains
from qortcli.store import ops, schema
from qortcli.store.runs import recorded_run
from qortcli.timeutils import BASES, expiry_code, require_utc, utcnow, year_fractions

#: the greeks written under `model` (units in qortcli.quant.black76)
MODEL_GREEKS = black76.GREEK_NAMES
ROW_FIELDS = ("instrument_name", "currency", "strike", "expiry", "expiry_code", "option_type", "forward",
              "index_price", "t_years", "mark_price", "mark_iv", "bid_price", "ask_price", "model_price_coin",
              "model_price_usd", "iv_mark", "iv_bid", "iv_ask") + MODEL_GREEKS


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


def price_documents(docs: list[dict], timestamp: datetime, basis: str = "ACT/365") -> dict[str, np.ndarray]:
    """Model arrays for one snapshot's documents: t_years, prices, IVs (and reason codes), greeks."""
    if basis not in BASES:
        raise UsageError(f"unknown day-count basis {basis!r}; use one of {sorted(BASES)}")
    F = _float_array(docs, "forward")
    K = _float_array(docs, "strike")
    call = np.array([d.get("option_type") == "call" for d in docs], dtype=bool)
    rate = np.nan_to_num(_float_array(docs, "interest_rate"), nan=0.0)
    t_years = year_fractions(timestamp, np.array([_epoch(d["expiry"]) for d in docs], dtype=float), basis)
    mark_iv = _float_array(docs, "implied_volatility")
    with np.errstate(invalid="ignore", divide="ignore"):
        g = black76.greeks(F, K, t_years, mark_iv, call, rate, days_per_year=BASES[basis])
    out = {"t_years": t_years, "model_price_coin": g["price_coin"],
           "model_price_usd": g["price_coin"] * _float_array(docs, "index_price")}
    out.update({name: g[name] for name in MODEL_GREEKS})
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
    return [{**{name: columns[name][i] for name in fields}, **{k: v[i] for k, v in reasons.items()},
             "basis": basis, "priced_at": priced_at} for i in range(n)]


def _reason_counts(codes: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(codes, return_counts=True)
    return {implied_vol.reason_name(v): int(c) for v, c in zip(values, counts) if v != implied_vol.OK}


def check_report(model: dict[str, np.ndarray], names: list[str], worst: int = 5) -> dict:
    """The accuracy report of one snapshot (JSON-able): see ``qortcli.quant.mark_check.mark_check``."""
    report = mark_check.mark_check(model["F"], model["K"], model["t_years"], model["mark_iv"], model["call"],
                                   model["mark"], model["rate"], model["delta_published"],
                                   model["vega_published"], names=np.asarray(names, dtype=object), worst=worst)
    for key in ("model_price_coin", "abs_error_coin", "tolerance_coin", "within"):
        report.pop(key)
    return report


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
        rows.append(row)
    return rows


def run_price(db, currency: str | None = None, check: bool = False, basis: str = "ACT/365",
              write: bool = True) -> dict:
    """Price the latest complete snapshot of each currency (or of `currency`) and write `model` sub-documents.

    Returns {"step", "basis", "priced", "snapshots": [{currency, snapshot_id, timestamp, priced, expiries,
    iv_failures: {reason: count}, check (when `check`)}], "options": [one row per instrument], "seconds"}.
    """
    if basis not in BASES:
        raise UsageError(f"unknown day-count basis {basis!r}; use one of {sorted(BASES)}")
    clock = time.perf_counter()
    with recorded_run(db, "price", {"currency": currency, "check": check, "basis": basis}) as run:
        snapshots, rows = [], []
        for cur, snap, docs in latest_chains(db, currency):
            docs.sort(key=lambda d: (d["expiry"], d.get("strike") or 0.0, d.get("option_type") or ""))
            timestamp = require_utc(snap["timestamp"], "snapshot time")
            model = price_documents(docs, timestamp, basis)
            priced_at = utcnow()
            if write:
                subdocs = _model_subdocs(model, basis, priced_at)
                ops.upsert_many(db, schema.OPTIONS, [{**doc, "model": sub} for doc, sub in zip(docs, subdocs)])
                ops.mark_priced(db, snap["_id"], len(docs), basis, priced_at)
            entry = {"currency": cur, "snapshot_id": snap["_id"], "timestamp": timestamp, "priced": len(docs),
                     "expiries": len({d["expiry"] for d in docs}),
                     "iv_failures": {f"iv_{x}": _reason_counts(model[f"iv_{x}_reason"]) for x in ("mark", "bid", "ask")}}
            if check:
                entry["check"] = check_report(model, [d["symbol"] for d in docs])
            snapshots.append(entry)
            rows.extend(_rows(docs, model))
        run.counts.update(priced=sum(s["priced"] for s in snapshots), snapshots=len(snapshots))
    return {"step": "price", "basis": basis, "priced": sum(s["priced"] for s in snapshots), "snapshots": snapshots,
            "options": rows, "seconds": round(time.perf_counter() - clock, 3)}


def filter_expiry(rows: list[dict], code: str) -> list[dict]:
    """Rows of one expiry given as Deribit's code (e.g. 27MAR26); StepError naming the available ones."""
    wanted = code.strip().upper()
    picked = [r for r in rows if r["expiry_code"] == wanted]
    if not picked:
        available = sorted({r["expiry_code"] for r in rows}, key=lambda c: datetime.strptime(c, "%d%b%y"))
        raise StepError(f"no expiry {wanted} in the priced snapshot(s); available: {', '.join(available) or 'none'}")
    return picked

