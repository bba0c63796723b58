"""Gap-aware daily returns and realised vol (qortcli.quant.realised) on the real Mario-SO OHLC files."""

from __future__ import annotations

import csv
import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from qortcli.quant import realised as rv

from vol_fixtures import MARIO, bars, reference_rolling_rv

BTC_GAPS = ["2026-05-18", "2026-05-25", "2026-05-28", "2026-06-01", "2026-06-24", "2026-07-08", "2026-07-22",
            "2026-07-30", "2026-08-03"]


def raw_rows(coin: str = "btc") -> dict[date, dict[str, float]]:
    """The CSV read with the csv module, independently of pandas and the importer."""
    with open(MARIO / f"{coin}.csv", newline="") as fh:
        return {date.fromisoformat(r["Date"]): {k.lower(): float(v) for k, v in r.items() if k != "Date"}
                for r in csv.DictReader(fh)}


def utc(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


def days(first: str, last: str) -> list[date]:
    d0, d1 = date.fromisoformat(first), date.fromisoformat(last)
    return [d0 + timedelta(days=i) for i in range((d1 - d0).days + 1)]


def test_close_to_close_rv_equals_a_hand_computation_on_real_days():
    rows = raw_rows()
    window = days("2026-01-05", "2026-01-11")                         # 7 days, no gap
    r = [math.log(rows[d]["close"] / rows[d - timedelta(days=1)]["close"]) for d in window]
    hand = math.sqrt(365.0 * sum(x * x for x in r) / len(r))
    got = rv.realised_vol(bars(), 7, "close_to_close", as_of=utc("2026-01-11"))
    assert got.vol == pytest.approx(hand, rel=1e-12)
    assert (got.n_returns, got.n_missing_days, got.n_gap_returns) == (7, 0, 0)
    assert got.span_start.date() == date(2026, 1, 5) and got.span_end.date() == date(2026, 1, 11)
    # the same window on the ACT/365.25 year scales by √(365.25/365)
    alt = rv.realised_vol(bars(), 7, as_of=utc("2026-01-11"), days_per_year=365.25)
    assert alt.vol == pytest.approx(hand * math.sqrt(365.25 / 365.0), rel=1e-12)


def test_parkinson_and_garman_klass_equal_hand_computations():
    rows = raw_rows()
    window = days("2026-01-01", "2026-01-14")
    park = [math.log(rows[d]["high"] / rows[d]["low"]) ** 2 / (4 * math.log(2)) for d in window]
    gk = [0.5 * math.log(rows[d]["high"] / rows[d]["low"]) ** 2
          - (2 * math.log(2) - 1) * math.log(rows[d]["close"] / rows[d]["open"]) ** 2 for d in window]
    table = {(t.estimator, t.window_days): t for t in
             rv.realised_vol_table(bars(), windows=(14,), as_of=utc("2026-01-14"))}
    assert table[("parkinson", 14)].vol == pytest.approx(math.sqrt(365 * sum(park) / 14), rel=1e-12)
    assert table[("garman_klass", 14)].vol == pytest.approx(math.sqrt(365 * sum(gk) / 14), rel=1e-12)


def test_missing_days_drop_the_gap_spanning_returns_on_the_real_may_august_2026_gaps():
    rows = raw_rows()
    out = rv.one_day_returns(bars()["close"])
    r = out.returns.iloc[:, 0]
    assert out.missing_days == {"close": 9} and out.dropped_returns == {"close": 9}
    for gap in BTC_GAPS:
        d = date.fromisoformat(gap)
        assert d not in rows and d - timedelta(days=1) in rows and d + timedelta(days=1) in rows
        assert np.isnan(r[utc(gap)])                                    # no close: no return
        assert np.isnan(r[utc(str(d + timedelta(days=1)))])            # spans the gap: dropped
    # 2026-05-20 follows a present day again: a true one-day return
    assert r[utc("2026-05-20")] == pytest.approx(math.log(rows[date(2026, 5, 20)]["close"] / rows[date(2026, 5, 19)]["close"]))
    # every return left is a true one-day return
    kept = r.dropna()
    for day, value in kept.loc["2026-05-01":"2026-08-21"].items():
        d = day.date()
        assert value == pytest.approx(math.log(rows[d]["close"] / rows[d - timedelta(days=1)]["close"]), rel=1e-12)
    total_days = (max(rows) - min(rows)).days + 1
    assert len(kept) == (total_days - 1) - 9 - 9


def test_a_window_over_a_gap_holds_fewer_returns_and_excludes_the_two_day_move():
    rows = raw_rows()
    got = rv.realised_vol(bars(), 7, as_of=utc("2026-05-21"))       # 05-15 … 05-21, 05-18 missing
    held = [d for d in days("2026-05-15", "2026-05-21") if d in rows and d - timedelta(days=1) in rows]
    assert [d.isoformat() for d in held] == ["2026-05-15", "2026-05-16", "2026-05-17", "2026-05-20", "2026-05-21"]
    r = [math.log(rows[d]["close"] / rows[d - timedelta(days=1)]["close"]) for d in held]
    assert got.vol == pytest.approx(math.sqrt(365 * sum(x * x for x in r) / 5), rel=1e-12)
    assert (got.n_returns, got.n_missing_days, got.n_gap_returns) == (5, 1, 1)
    # bridging the gap (the 2-day return 05-17 → 05-19 as if it were one day) would give another number
    bridged = r[:3] + [math.log(rows[date(2026, 5, 19)]["close"] / rows[date(2026, 5, 17)]["close"])] + r[3:]
    assert got.vol != pytest.approx(math.sqrt(365 * sum(x * x for x in bridged) / 6), rel=1e-3)


def test_range_estimators_keep_the_bar_after_a_gap_and_drop_bars_that_miss_their_own_close():
    rows = raw_rows()
    b = rows[date(2026, 5, 19)]                       # the day after the 05-18 gap: close above its high
    assert b["close"] > b["high"]
    dv = rv.daily_variance(bars(), "parkinson")
    assert bool(dv.bad_bar[utc("2026-05-19")]) and np.isnan(dv.variance[utc("2026-05-19")])
    ok = rows[date(2026, 5, 26)]                      # the day after the 05-25 gap, a consistent bar
    assert ok["low"] <= min(ok["open"], ok["close"]) and ok["high"] >= max(ok["open"], ok["close"])
    assert dv.variance[utc("2026-05-26")] == pytest.approx(math.log(ok["high"] / ok["low"]) ** 2 / (4 * math.log(2)))
    bad = sum(1 for r in rows.values() if r["high"] < max(r["open"], r["close"]) or r["low"] > min(r["open"], r["close"]))
    assert int(dv.bad_bar.sum()) == bad == 24


def test_rolling_rv_matches_an_independent_pandas_rolling_on_the_calendar():
    frame = bars()
    roll = rv.rolling_realised_vol(frame, windows=(30, 90))
    close = frame["close"].asfreq("D")                                  # calendar days, NaN on gaps
    r2 = np.log(close / close.shift(1)) ** 2                            # NaN when either close is missing
    for w in (30, 90):
        ref = reference_rolling_rv(frame, w)
        got = roll.vol[w].reindex(ref.index)
        assert np.allclose(got.to_numpy(), ref.to_numpy(), rtol=1e-10, equal_nan=True)
        n = r2.rolling(w, min_periods=1).count()
        assert (roll.n_returns[w].reindex(n.index).to_numpy() == n.to_numpy()).all()
    # the single-window function agrees with the rolling one on a gap day
    one = rv.realised_vol(frame, 30, as_of=utc("2026-07-31"))
    assert one.vol == pytest.approx(roll.vol[30][utc("2026-07-31")], rel=1e-12)


def test_forward_variance_covers_the_next_h_days_and_stops_at_the_end_of_data():
    rows = raw_rows()
    dv = rv.daily_variance(bars(), "close_to_close")
    fwd = rv.forward_variance(dv, 7)
    nxt = days("2026-01-12", "2026-01-18")
    hand = 365 * sum(math.log(rows[d]["close"] / rows[d - timedelta(days=1)]["close"]) ** 2 for d in nxt) / 7
    assert fwd[utc("2026-01-11")] == pytest.approx(hand, rel=1e-12)
    assert np.isfinite(fwd[utc("2026-08-14")]) and fwd.loc["2026-08-15":].isna().all()


def test_too_little_history_says_how_many_returns_it_needs():
    frame = bars().loc["2026-01-01":"2026-01-03"]
    got = rv.realised_vol(frame, 7)
    assert got.vol is None and got.reason == "n/a: needs 5 returns, has 2" and got.n_returns == 2


def test_one_day_returns_per_column_and_simple_kind():
    closes = pd.DataFrame({"BTC": bars("btc")["close"], "ETH": bars("eth")["close"]})
    out = rv.one_day_returns(closes, kind="simple")
    assert out.missing_days == {"BTC": 9, "ETH": 8} and out.dropped_returns == {"BTC": 9, "ETH": 8}
    eth = raw_rows("eth")
    assert np.isnan(out.returns.loc[utc("2026-05-28"), "BTC"])
    assert out.returns.loc[utc("2026-05-28"), "ETH"] == pytest.approx(
        eth[date(2026, 5, 28)]["close"] / eth[date(2026, 5, 27)]["close"] - 1, rel=1e-12)
    assert out.returns["ETH"].first_valid_index() == utc("2017-11-10")  # before ETH's first close: nothing


def test_rows_out_of_order_are_sorted_and_bad_input_is_a_clear_error():
    frame = bars()
    shuffled = frame.sample(frac=1.0, random_state=3)
    assert rv.realised_vol(shuffled, 30).vol == rv.realised_vol(frame, 30).vol
    naive = frame.tz_localize(None)
    with pytest.raises(ValueError, match="tz-aware"):
        rv.realised_vol(naive, 30)
    dup = pd.concat([frame.iloc[:5], frame.iloc[[2]]])
    with pytest.raises(ValueError, match="repeats the day 2014-09-19"):
        rv.realised_vol(dup, 7)
    noon = frame.iloc[:10].copy()
    noon.index = noon.index + pd.Timedelta(hours=12)
    with pytest.raises(ValueError, match="UTC midnights"):
        rv.realised_vol(noon, 7)
    with pytest.raises(ValueError, match="lack column"):
        rv.daily_variance(frame[["close"]], "parkinson")
    with pytest.raises(ValueError, match="unknown estimator"):
        rv.daily_variance(frame, "yang_zhang")
