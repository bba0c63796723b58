"""The surface step: one arbitrage-checked SVI volatility surface per currency's latest snapshot.

`run_surface(db, currency=None, basis=None) -> dict` reads the latest complete options snapshot of each
currency (or of `currency`), fits `qortcli.quant.surface.fit_surface` to its out-of-the-money mark IVs and
upserts one `volatility_surfaces` document per snapshot (natural key snapshot_id):

    {currency, snapshot_id, timestamp, basis, fitted_at, input_vol ("model.iv_mark" / "implied_volatility"
     counts), slices: [{expiry, t_years, forward, params {a, b, rho, m, sigma} | None,
     rmse_vol_points, max_abs_error_vol_points, n_points, n_below_tick, points [[k, iv, strike, weight]],
     flags, butterfly, fit_method, atm_iv_svi, rr25_svi, bf25_svi, k_call25_svi, k_put25_svi,
     call25_iv_svi, put25_iv_svi}], grid: {k, t_years, total_variance, implied_vol}, diagnostics: {...}, counts}

Input vol per row: `model.iv_mark` when the price step wrote one, else the stored
`implied_volatility` (Deribit mark_iv as a fraction); NaN/zero/missing vols are skipped and counted.
t_years: from the snapshot time to the 08:00 UTC expiry on `basis` (default: settings `[pricing] day_count`),
stored as the document's `basis`; every smile figure of the document is from the SVI fit (`_svi`).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from qortcli.errors import StepError
from qortcli.quant.surface import fit_surface
from qortcli.steps.common import latest_chains
from qortcli.store import ops, schema
from qortcli.store.runs import recorded_run
from qortcli.timeutils import BASES, DEFAULT_BASIS, require_utc, utcnow, year_fraction

PROJECTION = {"_id": 0, "symbol": 1, "expiry": 1, "strike": 1, "option_type": 1, "forward": 1,
              "implied_volatility": 1, "open_interest": 1, "model.iv_mark": 1, "model.t_years": 1}


def _num(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def default_basis() -> str:
    """The day-count basis of the settings (`[pricing] day_count`)."""
    from qortcli.config import get_settings

    return get_settings().section("pricing").get("day_count", DEFAULT_BASIS)


def chain_frame(docs: list[dict], timestamp, basis: str = DEFAULT_BASIS) -> tuple[pd.DataFrame, dict]:
    """options_data documents → the chain frame `fit_surface` takes (t_years on `basis`), and where the
    vols came from."""
    timestamp = require_utc(timestamp, "snapshot time")
    rows, source = [], {"model.iv_mark": 0, "implied_volatility": 0, "none": 0}
    for d in docs:
        model = d.get("model") or {}
        iv = _num(model.get("iv_mark"))
        if math.isfinite(iv) and iv > 0:
            source["model.iv_mark"] += 1
        else:
            iv = _num(d.get("implied_volatility"))
            source["implied_volatility" if math.isfinite(iv) and iv > 0 else "none"] += 1
        expiry = require_utc(d["expiry"], "expiry")
        t = year_fraction(timestamp, expiry, basis)
        rows.append((expiry, t, _num(d.get("strike")), str(d.get("option_type") or ""), _num(d.get("forward")),
                     iv, _num(d.get("open_interest"))))
    frame = pd.DataFrame(rows, columns=["expiry", "t_years", "strike", "option_type", "forward", "iv",
                                        "open_interest"])
    return frame, source


def surface_document(currency: str, snapshot: dict, docs: list[dict], basis: str = DEFAULT_BASIS) -> dict:
    """Fit the surface of one snapshot's documents and build its `volatility_surfaces` document."""
    if basis not in BASES:
        raise StepError(f"unknown day-count basis {basis!r}; use one of {sorted(BASES)}")
    timestamp = require_utc(snapshot["timestamp"], "snapshot time")
    frame, source = chain_frame(docs, timestamp, basis)
    frame = frame[np.isfinite(frame["strike"]) & np.isfinite(frame["forward"]) & (frame["forward"] > 0)]
    # expiries whose forward or time is unusable cannot be fitted: keep them out
    frame = frame[frame["t_years"] > 0]
    if frame.empty:
        raise StepError(f"snapshot {snapshot['_id']} has no unexpired options with a forward")
    fitted = fit_surface(frame, days_per_year=BASES[basis]).to_document()
    return {"currency": currency, "snapshot_id": snapshot["_id"], "timestamp": timestamp, "basis": basis,
            "fitted_at": utcnow(), "input_vol": source, **fitted}


def run_surface(db, currency: str | None = None, basis: str | None = None) -> dict:
    """Fit and store the volatility surface of each currency's latest complete snapshot.

    Returns {"step", "surfaces": [{currency, snapshot_id, timestamp, expiries, fitted, skipped_bad_vol,
    rmse_vol_points, butterfly_ok, calendar_ok, atm_iv_30d_svi, vs_vol_30d_svi, expiries_table: [...]}],
    "basis", "stored", "seconds"}.
    """
    clock = time.perf_counter()
    basis = basis or default_basis()
    with recorded_run(db, "surface", {"currency": currency, "basis": basis}) as run:
        summaries, documents = [], []
        for cur, snap, docs in latest_chains(db, currency, PROJECTION):
            doc = surface_document(cur, snap, docs, basis)
            documents.append(doc)
            summaries.append(summarise(doc))
        stored = ops.upsert_many(db, schema.SURFACES, documents)
        run.counts.update(surfaces=stored, fitted=sum(s["fitted"] for s in summaries),
                          expiries=sum(s["expiries"] for s in summaries),
                          skipped_bad_vol=sum(s["skipped_bad_vol"] for s in summaries))
    return {"step": "surface", "basis": basis, "surfaces": summaries, "stored": stored,
            "seconds": round(time.perf_counter() - clock, 3)}


def summarise(doc: dict) -> dict:
    """The CLI/JSON summary of one surface document (no points, no grid)."""
    diag = doc["diagnostics"]
    table = []
    for s in doc["slices"]:
        table.append({"expiry": s["expiry"], "t_years": s["t_years"], "forward": s["forward"],
                      "n_points": s["n_points"], "atm_iv_svi": s.get("atm_iv_svi"), "rr25_svi": s.get("rr25_svi"),
                      "bf25_svi": s.get("bf25_svi"), "rmse_vol_points": s["rmse_vol_points"],
                      "butterfly_ok": (s["butterfly"] or {}).get("ok"), "flags": list(s["flags"]),
                      "params": s["params"]})
    return {"currency": doc["currency"], "snapshot_id": doc["snapshot_id"], "timestamp": doc["timestamp"],
            "basis": doc.get("basis"), "expiries": len(doc["slices"]), "fitted": diag["n_fitted"],
            "skipped_bad_vol": doc["counts"]["skipped_bad_vol"], "input_vol": doc["input_vol"],
            "rmse_vol_points": diag.get("rmse_vol_points"),
            "butterfly_ok": diag["butterfly"]["ok"], "calendar_ok": diag["calendar"]["ok"],
            "calendar_ok_in_quoted_range": diag["calendar"].get("ok_in_quoted_range"),
            "calendar_violations": [{"expiry_before": v["expiry_before"], "expiry_after": v["expiry_after"],
                                     "k_ranges": v["k_ranges"], "quoted_k_ranges": v["quoted_k_ranges"]}
                                    for v in diag["calendar"]["violations"]],
            "atm_iv_30d_svi": diag.get("atm_iv_30d_svi"), "vs_vol_30d_svi": diag.get("vs_vol_30d_svi"),
            "expiries_table": table}


def latest_surface(db, currency: str) -> dict | None:
    """The stored surface document of `currency`'s newest snapshot, or None."""
    found = list(db[schema.SURFACES].find({"currency": currency.upper()}).sort("timestamp", -1).limit(1))
    return found[0] if found else None
