"""Data of the viewer's History page: plain JSON-able values from `qortcli.store.read` only.

`history_page(db, currency=None, source="marks") -> dict` (db: a read-only handle) reads the daily summaries
(`read.summary_series(..., resolution="day")`: one point per UTC day, the day's last snapshot), the newest
stored vol analysis (`read.latest_vol`, written by `qortcli vol`) and the newest summary's listed term structure
(`read.latest_summary`), and returns (vols as annualised fractions, RR25/BF25 as vol differences, days as
ISO dates; every IV figure from `source`: "marks" = Deribit's mark IVs, "svi" = the fitted surface):

- `currencies`, `currency`, `source`, `empty` ("" or the hint to collect data), `vol_note` ("" or the hint to run
  `qortcli vol`), `as_of` (the vol analysis' last price day), `iv_as_of`, `computed_at`;
- `iv_rv`: `day`, `atm_iv_30d` (the summaries' 30-day constant-maturity ATM IV), `rv_30d` (trailing 30-day
  close-to-close RV of the stored analysis on the same days, None outside its span), and the out-of-sample
  30-day forecast path of the best model — `origin`, `forecast_30d`, `realised_next_30d` (the RV that followed),
  `forecast_model`;
- `ranks`: the stored rank/percentile rows (measure, column, lookback_days, value, rank, percentile, n_points,
  span_start, span_end, covers_lookback, reason);
- `skew`: `day`, `rr25_30d`, `bf25_30d`, `rr25_7d`, `bf25_7d` from the summaries;
- `cone`: `window_days`, `min`, `q25`, `median`, `q75`, `max`, `current_rv`, `history_start`, `history_end`;
  `term`: `tenor_days`, `iv` (the constant-maturity ATM IV of the analysis' IV day) and `listed` — `days`,
  `expiry_code`, `atm_iv` of the newest summary's listed expiries (days = t_years × the basis' days a year);
- `best` (per horizon: model, vol, QLIKE, implied's QLIKE, origins) and `scores` (the out-of-sample table).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from qortcli.errors import UsageError
from qortcli.store import read
from qortcli.store.ops import to_plain
from qortcli.timeutils import BASES, DEFAULT_BASIS

EMPTY = "no summaries in the store yet: run `qortcli collect sample` (or `collect deribit`) and `qortcli surface`"
NO_VOL = "no stored vol analysis for {cur} ({source}): run `qortcli vol --currency {cur}`"
SUMMARY_COLUMNS = ("atm_iv_30d", "rr25_30d", "bf25_30d", "rr25_7d", "bf25_7d")
SOURCES = ("marks", "svi")


def _utc(value) -> pd.Timestamp:
    """A stored datetime as a UTC Timestamp (BSON datetimes are UTC even when read back naive)."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _iso(value) -> str | None:
    if value is None or (not isinstance(value, datetime) and pd.isna(value)):
        return None
    return _utc(value).isoformat()


def _series(frame: pd.DataFrame, column: str) -> list:
    if column not in frame.columns:
        return [None] * len(frame)
    return to_plain(pd.to_numeric(frame[column], errors="coerce").astype(float).to_numpy())


def _daily(summaries: pd.DataFrame) -> pd.DataFrame:
    """One row per UTC day (the day's last summary), indexed by the day."""
    if summaries.empty:
        return summaries
    frame = summaries.sort_index()
    frame = frame.groupby(frame.index.floor("D")).last()
    frame.index.name = "day"
    return frame


def _rv_on(doc: dict, window: int, days: pd.DatetimeIndex) -> list:
    hist = doc.get("rv_history") or {}
    series = next((s for s in hist.get("series") or [] if s["window_days"] == window), None)
    if series is None:
        return [None] * len(days)
    by_day = dict(zip((_utc(d) for d in hist["day"]), series["vol"]))
    return [by_day.get(d) for d in days]


def _forecast_path(doc: dict, horizon: int) -> dict:
    best = next((b for b in doc.get("best") or [] if b["horizon_days"] == horizon), None)
    model = best["model"] if best else None
    paths = doc.get("paths") or {}
    series = {(s["horizon_days"], s["model"]): s["vol"] for s in paths.get("series") or []}
    if model is None or (horizon, model) not in series:
        return {"origin": [], "forecast": [], "realised_next": [], "model": model}
    return {"origin": [_iso(d) for d in paths["origin"]], "forecast": series[(horizon, model)],
            "realised_next": series.get((horizon, "realised"), []), "model": model}


def history_page(db, currency: str | None = None, source: str = "marks") -> dict:
    """The History page's data for one currency and IV source, as plain values (module docstring)."""
    if source not in SOURCES:
        raise UsageError(f"unknown IV source {source!r}; use one of {', '.join(SOURCES)}")
    currencies = read.currencies(db)
    if not currencies:
        return {"currencies": [], "currency": "", "source": source, "empty": EMPTY}
    cur = (currency or currencies[0]).upper()
    if cur not in currencies:
        raise UsageError(f"no {cur} options snapshot in the store; currencies with one: {', '.join(currencies)}")
    columns = [f"{c}_{source}" for c in SUMMARY_COLUMNS]
    daily = _daily(read.summary_series(db, cur, resolution="day", columns=columns))
    days = pd.DatetimeIndex(daily.index) if len(daily) else pd.DatetimeIndex([], tz="UTC")
    doc = read.latest_vol(db, cur, source)
    latest = read.latest_summary(db, cur)
    page = {
        "currencies": currencies, "currency": cur, "source": source,
        "empty": "" if len(daily) else f"no {cur} summaries yet: run `qortcli surface --backfill`",
        "vol_note": "" if doc else NO_VOL.format(cur=cur, source=source),
        "as_of": _iso(doc["as_of"]) if doc else None, "iv_as_of": _iso(doc.get("iv_as_of")) if doc else None,
        "computed_at": _iso(doc.get("computed_at")) if doc else None,
        "iv_rv": {"day": [_iso(d) for d in days], "atm_iv_30d": _series(daily, f"atm_iv_30d_{source}"),
                  "rv_30d": _rv_on(doc, 30, days) if doc else [None] * len(days),
                  "origin": [], "forecast_30d": [], "realised_next_30d": [], "forecast_model": None},
        "skew": {"day": [_iso(d) for d in days], **{c: _series(daily, f"{c}_{source}") for c in SUMMARY_COLUMNS[1:]}},
        "ranks": [], "best": [], "scores": [],
        "cone": {"window_days": [], "min": [], "q25": [], "median": [], "q75": [], "max": [], "current_rv": [],
                 "history_start": None, "history_end": None},
        "term": {"tenor_days": [], "iv": [], "listed": {"days": [], "expiry_code": [], "atm_iv": []}},
    }
    if latest is not None:
        per_year = BASES.get(latest.get("basis") or DEFAULT_BASIS, BASES[DEFAULT_BASIS])
        listed = [t for t in latest.get("term_structure") or [] if t.get(f"atm_iv_{source}") is not None]
        page["term"]["listed"] = {"days": [t["t_years"] * per_year for t in listed],
                                  "expiry_code": [t.get("expiry_code") for t in listed],
                                  "atm_iv": [t[f"atm_iv_{source}"] for t in listed]}
    if doc is None:
        return to_plain(page)
    path = _forecast_path(doc, 30)
    page["iv_rv"] = {**page["iv_rv"], "origin": path["origin"], "forecast_30d": path["forecast"],
                     "realised_next_30d": path["realised_next"], "forecast_model": path["model"]}
    keep = ("measure", "column", "lookback_days", "value", "rank", "percentile", "n_points", "span_start", "span_end",
            "covers_lookback", "reason")
    page["ranks"] = [{k: (_iso(r[k]) if k.startswith("span") else r[k]) for k in keep} for r in doc["ranks"]]
    rows = doc["cone"]["rows"]
    page["cone"] = {**{k: [r[k] for r in rows] for k in ("window_days", "min", "q25", "median", "q75", "max",
                                                          "current_rv")},
                    "history_start": _iso(doc["cone"]["history_start"]), "history_end": _iso(doc["cone"]["history_end"])}
    page["term"] = {**page["term"], "tenor_days": [r["tenor_days"] for r in doc["iv_now"]],
                    "iv": [r["iv"] for r in doc["iv_now"]]}
    page["best"] = [{k: b[k] for k in ("horizon_days", "model", "vol", "score", "implied_score", "n_scored", "reason")}
                    for b in doc["best"]]
    if doc.get("evaluation"):
        page["scores"] = [{k: s[k] for k in ("model", "horizon_days", "n", "qlike", "mse", "rmse_vol", "reason")}
                          for s in doc["evaluation"]["scores"]]
    return to_plain(page)
