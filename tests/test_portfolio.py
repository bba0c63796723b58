"""The portfolio modules (qortcli.quant.returns, constraints, allocation, backtest) on the 10 recorded Yahoo
price histories (tests/fixtures/prices)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qortcli.quant import allocation as qa
from qortcli.quant import backtest as qb
from qortcli.quant import constraints as qc
from qortcli.quant import returns as qr

PRICES = Path(__file__).parent / "fixtures" / "prices"
SECTORS = {"BTC": "Digital Assets", "DOGE": "Digital Assets", "ETH": "Infrastructure", "ADA": "Infrastructure",
           "SOL": "Infrastructure", "DOT": "Infrastructure", "LINK": "Infrastructure", "BNB": "Services",
           "XRP": "Services", "XLM": "Services"}


def read_closes(start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """Closes straight from the CSV files (Date, Close), one column per ticker."""
    closes = {}
    for path in sorted(PRICES.glob("*-USD.csv")):
        frame = pd.read_csv(path, parse_dates=["Date"]).set_index("Date")
        closes[path.stem.split("-")[0]] = frame["Close"]
    out = pd.DataFrame(closes)
    return out.loc[start:end] if (start or end) else out


@pytest.fixture(scope="module")
def window_returns() -> pd.DataFrame:
    return qr.daily_returns(read_closes("2020-08-20", "2023-03-31"), min_history_days=365).returns


def test_taxonomy_sectors_of_the_ten_assets():
    from qortcli.sectors import load_sectors

    by_ticker = load_sectors().by_ticker()
    assert {t: by_ticker[t].sector for t in SECTORS} == SECTORS


def test_daily_returns_are_simple_returns_of_consecutive_closes():
    closes = read_closes()
    panel = qr.daily_returns(closes, min_history_days=365)
    r = panel.returns
    # all ten share days from 2020-08-20 (DOT's first close), so the first common return is 08-21
    assert r.index[0] == pd.Timestamp("2020-08-21") and r.index[-1] == pd.Timestamp("2023-03-31")
    assert len(r) == (pd.Timestamp("2023-03-31") - pd.Timestamp("2020-08-21")).days + 1 == 953
    assert not r.isna().any().any() and panel.excluded == [] and panel.dropped_days == 0
    # hand value from the CSV rows of BTC 2021-01-01 / 2020-12-31
    btc = pd.read_csv(PRICES / "BTC-USD.csv", index_col="Date")["Close"]
    expected = btc["2021-01-01"] / btc["2020-12-31"] - 1
    assert r.loc["2021-01-01", "BTC"] == pytest.approx(expected, rel=1e-12)
    assert set(panel.gaps.values()) == {0}


def test_short_histories_are_excluded_with_the_reason():
    panel = qr.daily_returns(read_closes(), min_history_days=1000)
    excluded = {e["symbol"]: e for e in panel.excluded}
    assert set(excluded) == {"DOT"}  # 2020-08-20…2023-03-31: 953 returns
    assert excluded["DOT"]["returns"] == 953 and "953" in excluded["DOT"]["reason"] and "1000" in excluded["DOT"]["reason"]
    # without DOT the common span starts the day after SOL's first close (2020-04-10)
    assert panel.returns.index[0] == pd.Timestamp("2020-04-11")
    assert "DOT" not in panel.returns.columns and len(panel.returns.columns) == 9


def test_gaps_give_no_return_and_are_counted():
    closes = read_closes("2021-01-01", "2022-12-31")
    holes = pd.to_datetime(["2021-06-10", "2021-06-11", "2021-06-12"])
    closes.loc[holes, "ETH"] = np.nan
    closes.loc[pd.Timestamp("2022-02-02"), "XRP"] = -1.0  # a non-positive close is not a price
    panel = qr.daily_returns(closes, min_history_days=365)
    assert panel.gaps["ETH"] == 3 and panel.gaps["XRP"] == 1 and panel.gaps["BTC"] == 0
    # the three missing days and the day after each gap have no return: 4 + 2 rows dropped
    assert panel.dropped_days == 6
    for day in ["2021-06-10", "2021-06-11", "2021-06-12", "2021-06-13", "2022-02-02", "2022-02-03"]:
        assert pd.Timestamp(day) not in panel.returns.index
    # no bridged multi-day return anywhere: every kept ETH return is a one-day return
    eth = pd.read_csv(PRICES / "ETH-USD.csv", index_col="Date", parse_dates=["Date"])["Close"]
    one_day = eth / eth.shift(1) - 1
    kept = panel.returns["ETH"]
    assert np.allclose(kept.to_numpy(), one_day.loc[kept.index].to_numpy(), rtol=1e-12)


def test_too_few_assets_or_days_is_an_error():
    with pytest.raises(ValueError, match="need 2 or more"):
        qr.daily_returns(read_closes()[["BTC"]], min_history_days=365)
    assert len(qr.daily_returns(read_closes("2022-06-01", "2023-03-31"), min_history_days=300).returns) == 303
    # each history is long enough on its own, but they overlap for 2019-06-02…2019-12-31 only
    closes = read_closes()[["BTC", "ETH"]].copy()
    closes.loc["2020-01-01":, "BTC"] = np.nan
    closes.loc[:"2019-05-31", "ETH"] = np.nan
    with pytest.raises(ValueError, match=r"share 213 complete days .*< minimum 365"):
        qr.daily_returns(closes, min_history_days=365)


CASES = [(m, rm) for m in qa.MODELS for rm in qa.RISK_MEASURES if not (m == "risk-parity" and rm == "MDD")]


@pytest.mark.parametrize("model,rm", CASES)
def test_every_model_sums_to_one_and_respects_the_asset_cap(window_returns, model, rm):
    bounds = qc.Bounds(max_asset=0.25)
    w = qa.optimize_weights(window_returns, model, rm, bounds)
    assert list(w.index) == list(window_returns.columns)
    assert abs(w.sum() - 1) <= 1e-9
    assert (w >= 0).all() and (w <= 0.25 + 1e-12).all()


@pytest.mark.parametrize("model", qa.MODELS)
def test_by_sector_respects_sector_and_asset_caps(window_returns, model):
    bounds = qc.Bounds(max_asset=0.2, max_group=0.4)
    alloc = qa.optimize_by_sector(window_returns, SECTORS, model, "MV", bounds)
    w = alloc.weights
    assert abs(w.sum() - 1) <= 1e-9 and (w >= 0).all() and (w <= 0.2 + 1e-12).all()
    sums = w.groupby(pd.Series(SECTORS)[w.index].to_numpy()).sum()
    assert (sums <= 0.4 + 1e-12).all() and set(sums.index) == {"Digital Assets", "Infrastructure", "Services"}
    assert np.allclose(alloc.sector_weights.reindex(sums.index), sums, atol=1e-12)
    # asset weight = sector weight × within-sector weight, and each within-sector split sums to 1
    for sector, within in alloc.within.items():
        assert abs(sum(within.values()) - 1) <= 1e-9
        for asset, v in within.items():
            assert w[asset] == pytest.approx(sums[sector] * v, abs=1e-9)


def test_hrp_of_two_assets_is_inverse_variance(window_returns):
    pair = window_returns[["BTC", "DOGE"]]
    w = qa.optimize_weights(pair, "hrp", "MV")
    inv = 1 / pair.var(ddof=1)
    assert np.allclose(w.to_numpy(), (inv / inv.sum()).to_numpy(), atol=1e-12)


def _random_feasible(n: int, cap: float, count: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    draws = rng.dirichlet(np.ones(n), size=count * 4)
    return draws[(draws <= cap).all(axis=1)][:count]


def test_min_risk_mv_beats_random_feasible_portfolios(window_returns):
    w = qa.optimize_weights(window_returns, "min-risk", "MV", qc.Bounds(max_asset=0.3))
    cov = window_returns.cov().to_numpy()
    best = w.to_numpy() @ cov @ w.to_numpy()
    others = _random_feasible(len(w), 0.3, 3000)
    assert len(others) > 500
    assert best <= np.einsum("ij,jk,ik->i", others, cov, others).min() * (1 + 1e-6)
    equal = np.full(len(w), 1 / len(w))
    assert best < equal @ cov @ equal


def test_max_sharpe_mv_beats_random_feasible_portfolios(window_returns):
    w = qa.optimize_weights(window_returns, "max-sharpe", "MV", qc.Bounds(max_asset=0.3)).to_numpy()
    mu, cov = window_returns.mean().to_numpy(), window_returns.cov().to_numpy()
    best = mu @ w / np.sqrt(w @ cov @ w)
    others = _random_feasible(len(w), 0.3, 3000)
    sharpes = others @ mu / np.sqrt(np.einsum("ij,jk,ik->i", others, cov, others))
    assert best >= sharpes.max() - 1e-6


def test_risk_parity_mv_equalises_risk_contributions(window_returns):
    w = qa.optimize_weights(window_returns, "risk-parity", "MV").to_numpy()
    cov = window_returns.cov().to_numpy()
    contributions = w * (cov @ w)
    share = contributions / contributions.sum()
    assert np.allclose(share, 1 / len(w), atol=2e-4)


def test_infeasible_sector_cap_names_model_and_constraint(window_returns):
    with pytest.raises(qc.OptimizationError, match=r"hrp \(MV\).*max_group 0\.1: 3 sectors × 0\.1 = 0\.3 < 1"):
        qa.optimize_by_sector(window_returns, SECTORS, "hrp", "MV", qc.Bounds(max_group=0.1))
    with pytest.raises(qc.OptimizationError, match="max_asset 0.05: 10 × 0.05"):
        qa.optimize_weights(window_returns, "min-risk", "CVaR", qc.Bounds(max_asset=0.05))


def test_solver_failure_is_an_error_not_empty_weights(window_returns):
    """Skipping the arithmetic check, riskfolio itself returns None on the infeasible problem."""
    bounds = qc.Bounds(max_group=0.1, groups=SECTORS)
    with pytest.raises(qc.OptimizationError, match=r"max-sharpe \(MV\) found no solution under max_group 0\.1"):
        qa.optimize_weights(window_returns, "max-sharpe", "MV", bounds, precheck=False)
    with pytest.raises(qc.OptimizationError, match="hrp"):
        qa.optimize_weights(window_returns, "hrp", "MV", qc.Bounds(max_asset=0.05), precheck=False)


def test_bad_arguments_are_value_errors(window_returns):
    with pytest.raises(ValueError, match="risk-parity does not support the MDD"):
        qa.optimize_weights(window_returns, "risk-parity", "MDD")
    with pytest.raises(ValueError, match="needs the two-level model"):
        qa.optimize_weights(window_returns, "hrp", "MV", qc.Bounds(max_group=0.4, groups=SECTORS))
    with pytest.raises(ValueError, match="unknown model"):
        qa.optimize_weights(window_returns, "kelly")


def test_turnover_and_rebalance_plan_by_hand():
    before = {"BTC": 0.5, "ETH": 0.3, "SOL": 0.2}
    after = {"BTC": 0.4, "ETH": 0.302, "DOGE": 0.298}
    assert qb.turnover(before, after) == pytest.approx(0.5 * (0.1 + 0.002 + 0.2 + 0.298))
    plan = {row["asset"]: row for row in qb.rebalance_plan(before, after, threshold=0.005)}
    assert plan["DOGE"]["action"] == "buy" and plan["DOGE"]["change"] == pytest.approx(0.298)
    assert plan["SOL"]["action"] == "sell" and plan["SOL"]["new"] == 0.0
    assert plan["ETH"]["action"] == "hold"
    assert [r["asset"] for r in qb.rebalance_plan(before, after)][0] == "DOGE"


def test_walk_forward_fits_only_on_the_past_and_holds_buy_and_hold(window_returns):
    seen = []

    def fit(window):
        seen.append((window.index.min(), window.index.max()))
        return pd.Series([0.6, 0.4], index=["BTC", "ETH"]).reindex(window.columns).fillna(0.0)

    returns = window_returns[["BTC", "ETH", "SOL"]]
    wf = qb.walk_forward(returns, fit, "monthly", lookback_days=365)
    dates = [r["date"] for r in wf.rebalances]
    assert dates[0] == pd.Timestamp("2021-09-01") and all(d.day == 1 for d in dates)
    for (lo, hi), d in zip(seen, dates):
        assert hi < d and lo >= d - pd.Timedelta(days=365)  # no look-ahead
    # first month by hand: 0.6 and 0.4 of the money in BTC and ETH, left to drift
    month = returns.loc["2021-09-01":"2021-09-30"]
    value = 0.6 * (1 + month["BTC"]).cumprod() + 0.4 * (1 + month["ETH"]).cumprod()
    hand = value / value.shift(1, fill_value=1.0) - 1
    assert np.allclose(wf.returns.loc["2021-09-01":"2021-09-30"].to_numpy(), hand.to_numpy(), rtol=1e-12)
    # the benchmark: a third each, also buy and hold between the same dates
    equal = sum((1 + month[c]).cumprod() for c in month.columns) / 3
    assert np.allclose(wf.benchmark.loc["2021-09-01":"2021-09-30"].to_numpy(),
                       (equal / equal.shift(1, fill_value=1.0) - 1).to_numpy(), rtol=1e-12)
    assert wf.returns.index[-1] == returns.index[-1] and wf.returns.index.is_unique


def test_walk_forward_of_equal_weights_equals_its_benchmark(window_returns):
    wf = qb.walk_forward(window_returns, lambda w: pd.Series(1 / w.shape[1], index=w.columns), "quarterly", 200)
    assert np.allclose(wf.returns.to_numpy(), wf.benchmark.to_numpy(), rtol=0, atol=1e-15)


def test_asset_level_sector_cap_on_mean_risk_models(window_returns):
    bounds = qc.Bounds(max_asset=0.25, max_group=0.45, groups=SECTORS)
    for model, rm in (("min-risk", "CVaR"), ("max-sharpe", "MV"), ("risk-parity", "CDaR")):
        w = qa.optimize_weights(window_returns, model, rm, bounds)
        sums = w.groupby(pd.Series(SECTORS)[w.index].to_numpy()).sum()
        assert abs(w.sum() - 1) <= 1e-9 and (w <= 0.25 + 1e-12).all() and (sums <= 0.45 + 1e-12).all(), model


def test_polish_removes_solver_slack_but_rejects_real_breaches():
    bounds = qc.Bounds(max_asset=0.4, max_group=0.6, groups={"A": "x", "B": "x", "C": "y", "D": "y"})
    slack = pd.Series({"A": 0.4 + 3e-9, "B": 0.2, "C": 0.25, "D": 0.15 - 3e-9})  # solver-size breach of A's cap
    w = qc.polish(slack, bounds, "test")
    assert abs(w.sum() - 1) <= 1e-15 and w["A"] <= 0.4 and w["A"] + w["B"] <= 0.6 + 1e-15
    assert np.allclose(w.to_numpy(), slack.to_numpy(), atol=1e-8)
    with pytest.raises(qc.OptimizationError, match=r"did not meet max_asset 0\.4"):
        qc.polish(pd.Series({"A": 0.45, "B": 0.1, "C": 0.25, "D": 0.2}), bounds, "test")
    with pytest.raises(qc.OptimizationError, match="no usable weights"):
        qc.polish(pd.Series({"A": np.nan, "B": 0.1, "C": 0.25, "D": 0.2}), bounds, "test")


@pytest.mark.parametrize("model", qa.MODELS)
def test_asset_floors_and_caps_at_both_levels(window_returns, model):
    bounds = qc.Bounds(min_asset=0.05, max_asset=0.3)
    for w in (qa.optimize_weights(window_returns, model, "MV", bounds),
              qa.optimize_by_sector(window_returns, SECTORS, model, "MV",
                                    qc.Bounds(min_asset=0.05, max_asset=0.3, max_group=0.5)).weights):
        assert abs(w.sum() - 1) <= 1e-9 and (w >= 0.05 - 1e-12).all() and (w <= 0.3 + 1e-12).all(), model


def test_hrp_bounds_finish_riskfolios_clip_and_redistribute(window_returns):
    """Unbounded HRP of BTC/DOGE is inverse variance (~0.94/0.06); with a 0.6 cap and a 0.1 floor the
    excess 0.34 of BTC moves to DOGE: exactly 0.6/0.4."""
    pair = window_returns[["BTC", "DOGE"]]
    inv = 1 / pair.var(ddof=1)
    assert (inv / inv.sum())["BTC"] > 0.9
    w = qa.optimize_weights(pair, "hrp", "MV", qc.Bounds(min_asset=0.1, max_asset=0.6))
    assert w["BTC"] == pytest.approx(0.6, abs=1e-12) and w["DOGE"] == pytest.approx(0.4, abs=1e-12)


def test_constraint_messages_use_the_callers_names_not_cli_options(window_returns):
    """constraints holds no CLI option names: messages name a bound by `Bounds.labels` (neutral by default)."""
    assert not any(v.startswith("-") for v in qc.DEFAULT_LABELS.values())
    labelled = qc.Bounds(max_asset=0.05, labels={"max_asset": "--max-asset"})
    with pytest.raises(qc.OptimizationError, match="--max-asset 0.05: 10 × 0.05"):
        qa.optimize_weights(window_returns, "min-risk", "CVaR", labelled)
    import inspect

    assert "--" not in inspect.getsource(qc) and "--" not in inspect.getsource(qa)
