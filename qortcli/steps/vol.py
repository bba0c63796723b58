"""The vol step: realised vol, IV rank/percentile, the vol cone, the variance premium and RV forecasts
scored out of sample, per currency, stored in `vol_forecasts`.

`run_vol(db, currency=None, source="marks", now=None, basis=None) -> VolSummary` reads, for each currency,
only `read.price_series(db, CUR)` (daily OHLC in USD) and `read.summary_series(db, CUR, resolution="day")`
(the day's last per-snapshot summary: constant-maturity ATM IV, RR25, BF25, term slope), calls the pure
`qortcli.quant.vol.vol_report` and upserts one document per currency, IV source and as-of day
(natural key `CUR|source|YYYY-MM-DD`: re-running on the same data replaces it). `now` cuts the inputs: price
days up to now's UTC day, summaries taken at or before `now` (default: everything stored). `basis` (default
the settings' `[pricing] day_count`) gives the days a year that annualise every realised variance.

Currencies: `currency`, else those with a complete options snapshot, else the settings' `[collect]
currencies`. A currency without prices gets a reason ("n/a: no BTC prices in price_data …") instead of a
document; too little history never fails the step: each figure that cannot be computed is None beside
its reason ("n/a: needs 20 points, has 7"). A requested currency without prices is a StepError.

The document (`vol_document`; every vol an annualised fraction, every variance fraction², days are UTC
midnights; IV figures from `source` — "marks" = Deribit's mark IVs, "svi" = the fitted surface):
    currency, source, basis, days_per_year, as_of (the last price day), computed_at,
    prices {first, last, days, missing_days}, summaries {n_days, first, last, columns},
    iv_as_of, iv_age_days (as_of − iv_as_of), iv_now [{tenor_days, iv}],
    realised [{estimator, window_days, vol, n_returns, n_missing_days, n_gap_returns, n_bad_bars, span_start,
               span_end, reason}]                                   (close_to_close, parkinson, garman_klass)
    ranks [{measure, column, lookback_days, value, rank, percentile, n_points, span_start, span_end,
            covers_lookback, min_points, reason}]                    (atm_iv_30d, rr25_30d, bf25_30d, term_slope)
    cone {estimator, history_days, history_start, history_end, rows [{window_days, n, min, q25, median, q75,
          max, current_rv, current_iv, iv_percentile, reason}]}
    premium {estimator, now [{tenor_days, day, iv, rv, premium_vol, premium_variance, reason}]}
    forecasts [{model, horizon_days, origin, target_start, target_end, vol, variance, params, n_obs,
                fitted_through, reason}]                             (har, garch, gjr, naive, implied × 7, 30)
    evaluation {horizons, refit_every_days, train_days, eval_start, eval_end, n_refits, floored, unconverged,
                scores [{model, horizon_days, n, qlike, mse, rmse_vol, mean_forecast_vol, mean_realised_vol,
                         span_start, span_end, params, reason}], best [{horizon_days, loss, model}]} | None,
    evaluation_reason
    best [{horizon_days, model, loss, score, mse, n_scored, implied_score, beats_implied, vol, variance,
           origin, target_start, target_end, reason}]   the lowest out-of-sample QLIKE among har, garch, gjr
                                                          and naive (implied is the comparison, not a candidate)
    paths {origin [days], series [{horizon_days, model (… | "realised"), vol [..]}]}   out-of-sample forecasts
           made at each origin and the RV that followed, as vols (√ of the annualised variance)
    rv_history {day [days], series [{window_days, vol [..]}]}    trailing close-to-close RV, the cone's span
    iv_history {day [days], series [{tenor_days, iv [..]}]}      the day's constant-maturity ATM IV
`VolSummary.to_dict()` is the JSON view: these documents (datetimes as ISO text) and the n/a reasons.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np
import pandas as pd

from qortcli.errors import StepError, UsageError
from qortcli.quant.vol import IV_TENORS, SOURCES, VolReport, history_columns, vol_report
from qortcli.quant.vol_history import MIN_POINTS, daily_last
from qortcli.steps.common import day_count
from qortcli.store import ops, read, schema
from qortcli.store.runs import recorded_run
from qortcli.timeutils import BASES, as_utc, require_utc, utcnow

CANDIDATES = ("har", "garch", "gjr", "naive")       # the models a "best forecast" is chosen from
BEST_LOSS = "qlike"
MIN_SCORED = MIN_POINTS                             # out-of-sample origins a "best" model needs


class CurrencyVol(NamedTuple):
    """One currency's result: the report and its stored document, or neither and the reason."""

    currency: str
    report: VolReport | None
    document: dict | None          # as stored (plain values, with its `_id`)
    reason: str | None = None


class VolSummary(NamedTuple):
    """What `run_vol` returns; `to_dict()` is its JSON view (the stored documents)."""

    source: str
    basis: str
    now: datetime | None
    results: tuple[CurrencyVol, ...]
    stored: int
    seconds: float

    def to_dict(self) -> dict:
        return _json({"step": "vol", "source": self.source, "basis": self.basis, "now": self.now,
                      "stored": self.stored, "seconds": self.seconds,
                      "currencies": [r.document if r.document is not None
                                     else {"currency": r.currency, "source": self.source, "reason": r.reason}
                                     for r in self.results]})


# ----------------------------------------------------------------------------------------------- inputs

def _source(source: str) -> str:
    wanted = (source or "").strip().lower()
    if wanted not in SOURCES:
        raise UsageError(f"unknown IV source {source!r}; use one of {', '.join(SOURCES)}")
    return wanted


def _currencies(db, currency: str | None) -> list[str]:
    if currency:
        return [currency.strip().upper()]
    found = read.currencies(db)
    if found:
        return found
    from qortcli.config import get_settings

    listed = get_settings().section("collect").get("currencies") or []
    return [str(c).upper() for c in listed]


def _inputs(db, currency: str, now: datetime | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prices (UTC days up to now's day) and the daily summaries (taken at or before now) of one currency."""
    day_end = None if now is None else now.replace(hour=0, minute=0, second=0, microsecond=0)
    prices = read.price_series(db, currency, end=day_end)
    summaries = read.summary_series(db, currency, end=now, resolution="day")
    return prices, summaries


# ----------------------------------------------------------------------------------------------- the step

def run_vol(db, currency: str | None = None, source: str = "marks", now: datetime | None = None,
            basis: str | None = None) -> VolSummary:
    """The vol analysis of each currency (or of `currency`) from its stored prices and daily summaries,
    stored in `vol_forecasts` with a `job_runs` record (module docstring)."""
    source = _source(source)
    basis = day_count(basis)
    if now is not None:
        now = require_utc(now, "now")
    clock = time.perf_counter()
    args = {"currency": currency, "source": source, "now": now.isoformat() if now else None, "basis": basis}
    with recorded_run(db, "vol", args) as run:
        currencies = _currencies(db, currency)
        if not currencies:
            raise StepError("no currency to analyse: no options snapshot in the store and no [collect] currencies "
                            "in the settings; pass --currency")
        results = []
        for cur in currencies:
            prices, summaries = _inputs(db, cur, now)
            if prices["close"].notna().sum() == 0:
                reason = (f"n/a: no {cur} prices in price_data"
                          + (f" up to {now:%Y-%m-%d}" if now else "")
                          + ": run `qortcli collect prices` (or `collect prices --from-csv DIR`)")
                if currency:
                    raise StepError(reason.removeprefix("n/a: "))
                results.append(CurrencyVol(cur, None, None, reason))
                continue
            try:
                report = vol_report(prices, summaries if len(summaries) else None, source=source,
                                    days_per_year=BASES[basis])
            except ValueError as exc:
                raise StepError(f"vol {cur}: {exc}") from None
            doc = vol_document(cur, report, basis, prices, summaries, run.run_id)
            ops.upsert_many(db, schema.VOL_FORECASTS, [doc])
            stored = ops.to_plain(doc)
            stored["_id"] = schema.natural_key(schema.VOL_FORECASTS, stored)
            results.append(CurrencyVol(cur, report, stored))
        stored_n = sum(r.document is not None for r in results)
        run.counts.update(currencies=len(results), stored=stored_n, not_available=len(results) - stored_n)
        if stored_n == 0:
            raise StepError("; ".join(r.reason.removeprefix("n/a: ") for r in results))
    return VolSummary(source, basis, now, tuple(results), stored_n, round(time.perf_counter() - clock, 3))


# ----------------------------------------------------------------------------------------------- the document

def _day(ts) -> datetime | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(ts).to_pydatetime()


def _values(values) -> list:
    """Floats with NaN/inf → None (what the store keeps)."""
    return [None if v is None or not math.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]


def _record(obj, drop: tuple[str, ...] = ()) -> dict:
    """A frozen result dataclass as a plain dict (its own field names)."""
    return {k: getattr(obj, k) for k in obj.__dataclass_fields__ if k not in drop}


def _best(report: VolReport) -> list[dict]:
    """Per horizon: the candidate with the lowest out-of-sample QLIKE and its forecast from the last price day."""
    ev = report.evaluation
    horizons = sorted({f.horizon_days for f in report.forecasts})
    out = []
    for h in horizons:
        row = {"horizon_days": h, "model": None, "loss": BEST_LOSS, "score": None, "mse": None, "n_scored": 0,
               "implied_score": None, "beats_implied": None, "vol": None, "variance": None, "origin": None,
               "target_start": None, "target_end": None, "reason": None}
        model = ev.best(h, BEST_LOSS, CANDIDATES) if ev is not None else None
        if model is None:
            row["reason"] = (report.evaluation_reason if ev is None
                             else f"n/a: no out-of-sample {BEST_LOSS.upper()} at {h} days for {', '.join(CANDIDATES)}")
            out.append(row)
            continue
        score, implied = ev.score(model, h), ev.score("implied", h)
        if score.n < MIN_SCORED:
            where = " (models are scored where the implied vol exists too)" if implied is not None and implied.n else ""
            row.update(n_scored=score.n, reason=f"n/a: needs {MIN_SCORED} scored origins, has {score.n}{where}")
            out.append(row)
            continue
        fc = next(f for f in report.forecasts if f.model == model and f.horizon_days == h)
        row.update(model=model, score=score.qlike, mse=score.mse, n_scored=score.n,
                   implied_score=implied.qlike if implied is not None else None,
                   beats_implied=(score.qlike < implied.qlike) if implied is not None and implied.qlike is not None
                   else None, vol=fc.vol, variance=fc.variance, origin=fc.origin, target_start=fc.target_start,
                   target_end=fc.target_end, reason=fc.reason)
        out.append(row)
    return out


def _evaluation(report: VolReport) -> dict | None:
    ev = report.evaluation
    if ev is None:
        return None
    return {"horizons": list(ev.horizons), "refit_every_days": ev.refit_every_days, "train_days": ev.train_days,
            "eval_start": ev.eval_start, "eval_end": ev.eval_end, "n_refits": len(ev.refit_days),
            "floored": [{"horizon_days": h, "n": n} for h, n in sorted(ev.floored.items())],
            "unconverged": [{"model": m, "n": n} for m, n in sorted(ev.unconverged.items())],
            "scores": [_record(s, ("refit_every_days",)) for s in ev.scores],
            "best": [{"horizon_days": h, "loss": loss, "model": ev.best(h, loss)}
                     for h in ev.horizons for loss in ("qlike", "mse")]}


def _paths(report: VolReport) -> dict:
    ev = report.evaluation
    if ev is None or ev.paths.empty:
        return {"origin": [], "series": []}
    frame = ev.paths
    series = [{"horizon_days": int(h), "model": str(m), "vol": _values(np.sqrt(frame[(h, m)].to_numpy()))}
              for h, m in frame.columns]
    return {"origin": [_day(d) for d in frame.index], "series": series}


def _rv_history(report: VolReport) -> dict:
    vol = report.rolling.vol
    cone = report.cone
    if cone.history_start is not None:
        vol = vol[vol.index >= pd.Timestamp(cone.history_start)]
    return {"day": [_day(d) for d in vol.index],
            "series": [{"window_days": int(w), "vol": _values(vol[w].to_numpy())} for w in vol.columns]}


def _iv_history(summaries: pd.DataFrame | None, source: str) -> dict:
    series, days = {}, pd.DatetimeIndex([], tz="UTC")
    for tenor in IV_TENORS if summaries is not None else ():
        column = f"atm_iv_{tenor}d_{source}"
        if column in summaries.columns:
            daily = daily_last(pd.to_numeric(summaries[column], errors="coerce").astype(float))
            if len(daily):
                series[tenor] = daily
                days = days.union(daily.index)
    return {"day": [_day(d) for d in days],
            "series": [{"tenor_days": t, "iv": _values(s.reindex(days).to_numpy())} for t, s in series.items()]}


def _summary_span(summaries: pd.DataFrame | None) -> dict:
    if summaries is None or summaries.empty:
        return {"n_days": 0, "first": None, "last": None}
    index = summaries.index
    return {"n_days": int(index.floor("D").nunique()), "first": _day(index.min()), "last": _day(index.max())}


def vol_document(currency: str, report: VolReport, basis: str, prices: pd.DataFrame, summaries: pd.DataFrame | None,
                 run_id: str | None = None) -> dict:
    """The `vol_forecasts` document of one currency's report (module docstring for the fields and units)."""
    columns = history_columns(report.source)
    cone = report.cone
    calendar = report.rolling.vol.index
    closes = pd.to_numeric(prices["close"], errors="coerce")
    with_close = int(((closes > 0) & closes.index.isin(calendar)).sum())
    iv_age = None
    if report.iv_as_of is not None:
        iv_age = (pd.Timestamp(report.price_end).normalize() - pd.Timestamp(report.iv_as_of).normalize()).days
    return {
        "currency": currency, "source": report.source, "basis": basis, "days_per_year": BASES[basis],
        "as_of": report.price_end, "computed_at": utcnow(), "run_id": run_id,
        "prices": {"first": report.price_start, "last": report.price_end, "calendar_days": len(calendar),
                   "missing_days": len(calendar) - with_close},
        "summaries": {**_summary_span(summaries), "columns": columns},
        "iv_as_of": report.iv_as_of, "iv_age_days": iv_age,
        "iv_now": [{"tenor_days": t, "iv": v} for t, v in sorted(report.iv_now.items())],
        "realised": [_record(r, ("as_of", "days_per_year")) for r in report.realised],
        "ranks": [{"measure": measure, "column": columns[measure], **_record(r, ("as_of",))}
                  for measure, rows in report.ranks.items() for r in rows],
        "cone": {"estimator": cone.estimator, "history_days": cone.history_days, "history_start": cone.history_start,
                 "history_end": cone.history_end, "rows": [_record(r) for r in cone.rows]},
        "premium": {"estimator": report.premium.estimator, "now": [_record(r) for r in report.premium.now]},
        "forecasts": [_record(f) for f in report.forecasts],
        "evaluation": _evaluation(report), "evaluation_reason": report.evaluation_reason,
        "best": _best(report),
        "paths": _paths(report),
        "rv_history": _rv_history(report),
        "iv_history": _iv_history(summaries, report.source),
    }


# ----------------------------------------------------------------------------------------------- the view

def _json(value):
    """JSON-able values: datetimes → ISO 8601 text, NaN → None, numpy → Python."""
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, datetime):
        return ops.to_plain(value).isoformat()
    return ops.to_plain(value)


# ----------------------------------------------------------------------------------------------- for suggest

def forecast_regime(doc: dict | None, tenor_days: int, as_of: datetime) -> dict:
    """The regime keys the IV-vs-forecast rules of `qortcli.quant.strategies` read, from a stored vol document
    (`read.latest_vol(db, currency)`, or None) seen at `as_of` (the snapshot time, tz-aware):

        forecast_tenor_days     T (days; one of the document's horizons, 7 or 30)
        forecast_rv_{T}d        the best model's forecast of the T-day realised vol (annualised fraction)
        forecast_model          that model (lowest out-of-sample QLIKE among har, garch, gjr, naive)
        forecast_qlike, forecast_implied_qlike, forecast_n_scored   its QLIKE, implied vol's on the same origins
        forecast_as_of          the forecast origin (the last price day, UTC midnight; its close ends that day)
        forecast_age_days       days from that close to `as_of`
        forecast_source         the IV source of the document ("marks"|"svi")
        forecast_reason         None, or why there is no forecast ("n/a: …")
    """
    tenor = int(tenor_days)
    out = {"forecast_tenor_days": tenor, f"forecast_rv_{tenor}d": None, "forecast_model": None, "forecast_qlike": None,
           "forecast_implied_qlike": None, "forecast_n_scored": 0, "forecast_as_of": None, "forecast_age_days": None,
           "forecast_source": None, "forecast_reason": None}
    if doc is None:
        out["forecast_reason"] = "n/a: no stored vol forecast: run `qortcli vol`"
        return out
    out["forecast_source"] = doc.get("source")
    best = next((b for b in doc.get("best") or [] if int(b["horizon_days"]) == tenor), None)
    if best is None:
        horizons = sorted(int(b["horizon_days"]) for b in doc.get("best") or [])
        out["forecast_reason"] = f"n/a: no {tenor}-day forecast (horizons {', '.join(map(str, horizons)) or 'none'})"
        return out
    origin = best.get("origin")
    age = None
    if origin is not None:
        age = (require_utc(as_of, "as_of") - (as_utc(origin) + timedelta(days=1))) / timedelta(days=1)
    out.update({f"forecast_rv_{tenor}d": best.get("vol"), "forecast_model": best.get("model"),
                "forecast_qlike": best.get("score"), "forecast_implied_qlike": best.get("implied_score"),
                "forecast_n_scored": best.get("n_scored") or 0, "forecast_as_of": origin, "forecast_age_days": age,
                "forecast_reason": best.get("reason")})
    return out
