"""The optimize step: stored daily closes → riskfolio allocation + quantstats metrics → `portfolio_data`.

`run_optimize(db, model="hrp", ...)` reads `price_data` (close, else price_usd; one document per symbol
per UTC day), builds aligned daily simple returns (`qortcli.quant.returns.daily_returns`), allocates
with the chosen model across assets or across sectors (two levels, `qortcli.quant.allocation`), measures
the result with quantstats (`[pricing] day_count`'s days a year as periods, 365 on ACT/365, stored as
`basis` and `params.periods_per_year`), optionally walks it forward (`rebalance`), compares it with the previous
allocation of the same `portfolio_id`, and writes one `portfolio_data` document through
`ops.upsert_many` inside `recorded_run`. The document's `timestamp` is the as-of day (the last day of
returns, UTC midnight), so re-running on the same data replaces the same document and a new day of
prices adds a new one; `computed_at` is the run time. The previous allocation is the latest document
of the same portfolio_id with an earlier as-of day. An infeasible or failed solve is a StepError naming
the model and the constraint; nothing is stored then.

Metrics are stored in two labelled blocks, out-of-sample first: `metrics.out_of_sample` (the walk-forward,
with `rebalance`: each period's weights fitted on the trailing window only, held buy-and-hold; see
`qortcli.quant.backtest`) and `metrics.in_sample` (the final weights applied to the whole window they were
fitted on, rebalanced daily, R @ w — optimistic by construction); `metrics.headline` names the block the
views lead with.
The benchmark is equal weight over the same assets (daily-rebalanced in-sample, rebalanced on the
walk-forward dates out-of-sample).
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from qortcli.errors import StepError, UsageError
from qortcli.store import ops, read, schema
from qortcli.steps.common import day_count, staleness
from qortcli.store.runs import recorded_run
from qortcli.timeutils import BASES, utcnow

UNCLASSIFIED = "Unclassified"
#: how the constraint messages of `qortcli.quant.constraints` name each bound: this command's options
OPTION_LABELS = {"max_asset": "--max-asset", "min_asset": "--min-asset", "max_group": "--max-sector", "group": "sector"}
IN_SAMPLE_NOTE = ("in-sample: the final weights applied to the window they were fitted on, rebalanced daily "
                  "(optimistic); the walk-forward (--rebalance) figures are out-of-sample")


def settings() -> dict:
    """The validated [optimize] section of the settings (packaged defaults merged with the user's file)."""
    from qortcli.config import get_settings

    return get_settings().section("optimize")


def portfolio_id_for(model: str, by_sector: bool, risk_measure: str = "MV", max_sector: float | None = None,
                     max_asset: float | None = None, min_asset: float | None = None, assets: list[str] | None = None,
                     start=None, rebalance: str | None = None, lookback_days: int | None = None,
                     min_history_days: int | None = None) -> str:
    """Stable name of a portfolio from its model and every input that changes it, e.g. "hrp-assets",
    "min-risk-cvar-sectors-maxsec0.4", "hrp-assets-btc+eth-from2022-01-01-monthly-lb180".

    `assets` (the requested tickers, sorted; more than five → their count and a short hash), `start`
    (the window's first day), `rebalance` with its `lookback_days`, and an explicit `min_history_days`
    are part of the name; `--end` is not: it is the as-of day, the second half of the document's `_id`
    (`portfolio_id|as-of`), so runs ending on different days are the same portfolio over time.
    """
    parts = [model]
    if risk_measure != "MV":
        parts.append(risk_measure.lower())
    parts.append("sectors" if by_sector else "assets")
    if max_sector is not None:
        parts.append(f"maxsec{max_sector:g}")
    if max_asset is not None:
        parts.append(f"maxasset{max_asset:g}")
    if min_asset:
        parts.append(f"minasset{min_asset:g}")
    if assets:
        tickers = sorted({a.upper() for a in assets})
        if len(tickers) <= 5:
            parts.append("+".join(t.lower() for t in tickers))
        else:
            digest = hashlib.sha1(",".join(tickers).encode()).hexdigest()[:6]
            parts.append(f"{len(tickers)}assets{digest}")
    if start is not None:
        parts.append(f"from{pd.Timestamp(start):%Y-%m-%d}")
    if rebalance:
        parts.append(rebalance + (f"-lb{lookback_days}" if lookback_days else ""))
    if min_history_days is not None:
        parts.append(f"minhist{min_history_days}")
    return "-".join(parts)


def _day(value, what: str) -> pd.Timestamp | None:
    """A UTC calendar day (tz-naive Timestamp at midnight) from a date, datetime or 'YYYY-MM-DD' (ISO only:
    01/02/2023 is ambiguous and refused)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        stamp = pd.Timestamp(value)
        if stamp.tz is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        return stamp.normalize()
    if isinstance(value, date):
        return pd.Timestamp(value)
    text = str(value).strip()
    try:
        if len(text) != 10:
            raise ValueError
        return pd.Timestamp(date.fromisoformat(text))
    except ValueError:
        raise UsageError(f"{what} must be a date YYYY-MM-DD (e.g. 2021-01-31), got {value!r}") from None


def load_closes(db, assets: list[str] | None = None, start: pd.Timestamp | None = None,
                end: pd.Timestamp | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Wide frame of daily closes (USD; index = UTC days, tz-naive) and each symbol's stored sector."""
    first = (start - pd.Timedelta(days=1)) if start is not None else None  # the first return needs the close before
    frame = read.closes_long(db, assets or None, _utc(first) if first is not None else None,
                             _utc(end) if end is not None else None)
    if frame.empty:
        return pd.DataFrame(), {}
    close = frame["close"] if "close" in frame else pd.Series(float("nan"), index=frame.index)
    if "price_usd" in frame:
        close = close.where(close.notna(), frame["price_usd"])
    frame["value"] = pd.to_numeric(close, errors="coerce")
    frame["day"] = pd.to_datetime(frame["timestamp"], utc=True).dt.tz_localize(None).dt.normalize()
    wide = frame.pivot_table(index="day", columns="symbol", values="value", aggfunc="last", dropna=False)
    wide = wide.reindex(columns=sorted(wide.columns))
    stored = {}
    if "sector" in frame:
        stored = frame.dropna(subset=["sector"]).groupby("symbol")["sector"].last().to_dict()
    return wide, stored


def _sector_map(symbols: list[str], stored: dict[str, str], sectors=None) -> dict[str, str | None]:
    """Sector of each symbol from the taxonomy (`qortcli.sectors`), else the stored one, else None."""
    from qortcli.sectors import load_sectors

    taxonomy = (sectors or load_sectors()).by_ticker()
    return {s: (taxonomy[s].sector if s in taxonomy else stored.get(s)) for s in symbols}


def previous_allocation(db, portfolio_id: str, before: datetime | None = None,
                        weights: dict[str, float] | None = None) -> dict | None:
    """The allocation a new one of `portfolio_id` as of `before` is compared with: the stored document of
    that same as-of day when its weights differ from `weights` (the data or the inputs changed since),
    else the latest one strictly before `before` (the latest of all when `before` is None)."""
    if before is not None and weights is not None:
        same = read.portfolio_at(db, portfolio_id, before)
        if same is not None and _weights_differ(same.get("weights") or {}, weights):
            return same
    return read.portfolio_before(db, portfolio_id, before)


def _weights_differ(old: dict[str, float], new: dict[str, float], tolerance: float = 1e-9) -> bool:
    return set(old) != set(new) or any(abs(float(old[a]) - float(new[a])) > tolerance for a in new)


def _utc(day: pd.Timestamp) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def run_optimize(db, model: str | None = None, by_sector: bool = False, risk_measure: str | None = None,
                 max_sector: float | None = None, max_asset: float | None = None, min_asset: float | None = None,
                 rebalance: str | None = None, start=None, end=None, assets: list[str] | None = None,
                 min_history_days: int | None = None, lookback_days: int | None = None,
                 portfolio_id: str | None = None, report: str | Path | None = None, sectors=None,
                 now: datetime | None = None) -> dict:
    """Optimise, measure, store one `portfolio_data` document (as of the last day of returns); returns a
    JSON-able summary (`now`: the run time recorded as `computed_at`).

    Weights and bounds are fractions of the portfolio (0.4 = 40%). `start`/`end` (inclusive UTC days)
    bound the returns window; `rebalance` ("weekly"|"monthly"|"quarterly") adds a walk-forward backtest
    fitted on the trailing `lookback_days`. `report` writes a quantstats HTML tearsheet (offline: the
    benchmark is the equal-weight series, never a downloaded ticker). `sectors` overrides the taxonomy.
    """
    from qortcli.quant import allocation as qa
    from qortcli.quant import backtest as qb
    from qortcli.quant import constraints as qc
    from qortcli.quant import metrics as qm
    from qortcli.quant import returns as qr

    cfg = settings()
    basis = day_count()
    periods = BASES[basis]
    explicit_min_history = min_history_days
    model = (model or cfg["model"]).lower()
    risk_measure = risk_measure or cfg["risk_measure"]
    rm_lookup = {r.lower(): r for r in qa.RISK_MEASURES}
    risk_measure = rm_lookup.get(str(risk_measure).lower(), risk_measure)
    min_history_days = int(min_history_days if min_history_days is not None else cfg["min_history_days"])
    lookback_days = int(lookback_days if lookback_days is not None else cfg["lookback_days"])
    threshold = float(cfg["rebalance_threshold"])
    try:
        qa.validate(model, risk_measure)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if rebalance is not None and rebalance not in qb.REBALANCE_FREQUENCIES:
        raise UsageError(f"--rebalance must be one of {', '.join(qb.REBALANCE_FREQUENCIES)}, got {rebalance!r}")
    for name, value in (("--max-sector", max_sector), ("--max-asset", max_asset), ("--min-asset", min_asset)):
        if value is not None and not 0 <= value <= 1:
            raise UsageError(f"{name} is a fraction of the portfolio between 0 and 1, got {value:g}")
    if max_sector is not None and not by_sector and model in qa.HC_MODELS:
        raise UsageError(f"--max-sector with {model} needs --by-sector (riskfolio's HCPortfolio takes per-asset "
                         "bounds only)")
    if min_history_days < 2 or lookback_days < 2:
        raise UsageError("--min-history and --lookback must be at least 2 days")
    start_day, end_day = _day(start, "--start"), _day(end, "--end")
    if start_day is not None and end_day is not None and end_day <= start_day:
        raise UsageError(f"--end {end_day.date()} is not after --start {start_day.date()}")
    if portfolio_id is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}", portfolio_id):
        raise UsageError(f"--name {portfolio_id!r}: use letters, digits and . _ + - (at most 100 characters)")
    now = now or utcnow()
    pid = portfolio_id or portfolio_id_for(model, by_sector, risk_measure, max_sector, max_asset, min_asset,
                                           assets=assets, start=start_day, rebalance=rebalance,
                                           lookback_days=lookback_days if rebalance else None,
                                           min_history_days=explicit_min_history)
    params = {"risk_measure": risk_measure, "by_sector": by_sector, "max_sector": max_sector,
              "max_asset": max_asset, "min_asset": min_asset, "rebalance": rebalance,
              "lookback_days": lookback_days if rebalance else None, "min_history_days": min_history_days,
              "start": start_day.date().isoformat() if start_day is not None else None,
              "end": end_day.date().isoformat() if end_day is not None else None,
              "assets": sorted(assets) if assets else None, "periods_per_year": periods,
              "linkage": {"hrp": qa.HRP_LINKAGE, "herc": qa.HERC_LINKAGE}.get(model),
              "codependence": qa.CODEPENDENCE if model in qa.HC_MODELS else None,
              "sector_series": "within-sector model weights" if by_sector else None}
    clock = time.perf_counter()
    with recorded_run(db, "optimize", {"model": model, "portfolio_id": pid, **params}) as run:
        closes, stored_sectors = load_closes(db, assets, start_day, end_day)
        if closes.empty:
            if assets:
                _unknown_assets(db, assets)
            raise StepError("no price_data in the store for this selection: run `qortcli collect prices` "
                            "(or `collect prices --from-csv DIR`) first")
        excluded: list[dict] = []
        missing = sorted(set(assets or []) - set(closes.columns))
        excluded += [{"symbol": s, "reason": "no price_data documents", "returns": 0} for s in missing]
        sector_of = _sector_map(list(closes.columns), stored_sectors, sectors)
        if by_sector:
            unknown = [s for s in closes.columns if not sector_of.get(s)]
            excluded += [{"symbol": s, "reason": "not in the sector taxonomy", "returns": None} for s in unknown]
            closes = closes.drop(columns=unknown)
        try:
            panel = qr.daily_returns(closes, min_history_days=min_history_days, start=start_day, end=end_day)
        except ValueError as exc:
            raise StepError(f"{model}: {exc}") from None
        excluded += panel.excluded
        returns = panel.returns
        included = list(returns.columns)
        groups = {s: (sector_of.get(s) or UNCLASSIFIED) for s in included}
        bounds = qc.Bounds(min_asset=min_asset or 0.0, max_asset=max_asset, max_group=max_sector,
                           groups=groups if max_sector is not None else None, labels=OPTION_LABELS)

        def fit(window: pd.DataFrame) -> pd.Series:
            if by_sector:
                return qa.optimize_by_sector(window, groups, model, risk_measure, bounds).weights
            return qa.optimize_weights(window, model, risk_measure, bounds)

        try:
            if by_sector:
                allocation = qa.optimize_by_sector(returns, groups, model, risk_measure, bounds)
                weights, within = allocation.weights, allocation.within
            else:
                weights, within = qa.optimize_weights(returns, model, risk_measure, bounds), None
        except qc.OptimizationError as exc:
            raise StepError(str(exc)) from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        sector_weights = weights.groupby([groups[a] for a in weights.index]).sum().sort_values(ascending=False)

        in_sample = qb.fixed_weight_returns(returns, weights)
        benchmark = returns.mean(axis=1).rename("equal_weight")
        metrics = {"headline": "in_sample", "periods_per_year": periods, "out_of_sample": None,
                   "in_sample": {"portfolio": qm.performance(in_sample, periods),
                                 "benchmark": qm.performance(benchmark, periods),
                                 "assets": qm.per_asset(returns, periods), "note": IN_SAMPLE_NOTE}}
        backtest = {"kind": "in-sample (final weights, rebalanced daily)", "dates": [_utc(d) for d in returns.index],
                    "equity": qb.equity_curve(in_sample), "benchmark_equity": qb.equity_curve(benchmark),
                    "rebalances": []}
        tear_returns, tear_bench = in_sample, benchmark
        if rebalance:
            try:
                wf = qb.walk_forward(returns, fit, rebalance, lookback_days)
            except (qc.OptimizationError, ValueError) as exc:
                raise StepError(f"walk-forward: {exc}") from None
            metrics["headline"] = "out_of_sample"
            metrics["out_of_sample"] = {"portfolio": qm.performance(wf.returns, periods),
                                        "benchmark": qm.performance(wf.benchmark, periods),
                                        "rebalances": len(wf.rebalances),
                                        "mean_turnover": float(pd.Series([r["turnover"] for r in wf.rebalances[1:]]).mean())
                                        if len(wf.rebalances) > 1 else None}
            backtest = {"kind": f"walk-forward ({rebalance}, {lookback_days}-day trailing fit, buy and hold)",
                        "dates": [_utc(d) for d in wf.returns.index], "equity": qb.equity_curve(wf.returns),
                        "benchmark_equity": qb.equity_curve(wf.benchmark),
                        "rebalances": [{"date": _utc(r["date"]), "weights": r["weights"], "turnover": r["turnover"]}
                                       for r in wf.rebalances]}
            tear_returns, tear_bench = wf.returns, wf.benchmark

        as_of = _utc(returns.index[-1])  # the document's timestamp: same data → same document
        new_weights = {a: float(w) for a, w in weights.items()}
        previous = previous_allocation(db, pid, before=as_of, weights=new_weights)
        stale = [] if end_day is not None else [n for n in [staleness(
            f"price_data (last day {as_of:%Y-%m-%d})", as_of + timedelta(days=1), "collect_prices", now)] if n]
        comparison = None
        if previous is not None:
            old = previous.get("weights") or {}
            comparison = {"previous_timestamp": previous.get("timestamp"),
                          "turnover": qb.turnover(old, new_weights),
                          "changes": qb.rebalance_plan(old, new_weights, threshold), "threshold": threshold}

        report_path = None
        if report:
            report_path = write_tearsheet(tear_returns, tear_bench, report, title=f"qortfolio {pid}", periods=periods)

        doc = {"portfolio_id": pid, "model": model, "params": params, "basis": basis, "timestamp": as_of, "computed_at": now,
               "run_id": run.run_id,
               "weights": new_weights, "sector_weights": {s: float(w) for s, w in sector_weights.items()},
               "sectors": groups, "within_sector": within, "metrics": metrics, "backtest": backtest,
               "excluded": excluded, "data": panel.summary(), "rebalancing": comparison}
        written = ops.upsert_many(db, schema.PORTFOLIOS, [doc])
        run.counts.update(assets=len(included), excluded=len(excluded), days=len(returns), written=written,
                          rebalances=len(backtest["rebalances"]))

    summary = {"step": "optimize", "portfolio_id": pid, "model": model, "params": params, "timestamp": as_of,
               "computed_at": now,
               "weights": new_weights, "sector_weights": doc["sector_weights"], "sectors": groups,
               "metrics": metrics, "excluded": excluded, "data": panel.summary(), "rebalancing": comparison,
               "backtest": {"kind": backtest["kind"], "days": len(backtest["dates"]),
                            "first": backtest["dates"][0], "last": backtest["dates"][-1],
                            "final_equity": float(backtest["equity"][-1]),
                            "final_benchmark_equity": float(backtest["benchmark_equity"][-1]),
                            "rebalances": len(backtest["rebalances"])},
               "report": str(report_path) if report_path else None, "stored": written, "stale": stale,
               "seconds": round(time.perf_counter() - clock, 3)}
    return summary


def _unknown_assets(db, assets: list[str]) -> None:
    """UsageError when none of the requested tickers has any price_data (naming the ones that do)."""
    from qortcli.sectors import load_sectors
    from qortcli.store import read

    known = [c.ticker for c in load_sectors().coins if read.last_price_day(db, c.ticker) is not None]
    if not any(read.last_price_day(db, a) is not None for a in assets):
        have = f"price_data has {', '.join(sorted(known))}" if known else \
            "price_data is empty: run `qortcli collect prices` first"
        raise UsageError(f"unknown asset(s) {', '.join(sorted(set(assets)))}: {have}")


def write_tearsheet(returns: pd.Series, benchmark: pd.Series, path: str | Path, title: str, periods: float) -> Path:
    """A quantstats HTML tearsheet of `returns` against the equal-weight `benchmark` series (`periods` a year).

    The benchmark is a Series, so quantstats downloads nothing.
    """
    import logging
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # "findfont: Arial not found" noise
    import quantstats as qs

    path = Path(path).expanduser()
    if path.parent and not path.parent.exists():
        raise UsageError(f"--report: directory {path.parent} does not exist")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            qs.reports.html(returns.rename("portfolio"), benchmark=benchmark.rename("equal weight"),
                            output=str(path), title=title, periods_per_year=periods, rf=0.0)
        except Exception as exc:  # plotting back-ends raise many kinds
            raise StepError(f"--report: quantstats could not write the tearsheet: {type(exc).__name__}: {exc}") from None
    return path


__all__ = ["run_optimize", "portfolio_id_for", "load_closes", "previous_allocation", "write_tearsheet",
           "settings"]
