"""HAR / GARCH / GJR forecasts and their rolling out-of-sample scores (qortcli.quant.vol_forecast)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from arch import arch_model

from qortcli.quant import vol_forecast as vf
from qortcli.quant import vol_history as vh

from vol_fixtures import bars, january_summaries

T = pd.Timestamp("2026-07-29", tz="UTC")        # after seven of the May–Aug 2026 gaps, the day before 07-30


def calendar_r2(frame: pd.DataFrame) -> pd.Series:
    """365 × one-day squared log returns on the calendar, NaN when either close is missing (the gap rule)."""
    close = frame["close"].asfreq("D")
    return 365.0 * np.log(close / close.shift(1)) ** 2


def mean_over(values: pd.Series, window: int, forward: bool = False) -> pd.Series:
    need = window if window == 1 else max(2, math.ceil(0.6 * window))
    s, n = values.rolling(window, min_periods=1).sum(), values.rolling(window, min_periods=1).count()
    if forward:   # (t, t + window]: the trailing window ending on t + window
        s, n = s.shift(-window), n.shift(-window)
    return (s / n).where(n >= need)


def test_har_coefficients_equal_an_independent_least_squares_fit():
    frame = bars()
    a2 = calendar_r2(frame)
    for h in (7, 30):
        x = pd.DataFrame({"d": mean_over(a2, 1), "w": mean_over(a2, 7), "m": mean_over(a2, 30)})
        y = mean_over(a2, h, forward=True)
        origin = x.index
        use = (origin + pd.Timedelta(days=h) <= T) & (origin > T - pd.Timedelta(days=730))
        use &= x.notna().all(axis=1).to_numpy() & y.notna().to_numpy()
        design = np.column_stack([np.ones(use.sum()), x[use].to_numpy()])
        beta = np.linalg.solve(design.T @ design, design.T @ y[use].to_numpy())   # normal equations
        fit = vf.fit_har(frame, h, as_of=T)
        assert fit.n_obs == int(use.sum())
        assert np.allclose(fit.coefficients, beta, rtol=1e-7, atol=1e-10)
        assert fit.fitted_through == T and fit.last_origin == origin[use][-1]


def percent_returns(frame: pd.DataFrame, through: pd.Timestamp, days: int = 730) -> np.ndarray:
    close = frame["close"].asfreq("D")
    r = 100.0 * np.log(close / close.shift(1))
    r = r[(r.index > through - pd.Timedelta(days=days)) & (r.index <= through)]
    return r.dropna().to_numpy()


@pytest.mark.parametrize("model,o", [("garch", 0), ("gjr", 1)])
def test_garch_parameters_equal_arch_fitted_directly_on_the_same_returns(model, o):
    frame = bars()
    y = percent_returns(frame, T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = arch_model(y, mean="Constant", vol="GARCH", p=1, o=o, q=1, dist="t", rescale=False).fit(disp="off")
    fit = vf.fit_garch(frame, model, as_of=T)
    assert fit.n_obs == y.size and fit.last_day == T
    assert list(fit.params) == list(ref.params.index)
    # the same optimum up to arch's optimiser tolerance (the returns are computed independently here)
    assert np.allclose(list(fit.params.values()), ref.params.to_numpy(), rtol=1e-5, atol=1e-8)
    assert fit.loglikelihood == pytest.approx(ref.loglikelihood, rel=1e-9)
    # today's forecast is arch's analytic forecast of E[r²] = σ² + μ² over the next h returns, annualised
    fc = ref.forecast(horizon=30, reindex=False)
    ex2 = fc.variance.to_numpy()[-1] + fc.mean.to_numpy()[-1] ** 2
    got = {f.horizon_days: f for f in vf.forecast_vol(frame, as_of=T) if f.model == model}
    for h in (7, 30):
        assert got[h].vol == pytest.approx(math.sqrt(ex2[:h].mean() / 1e4 * 365.0), rel=1e-5)
        assert got[h].origin == T and got[h].target_end == T + pd.Timedelta(days=h)


def test_qlike_and_mse_equal_hand_computations():
    assert vf.qlike_loss(0.25, 0.16) == pytest.approx(0.16 / 0.25 - math.log(0.16 / 0.25) - 1)
    assert vf.mse_loss(0.25, 0.16) == pytest.approx(0.09 ** 2)
    assert vf.qlike_loss(0.2, 0.2) == 0.0 and np.isnan(vf.qlike_loss(0.0, 0.2))
    # implied and naive scores on the 7 January days of recorded chains, computed by hand
    frame = bars()
    iv7 = vh.daily_last(january_summaries("btc")["atm_iv_7d_marks"])
    ev = vf.evaluate_forecasts(frame, {7: iv7}, horizons=(7,))
    a2 = calendar_r2(frame)
    y = mean_over(a2, 7, forward=True).reindex(iv7.index).to_numpy()
    naive = mean_over(a2, 7).reindex(iv7.index).to_numpy()
    f = iv7.to_numpy() ** 2
    implied, persist = ev.score("implied", 7), ev.score("naive", 7)
    assert implied.n == persist.n == 7 and ev.eval_start == iv7.index[0]
    assert implied.qlike == pytest.approx(np.mean(y / f - np.log(y / f) - 1), rel=1e-12)
    assert implied.mse == pytest.approx(np.mean((f - y) ** 2), rel=1e-12)
    assert persist.qlike == pytest.approx(np.mean(y / naive - np.log(y / naive) - 1), rel=1e-12)
    assert implied.span_start == iv7.index[0] and implied.span_end == iv7.index[-1]
    assert ev.best(7) == min((s for s in ev.scores if s.qlike is not None), key=lambda s: s.qlike).model


def test_out_of_sample_forecasts_never_use_data_after_their_origin():
    frame = bars()
    kwargs = dict(horizons=(7, 30), eval_start=pd.Timestamp("2026-03-01", tz="UTC"),
                  eval_end=pd.Timestamp("2026-05-31", tz="UTC"), refit_every_days=7)
    before = vf.evaluate_forecasts(frame, **kwargs)
    cut = pd.Timestamp("2026-04-15", tz="UTC")            # mid-block: refits on 04-12 and 04-19
    assert cut not in before.refit_days and pd.Timestamp("2026-04-12", tz="UTC") in before.refit_days
    future = frame.index > cut
    shock = np.exp(np.cumsum(np.random.default_rng(7).normal(0.0, 0.05, int(future.sum()))))
    perturbed = frame.copy()
    for col in ("open", "high", "low", "close"):
        perturbed.loc[future, col] = frame.loc[future, col] * shock
    after = vf.evaluate_forecasts(perturbed, **kwargs)
    models = [m for m in vf.MODELS if m != "implied"]
    for h in (7, 30):
        for m in models:
            a = before.paths[(h, m)]
            b = after.paths[(h, m)]
            assert np.isfinite(a.loc[:cut]).all()
            assert np.array_equal(a.loc[:cut].to_numpy(), b.loc[:cut].to_numpy()), (h, m)
            assert not np.allclose(a.loc[cut + pd.Timedelta(days=1):].to_numpy(),
                                   b.loc[cut + pd.Timedelta(days=1):].to_numpy(), equal_nan=True), (h, m)


def test_parameters_stay_fixed_between_refits_and_the_table_is_on_common_dates():
    frame = bars()
    iv = january_summaries("btc")
    implied = {7: iv["atm_iv_7d_marks"], 30: iv["atm_iv_30d_marks"]}
    ev = vf.evaluate_forecasts(frame, implied, eval_start=pd.Timestamp("2025-12-01", tz="UTC"),
                               eval_end=pd.Timestamp("2026-02-28", tz="UTC"))
    gaps = np.diff(np.array([pd.Timestamp(d).value for d in ev.refit_days])) / 86400e9
    assert (gaps == 7).all() and ev.refit_every_days == 7
    for h in (7, 30):
        rows = [s for s in ev.scores if s.horizon_days == h]
        assert {s.model for s in rows} == set(vf.MODELS)
        assert len({s.n for s in rows}) == 1 and rows[0].n == 7          # only the 7 days with an IV
        assert len({(s.span_start, s.span_end) for s in rows}) == 1
    # HAR between two refits: one coefficient vector explains every origin of the block
    first = pd.Timestamp(ev.refit_days[2])
    fit = vf.fit_har(frame, 30, as_of=first)
    block = pd.date_range(first, first + pd.Timedelta(days=6), freq="D", tz="UTC")
    a2 = calendar_r2(frame)
    x = np.column_stack([np.ones(7), mean_over(a2, 1).reindex(block), mean_over(a2, 7).reindex(block),
                         mean_over(a2, 30).reindex(block)])
    assert np.allclose(ev.paths[(30, "har")].reindex(block).to_numpy(), np.maximum(x @ fit.coefficients, fit.floor))
    # each score row carries the parameters of the last refit
    last = pd.Timestamp(ev.refit_days[-1])
    assert ev.score("har", 30).params == pytest.approx(vf.fit_har(frame, 30, as_of=last).params)
    assert list(ev.score("gjr", 7).params) == ["mu", "omega", "alpha[1]", "gamma[1]", "beta[1]", "nu"]
    assert ev.score("naive", 7).params == {} and ev.unconverged == {}


def test_too_little_history_gives_reasons_not_numbers():
    frame = bars().loc["2026-01-01":"2026-07-31"]       # 212 days: fewer than 365 returns to fit on
    out = {(f.model, f.horizon_days): f for f in vf.forecast_vol(frame)}
    for h in (7, 30):
        assert out[("garch", h)].vol is None and out[("garch", h)].reason.startswith("n/a: garch needs 365 returns, has ")
        assert out[("har", h)].vol is None and out[("har", h)].reason.startswith("n/a: HAR needs 365 training origins")
        assert out[("naive", h)].vol is not None
        assert out[("implied", h)].reason == "n/a: no implied vol series for this horizon"
    with pytest.raises(ValueError, match="garch needs 365 returns"):
        vf.fit_garch(frame, "garch")
    ev = vf.evaluate_forecasts(frame, horizons=(7,), eval_days=60)
    assert ev.score("garch", 7).reason.startswith("n/a: garch needs") and ev.score("naive", 7).n > 0
    with pytest.raises(ValueError, match="pass fractions"):
        vf.forecast_vol(bars(), {30: january_summaries("btc")["atm_iv_30d_marks"] * 100})
    with pytest.raises(ValueError, match="no evaluation origins"):
        vf.evaluate_forecasts(frame, eval_start=pd.Timestamp("2026-07-30", tz="UTC"))
