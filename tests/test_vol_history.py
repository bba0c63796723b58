"""Rank/percentile, the vol cone and the variance premium (qortcli.quant.vol_history)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qortcli.quant import realised as rv
from qortcli.quant import vol_history as vh

from vol_fixtures import bars, finite, january_summaries, reference_rolling_rv


def daily(values, start="2026-01-01") -> pd.Series:
    return pd.Series(values, index=pd.date_range(start, periods=len(values), freq="D", tz="UTC"), dtype=float)


def test_rank_and_percentile_on_a_constructed_series_are_exact():
    # 40 days: 1..39 then 20 again as today's value; the 30-day window holds days 11..40
    s = daily(list(range(1, 40)) + [20])
    got = vh.rank_percentile(s, 30)
    window = list(range(11, 40)) + [20]                    # 29 history points 11..39 and today's 20
    below = sum(1 for v in window[:-1] if v < 20)            # 11..19: 9 points strictly below
    assert got.n_points == 30 and got.value == 20
    assert got.percentile == below / 29 == 9 / 29
    assert got.rank == (20 - 11) / (39 - 11)
    assert got.span_start == pd.Timestamp("2026-01-11", tz="UTC") and got.span_end == pd.Timestamp("2026-02-09", tz="UTC")
    assert got.covers_lookback and got.reason is None


def test_percentile_ties_are_not_below_and_a_flat_window_has_no_rank():
    s = daily([5.0] * 10 + [7.0] * 10 + [7.0])
    got = vh.rank_percentile(s, 30, min_points=5)
    assert got.percentile == 10 / 20                          # the ten 7's of the history are ties: not below
    assert got.rank == 1.0
    flat = vh.rank_percentile(daily([0.4] * 25), 30)
    assert flat.rank is None and flat.percentile == 0.0 and "flat" in flat.reason


def test_too_little_history_is_na_with_the_counts_never_a_number_from_one_point():
    one = vh.rank_percentile(daily([0.5]), 30)
    assert one.rank is None and one.percentile is None and one.reason == "n/a: needs 20 points, has 1"
    few = vh.rank_percentile(daily(np.linspace(0.3, 0.6, 12)), 90)
    assert few.reason == "n/a: needs 20 points, has 12" and few.n_points == 12 and few.value == pytest.approx(0.6)
    with pytest.raises(ValueError, match="at least 2"):
        vh.rank_percentile(daily([0.5, 0.6]), 30, min_points=1)
    empty = vh.rank_percentile(daily([np.nan, np.nan]), 30)
    assert empty.value is None and empty.reason == "n/a: needs 20 points, has 0"


def test_lookbacks_report_the_span_they_actually_cover():
    s = daily(np.sin(np.arange(214) / 9.0) + 2.0, start="2025-12-30")   # 214 days like the daily chains
    table = vh.rank_percentile_table(s, (30, 90, 180, 365))
    assert [r.n_points for r in table] == [30, 90, 180, 214]
    assert [r.covers_lookback for r in table] == [True, True, True, False]
    assert table[-1].span_start == pd.Timestamp("2025-12-30", tz="UTC")
    x, hist = s.iloc[-1], s.iloc[:-1].to_numpy()
    assert table[-1].percentile == np.count_nonzero(hist < x) / hist.size


def test_irregular_series_and_daily_last():
    idx = pd.DatetimeIndex(["2026-01-05 04:11", "2026-01-05 21:21", "2026-01-06 03:56", "2026-01-06 21:21",
                            "2026-01-07 09:21"], tz="UTC")
    s = pd.Series([0.40, 0.42, np.nan, 0.45, 0.41], index=idx)
    d = vh.daily_last(s)
    assert list(d.index) == list(pd.date_range("2026-01-05", periods=3, freq="D", tz="UTC"))
    assert d.tolist() == [0.42, 0.45, 0.41]
    with pytest.raises(ValueError, match="tz-aware"):
        vh.daily_last(s.tz_localize(None))


def test_percentile_of_real_january_atm_iv_snapshots_matches_an_independent_count():
    iv = january_summaries("btc")["atm_iv_30d_marks"]
    assert len(iv) == 28
    got = vh.rank_percentile(iv, 30, min_points=10)
    values = iv.to_numpy()
    x, hist = values[-1], values[:-1]
    from scipy.stats import percentileofscore
    assert got.percentile == pytest.approx(percentileofscore(hist, x, kind="strict") / 100.0, abs=1e-15)
    assert got.rank == pytest.approx((x - values.min()) / (values.max() - values.min()))
    day = vh.rank_percentile(vh.daily_last(iv), 30, min_points=5)
    assert day.n_points == 7 and day.value == x                 # one point a day: the day's last chain


def test_vol_cone_quantiles_and_the_marked_iv_equal_pandas_on_real_btc():
    frame = bars()
    roll = rv.rolling_realised_vol(frame, windows=(30, 90))
    cone = vh.vol_cone(roll, {30: 0.45}, history_days=365, as_of=pd.Timestamp("2026-07-31", tz="UTC"))
    refs = {}
    for row in cone.rows:
        ref = refs[row.window_days] = finite(reference_rolling_rv(frame, row.window_days).loc["2025-08-01":"2026-07-31"])
        assert row.n == ref.size == 365
        assert (row.min, row.max) == (pytest.approx(ref.min()), pytest.approx(ref.max()))
        assert row.median == pytest.approx(np.median(ref))
        assert (row.q25, row.q75) == (pytest.approx(np.quantile(ref, 0.25)), pytest.approx(np.quantile(ref, 0.75)))
        assert row.current_rv == pytest.approx(ref[-1])
    row30, row90 = cone.rows
    assert row30.current_iv == 0.45 and row30.iv_percentile == np.count_nonzero(refs[30] < 0.45) / refs[30].size
    assert row90.current_iv is None and row90.iv_percentile is None
    assert cone.history_start == pd.Timestamp("2025-08-01", tz="UTC")


def test_variance_premium_is_iv_minus_trailing_rv_of_the_same_day():
    frame = bars()
    roll = rv.rolling_realised_vol(frame)
    summaries = january_summaries("btc")
    ivs = {7: summaries["atm_iv_7d_marks"], 30: summaries["atm_iv_30d_marks"]}
    prem = vh.variance_premium(ivs, roll)
    day = pd.Timestamp("2026-01-11", tz="UTC")
    for row in prem.now:
        iv_last = ivs[row.tenor_days].iloc[-1]                      # the 2026-01-11 21:18 chain
        rv_day = rv.realised_vol(frame, row.tenor_days, as_of=day).vol
        assert row.day == day and row.iv == iv_last and row.rv == pytest.approx(rv_day)
        assert row.premium_vol == pytest.approx(iv_last - rv_day)
        assert row.premium_variance == pytest.approx(iv_last ** 2 - rv_day ** 2)
    assert list(prem.history.index) == list(pd.date_range("2026-01-05", "2026-01-11", freq="D", tz="UTC"))
    short = rv.rolling_realised_vol(frame, windows=(30,))
    missing = vh.variance_premium({7: ivs[7]}, short)
    assert missing.now[0].reason == "n/a: no 7-day RV window"
