"""Read-only queries behind the viewer's pages: a read-only store handle in, plain dicts out.

Nothing here imports Reflex, and nothing writes: every function takes a handle from
`qortcli.store.readonly` (find/find_one/count_documents/aggregate/distinct only) and returns
JSON-able dicts and lists of numbers/strings (None where the store has no value). Units follow
docs/CONTRACTS.md: money `_coin`/`_usd`, vols as fractions, time in years or days on the basis stored on
the documents (`model.basis`, the surface's `basis`; the default basis otherwise). Smile figures come from
`qortcli.quant.smile` and say their source: `_marks` (the snapshot's mark IVs) or `_svi` (the stored fit).

Documents written by steps still under development (surfaces, portfolios, suggestions) are read
defensively: a missing field gives None, never an exception.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Iterable

import numpy as np

from qortcli.quant import smile as sm
from qortcli.quant.svi import PARAM_NAMES
from qortcli.quant.svi import svi_total_variance as _svi_w
from qortcli.store import frames, ops, schema
from qortcli.timeutils import BASES, DEFAULT_BASIS, as_utc

CM_DAYS = 30.0  # constant maturity of the DVOL-like ATM vol
CHAIN_FIELDS = {"symbol": 1, "option_type": 1, "strike": 1, "expiry": 1, "forward": 1, "index_price": 1,
                "premium_crypto": 1, "premium_usd": 1, "bid_crypto": 1, "ask_crypto": 1, "implied_volatility": 1,
                "open_interest": 1, "greeks": 1, "model": 1, "timestamp": 1}
HINTS = {
    schema.OPTIONS: "qortcli collect sample",
    schema.PRICES: "qortcli collect sample",
    schema.SURFACES: "qortcli surface",
    schema.PORTFOLIOS: "qortcli optimize",
    schema.SUGGESTIONS: "qortcli suggest",
    schema.JOB_RUNS: "qortcli collect sample",
    schema.SNAPSHOTS: "qortcli collect sample",
}


# --------------------------------------------------------------------------- small helpers

def num(value) -> float | None:
    """`value` as a finite float, else None (a `{"vol": x, ...}` result gives x)."""
    if isinstance(value, dict):
        value = value.get("vol", value.get("value"))
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def utc(value) -> datetime | None:
    """A datetime as timezone-aware UTC (stores may hand back fixed-offset or naive UTC values)."""
    return as_utc(value) if isinstance(value, datetime) else None


def iso(value) -> str | None:
    value = utc(value)
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else None


def expiry_code(expiry: datetime) -> str:
    """Deribit's code of an expiry date, e.g. 27MAR26."""
    expiry = utc(expiry)
    return f"{expiry.day}{expiry.strftime('%b').upper()}{expiry:%y}"


def get(doc: dict | None, *path, default=None):
    """`doc[path[0]][path[1]]...`, or `default` where any level is missing."""
    cur: Any = doc
    for key in path:
        if isinstance(cur, dict) and key in cur:
            cur = cur[key]
        elif isinstance(cur, list) and isinstance(key, int) and -len(cur) <= key < len(cur):
            cur = cur[key]
        else:
            return default
    return cur


def is_empty(db, collection: str) -> bool:
    return db[collection].find_one({}, {"_id": 1}) is None


def empty_hint(collection: str) -> str:
    return f"no data yet — run `{HINTS.get(collection, 'qortcli collect sample')}`"


# --------------------------------------------------------------------------- snapshots and chains

def currencies(db) -> list[str]:
    """Currencies with at least one complete options snapshot, sorted (BTC, ETH, ...)."""
    return ops.snapshot_currencies(db, "options")


def latest_snapshot(db, currency: str) -> dict | None:
    return ops.latest_snapshot(db, "options", currency)


def chain_docs(db, snapshot_id: str) -> list[dict]:
    return list(db[schema.OPTIONS].find({"snapshot_id": snapshot_id}, CHAIN_FIELDS))


def basis_of(docs: list[dict], surface: dict | None = None) -> str:
    """The day-count basis the documents were derived on: the pricing step's `model.basis`, else the
    surface's `basis`, else the default."""
    for d in docs:
        basis = get(d, "model", "basis")
        if basis in BASES:
            return basis
    basis = get(surface, "basis") if surface else None
    return basis if basis in BASES else DEFAULT_BASIS


def chain_frame(docs: list[dict], as_of: datetime, basis: str = DEFAULT_BASIS):
    """The snapshot's documents as the store's chain frame (`qortcli.store.frames`), t_years on `basis`."""
    return frames.chain_frame(docs, utc(as_of), basis)


def term_rows(frame, surface: dict | None, days_per_year: float) -> list[dict]:
    """Per listed (unexpired) expiry: days, forward, ATM IV, the 25Δ vols, RR25 and BF25 from the marks, and
    the stored SVI fit's ATM IV, RR25 and BF25 beside them (`qortcli.quant.smile`)."""
    marks = sm.marks_expiry_stats(frame)
    svi = {sm.expiry_key(s.expiry): s for s in sm.svi_expiry_stats(surface)} if surface else {}
    out = []
    for st in marks:
        fit = svi.get(sm.expiry_key(st.expiry))
        expiry = utc(st.expiry.to_pydatetime() if hasattr(st.expiry, "to_pydatetime") else st.expiry)
        out.append({"expiry": st.expiry_code, "expiry_date": expiry.date().isoformat(), "t_years": st.t_years,
                    "days": st.t_years * days_per_year, "forward_usd": st.forward_usd, "atm_iv_marks": st.atm_iv,
                    "call25_iv_marks": st.call25_iv, "put25_iv_marks": st.put25_iv, "rr25_marks": st.rr25,
                    "bf25_marks": st.bf25, "atm_iv_svi": fit.atm_iv if fit else None,
                    "rr25_svi": fit.rr25 if fit else None, "bf25_svi": fit.bf25 if fit else None, "n": st.n_quotes})
    return out


def atm_iv_30d_marks(frame, days_per_year: float) -> float | None:
    """The 30-day constant-maturity ATM IV of the marks (total variance linear in T, `qortcli.quant.smile`)."""
    return sm.constant_maturity(sm.marks_expiry_stats(frame), [CM_DAYS], days_per_year)[0].atm_iv


def _svi_30d(surface: dict | None, name: str):
    """A stored 30-day SVI figure of the surface diagnostics (`atm_iv_30d_svi`, `vs_vol_30d_svi`; documents
    written before the rename carry `atm_vol_30d`, `vs_vol_30d`)."""
    diag = get(surface, "diagnostics") or {}
    old = {"atm_iv_30d_svi": "atm_vol_30d", "vs_vol_30d_svi": "vs_vol_30d"}[name]
    return num(diag.get(name)) if diag.get(name) is not None else num(diag.get(old))


# --------------------------------------------------------------------------- overview

def job_runs(db, limit: int = 12) -> list[dict]:
    runs = db[schema.JOB_RUNS].find({}, {"step": 1, "status": 1, "started_at": 1, "ended_at": 1, "seconds": 1,
                                          "error": 1, "counts": 1, "trigger": 1, "args": 1})
    out = []
    for r in runs.sort("started_at", -1).limit(limit):
        counts = r.get("counts") or {}
        short = ", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        out.append({"step": r.get("step") or "?", "status": r.get("status") or "?", "started": iso(r.get("started_at")),
                    "seconds": num(r.get("seconds")), "trigger": r.get("trigger") or "", "counts": short,
                    "error": r.get("error") or ""})
    return out


def last_run_per_step(db) -> list[dict]:
    """The newest run of each step (collect, price, surface, optimize, suggest, ...)."""
    steps = sorted(s for s in db[schema.JOB_RUNS].distinct("step") if s)
    out = []
    for step in steps:
        found = job_runs_for(db, step, 1)
        if found:
            out.append(found[0])
    return out


def job_runs_for(db, step: str, limit: int) -> list[dict]:
    docs = db[schema.JOB_RUNS].find({"step": step}).sort("started_at", -1).limit(limit)
    return [{"step": r.get("step"), "status": r.get("status") or "?", "started": iso(r.get("started_at")),
             "seconds": num(r.get("seconds")), "error": r.get("error") or ""} for r in docs]


def surface_doc(db, snapshot_id: str | None = None, currency: str | None = None) -> dict | None:
    """The stored volatility surface of a snapshot (or the newest of a currency), or None."""
    coll = db[schema.SURFACES]
    if snapshot_id:
        doc = coll.find_one({"_id": snapshot_id}) or coll.find_one({"snapshot_id": snapshot_id})
        if doc:
            return doc
    if currency:
        found = list(coll.find({"currency": currency}).sort("timestamp", -1).limit(1))
        return found[0] if found else None
    return None


def currency_overview(db, currency: str) -> dict | None:
    """Latest complete snapshot of `currency` with spot, forward count, 30-day ATM vol (marks and surface)."""
    snap = latest_snapshot(db, currency)
    if not snap:
        return None
    docs = chain_docs(db, snap["_id"])
    ts = utc(snap.get("timestamp"))
    surface = surface_doc(db, snap["_id"])
    basis = basis_of(docs, surface)
    frame = chain_frame(docs, ts, basis) if docs else None
    stats = sm.marks_expiry_stats(frame) if frame is not None else []
    index = frame["index_usd"].to_numpy(dtype=float) if frame is not None else np.array([])
    spot = float(np.nanmedian(index)) if np.isfinite(index).any() else None
    priced = sum(1 for d in docs if isinstance(d.get("model"), dict))
    n_snaps = db[schema.SNAPSHOTS].count_documents({"kind": "options", "currency": currency, "status": ops.COMPLETE})
    return {"currency": currency, "snapshot_id": snap["_id"], "timestamp": iso(ts), "source": snap.get("source") or "",
            "instruments": len(docs), "expiries": len(stats), "spot_usd": spot, "basis": basis,
            "atm_iv_30d_marks": atm_iv_30d_marks(frame, BASES[basis]) if frame is not None else None,
            "atm_iv_30d_svi": _svi_30d(surface, "atm_iv_30d_svi") if surface else None, "priced": priced,
            "snapshots": n_snaps, "has_surface": surface is not None}


def price_stats(db) -> dict:
    """`price_data` size, symbols and newest day (full scans on the embedded engine: the viewer caches it)."""
    n = db[schema.PRICES].count_documents({})
    symbols = sorted(s for s in db[schema.PRICES].distinct("symbol") if s) if n else []
    latest = None
    if n:
        found = list(db[schema.PRICES].find({}, {"timestamp": 1}).sort("timestamp", -1).limit(1))
        latest = iso(found[0]["timestamp"]) if found else None
    return {"documents": n, "symbols": symbols, "latest_day": latest[:10] if latest else None}


def options_document_count(db) -> int:
    """Documents of complete options snapshots, from the snapshot records (no scan of options_data)."""
    total = 0
    for snap in db[schema.SNAPSHOTS].find({"kind": "options", "status": ops.COMPLETE}, {"counts": 1}):
        total += int(num(get(snap, "counts", "stored")) or 0)
    return total


def overview(db, prices: dict | None = None) -> dict:
    """Everything the overview page shows; `prices` is a cached `price_stats(db)` (computed when None)."""
    cards = [c for c in (currency_overview(db, cur) for cur in currencies(db)) if c]
    prices = prices if prices is not None else price_stats(db)
    counts = {schema.OPTIONS: options_document_count(db), schema.PRICES: prices["documents"]}
    for name in (schema.SURFACES, schema.PORTFOLIOS, schema.SUGGESTIONS):
        counts[name] = db[name].count_documents({})
    return {"currencies": cards, "runs": job_runs(db), "last_per_step": last_run_per_step(db), "counts": counts,
            "price_symbols": prices["symbols"], "latest_price_day": prices["latest_day"],
            "empty": {k: v == 0 for k, v in counts.items()}}


# --------------------------------------------------------------------------- options chain

def _side(d: dict | None) -> dict:
    if d is None:
        return {}
    model = d.get("model") if isinstance(d.get("model"), dict) else {}
    greeks = d.get("greeks") if isinstance(d.get("greeks"), dict) else {}

    def greek(name):
        value = num(model.get(name))
        return value if value is not None else num(greeks.get(name))

    return {"symbol": d.get("symbol"), "premium_coin": num(d.get("premium_crypto")), "premium_usd": num(d.get("premium_usd")),
            "bid_coin": num(d.get("bid_crypto")), "ask_coin": num(d.get("ask_crypto")),
            "mark_iv": num(d.get("implied_volatility")), "model_iv": num(model.get("iv_mark")),
            "delta": greek("delta"), "gamma": greek("gamma"), "vega": greek("vega"),
            "open_interest": num(d.get("open_interest")), "model_price_coin": num(model.get("model_price_coin"))}


def chain(db, currency: str, expiry: str | None = None, window: int = 12) -> dict:
    """Calls and puts side by side for one expiry of the latest snapshot, `window` strikes each side of the forward.

    `expiry` is a Deribit code (27MAR26); default: the listed expiry nearest 30 days.
    """
    snap = latest_snapshot(db, currency)
    if not snap:
        return {"currency": currency, "snapshot_id": None, "expiries": [], "expiry": None, "rows": []}
    docs = chain_docs(db, snap["_id"])
    ts = utc(snap.get("timestamp"))
    by_expiry: dict[str, list[dict]] = {}
    dates: dict[str, datetime] = {}
    for d in docs:
        e = utc(d.get("expiry"))
        if e is None or e <= ts:
            continue
        code = expiry_code(e)
        by_expiry.setdefault(code, []).append(d)
        dates[code] = e
    codes = sorted(by_expiry, key=lambda c: dates[c])
    if not codes:
        return {"currency": currency, "snapshot_id": snap["_id"], "timestamp": iso(ts), "expiries": [], "expiry": None, "rows": []}
    if expiry not in by_expiry:
        expiry = min(codes, key=lambda c: abs((dates[c] - ts).total_seconds() / 86400.0 - CM_DAYS))
    group = by_expiry[expiry]
    forwards = [num(d.get("forward")) for d in group if num(d.get("forward"))]
    forward = float(np.median(forwards)) if forwards else None
    spots = [num(d.get("index_price")) for d in group if num(d.get("index_price"))]
    strikes = sorted({num(d.get("strike")) for d in group if num(d.get("strike")) is not None})
    calls = {num(d.get("strike")): d for d in group if d.get("option_type") == "call"}
    puts = {num(d.get("strike")): d for d in group if d.get("option_type") == "put"}
    atm_i = int(np.argmin([abs(k - forward) for k in strikes])) if forward and strikes else len(strikes) // 2
    lo, hi = max(0, atm_i - window), min(len(strikes), atm_i + window + 1)
    rows = [{"strike": k, "atm": i == atm_i, "call": _side(calls.get(k)), "put": _side(puts.get(k))}
            for i, k in enumerate(strikes) if lo <= i < hi]
    days = (dates[expiry] - ts).total_seconds() / 86400.0
    return {"currency": currency, "snapshot_id": snap["_id"], "timestamp": iso(ts), "expiries": codes, "expiry": expiry,
            "expiry_date": dates[expiry].strftime("%Y-%m-%d %H:%M UTC"), "days": days, "forward_usd": forward,
            "spot_usd": float(np.median(spots)) if spots else None, "strikes_total": len(strikes),
            "rows": rows, "priced": any(isinstance(d.get("model"), dict) for d in group)}


# --------------------------------------------------------------------------- volatility

def svi_total_variance(k, params: dict) -> np.ndarray | None:
    """Raw SVI w(k) of a stored slice's params (`qortcli.quant.svi`); None when a parameter is missing."""
    try:
        values = [float(params[x]) for x in PARAM_NAMES]
    except (KeyError, TypeError, ValueError):
        return None
    return _svi_w(k, *values)


def _slice_params(sl: dict) -> dict | None:
    for key in ("params", "svi", "svi_params", "raw"):
        p = sl.get(key)
        if isinstance(p, dict) and "a" in p:
            return p
    return sl if all(x in sl for x in ("a", "b", "rho", "m", "sigma")) else None


def _slice_code(sl: dict) -> str | None:
    code = sl.get("expiry_code") or sl.get("code")
    if code:
        return str(code)
    e = utc(sl.get("expiry"))
    return expiry_code(e) if e else (str(sl["expiry"]) if sl.get("expiry") else None)


def volatility(db, currency: str) -> dict:
    """Smiles (market marks and the stored SVI fit), ATM term structure, RR25/BF25 and a 3D surface grid."""
    snap = latest_snapshot(db, currency)
    if not snap:
        return {"currency": currency, "snapshot_id": None, "smiles": [], "term": [], "surface": None}
    ts = utc(snap.get("timestamp"))
    docs = chain_docs(db, snap["_id"])
    surface = surface_doc(db, snap["_id"])
    basis = basis_of(docs, surface)
    frame = chain_frame(docs, ts, basis)
    stats = term_rows(frame, surface, BASES[basis])
    fits: dict[str, dict] = {}
    for sl in (get(surface, "slices") or []) if surface else []:
        if isinstance(sl, dict):
            code = _slice_code(sl)
            if code:
                fits[code] = sl
    smiles = []
    codes = frame["expiry_code"].to_numpy()
    strike_all, iv_all = frame["strike_usd"].to_numpy(dtype=float), frame["mark_iv"].to_numpy(dtype=float)
    call_all = frame["is_call"].to_numpy(dtype=bool)
    for st in stats:
        m = codes == st["expiry"]
        k = np.log(strike_all[m] / st["forward_usd"])
        iv = iv_all[m]
        call = call_all[m]
        otm = np.where(k >= 0, call, ~call) & np.isfinite(iv) & (iv > 0)
        order = np.argsort(k[otm])
        smile = {"expiry": st["expiry"], "days": st["days"], "t_years": st["t_years"], "forward_usd": st["forward_usd"],
                 "k": k[otm][order].tolist(), "strike": strike_all[m][otm][order].tolist(),
                 "iv": iv[otm][order].tolist(), "fit_k": [], "fit_iv": [], "fit_rmse": None}
        sl = fits.get(st["expiry"])
        params = _slice_params(sl) if sl else None
        if params is not None and len(smile["k"]):
            t = num(sl.get("t_years")) or st["t_years"]
            kk = np.linspace(min(smile["k"]) - 0.05, max(smile["k"]) + 0.05, 81)
            w = svi_total_variance(kk, params)
            if w is not None:
                ok = w > 0
                smile["fit_k"] = kk[ok].tolist()
                smile["fit_iv"] = np.sqrt(w[ok] / t).tolist()
                smile["fit_rmse"] = num(sl.get("rmse_vol_points"))
        smiles.append(smile)
    grid = _surface_grid(surface, smiles, BASES[basis])
    return {"currency": currency, "snapshot_id": snap["_id"], "timestamp": iso(ts), "basis": basis, "smiles": smiles,
            "term": [{k: v for k, v in st.items() if k not in ("expiry_date", "t_years", "n")} for st in stats],
            "atm_iv_30d_marks": atm_iv_30d_marks(frame, BASES[basis]), "has_surface": surface is not None,
            "surface": grid, "diagnostics": _diagnostics(surface)}


def _diagnostics(surface: dict | None) -> dict:
    """The surface fit's headline diagnostics (None where the document lacks them)."""
    diag = get(surface, "diagnostics")
    if not isinstance(diag, dict):
        return {}
    slices = [s for s in (get(surface, "slices") or []) if isinstance(s, dict)]
    return {"rmse_median_vol_points": num(get(diag, "rmse_vol_points", "median")),
            "rmse_max_vol_points": num(get(diag, "rmse_vol_points", "max")),
            "butterfly_ok": get(diag, "butterfly", "ok"), "calendar_ok": get(diag, "calendar", "ok"),
            "atm_iv_30d_svi": _svi_30d(surface, "atm_iv_30d_svi"), "vs_vol_30d_svi": _svi_30d(surface, "vs_vol_30d_svi"),
            "fitted": sum(1 for s in slices if _slice_params(s) is not None), "slices": len(slices)}


def _surface_grid(surface: dict | None, smiles: list[dict], days_per_year: float) -> dict | None:
    """A (days × log-moneyness → IV) grid: the stored surface's grid, else the SVI slices, else None."""
    grid = get(surface, "grid") if surface else None
    if isinstance(grid, dict):
        k = grid.get("k") or grid.get("log_moneyness") or grid.get("moneyness")
        t = grid.get("t_years") or grid.get("t")
        days = grid.get("days")
        z = grid.get("iv") or grid.get("vol") or grid.get("implied_vol")
        if z is None and grid.get("w") is not None and t is not None:
            w = np.asarray(grid["w"], dtype=float)
            z = np.sqrt(np.clip(w, 0, None) / np.asarray(t, dtype=float)[:, None]).tolist()
        if k is not None and (t is not None or days is not None) and z is not None:
            days = days or [float(x) * days_per_year for x in t]
            z_arr = np.asarray(z, dtype=float)
            if z_arr.shape == (len(k), len(days)):
                z_arr = z_arr.T
            if z_arr.shape == (len(days), len(k)):
                return {"k": [float(x) for x in k], "days": [float(x) for x in days],
                        "iv": [[(float(v) if math.isfinite(v) else None) for v in row] for row in z_arr]}
    fitted = [s for s in smiles if s["fit_k"]]
    if len(fitted) >= 2:
        kk = np.linspace(-0.6, 0.6, 41)
        rows, days = [], []
        for s in fitted:
            rows.append(np.interp(kk, s["fit_k"], s["fit_iv"], left=np.nan, right=np.nan))
            days.append(s["days"])
        z = np.array(rows)
        return {"k": kk.tolist(), "days": days, "iv": [[(float(v) if math.isfinite(v) else None) for v in r] for r in z]}
    return None


# --------------------------------------------------------------------------- portfolio

def portfolio(db, portfolio_id: str | None = None) -> dict | None:
    """The newest portfolio document (of `portfolio_id`), flattened for display."""
    query = {"portfolio_id": portfolio_id} if portfolio_id else {}
    found = list(db[schema.PORTFOLIOS].find(query).sort("timestamp", -1).limit(1))
    if not found:
        return None
    doc = found[0]
    sectors_of: dict[str, str] = {}
    groups = doc.get("sectors")
    if isinstance(groups, dict):
        for key, value in groups.items():
            if isinstance(value, str):  # {symbol: sector}
                sectors_of[str(key)] = value
            elif isinstance(value, list):  # {sector: [symbols]}
                for sym in value:
                    sectors_of[str(sym)] = str(key)
    weights = doc.get("weights") or {}
    if isinstance(weights, list):  # [{symbol, weight}] shape
        weights = {str(w.get("symbol")): w.get("weight") for w in weights if isinstance(w, dict)}
    asset_rows = sorted(({"symbol": s, "weight": num(w), "sector": sectors_of.get(s, "")}
                         for s, w in weights.items() if num(w) is not None), key=lambda r: -r["weight"])
    sector_rows = sorted(({"sector": s, "weight": num(w)} for s, w in (doc.get("sector_weights") or {}).items()
                          if num(w) is not None), key=lambda r: -r["weight"])
    metrics = doc.get("metrics") or {}
    # in-sample metrics sit under `in_sample` (documents written before the split have them at the top)
    ins = metrics.get("in_sample") if isinstance(metrics.get("in_sample"), dict) else metrics
    port_m = ins.get("portfolio") or {}
    bench_m = ins.get("benchmark") or {}
    names = [k for k in port_m if num(port_m.get(k)) is not None or num(bench_m.get(k)) is not None]
    metric_rows = [{"name": k, "portfolio": num(port_m.get(k)), "benchmark": num(bench_m.get(k))} for k in names]
    oos = metrics.get("out_of_sample") if isinstance(metrics.get("out_of_sample"), dict) else None
    bt = doc.get("backtest") or {}
    dates = [iso(d)[:10] if utc(d) else str(d) for d in (bt.get("dates") or [])]
    equity = [num(x) for x in (bt.get("equity") or [])]
    bench = [num(x) for x in (bt.get("benchmark_equity") or [])]
    return {"portfolio_id": doc.get("portfolio_id"), "model": doc.get("model"), "timestamp": iso(doc.get("timestamp")),
            "params": {k: v for k, v in (doc.get("params") or {}).items() if isinstance(v, (str, int, float, bool))},
            "assets": asset_rows, "sectors": sector_rows, "in_sample": metric_rows,
            "headline": "out_of_sample" if oos else "in_sample",
            "out_of_sample": [{"name": k, "portfolio": num(get(oos, "portfolio", k)), "benchmark": num(get(oos, "benchmark", k))}
                              for k in (get(oos, "portfolio") or {}) if num(get(oos, "portfolio", k)) is not None] if oos else [],
            "backtest": {"kind": bt.get("kind") or "", "dates": dates, "equity": equity, "benchmark_equity": bench},
            "excluded": [{"symbol": str(e.get("symbol")), "reason": str(e.get("reason"))} for e in (doc.get("excluded") or [])
                         if isinstance(e, dict)]}


# --------------------------------------------------------------------------- suggestions

def _first(doc: dict, *keys):
    for key in keys:
        value = get(doc, *key.split("."))
        if value is not None:
            return value
    return None


def _legs(doc: dict) -> list[dict]:
    out = []
    for leg in doc.get("legs") or []:
        if not isinstance(leg, dict):
            continue
        qty = num(_first(leg, "quantity", "qty", "size", "amount"))
        side = leg.get("side") or ("buy" if (qty or 0) > 0 else "sell" if qty is not None else "")
        out.append({"symbol": str(_first(leg, "symbol", "instrument", "instrument_name") or leg.get("kind") or "?"),
                    "side": str(side), "quantity": qty, "option_type": str(leg.get("option_type") or leg.get("kind") or ""),
                    "strike": num(leg.get("strike")),
                    "price_coin": num(_first(leg, "entry_coin", "price_coin", "entry_price_coin", "premium_coin", "mark_coin")),
                    "iv": num(_first(leg, "iv", "mark_iv")), "delta": num(leg.get("delta"))})
    return out


def _payoff(doc: dict) -> dict:
    grid = doc.get("payoff_grid") or {}
    s = grid.get("s_usd") or grid.get("spot_usd") or grid.get("s") or grid.get("price_usd") or []
    coin = grid.get("pnl_coin") or grid.get("coin") or []
    usd = grid.get("pnl_usd") or grid.get("usd") or []
    n = min(len(s), len(coin) if coin else len(s), len(usd) if usd else len(s))
    return {"s_usd": [num(x) for x in s[:n]], "pnl_coin": [num(x) for x in coin[:n]] if coin else [],
            "pnl_usd": [num(x) for x in usd[:n]] if usd else []}


def _breakevens(metrics: dict, unit: str) -> list[float]:
    value = metrics.get(f"breakevens_{unit}") or get(metrics, "breakevens", unit)
    if isinstance(value, list):
        return [x for x in (num(v) for v in value) if x is not None]
    return []


def suggestion_card(doc: dict) -> dict:
    m = doc.get("metrics") or {}
    track = [t for t in (doc.get("track") or []) if isinstance(t, dict)]
    last = track[-1] if track else {}
    settlement = doc.get("settlement") if isinstance(doc.get("settlement"), dict) else None
    return {"id": str(doc.get("_id")), "currency": doc.get("currency") or "", "strategy": str(doc.get("strategy") or "?"),
            "expiry": doc.get("expiry_code") or (expiry_code(doc["expiry"]) if utc(doc.get("expiry")) else ""),
            "snapshot_id": doc.get("snapshot_id") or "", "timestamp": iso(doc.get("timestamp")),
            "score": num(doc.get("score")), "reasoning": str(doc.get("reasoning") or ""), "status": str(doc.get("status") or ""),
            "index_usd": num(doc.get("index_usd")), "forward_usd": num(doc.get("forward_usd")), "legs": _legs(doc),
            "premium_coin": num(_first(m, "net_premium_coin", "premium_coin", "entry_coin", "net_entry_coin")),
            "premium_usd": num(_first(m, "net_premium_usd", "premium_usd", "entry_usd", "net_entry_usd")),
            "max_profit_coin": num(_first(m, "max_profit_coin", "max_profit.coin")),
            "max_loss_coin": num(_first(m, "max_loss_coin", "max_loss.coin")),
            "max_profit_usd": num(_first(m, "max_profit_usd", "max_profit.usd")),
            "max_loss_usd": num(_first(m, "max_loss_usd", "max_loss.usd")),
            "max_profit_usd_unbounded": bool(_first(m, "max_profit_usd_unbounded", "max_profit_unbounded") or False),
            "max_loss_usd_unbounded": bool(_first(m, "max_loss_usd_unbounded", "max_loss_unbounded") or False),
            "max_profit_coin_unbounded": bool(_first(m, "max_profit_coin_unbounded", "max_profit_unbounded") or False),
            "max_loss_coin_unbounded": bool(_first(m, "max_loss_coin_unbounded", "max_loss_unbounded") or False),
            "breakevens_usd": _breakevens(m, "usd"), "breakevens_coin": _breakevens(m, "coin"),
            "pop": num(_first(m, "pop", "probability_of_profit", "pop_usd")),
            "payoff": _payoff(doc),
            "track_points": len(track),
            "last_mark_pnl_usd": num(_first(last, "pnl_usd", "mark_pnl_usd")),
            "last_mark_pnl_coin": num(_first(last, "pnl_coin", "mark_pnl_coin")),
            "last_mark_at": iso(_first(last, "timestamp", "as_of")),
            "settled_pnl_usd": num(_first(settlement, "pnl_usd", "realised_pnl_usd")) if settlement else None,
            "settled_pnl_coin": num(_first(settlement, "pnl_coin", "realised_pnl_coin")) if settlement else None}


def suggestions(db, currency: str | None = None, limit: int = 12) -> dict:
    """The newest snapshot's suggestions (per currency) as cards, and the track record of all suggestions."""
    coll = db[schema.SUGGESTIONS]
    query = {"currency": currency} if currency else {}
    latest = list(coll.find(query, {"snapshot_id": 1, "timestamp": 1}).sort("timestamp", -1).limit(1))
    cards = []
    if latest:
        sid = latest[0].get("snapshot_id")
        docs = list(coll.find({"snapshot_id": sid}))
        docs.sort(key=lambda d: -(num(d.get("score")) or 0))
        cards = [suggestion_card(d) for d in docs[:limit]]
    record = track_record(db, currency)
    return {"currency": currency, "cards": cards, "track": record}


def track_record(db, currency: str | None = None, limit: int = 40) -> dict:
    """Every stored suggestion's outcome: open ones marked to market, settled ones with realised P/L."""
    query = {"currency": currency} if currency else {}
    fields = {"strategy": 1, "expiry": 1, "expiry_code": 1, "snapshot_id": 1, "timestamp": 1, "status": 1, "track": 1,
              "settlement": 1, "currency": 1, "metrics": 1}
    rows = []
    for d in coll_sorted(db[schema.SUGGESTIONS].find(query, fields), "timestamp"):
        card = suggestion_card(d)
        rows.append({k: card[k] for k in ("id", "currency", "strategy", "expiry", "timestamp", "status", "track_points",
                                          "last_mark_pnl_usd", "last_mark_pnl_coin", "last_mark_at",
                                          "settled_pnl_usd", "settled_pnl_coin", "premium_usd")})
    settled = [r for r in rows if r["settled_pnl_usd"] is not None]
    wins = [r for r in settled if r["settled_pnl_usd"] > 0]
    return {"rows": rows[:limit], "total": len(rows), "settled": len(settled), "wins": len(wins),
            "settled_pnl_usd": sum(r["settled_pnl_usd"] for r in settled) if settled else None,
            "open": sum(1 for r in rows if r["status"] == "open")}


def coll_sorted(cursor: Iterable[dict], key: str) -> list[dict]:
    docs = list(cursor)
    docs.sort(key=lambda d: utc(d.get(key)) or datetime.min.replace(tzinfo=timezone.utc), reverse=True)
    return docs
