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
from qortcli.steps.common import day_count, latest_chains
from qortcli.store import ops, read, schema
from qortcli.store.runs import recorded_run
from qortcli.timeutils import BASES, DEFAULT_BASIS, utcnow


def fit_inputs(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The chain frame (`qortcli.store.frames`) → the columns `fit_surface` takes, and where the vols came
    from: the price step's `iv_mark` where it solved one, else Deribit's `mark_iv`."""
    model = frame["iv_mark"].to_numpy(dtype=float)
    raw = frame["mark_iv"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        use_model = np.isfinite(model) & (model > 0)
        use_raw = ~use_model & np.isfinite(raw) & (raw > 0)
    iv = np.where(use_model, model, np.where(use_raw, raw, np.nan))
    source = {"model.iv_mark": int(use_model.sum()), "implied_volatility": int(use_raw.sum()),
              "none": int((~use_model & ~use_raw).sum())}
    inputs = pd.DataFrame({"expiry": frame["expiry"], "t_years": frame["t_years"], "strike": frame["strike_usd"],
                           "option_type": frame["option_type"], "forward": frame["forward_usd"], "iv": iv,
                           "open_interest": frame["open_interest_coin"]})
    return inputs, source


def surface_document(chain: read.Chain) -> dict:
    """Fit the surface of one chain and build its `volatility_surfaces` document (t_years on the frame's basis)."""
    info, frame = chain.snapshot, chain.frame
    basis = frame.attrs.get("basis") or DEFAULT_BASIS
    inputs, source = fit_inputs(frame)
    inputs = inputs[np.isfinite(inputs["strike"]) & np.isfinite(inputs["forward"]) & (inputs["forward"] > 0)]
    # expiries whose forward or time is unusable cannot be fitted: keep them out
    inputs = inputs[inputs["t_years"] > 0]
    if inputs.empty:
        raise StepError(f"snapshot {info.snapshot_id} has no unexpired options with a forward")
    fitted = fit_surface(inputs, days_per_year=BASES[basis]).to_document()
    return {"currency": info.currency, "snapshot_id": info.snapshot_id, "timestamp": info.timestamp, "basis": basis,
            "fitted_at": utcnow(), "input_vol": source, **fitted}


def run_surface(db, currency: str | None = None, basis: str | None = None) -> dict:
    """Fit and store the volatility surface of each currency's latest complete snapshot.

    Returns {"step", "surfaces": [{currency, snapshot_id, timestamp, expiries, fitted, skipped_bad_vol,
    rmse_vol_points, butterfly_ok, calendar_ok, atm_iv_30d_svi, vs_vol_30d_svi, expiries_table: [...]}],
    "basis", "stored", "seconds"}.
    """
    from qortcli.steps.summaries import write_summary

    clock = time.perf_counter()
    basis = day_count(basis)
    with recorded_run(db, "surface", {"currency": currency, "basis": basis}) as run:
        summaries, stored = [], 0
        for chain in latest_chains(db, currency, basis):
            doc = surface_document(chain)
            stored += ops.upsert_many(db, schema.SURFACES, [doc])
            summary = summarise(doc)
            summary["snapshot_summary"] = write_summary(db, chain, doc)["snapshot_id"]
            summaries.append(summary)
        run.counts.update(surfaces=stored, fitted=sum(s["fitted"] for s in summaries),
                          expiries=sum(s["expiries"] for s in summaries),
                          skipped_bad_vol=sum(s["skipped_bad_vol"] for s in summaries), summaries=len(summaries))
    return {"step": "surface", "basis": basis, "surfaces": summaries, "stored": stored,
            "seconds": round(time.perf_counter() - clock, 3)}


def run_backfill(db, currency: str | None = None, basis: str | None = None, progress=None) -> dict:
    """`surface --backfill`: write the per-snapshot summaries that stored snapshots lack (from their stored
    surface where there is one, else from the marks alone)."""
    from qortcli.steps.summaries import backfill

    clock = time.perf_counter()
    basis = day_count(basis)
    with recorded_run(db, "surface", {"currency": currency, "basis": basis, "backfill": True}) as run:
        done = backfill(db, currency, basis, progress=progress)
        run.counts.update(summaries=done["written"], failed=len(done["failed"]))
    return {"step": "surface-backfill", "basis": basis, **done, "seconds": round(time.perf_counter() - clock, 3)}


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


