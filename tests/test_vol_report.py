"""`qortcli.quant.vol.vol_report`: the one pure call of a `vol` step, on real prices and recorded chains."""

from __future__ import annotations

import pandas as pd
import pytest

from qortcli.quant import realised as rv
from qortcli.quant.vol import history_columns, vol_report

from vol_fixtures import bars, january_summaries


def test_vol_report_on_btc_to_the_sample_chain_day():
    prices = bars().loc[:"2026-01-11"]                       # the bundled sample's chain day
    summaries = january_summaries("btc")
    summaries["rr25_30d_marks"] = float("nan")              # absent measures stay explicit n/a
    report = vol_report(prices, summaries)
    day = pd.Timestamp("2026-01-11", tz="UTC")
    assert report.source == "marks" and report.price_end == day
    rv30 = next(r for r in report.realised if (r.estimator, r.window_days) == ("close_to_close", 30))
    assert rv30.vol == pytest.approx(rv.realised_vol(prices, 30).vol) and rv30.as_of == day
    assert {r.estimator for r in report.realised} == set(rv.ESTIMATORS) and len(report.realised) == 18
    iv = report.ranks["atm_iv_30d"]
    assert [r.lookback_days for r in iv] == [30, 90, 180, 365]
    assert all(r.percentile is None and r.reason == "n/a: needs 20 points, has 7" for r in iv)   # 7 days of chains
    assert all(r.reason == "n/a: needs 20 points, has 0" for r in report.ranks["rr25_30d"])
    last = summaries.iloc[-1]
    assert report.iv_as_of == day and report.iv_now[30] == last["atm_iv_30d_marks"]
    cone = {row.window_days: row for row in report.cone.rows}
    assert cone[30].current_iv == last["atm_iv_30d_marks"] and cone[14].current_iv is None
    prem = {row.tenor_days: row for row in report.premium.now}
    assert prem[30].premium_vol == pytest.approx(last["atm_iv_30d_marks"] - rv30.vol)
    fc = {(f.model, f.horizon_days): f for f in report.forecasts}
    assert fc[("implied", 30)].vol == last["atm_iv_30d_marks"] and fc[("garch", 7)].vol > 0
    assert report.evaluation is None and "no evaluation origins" in report.evaluation_reason   # no target after 01-11
    assert history_columns("svi")["term_slope"] == "term_slope_svi"
    with pytest.raises(ValueError, match="unknown IV source"):
        history_columns("mid")
