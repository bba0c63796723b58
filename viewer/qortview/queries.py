"""The viewer's page data: a read-only store handle in, plain JSON-able dicts out (no Reflex here).

`PAGE_LOADS = {page: fn(db, **selection) -> data}` is the one registry the app's states and the benchmarks
(`scripts/bench_store.py`, `scripts/bench_viewer.py`) call; every `fn(db)` works with the default selection.
`page_version(db, page, selection)` is a cheap stamp (a few indexed lookups) that changes whenever the data
of that page may have changed: the states refetch only then, and apply only data whose hash changed.

Every read goes through `qortcli.store.read` (no query is issued here) and is served by an index; chains are
read one snapshot at a time. Units follow docs/CONTRACTS.md: money `_coin`/`_usd` (USD amounts of coin
premiums are spot-USD: coin × the row's index), vols as fractions, time in days on the basis stored with the
data. Smile figures come from the per-snapshot summaries (`read.latest_summary`) or, for a snapshot without
one, from `qortcli.quant.smile.summary_stats` — the function the surface step stores them with — and every
one says its source: `_marks` (Deribit's mark IVs) or `_svi` (the stored fit). Times are ISO strings (UTC).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import numpy as np
import pandas as pd

from qortcli import timeutils
from qortcli.errors import UsageError
from qortcli.quant import board
from qortcli.quant import smile as sm
from qortcli.quant.svi import PARAM_NAMES, svi_total_variance
from qortcli.store import read, schema
from qortcli.timeutils import BASES, DEFAULT_BASIS, as_utc

from qortview.alerts import open_alerts
from qortview.book import book_page
from qortview.history import history_page
from qortview.market import market_page

CM_DAYS = 30.0                      # the chain page's default expiry: the listed one nearest 30 days
TRACK_ROWS = 40                     # suggestions listed in the track record, per currency
SMILE_FIT_POINTS = 61
HINTS = {
    schema.OPTIONS: "qortcli collect sample", schema.PRICES: "qortcli collect sample",
    schema.SURFACES: "qortcli surface", schema.PORTFOLIOS: "qortcli optimize",
    schema.SUGGESTIONS: "qortcli suggest", schema.JOB_RUNS: "qortcli collect sample",
    schema.SNAPSHOTS: "qortcli collect sample", schema.SUMMARIES: "qortcli surface --backfill",
    schema.RISK: "qortcli book import FILE && qortcli risk", schema.LIVE_MARKS: "qortcli stream",
    schema.VOL_FORECASTS: "qortcli vol",
}
NO_CHAIN = "no options snapshot in the store yet — run `qortcli collect sample` (or `qortcli collect deribit`)"
#: how the run records of a step map to the schedule's jobs (CLI runs carry no job id)
JOB_STEPS: dict[str, tuple[str, Callable | None]] = {
    "collect_deribit": ("collect", lambda r: "snapshots" in r.counts or "symbols" not in r.counts),
    "price": ("price", None), "surface": ("surface", None), "risk": ("risk", None),
    "collect_prices": ("collect", lambda r: "symbols" in r.counts),
    "optimize": ("optimize", None),
    "suggest": ("suggest", lambda r: "tracked" not in r.counts),
    "track": ("suggest", lambda r: "tracked" in r.counts),
    "prune": ("prune", None),
}


# --------------------------------------------------------------------------------------------- helpers

def empty_hint(collection: str) -> str:
    """"no data yet — run `…`" for a collection a command fills ("" for one that fills by itself: alerts)."""
    if collection not in HINTS:
        return ""
    return f"no data yet — run `{HINTS[collection]}`"


def num(value) -> float | None:
    """`value` as a finite float, else None (a `{"vol": x}` result gives x)."""
    if isinstance(value, dict):
        value = value.get("vol", value.get("value"))
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def iso(value) -> str | None:
    """A datetime (or pandas Timestamp) as an ISO string in UTC, else None."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    return as_utc(value).isoformat() if isinstance(value, datetime) else None


def get(doc, *path, default=None):
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


def column(values, digits: int = 6) -> list:
    """A float array as a JSON list: NaN → None, `digits` significant digits (keeps payloads small)."""
    arr = np.asarray(values, dtype=float)
    return [None if not math.isfinite(v) else float(f"{v:.{digits}g}") for v in arr.tolist()]


def expiry_code(expiry) -> str:
    """Deribit's code of a stored expiry (a naive stored datetime is UTC)."""
    return timeutils.expiry_code(as_utc(expiry))


def _choose(value, listed: list[str], what: str):
    """`value` if listed, the first listed when None/"", else UsageError naming what is listed."""
    if not value:
        return listed[0] if listed else None
    value = str(value).upper()
    if value not in listed:
        raise UsageError(f"no {what} {value} in the store; listed: {', '.join(listed) or 'none'}")
    return value


def chain_basis(info: read.SnapshotInfo) -> str:
    """The day count the snapshot was priced on (`price --basis`), else the default."""
    basis = (info.priced or {}).get("basis") if isinstance(info.priced, dict) else None
    return basis if basis in BASES else DEFAULT_BASIS


def latest_chain(db, currency: str) -> read.Chain | None:
    """The latest complete chain of `currency` on the basis it was priced on, or None."""
    info = read.latest_snapshot(db, currency)
    return read.chain_at(db, info.snapshot_id, chain_basis(info)) if info else None


def _summary_for(db, chain: read.Chain, surface: dict | None) -> tuple[dict, str]:
    """The smile summary of the chain's snapshot: the stored one, else computed now with the surface step's
    function (`quant.smile.summary_stats`); and where it comes from."""
    stored = read.latest_summary(db, chain.snapshot.currency)
    if stored and stored.get("snapshot_id") == chain.snapshot.snapshot_id:
        return stored, "stored summary"
    dpy = BASES[chain.frame.attrs.get("basis") or DEFAULT_BASIS]
    fields = sm.summary_stats(chain.frame, surface, read.SUMMARY_TENORS_DAYS, dpy).fields()
    return fields, "computed from the chain (no stored summary for this snapshot: `qortcli surface`)"


# --------------------------------------------------------------------------------------------- versions

def store_version(db) -> str:
    """A stamp of everything the pages show: the newest run records and each currency's latest snapshot."""
    return read.store_stamp(db).token()


def page_version(db, page: str, selection: dict | None = None) -> str:
    """The stamp of `page`'s data for `selection` (the chain page adds the stream's live stamp, the overview the
    open alerts: an acknowledgement is no step run)."""
    stamp = store_version(db)
    if page == "overview":
        stamp += "|alerts " + repr([(str(a.get("_id")), a.get("status"), iso(a.get("last_seen_at")))
                                    for a in read.open_alerts(db)])
    if page == "chain":
        cur = (selection or {}).get("currency") or (read.currencies(db) or [""])[0]
        if cur:
            stamp += f"|live {iso(read.live_stamp(db, cur))}"
    return stamp


# --------------------------------------------------------------------------------------------- overview

def _run(run: read.RunInfo | None) -> dict | None:
    if run is None:
        return None
    counts = ", ".join(f"{k} {v}" for k, v in run.counts.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    return {"step": run.step, "job": run.job or "", "status": run.status, "trigger": run.trigger,
            "started": iso(run.started_at), "ended": iso(run.ended_at), "seconds": run.seconds, "error": run.error,
            "counts": counts}


SUMMARY_CARD_FIELDS = ("index_usd", "atm_iv_30d_marks", "atm_iv_30d_svi", "vs_vol_30d_svi", "rr25_30d_marks",
                       "rr25_30d_svi", "bf25_30d_marks", "term_slope_marks", "pcr_oi", "max_pain_coin_payoff_usd",
                       "gamma_flip_usd_marks", "n_options", "n_expiries", "oi_calls_coin", "oi_puts_coin")


def _currency_card(db, cur: str) -> dict:
    info = read.latest_snapshot(db, cur)
    summary = read.latest_summary(db, cur)
    card = {"currency": cur, "snapshot_id": info.snapshot_id, "timestamp": iso(info.timestamp), "source": info.source,
            "instruments": num(get(info.counts, "stored")), "snapshots": read.snapshot_count(db, cur),
            "priced": num(get(info.priced, "count")) if isinstance(info.priced, dict) else None,
            "summary_snapshot_id": None, "summary_timestamp": None}
    if summary:
        card = {**card, "summary_snapshot_id": summary.get("snapshot_id"), "summary_timestamp": iso(summary.get("timestamp")),
                **{k: num(summary.get(k)) for k in SUMMARY_CARD_FIELDS}}
    return card


def overview(db) -> dict:
    """Each currency's latest snapshot with its summary, every scheduled job's last run, the open alerts (None
    where the alerts module is absent), the newest runs and the store's contents."""
    from qortview import ages

    jobs, _ = ages.cadences()
    job_rows = []
    for job_id, (step, looks_like) in JOB_STEPS.items():
        run = _run(read.last_run_of_job(db, job_id, step, looks_like))
        cadence = jobs.get(job_id)
        if run or cadence:
            job_rows.append({"job": job_id, "cadence_s": cadence.seconds if cadence else None,
                             "rule": cadence.text if cadence else "not in the schedule", "last": run})
    counts = read.collection_counts(db)
    newest_day = read.newest_price_day(db)
    return {"currencies": [_currency_card(db, cur) for cur in read.currencies(db)],
            "alerts": open_alerts(db),
            "jobs": job_rows, "runs": [_run(r) for r in read.recent_runs(db, 12)], "counts": counts,
            "price_symbols": read.price_symbols(db) if counts.get(schema.PRICES) else [],
            "price_through": iso(newest_day + timedelta(days=1)) if newest_day else None,
            "price_day": newest_day.date().isoformat() if newest_day else None,
            "hints": {k: empty_hint(k) for k, v in counts.items() if v == 0 and empty_hint(k)}}


# --------------------------------------------------------------------------------------------- chain

SIDE_COLUMNS = ("instrument", "bid_coin", "ask_coin", "mark_coin", "bid_usd", "ask_usd", "mark_usd", "iv_bid",
                "mark_iv", "iv_ask", "delta", "gamma", "vega", "theta", "oi_coin", "volume_coin", "live_age_s")


def _greek(frame: pd.DataFrame, name: str) -> np.ndarray:
    """Black-76 greek from `price` where the row is priced, else Deribit's published one (NaN if neither)."""
    model = frame[name].to_numpy(dtype=float)
    published = frame[f"{name}_deribit"].to_numpy(dtype=float)
    return np.where(np.isfinite(model), model, published)


def _live_overlay(db, cur: str, group: pd.DataFrame, now: datetime) -> tuple[pd.DataFrame, dict | None]:
    """Marks and greeks of the stream's `live_marks` (when the stream wrote this currency) replacing the
    snapshot's, by instrument; plus what was live and how old."""
    live = read.live_marks(db, cur)
    if live is None or live.frame is None or live.frame.empty:
        return group, None
    lf = live.frame.set_index("instrument")
    hit = group["instrument"].isin(lf.index).to_numpy()
    out = group.copy()
    out["live_age_s"] = np.nan
    if hit.any():
        src = lf.loc[group["instrument"][hit]]
        for name in ("mark_coin", "mark_iv", "delta", "gamma", "vega", "theta"):
            if name in src.columns:
                out.loc[hit, name] = src[name].to_numpy(dtype=float)
        if "mark_coin" in src.columns:
            out.loc[hit, "mark_usd_live"] = src["mark_usd"].to_numpy(dtype=float) if "mark_usd" in src.columns else np.nan
        if "mark_time" in src.columns:
            stamps = pd.to_datetime(src["mark_time"], utc=True)
            out.loc[hit, "live_age_s"] = (pd.Timestamp(now) - stamps).dt.total_seconds().to_numpy()
    meta = {"updated_at": iso(live.updated_at), "marks_at": iso(live.marks_at), "index_usd": num(live.index_usd),
            "connected": bool((live.stream or {}).get("connected")), "matched": int(hit.sum()),
            "instruments": int(len(lf))}
    return out, meta


def chain_page(db, currency: str | None = None, expiry: str | None = None, now: datetime | None = None) -> dict:
    """One expiry of the latest chain of `currency`: every strike with its call and its put (bid/ask/mark in
    coin and spot-USD, Deribit's mark IV with the bid/ask IVs of `price`, delta, gamma per USD, vega USD per vol point, theta USD per day, OI and
    24 h volume in contracts), columnar (`rows[column]` lists, strike ascending); live marks and greeks over the
    snapshot's where the stream writes this currency. `expiry` a Deribit code (default: nearest 30 days)."""
    currencies = read.currencies(db)
    base = {"currencies": currencies, "currency": "", "empty": NO_CHAIN, "expiries": [], "expiry": None}
    if not currencies:
        return base
    cur = _choose(currency, currencies, "currency")
    chain = latest_chain(db, cur)
    frame, info = chain.frame, chain.snapshot
    basis = frame.attrs.get("basis") or DEFAULT_BASIS
    alive = frame[frame["t_years"] > 0]
    codes = board.expiry_codes(alive)
    out = {**base, "currency": cur, "snapshot_id": info.snapshot_id, "timestamp": iso(info.timestamp), "basis": basis,
           "expiries": codes, "empty": "" if codes else f"{info.snapshot_id} lists no unexpired option"}
    if not codes:
        return out
    dpy = BASES[basis]
    if expiry and str(expiry).upper() in codes:
        code = str(expiry).upper()
    elif expiry:
        raise UsageError(f"no expiry {str(expiry).upper()} in {info.snapshot_id}; listed: {', '.join(codes)}")
    else:
        code = board.default_expiry(alive, dpy, CM_DAYS)
    group = alive[alive["expiry_code"] == code].copy()
    for g in ("delta", "gamma", "vega", "theta"):
        group[g] = _greek(group, g)
    group, live = _live_overlay(db, cur, group, now or datetime.now(timezone.utc))
    index = group["index_usd"].to_numpy(dtype=float)
    group["bid_usd"] = group["bid_coin"].to_numpy(dtype=float) * index
    group["ask_usd"] = group["ask_coin"].to_numpy(dtype=float) * index
    group["mark_usd"] = group["mark_coin"].to_numpy(dtype=float) * index
    if "mark_usd_live" in group.columns:
        group["mark_usd"] = np.where(np.isfinite(group["mark_usd_live"].to_numpy(dtype=float)),
                                     group["mark_usd_live"].to_numpy(dtype=float), group["mark_usd"].to_numpy())
    if "live_age_s" not in group.columns:
        group["live_age_s"] = np.nan
    group["oi_coin"] = group["open_interest_coin"]
    strikes = np.unique(group["strike_usd"].to_numpy(dtype=float))
    rows: dict[str, list] = {"strike_usd": column(strikes, 10)}
    for side, is_call in (("call", True), ("put", False)):
        part = group[group["is_call"] == is_call].drop_duplicates("strike_usd").set_index("strike_usd").reindex(strikes)
        rows[f"{side}_instrument"] = [s if isinstance(s, str) else "" for s in part["instrument"].tolist()]
        for name in SIDE_COLUMNS[1:]:
            rows[f"{side}_{name}"] = column(part[name].to_numpy(dtype=float))
    forward = num(group["expiry_forward_usd"].iloc[0])
    priced = int(group["priced"].sum())
    published = int(np.isfinite(group["delta_deribit"].to_numpy(dtype=float)).sum())
    return {**out, "expiry": code, "expiry_date": iso(group["expiry"].iloc[0]), "days": float(group["t_years"].iloc[0] * dpy),
            "forward_usd": forward, "spot_usd": num(np.nanmedian(index)) if np.isfinite(index).any() else None,
            "atm_strike_usd": float(strikes[np.argmin(np.abs(strikes - forward))]) if forward else None,
            "strikes_total": int(strikes.size), "options": int(len(group)), "priced": priced,
            "greeks_source": ("Black-76 on the expiry's forward (qortcli price)" if priced else
                              "Deribit's published greeks" if published else "none (run `qortcli price`)"),
            "live": live, "rows": rows}


# --------------------------------------------------------------------------------------------- volatility

def _slice_params(sl: dict) -> dict | None:
    params = sl.get("params") if isinstance(sl, dict) else None
    if not isinstance(params, dict) or any(num(params.get(n)) is None for n in PARAM_NAMES):
        return None
    return {n: float(params[n]) for n in PARAM_NAMES}


def _smiles(frame: pd.DataFrame, surface: dict | None, dpy: float) -> tuple[list[dict], list[tuple]]:
    """Per listed expiry: the out-of-the-money quotes (strike, k = ln(K/F), mark IV, bid/ask IV from `price`,
    delta) and the stored SVI fit on the quoted k range; and (days, t, params, k_lo, k_hi) of each fitted one."""
    fits = {sm.expiry_key(s["expiry"]): s for s in (get(surface, "slices") or []) if isinstance(s, dict)
            and s.get("expiry") is not None}
    alive = frame[(frame["t_years"] > 0) & np.isfinite(frame["mark_iv"].to_numpy(dtype=float))
                  & (frame["mark_iv"].to_numpy(dtype=float) > 0)]
    out, fitted = [], []
    for (expiry, code), g in alive.groupby(["expiry", "expiry_code"], sort=True):
        forward = float(g["expiry_forward_usd"].iloc[0])
        k = np.log(g["strike_usd"].to_numpy(dtype=float) / forward)
        otm = np.where(k >= 0, g["is_call"].to_numpy(dtype=bool), ~g["is_call"].to_numpy(dtype=bool))
        g, k = g[otm], k[otm]
        order = np.argsort(k)
        g, k = g.iloc[order], k[order]
        t = float(g["t_years"].iloc[0])
        smile = {"expiry": code, "expiry_date": iso(expiry), "days": t * dpy, "t_years": t, "forward_usd": forward,
                 "strike_usd": column(g["strike_usd"], 10), "k": column(k), "mark_iv": column(g["mark_iv"]),
                 "iv_bid": column(g["iv_bid"]), "iv_ask": column(g["iv_ask"]), "delta": column(_greek(g, "delta"), 4),
                 "fit_k": [], "fit_iv": [], "fit_rmse_vol_points": None, "fit_flags": []}
        sl = fits.get(sm.expiry_key(expiry))
        params = _slice_params(sl) if sl else None
        if params is not None and len(k) >= 2:
            t_fit = num(sl.get("t_years")) or t
            kk = np.linspace(float(k[0]), float(k[-1]), SMILE_FIT_POINTS)
            w = svi_total_variance(kk, *(params[n] for n in PARAM_NAMES))
            ok = w > 0
            smile = {**smile, "fit_k": column(kk[ok]), "fit_iv": column(np.sqrt(w[ok] / t_fit)),
                     "fit_rmse_vol_points": num(sl.get("rmse_vol_points")), "fit_flags": list(sl.get("flags") or [])}
            fitted.append((t * dpy, t_fit, params, float(k[0]), float(k[-1]), len(out)))
        out.append(smile)
    return out, fitted


def _surface_grid(smiles: list[dict], fitted: list[tuple], n_z: int = 41, z_cap: float = 3.5) -> dict | None:
    """The SVI surface for the 3D view, readable across tenors: one row per fitted expiry (days), IV on a common
    grid of standardised moneyness z = ln(K/F) / √w(0) (ATM standard deviations, √w(0) = σ_ATM √T of the fit),
    each row cut to its expiry's quoted strikes (no extrapolated wings); the OTM marks as (z, days, IV) points."""
    rows = []
    for days, t_fit, params, k_lo, k_hi, i in fitted:
        w0 = float(svi_total_variance(0.0, *(params[n] for n in PARAM_NAMES)))
        if w0 > 0:
            rows.append((days, t_fit, params, k_lo, k_hi, i, math.sqrt(w0)))
    if len(rows) < 2:
        return None
    z_lo = max(-z_cap, min(r[3] / r[6] for r in rows))
    z_hi = min(z_cap, max(r[4] / r[6] for r in rows))
    z = np.linspace(z_lo, z_hi, n_z)
    grid, mz, md, miv = [], [], [], []
    for days, t_fit, params, k_lo, k_hi, i, s0 in rows:
        k = z * s0
        w = svi_total_variance(k, *(params[n] for n in PARAM_NAMES))
        iv = np.where((k >= k_lo - 1e-12) & (k <= k_hi + 1e-12) & (w > 0), np.sqrt(np.clip(w, 0, None) / t_fit), np.nan)
        grid.append(column(iv, 5))
        pts = smiles[i]
        pz = np.asarray(pts["k"], dtype=float) / s0
        inside = (pz >= z_lo) & (pz <= z_hi)
        mz += column(pz[inside], 5)
        md += [round(days, 4)] * int(inside.sum())
        miv += [v for v, keep in zip(pts["mark_iv"], inside) if keep]
    return {"z": column(z, 5), "days": column([r[0] for r in rows], 5), "expiries": [smiles[r[5]]["expiry"] for r in rows],
            "iv": grid, "marks_z": mz, "marks_days": md, "marks_iv": miv}


def _diagnostics(surface: dict | None) -> dict:
    diag = get(surface, "diagnostics")
    if not isinstance(diag, dict):
        return {}
    slices = [s for s in (get(surface, "slices") or []) if isinstance(s, dict)]
    cal = diag.get("calendar") or {}
    violations = [v for v in (cal.get("violations") or []) if isinstance(v, dict)]
    in_quotes = [v for v in violations if v.get("quoted_k_ranges")]
    if "ok_in_quoted_range" not in cal:        # surfaces stored before the quoted-range split
        in_quotes = violations
    return {"rmse_median_vol_points": num(get(diag, "rmse_vol_points", "median")),
            "rmse_max_vol_points": num(get(diag, "rmse_vol_points", "max")),
            "butterfly_ok": get(diag, "butterfly", "ok"), "calendar_ok": cal.get("ok"),
            "calendar_in_quotes": [f"{expiry_code(v['expiry_before'])}→{expiry_code(v['expiry_after'])}"
                                   for v in in_quotes if isinstance(v.get("expiry_before"), datetime)],
            "calendar_outside_quotes": len(violations) - len(in_quotes),
            "fitted": sum(1 for s in slices if _slice_params(s) is not None), "slices": len(slices)}


def volatility(db, currency: str | None = None) -> dict:
    """Smiles of every listed expiry (OTM marks, bid/ask IV, the SVI fit on the quoted range), the term
    structure and constant maturities from both sources, the 30-day variance-swap vol (SVI), the SVI surface
    for the 3D view and the fit's diagnostics, for the latest chain of `currency`."""
    currencies = read.currencies(db)
    base = {"currencies": currencies, "currency": "", "empty": NO_CHAIN, "smiles": []}
    if not currencies:
        return base
    cur = _choose(currency, currencies, "currency")
    chain = latest_chain(db, cur)
    info = chain.snapshot
    surface = read.surface_at(db, info.snapshot_id)
    surface_note = ""
    if surface is None:
        older = read.latest_surface(db, cur)
        surface_note = (f"no SVI fit of {info.snapshot_id} yet (latest fit: {older['snapshot_id']}) — run `qortcli surface`"
                        if older else empty_hint(schema.SURFACES) + " for the SVI fit")
    basis = chain.frame.attrs.get("basis") or DEFAULT_BASIS
    dpy = BASES[basis]
    summary, summary_source = _summary_for(db, chain, surface)
    smiles, fitted = _smiles(chain.frame, surface, dpy)
    term = [{"expiry": t.get("expiry_code") or expiry_code(t["expiry"]), "days": num(t.get("t_years")) * dpy,
             "forward_usd": num(t.get("forward_usd")),
             **{k: num(t.get(k)) for k in ("atm_iv_marks", "atm_iv_svi", "rr25_marks", "rr25_svi", "bf25_marks",
                                           "bf25_svi")}}
            for t in (summary.get("term_structure") or []) if num(t.get("t_years")) and num(t.get("t_years")) > 0]
    tenors = [{"tenor_days": float(d), **{f"{m}_{s}": num(summary.get(f"{m}_{sm.tenor_label(d)}_{s}"))
                                          for m in ("atm_iv", "rr25", "bf25") for s in ("marks", "svi")}}
              for d in read.SUMMARY_TENORS_DAYS]
    return {"currencies": currencies, "currency": cur, "empty": "", "snapshot_id": info.snapshot_id,
            "timestamp": iso(info.timestamp), "basis": basis, "surface_snapshot_id": get(surface, "snapshot_id"),
            "surface_timestamp": iso(get(surface, "fitted_at")) or iso(get(surface, "timestamp")),
            "surface_note": surface_note, "summary_source": summary_source, "smiles": smiles, "term": term,
            "tenors": tenors, "atm_iv_30d_marks": num(summary.get("atm_iv_30d_marks")),
            "atm_iv_30d_svi": num(summary.get("atm_iv_30d_svi")), "vs_vol_30d_svi": num(summary.get("vs_vol_30d_svi")),
            "term_slope_marks": num(summary.get("term_slope_marks")), "term_slope_svi": num(summary.get("term_slope_svi")),
            "surface": _surface_grid(smiles, fitted), "diagnostics": _diagnostics(surface)}


# --------------------------------------------------------------------------------------------- portfolio

METRIC_NAMES = {
    "total_return": ("Total return", "pct"), "cagr": ("CAGR (annualised return)", "pct"),
    "volatility": ("Volatility (annualised)", "pct"), "sharpe": ("Sharpe ratio (rf 0)", "ratio"),
    "sortino": ("Sortino ratio", "ratio"), "calmar": ("Calmar ratio", "ratio"), "omega": ("Omega ratio", "ratio"),
    "max_drawdown": ("Maximum drawdown", "pct"), "var_95": ("VaR 95 % (1 day, historical)", "pct"),
    "cvar_95": ("CVaR 95 % (1 day, historical)", "pct"), "var_95_parametric": ("VaR 95 % (1 day, normal)", "pct"),
    "days": ("Days of returns", "int"), "first": ("First day", "text"), "last": ("Last day", "text"),
    "mean_turnover": ("Mean turnover per rebalance", "pct"), "rebalances": ("Rebalances", "int"),
}


def _metric_rows(block: dict | None) -> list[dict]:
    """[{key, name, kind, portfolio, benchmark}] of a metrics block {portfolio: {...}, benchmark: {...}}."""
    if not isinstance(block, dict):
        return []
    port, bench = block.get("portfolio") or {}, block.get("benchmark") or {}
    keys = [k for k in METRIC_NAMES if k in port or k in bench] + [k for k in port if k not in METRIC_NAMES]
    rows = []
    for key in keys:
        name, kind = METRIC_NAMES.get(key, (key.replace("_", " ").capitalize(), "number"))
        pv, bv = port.get(key), bench.get(key)
        if kind != "text":
            pv, bv = num(pv), num(bv)
        rows.append({"key": key, "name": name, "kind": kind, "portfolio": pv, "benchmark": bv})
    extra = [{"key": k, "name": METRIC_NAMES[k][0], "kind": METRIC_NAMES[k][1], "portfolio": num(block.get(k)),
              "benchmark": None} for k in ("rebalances", "mean_turnover") if num(block.get(k)) is not None]
    return rows + extra


def portfolio_page(db, portfolio_id: str | None = None) -> dict:
    """Every stored optimiser portfolio id (books excluded) and the newest run of the chosen one (default: the
    newest as-of): weights by asset and sector, out-of-sample (walk-forward) and in-sample metrics with human
    names, the backtest equity curve (growth of 1) and what was excluded."""
    heads = read.portfolio_heads(db)
    ids = [h.portfolio_id for h in heads]
    base = {"ids": ids, "portfolio_id": "", "empty": empty_hint(schema.PORTFOLIOS)}
    if not ids:
        return base
    pid = portfolio_id if portfolio_id in ids else ids[0]
    if portfolio_id and portfolio_id not in ids:
        raise UsageError(f"no portfolio {portfolio_id}; stored: {', '.join(ids)}")
    doc = read.latest_portfolio(db, pid)
    sectors_of = doc.get("sectors") if isinstance(doc.get("sectors"), dict) else {}
    weights = doc.get("weights") or {}
    assets = sorted(({"symbol": str(s), "weight": num(w), "sector": str(sectors_of.get(s) or "")}
                     for s, w in weights.items() if num(w) is not None), key=lambda r: -r["weight"])
    sectors = sorted(({"sector": str(s), "weight": num(w)} for s, w in (doc.get("sector_weights") or {}).items()
                      if num(w) is not None), key=lambda r: -r["weight"])
    metrics = doc.get("metrics") or {}
    ins = metrics.get("in_sample") if isinstance(metrics.get("in_sample"), dict) else metrics
    oos = metrics.get("out_of_sample") if isinstance(metrics.get("out_of_sample"), dict) else None
    bt = doc.get("backtest") or {}
    kind = str(bt.get("kind") or "")
    return {"ids": ids, "portfolio_id": pid, "empty": "", "model": str(doc.get("model") or ""),
            "heads": [{"portfolio_id": h.portfolio_id, "model": h.model, "timestamp": iso(h.timestamp),
                       "computed_at": iso(h.computed_at)} for h in heads],
            "timestamp": iso(doc.get("timestamp")), "computed_at": iso(doc.get("computed_at")),
            "data_through": iso(as_utc(doc["timestamp"]) + timedelta(days=1)) if isinstance(doc.get("timestamp"), datetime) else None,
            "basis": doc.get("basis"),
            "params": {k: v for k, v in (doc.get("params") or {}).items() if isinstance(v, (str, int, float, bool))},
            "assets": assets, "sectors": sectors, "in_sample": _metric_rows(ins), "out_of_sample": _metric_rows(oos),
            "in_sample_note": str(get(ins, "note") or ""),
            "backtest": {"kind": kind, "out_of_sample": "walk" in kind.lower() or bool(oos),
                         "dates": [iso(d)[:10] if isinstance(d, datetime) else str(d)[:10] for d in (bt.get("dates") or [])],
                         "equity": column(bt.get("equity") or [], 5), "benchmark_equity": column(bt.get("benchmark_equity") or [], 5)},
            "excluded": [{"symbol": str(e.get("symbol")), "reason": str(e.get("reason"))} for e in (doc.get("excluded") or [])
                         if isinstance(e, dict)]}


# --------------------------------------------------------------------------------------------- suggestions

def _legs(doc: dict) -> list[dict]:
    out = []
    for leg in doc.get("legs") or []:
        if not isinstance(leg, dict):
            continue
        size = num(leg.get("size"))
        out.append({"instrument": str(leg.get("instrument") or leg.get("symbol") or "?"), "side": str(leg.get("side") or ""),
                    "size": size, "option_type": str(leg.get("option_type") or ""), "strike": num(leg.get("strike")),
                    "price_coin": num(leg.get("price_coin")), "price_usd": num(leg.get("price_usd")),
                    "mark_coin": num(leg.get("mark_coin")), "cross": str(leg.get("cross") or ""),
                    "iv": num(leg.get("iv")), "delta": num(leg.get("delta"))})
    return out


def suggestion_card(doc: dict) -> dict:
    """One stored suggestion for display: legs, premium (positive = paid: a debit), max P/L, breakevens, POP,
    net greeks, payoff grid and the last mark of its track record."""
    m = doc.get("metrics") or {}
    track = [t for t in (doc.get("track") or []) if isinstance(t, dict)]
    last = track[-1] if track else {}
    settlement = doc.get("settlement") if isinstance(doc.get("settlement"), dict) else {}
    grid = doc.get("payoff_grid") or {}
    n = min(len(grid.get("s_usd") or []), len(grid.get("pnl_usd") or []), len(grid.get("pnl_coin") or []))
    greeks = m.get("net_greeks") if isinstance(m.get("net_greeks"), dict) else {}
    return {"id": str(doc.get("_id")), "currency": str(doc.get("currency") or ""), "strategy": str(doc.get("strategy") or "?"),
            "expiry": doc.get("expiry_code") or (expiry_code(doc["expiry"]) if isinstance(doc.get("expiry"), datetime) else ""),
            "snapshot_id": str(doc.get("snapshot_id") or ""), "timestamp": iso(doc.get("timestamp")),
            "score": num(doc.get("score")), "reasoning": str(doc.get("reasoning") or ""), "status": str(doc.get("status") or ""),
            "index_usd": num(doc.get("index_usd")), "forward_usd": num(doc.get("forward_usd")), "legs": _legs(doc),
            "premium_coin": num(m.get("net_premium_coin")), "premium_usd": num(m.get("net_premium_usd")),
            **{f"max_{w}_{u}": num(m.get(f"max_{w}_{u}")) for w in ("profit", "loss") for u in ("usd", "coin")},
            **{f"max_{w}_{u}_unbounded": bool(m.get(f"max_{w}_{u}_unbounded")) for w in ("profit", "loss") for u in ("usd", "coin")},
            "breakevens_usd": [x for x in (num(v) for v in (m.get("breakevens_usd") or [])) if x is not None],
            "pop": num(m.get("pop")), "pop_reason": str(m.get("pop_reason") or ""),
            "net_greeks": {k: num(greeks.get(k)) for k in ("delta", "gamma_fwd_usd", "vega_spot_usd", "theta_spot_usd",
                                                           "delta_coin", "vega_coin", "theta_coin")},
            "payoff": {"s_usd": column((grid.get("s_usd") or [])[:n]), "pnl_usd": column((grid.get("pnl_usd") or [])[:n]),
                       "pnl_coin": column((grid.get("pnl_coin") or [])[:n])},
            "track_points": len(track), "last_mark_pnl_usd": num(last.get("pnl_usd")),
            "last_exit_pnl_usd": num(last.get("exit_pnl_usd")), "last_mark_at": iso(last.get("timestamp")),
            "settled_pnl_usd": num(settlement.get("pnl_usd")), "settled_pnl_coin": num(settlement.get("pnl_coin"))}


TRACK_FIELDS = {"currency": 1, "strategy": 1, "expiry": 1, "expiry_code": 1, "snapshot_id": 1, "timestamp": 1,
                "status": 1, "track": 1, "settlement": 1, "metrics.net_premium_usd": 1}


def suggestions_page(db) -> dict:
    """For every currency: the suggestions of its newest suggested-on snapshot (cards, best score first) and how
    that snapshot compares with the latest chain; and the track record of its newest suggestions."""
    chains = {cur: read.latest_snapshot(db, cur) for cur in read.currencies(db)}
    groups, track = [], []
    totals = {"total": 0, "open": 0}
    for cur in read.suggestion_currencies(db):
        sid, docs = read.latest_suggestions(db, cur)
        docs.sort(key=lambda d: -(num(d.get("score")) or 0.0))
        latest = chains.get(cur)
        groups.append({"currency": cur, "snapshot_id": sid, "timestamp": iso(docs[0].get("timestamp")) if docs else None,
                       "chain_snapshot_id": latest.snapshot_id if latest else None,
                       "chain_timestamp": iso(latest.timestamp) if latest else None,
                       "cards": [suggestion_card(d) for d in docs]})
        counts = read.suggestion_counts(db, cur)
        totals = {k: totals[k] + counts[k] for k in totals}
        for d in read.recent_suggestions(db, cur, TRACK_ROWS, TRACK_FIELDS):
            card = suggestion_card(d)
            track.append({k: card[k] for k in ("id", "currency", "strategy", "expiry", "timestamp", "status", "track_points",
                                               "last_mark_pnl_usd", "last_exit_pnl_usd", "last_mark_at",
                                               "settled_pnl_usd", "premium_usd")})
    track.sort(key=lambda r: r["timestamp"] or "", reverse=True)
    settled = [r for r in track if r["settled_pnl_usd"] is not None]
    return {"groups": groups, "track": track, "total": totals["total"], "open": totals["open"],
            "listed": len(track), "settled": len(settled), "wins": sum(1 for r in settled if r["settled_pnl_usd"] > 0),
            "settled_pnl_usd": sum(r["settled_pnl_usd"] for r in settled) if settled else None,
            "empty": "" if groups else empty_hint(schema.SUGGESTIONS)}


# --------------------------------------------------------------------------------------------- registry

PAGE_LOADS: dict[str, Callable[..., dict]] = {
    "overview": overview,
    "chain": chain_page,
    "volatility": volatility,
    "portfolio": portfolio_page,
    "suggestions": suggestions_page,
    "market": market_page,
    "book": book_page,
    "history": history_page,
}
