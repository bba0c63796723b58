"""Forecasts of h-day realised vol (HAR-RV, GARCH(1,1), GJR-GARCH(1,1,1)) and their out-of-sample scores.

Pure numpy/pandas/arch, no I/O. Returns and variances come from `qortcli.quant.realised` (the gap rule:
a return spanning a missing day is dropped). Every variance here is an *annualised* variance
(fraction², × days_per_year, default 365.0); every vol its square root.

Target
    The h-day forward realised variance of origin t (the close of UTC day t):
    RV²(t, h) = days_per_year × mean of the one-day squared log returns r_d², d = t + 1 … t + h
    (`realised.forward_variance`; n/a while the window runs past the data or holds fewer than
    ⌈0.6 h⌉ returns).

Models (fitted on data up to the refit day T only; their forecasts at origins t ≥ T use data ≤ t)
    har      Corsi's HAR-RV by OLS (numpy lstsq): RV²(t, h) = c + β_d RV_d(t) + β_w RV_w(t) + β_m RV_m(t) + ε,
             regressors the annualised mean r² over the last 1, 7 and 30 calendar days (crypto trades
             every day: a week is 7 days, a month 30). Training rows: origins whose target window ends
             on or before T. A level HAR can forecast a negative variance: forecasts are floored at the
             smallest target seen in training (counted in `floored`).
    garch    `arch_model(100·r, mean="Constant", vol="GARCH", p=1, o=0, q=1, dist="t", rescale=False)`:
             percent returns, as arch recommends; fitted by arch's maximum likelihood (nothing written
             by hand). The h-day forecast is arch's analytic forecast of E[r²] = σ²_{t+k} + μ² averaged
             over k = 1 … h (the next h returns), /10⁴ × days_per_year.
    gjr      the same with o=1 (GJR-GARCH(1,1,1): a leverage term γ ε² 1[ε < 0]).
    naive    "RV persists": the trailing h-day realised variance RV²(t − h, h) (same window rule).
    implied  the h-day constant-maturity ATM IV of day t, squared (an input series, e.g. the summaries'
             atm_iv_{h}d_marks; IV is a risk-neutral forecast and carries the variance risk premium).

Rolling out-of-sample evaluation (`evaluate_forecasts`)
    Origins are the UTC days of [eval_start, eval_end] (default: from the first day with an implied vol,
    at most `eval_days` = 365 days before the last origin, to the last day with a complete target).
    The models are refitted every `refit_every_days` calendar days (default 7) on the `train_days`
    calendar days ending on that refit day (default 730, a rolling two years; None = all data from the
    first day), with their parameters fixed in between: each later origin t of the block uses those
    parameters and the data up to t only (arch `fit(last_obs=…)` then `forecast(start=…)`, which
    filters the variance recursion through t). HAR is refitted on the same days. The scores of a
    horizon are computed on the *same* origins for every model: those where the target and every
    scored model's forecast exist (a model with no forecast at all is reported n/a and left out).
        QLIKE = mean( y/f − ln(y/f) − 1 )      MSE = mean( (f − y)² )
    with f the forecast and y the realised annualised variance (Patton's robust losses; QLIKE ≥ 0 and 0
    only for f = y). Daily origins overlap for h > 1, so consecutive losses are correlated.
    arch's loose variance bounds of a block (var/10⁸ … 10⁷·max ε²) are computed on the block's data;
    they never bind on daily crypto returns, so no forecast depends on data after its origin (the tests
    perturb the future and check).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from qortcli.quant.realised import (DAYS_PER_YEAR, MIN_COVERAGE, DailyVariance, daily_variance,
                                    forward_variance, trailing_variance)
from qortcli.quant.vol_history import daily_last

MODELS = ("har", "garch", "gjr", "naive", "implied")
FITTED_MODELS = ("har", "garch", "gjr")
HORIZONS = (7, 30)
HAR_LAGS = (1, 7, 30)
REFIT_EVERY_DAYS = 7              # weekly refits; parameters fixed in between
EVAL_DAYS = 365                  # default evaluation span: at most the last year of origins
TRAIN_DAYS = 730                 # rolling two-year training window (None: expanding from the first day)
MIN_TRAIN_DAYS = 365
GARCH_SCALE = 100.0              # percent returns for arch
_GARCH_O = {"garch": 0, "gjr": 1}


# ------------------------------------------------------------------------------------------ losses


def qlike_loss(forecast_var, realised_var) -> np.ndarray:
    """Elementwise QLIKE y/f − ln(y/f) − 1 of forecast variance f against realised variance y (annualised
    fraction², both > 0); NaN where either is not a positive number."""
    f = np.asarray(forecast_var, dtype=float)
    y = np.asarray(realised_var, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = y / f
        out = ratio - np.log(ratio) - 1.0
    return np.where((f > 0) & (y > 0) & np.isfinite(f) & np.isfinite(y), out, np.nan)


def mse_loss(forecast_var, realised_var) -> np.ndarray:
    """Elementwise squared error (f − y)² of forecast vs realised annualised variance (fraction⁴)."""
    f = np.asarray(forecast_var, dtype=float)
    y = np.asarray(realised_var, dtype=float)
    return (f - y) ** 2


# --------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class _Inputs:
    dv: DailyVariance                   # close-to-close per-day variance on the calendar
    ret: np.ndarray                     # one-day log returns on the calendar (NaN = none)
    har_x: np.ndarray                   # (n, 3) annualised daily / weekly / monthly regressors
    targets: dict[int, np.ndarray]      # horizon → forward annualised variance per origin
    naive: dict[int, np.ndarray]        # horizon → trailing annualised variance per origin
    days_per_year: float

    @property
    def calendar(self) -> pd.DatetimeIndex:
        return self.dv.calendar


def _inputs(prices: pd.DataFrame, horizons: Iterable[int], lags, days_per_year: float, min_coverage: float) -> _Inputs:
    dv = daily_variance(prices, "close_to_close")
    ret = dv.returns.to_numpy()
    x = np.column_stack([trailing_variance(dv, int(lag), days_per_year, min_coverage)[0].to_numpy() for lag in lags])
    targets = {int(h): forward_variance(dv, int(h), days_per_year, min_coverage).to_numpy() for h in horizons}
    naive = {int(h): trailing_variance(dv, int(h), days_per_year, min_coverage)[0].to_numpy() for h in horizons}
    return _Inputs(dv, ret, x, targets, naive, days_per_year)


def _implied(implied: Mapping[int, pd.Series] | None, calendar: pd.DatetimeIndex, horizons) -> dict[int, np.ndarray]:
    out = {}
    for h in horizons:
        series = (implied or {}).get(int(h))
        if series is None:
            continue
        iv = daily_last(series).reindex(calendar).to_numpy()
        top = np.nanmax(iv) if np.isfinite(iv).any() else 0.0
        if top > 5.0:
            raise ValueError(f"the {h}-day implied vols reach {top:g}: pass fractions (0.45), not percent")
        out[int(h)] = np.where(iv > 0, iv * iv, np.nan)
    return out


def _day(ts) -> datetime | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(ts).to_pydatetime()


def _position(calendar: pd.DatetimeIndex, when, default: int) -> int:
    if when is None:
        return default
    ts = pd.Timestamp(when)
    if ts.tz is None:
        raise ValueError(f"dates must be tz-aware UTC, got naive {ts}")
    return int(calendar.searchsorted(ts.tz_convert("UTC"), side="right")) - 1


def _first_on_or_after(calendar: pd.DatetimeIndex, when) -> int:
    ts = pd.Timestamp(when)
    if ts.tz is None:
        raise ValueError(f"dates must be tz-aware UTC, got naive {ts}")
    return int(calendar.searchsorted(ts.tz_convert("UTC").ceil("D"), side="left"))


# ------------------------------------------------------------------------------------------ HAR


@dataclass(frozen=True)
class HarFit:
    """HAR-RV OLS fit for one horizon (coefficients on annualised variances; const in fraction²).

    fitted_through   the refit day T (the last target window ends on or before it)
    floor            smallest training target (forecasts are floored there)
    """

    horizon_days: int
    lags: tuple[int, int, int]
    const: float
    beta_daily: float
    beta_weekly: float
    beta_monthly: float
    n_obs: int
    r2: float
    floor: float
    first_origin: datetime | None
    last_origin: datetime | None
    fitted_through: datetime | None

    @property
    def params(self) -> dict[str, float]:
        return {"const": self.const, "beta_daily": self.beta_daily, "beta_weekly": self.beta_weekly,
                "beta_monthly": self.beta_monthly}

    @property
    def coefficients(self) -> np.ndarray:
        return np.array([self.const, self.beta_daily, self.beta_weekly, self.beta_monthly])


def _har_fit(inp: _Inputs, h: int, through: int, train_days: int | None, lags, min_train: int) -> HarFit | str:
    n = inp.har_x.shape[0]
    origins = np.arange(n)
    y = inp.targets[h]
    ok = (origins + h <= through) & np.isfinite(y) & np.isfinite(inp.har_x).all(axis=1)
    if train_days is not None:
        ok &= origins > through - int(train_days)
    m = int(ok.sum())
    if m < min_train:
        return f"n/a: HAR needs {min_train} training origins, has {m}"
    a = np.column_stack([np.ones(m), inp.har_x[ok]])
    beta, *_ = np.linalg.lstsq(a, y[ok], rcond=None)
    resid = y[ok] - a @ beta
    tss = float(((y[ok] - y[ok].mean()) ** 2).sum())
    cal = inp.calendar
    used = origins[ok]
    return HarFit(h, tuple(int(v) for v in lags), *(float(b) for b in beta), m,
                  1.0 - float(resid @ resid) / tss if tss > 0 else float("nan"), float(y[ok].min()),
                  _day(cal[used[0]]), _day(cal[used[-1]]), _day(cal[through]))


def fit_har(prices: pd.DataFrame, horizon_days: int, as_of=None, lags: tuple[int, int, int] = HAR_LAGS,
            train_days: int | None = TRAIN_DAYS, days_per_year: float = DAYS_PER_YEAR,
            min_coverage: float = MIN_COVERAGE, min_train: int = MIN_TRAIN_DAYS) -> HarFit:
    """HAR-RV fit (module docstring) of the `horizon_days` forward realised variance on daily OHLC (USD),
    using only data up to the last day ≤ `as_of`. Raises ValueError when there are too few origins."""
    inp = _inputs(prices, (horizon_days,), lags, days_per_year, min_coverage)
    through = _position(inp.calendar, as_of, len(inp.calendar) - 1)
    fit = _har_fit(inp, int(horizon_days), through, train_days, lags, min_train)
    if isinstance(fit, str):
        raise ValueError(fit)
    return fit


# ---------------------------------------------------------------------------------------- GARCH


@dataclass(frozen=True)
class GarchFit:
    """An arch GARCH-family fit with Student-t errors on percent daily log returns.

    params   arch's names and values (mu, omega in %², alpha[1], gamma[1] for gjr, beta[1], nu)
    n_obs    returns in the fit; first_day/last_day their span (UTC days)
    converged arch's optimiser reported success (convergence_flag 0)
    """

    model: str
    params: dict[str, float]
    n_obs: int
    first_day: datetime | None
    last_day: datetime | None
    loglikelihood: float
    converged: bool
    scale: float = GARCH_SCALE


def _arch_model(y_pct: np.ndarray, model: str):
    from arch import arch_model

    return arch_model(y_pct, mean="Constant", vol="GARCH", p=1, o=_GARCH_O[model], q=1, dist="t", rescale=False)


def _arch_fit(am, n_fit: int, start: np.ndarray | None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return am.fit(disp="off", last_obs=n_fit, starting_values=start, show_warning=False)


def _garch_sample(inp: _Inputs, through: int, last: int, train_days: int | None):
    """Observed one-day returns (percent) from the training start to `last`, their calendar positions,
    and how many of them are on or before `through`."""
    lo = 0 if train_days is None else max(0, through - int(train_days) + 1)
    pos = np.arange(lo, last + 1)
    r = inp.ret[lo:last + 1]
    keep = np.isfinite(r)
    pos, r = pos[keep], r[keep] * GARCH_SCALE
    n_fit = int(np.searchsorted(pos, through, side="right"))
    return r, pos, n_fit


def fit_garch(prices: pd.DataFrame, model: str = "garch", as_of=None, train_days: int | None = TRAIN_DAYS,
              min_train: int = MIN_TRAIN_DAYS) -> GarchFit:
    """Fit GARCH(1,1) (`model="garch"`) or GJR-GARCH(1,1,1) (`"gjr"`) with Student-t errors through arch
    on the percent one-day log returns (gap rule) of daily OHLC closes (USD) up to the last day ≤ `as_of`."""
    if model not in _GARCH_O:
        raise ValueError(f"unknown GARCH model {model!r}; use 'garch' or 'gjr'")
    inp = _inputs(prices, (), HAR_LAGS, DAYS_PER_YEAR, MIN_COVERAGE)
    through = _position(inp.calendar, as_of, len(inp.calendar) - 1)
    r, pos, n_fit = _garch_sample(inp, through, through, train_days)
    if n_fit < min_train:
        raise ValueError(f"n/a: {model} needs {min_train} returns, has {n_fit}")
    res = _arch_fit(_arch_model(r, model), n_fit, None)
    return _garch_record(res, model, inp.calendar, pos, n_fit)


def _garch_record(res, model: str, calendar, pos, n_fit: int) -> GarchFit:
    return GarchFit(model, {str(k): float(v) for k, v in res.params.items()},
                    n_fit, _day(calendar[pos[0]]), _day(calendar[pos[n_fit - 1]]), float(res.loglikelihood),
                    int(res.convergence_flag) == 0)


# ------------------------------------------------------------------------------------- the engine


@dataclass
class _Block:
    refit: int                          # calendar position of the refit day
    origins: np.ndarray                 # calendar positions forecast with these parameters


def _blocks(first: int, last: int, every: int) -> list[_Block]:
    if every < 1:
        raise ValueError(f"refit_every_days must be at least 1, got {every}")
    starts = np.arange(first, last + 1, every)
    return [_Block(int(s), np.arange(s, min(s + every, last + 1))) for s in starts]


@dataclass
class _Paths:
    forecasts: dict[tuple[str, int], np.ndarray]     # (model, h) → annualised variance per calendar day
    fits: dict[tuple[str, int], object] = field(default_factory=dict)   # last fit per (model, h)
    reasons: dict[tuple[str, int], str] = field(default_factory=dict)
    floored: dict[int, int] = field(default_factory=dict)
    unconverged: dict[str, int] = field(default_factory=dict)                  # GARCH fits not converged


def _run(inp: _Inputs, blocks: list[_Block], horizons, train_days, lags, min_train: int) -> _Paths:
    n = len(inp.calendar)
    paths = _Paths({(m, h): np.full(n, np.nan) for m in FITTED_MODELS for h in horizons})
    hmax = max(horizons)
    for h in horizons:
        paths.floored[h] = 0
    starts: dict[str, np.ndarray | None] = {m: None for m in _GARCH_O}
    for block in blocks:
        for h in horizons:                                  # HAR
            fit = _har_fit(inp, h, block.refit, train_days, lags, min_train)
            if isinstance(fit, str):
                paths.reasons[("har", h)] = fit
                continue
            x = inp.har_x[block.origins]
            f = np.column_stack([np.ones(len(x)), x]) @ fit.coefficients
            low = np.isfinite(f) & (f < fit.floor)
            paths.floored[h] += int(low.sum())
            paths.forecasts[("har", h)][block.origins] = np.where(low, fit.floor, f)
            paths.fits[("har", h)] = fit
        last = int(block.origins[-1])
        r, pos, n_fit = _garch_sample(inp, block.refit, last, train_days)
        for model in _GARCH_O:                              # GARCH, GJR: one fit serves every horizon
            if n_fit < min_train:
                for h in horizons:
                    paths.reasons[(model, h)] = f"n/a: {model} needs {min_train} returns, has {n_fit}"
                continue
            res = _arch_fit(_arch_model(r, model), n_fit, starts[model])
            starts[model] = np.asarray(res.params)
            if int(res.convergence_flag) != 0:
                paths.unconverged[model] = paths.unconverged.get(model, 0) + 1
            fc = res.forecast(horizon=hmax, start=n_fit - 1, reindex=False)
            ex2 = np.asarray(fc.variance) + np.asarray(fc.mean) ** 2          # E[r²] in %², rows = origins
            rows = pos[n_fit - 1:]                                             # calendar position of each row
            record = _garch_record(res, model, inp.calendar, pos, n_fit)
            for h in horizons:
                ann = ex2[:, :h].mean(axis=1) / GARCH_SCALE ** 2 * inp.days_per_year
                target = paths.forecasts[(model, h)]
                inside = np.isin(rows, block.origins)
                target[rows[inside]] = ann[inside]
                paths.fits[(model, h)] = record
    return paths


# ----------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Forecast:
    """A forecast of the realised vol over target_start … target_end (UTC days) made at the close of `origin`.

    vol / variance   annualised fraction / fraction²; None with `reason` when the model cannot forecast
    params           the model's parameters (HAR coefficients, arch's GARCH names; {} for naive/implied)
    n_obs            training size (HAR origins, GARCH returns); 0 for naive/implied
    """

    model: str
    horizon_days: int
    origin: datetime | None
    target_start: datetime | None
    target_end: datetime | None
    vol: float | None
    variance: float | None
    params: dict[str, float]
    n_obs: int
    fitted_through: datetime | None
    reason: str | None = None


@dataclass(frozen=True)
class ForecastScore:
    """Out-of-sample losses of one model at one horizon on the common origins (module docstring).

    qlike, mse       means over the n origins, on annualised variance (mse in fraction⁴)
    rmse_vol         √mean((√f − √y)²), in vol (fraction) — a readable companion to MSE
    mean_forecast_vol, mean_realised_vol   means of √f and √y over the same origins
    params           the model's parameters at the last refit ({} for naive and implied)
    """

    model: str
    horizon_days: int
    n: int
    qlike: float | None
    mse: float | None
    rmse_vol: float | None
    mean_forecast_vol: float | None
    mean_realised_vol: float | None
    span_start: datetime | None
    span_end: datetime | None
    refit_every_days: int
    params: dict[str, float] = field(default_factory=dict)
    reason: str | None = None


@dataclass(frozen=True)
class ForecastEvaluation:
    """The rolling out-of-sample evaluation.

    paths        DataFrame (index: origin days, UTC; columns: MultiIndex (horizon, model | "realised")) of
                 annualised variances: each model's forecast made at that origin and the realised target
    refit_days   the refit days (UTC)
    floored      {horizon: HAR forecasts floored at the training minimum}
    unconverged  {model: refits where arch's optimiser did not report convergence (forecasts still made)}
    """

    horizons: tuple[int, ...]
    refit_every_days: int
    train_days: int | None
    eval_start: datetime | None
    eval_end: datetime | None
    scores: tuple[ForecastScore, ...]
    paths: pd.DataFrame
    refit_days: tuple[datetime, ...]
    floored: dict[int, int]
    unconverged: dict[str, int]

    def score(self, model: str, horizon_days: int) -> ForecastScore | None:
        return next((s for s in self.scores if s.model == model and s.horizon_days == horizon_days), None)

    def best(self, horizon_days: int, loss: str = "qlike", models: Iterable[str] = MODELS) -> str | None:
        """The scored model with the lowest `loss` ("qlike" or "mse") at the horizon, or None."""
        models = set(models)
        rows = [s for s in self.scores if s.horizon_days == horizon_days and s.model in models
                and getattr(s, loss) is not None]
        return min(rows, key=lambda s: getattr(s, loss)).model if rows else None


def _params(fit) -> dict[str, float]:
    if isinstance(fit, HarFit):
        return fit.params
    if isinstance(fit, GarchFit):
        return dict(fit.params)
    return {}


def _check_horizons(horizons) -> tuple[int, ...]:
    hs = tuple(sorted({int(h) for h in horizons}))
    if not hs or hs[0] < 1:
        raise ValueError(f"horizons must be positive day counts, got {tuple(horizons)}")
    return hs


def evaluate_forecasts(prices: pd.DataFrame, implied: Mapping[int, pd.Series] | None = None,
                       horizons: Iterable[int] = HORIZONS, eval_start=None, eval_end=None,
                       refit_every_days: int = REFIT_EVERY_DAYS, train_days: int | None = TRAIN_DAYS,
                       eval_days: int | None = EVAL_DAYS, lags: tuple[int, int, int] = HAR_LAGS,
                       days_per_year: float = DAYS_PER_YEAR, min_coverage: float = MIN_COVERAGE, min_train: int = MIN_TRAIN_DAYS) -> ForecastEvaluation:
    """Rolling out-of-sample evaluation of HAR, GARCH, GJR, naive and implied (module docstring) on daily
    OHLC (USD) and, optionally, implied vols {horizon days: series of h-day ATM IV (fractions)}.

    Origins: the days of [eval_start, eval_end] (tz-aware). Defaults: from the first day with an implied vol
    (or the first day), at most `eval_days` before the end, to the last day whose shortest-horizon target
    is complete."""
    hs = _check_horizons(horizons)
    inp = _inputs(prices, hs, lags, days_per_year, min_coverage)
    cal = inp.calendar
    ivs = _implied(implied, cal, hs)
    last = _position(cal, eval_end, len(cal) - 1 - min(hs))
    first_default = 0
    if ivs:
        have = np.flatnonzero(np.any([np.isfinite(v) for v in ivs.values()], axis=0))
        if have.size:
            first_default = int(have[0])
    if eval_days is not None:
        first_default = max(first_default, last - int(eval_days) + 1)
    first = first_default if eval_start is None else _first_on_or_after(cal, eval_start)
    if first > last:
        raise ValueError(f"no evaluation origins: {cal[min(first, len(cal) - 1)].date()} is after "
                         f"{cal[max(last, 0)].date()} (the last day with a complete {min(hs)}-day target)")
    blocks = _blocks(first, last, int(refit_every_days))
    paths = _run(inp, blocks, hs, train_days, lags, min_train)
    origins = np.arange(first, last + 1)
    columns, data, scores = [], [], []
    for h in hs:
        y = inp.targets[h][origins]
        per_model = {m: paths.forecasts[(m, h)][origins] for m in FITTED_MODELS}
        per_model["naive"] = inp.naive[h][origins]
        if h in ivs:
            per_model["implied"] = ivs[h][origins]
        for m in MODELS:
            columns.append((h, m))
            data.append(per_model.get(m, np.full(origins.size, np.nan)))
        columns.append((h, "realised"))
        data.append(y)
        scored = [m for m in MODELS if m in per_model and np.isfinite(per_model[m]).any()]
        common = np.isfinite(y)
        for m in scored:
            common &= np.isfinite(per_model[m]) & (per_model[m] > 0)
        days = cal[origins[common]]
        for m in MODELS:
            params = _params(paths.fits.get((m, h)))
            if m not in scored:
                why = paths.reasons.get((m, h)) or ("n/a: no implied vol series for this horizon" if m == "implied"
                                                     else "n/a: no forecasts in the evaluation span")
                scores.append(ForecastScore(m, h, 0, None, None, None, None, None, None, None,
                                            int(refit_every_days), params, why))
                continue
            if not common.any():
                scores.append(ForecastScore(m, h, 0, None, None, None, None, None, None, None, int(refit_every_days),
                                            params, "n/a: no origin where every model and the target exist"))
                continue
            f, yy = per_model[m][common], y[common]
            scores.append(ForecastScore(
                m, h, int(common.sum()), float(np.mean(qlike_loss(f, yy))), float(np.mean(mse_loss(f, yy))),
                float(math.sqrt(np.mean((np.sqrt(f) - np.sqrt(yy)) ** 2))), float(np.mean(np.sqrt(f))),
                float(np.mean(np.sqrt(yy))), _day(days[0]), _day(days[-1]), int(refit_every_days), params))
    frame = pd.DataFrame(np.column_stack(data), index=cal[origins],
                         columns=pd.MultiIndex.from_tuples(columns, names=["horizon_days", "model"]))
    return ForecastEvaluation(hs, int(refit_every_days), train_days, _day(cal[first]), _day(cal[last]),
                              tuple(scores), frame, tuple(_day(cal[b.refit]) for b in blocks),
                              dict(paths.floored), dict(paths.unconverged))


def forecast_vol(prices: pd.DataFrame, implied: Mapping[int, pd.Series] | None = None,
                 horizons: Iterable[int] = HORIZONS, as_of=None, train_days: int | None = TRAIN_DAYS,
                 lags: tuple[int, int, int] = HAR_LAGS, days_per_year: float = DAYS_PER_YEAR,
                 min_coverage: float = MIN_COVERAGE, min_train: int = MIN_TRAIN_DAYS) -> tuple[Forecast, ...]:
    """Today's forecasts of the h-day realised vol by every model (module docstring), fitted on the daily
    OHLC (USD) up to the last day ≤ `as_of` (default: the last day of data), which is the origin."""
    hs = _check_horizons(horizons)
    inp = _inputs(prices, hs, lags, days_per_year, min_coverage)
    cal = inp.calendar
    pos = _position(cal, as_of, len(cal) - 1)
    if pos < 0:
        raise ValueError("no prices on or before the as-of day")
    paths = _run(inp, [_Block(pos, np.array([pos]))], hs, train_days, lags, min_train)
    ivs = _implied(implied, cal, hs)
    origin = cal[pos]
    out = []
    for h in hs:
        start, end = _day(origin + pd.Timedelta(days=1)), _day(origin + pd.Timedelta(days=h))
        for m in MODELS:
            fit, reason, n_obs = paths.fits.get((m, h)), paths.reasons.get((m, h)), 0
            if m in FITTED_MODELS:
                v = paths.forecasts[(m, h)][pos]
                n_obs = fit.n_obs if fit is not None else 0
                if reason is None and not np.isfinite(v):
                    reason = f"n/a: no one-day return on {origin.date()} to forecast from"
            elif m == "naive":
                v = inp.naive[h][pos]
                if not np.isfinite(v):
                    reason = f"n/a: the trailing {h}-day RV on {origin.date()} is n/a"
            else:
                v = ivs[h][pos] if h in ivs else np.nan
                if not np.isfinite(v):
                    reason = (f"n/a: no {h}-day implied vol on {origin.date()}" if h in ivs
                              else "n/a: no implied vol series for this horizon")
            ok = np.isfinite(v) and v > 0
            out.append(Forecast(m, h, _day(origin), start, end, float(math.sqrt(v)) if ok else None,
                                float(v) if ok else None, _params(fit), n_obs,
                                getattr(fit, "fitted_through", None) or getattr(fit, "last_day", None),
                                None if ok else reason))
    return tuple(out)
