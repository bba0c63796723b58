"""qortcli.quant.tracking: settlement prices (Deribit's 30-minute index TWAP or a named approximation),
mark-to-market with the exit cost, and settlement, on the recorded January 2026 BTC snapshots."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qortcli.quant import tracking as tr

FIXTURES = Path(__file__).parent / "fixtures"
EXPIRY = datetime(2026, 1, 9, 8, tzinfo=timezone.utc)          # 9JAN26


def index_samples(currency: str = "BTC") -> tuple[list[datetime], np.ndarray]:
    """(snapshot time, median spot index) of every recorded January snapshot."""
    times, values = [], []
    for path in sorted(FIXTURES.glob("deribit_options_snapshot_202601*.csv")):
        raw = pd.read_csv(path)
        raw = raw[raw["currency"] == currency]
        times.append(pd.Timestamp(raw["timestamp"].max()).to_pydatetime())
        values.append(float(raw["index_price"].median()))
    return times, np.array(values)


def test_the_recorded_week_has_no_sample_near_the_9jan_expiry():
    times, values = index_samples()
    none = tr.settlement_twap(times, values, EXPIRY)
    assert none.price_usd is None and none.method == tr.NO_PRICE and none.approximate
    # with a wider tolerance: the nearest snapshot's index, said to be approximate
    near = tr.settlement_twap(times, values, EXPIRY, tolerance_minutes=120)
    gaps = [abs((t - EXPIRY).total_seconds()) for t in times]
    i = int(np.argmin(gaps))
    assert near.method == tr.NEAREST_INDEX and near.approximate and near.price_usd == values[i]
    assert near.first_sample == times[i]


def test_twap_of_a_covered_window_is_deribits_rule():
    """Real BTC index levels of the recorded week placed on a 5-minute grid before 08:00 (no intraday index
    series is stored): the TWAP holds each sample until the next one."""
    _, levels = index_samples()
    times = [EXPIRY - timedelta(minutes=m) for m in (31, 25, 20, 15, 10, 5, 1)]
    values = levels[:7]
    out = tr.settlement_twap(times, values, EXPIRY)
    # hand: 07:29 holds from the window's start 07:30 to 07:35, then 5-minute pieces, 07:59 holds 1 minute
    durations = np.array([5, 5, 5, 5, 5, 4, 1], dtype=float)
    assert out.method == tr.DERIBIT_TWAP and not out.approximate and out.n_samples == 7
    assert out.price_usd == pytest.approx(durations @ values / 30.0, rel=1e-12)
    # a 15-minute hole inside the window makes it a partial TWAP, approximate and saying so
    holed = [t for t in times if not (EXPIRY - timedelta(minutes=21) < t < EXPIRY - timedelta(minutes=4))]
    vals = np.array([v for t, v in zip(times, values) if t in holed])
    partial = tr.settlement_twap(holed, vals, EXPIRY)
    assert partial.method == tr.PARTIAL_TWAP and partial.approximate and "gap" in partial.detail
    held = np.diff(np.append(np.clip([(t - EXPIRY).total_seconds() / 60 for t in holed], -30, 0), 0.0))
    assert partial.price_usd == pytest.approx(held @ vals / held.sum(), rel=1e-12)


def test_settled_value_and_settlement_reuse_the_coin_payoff():
    call = {"instrument": "BTC-9JAN26-90000-C", "option_type": "call", "strike": 90_000.0, "expiry": EXPIRY,
            "side_sign": -1, "size": 1.0, "price_coin": 0.02}
    put = {"instrument": "BTC-9JAN26-88000-P", "option_type": "put", "strike": 88_000.0, "expiry": EXPIRY,
           "side_sign": -1, "size": 2.0, "price_coin": 0.01}
    assert tr.settled_value_coin(call, 91_000.0) == pytest.approx(1_000 / 91_000)
    assert tr.settled_value_coin(put, 91_000.0) == 0.0
    approx = tr.settlement_from_forward(91_000.0, EXPIRY - timedelta(hours=4), EXPIRY, "in snapshot X")
    out = tr.settle([call, put], 90_500.0, {EXPIRY: approx})
    coin = -(1_000 / 91_000 - 0.02) - 2 * (0 - 0.01)
    usd = -(1_000 / 91_000) * 91_000 + (0.02 + 2 * 0.01) * 90_500
    assert out.pnl_coin == pytest.approx(coin) and out.pnl_usd == pytest.approx(usd) and out.approximate
    with pytest.raises(ValueError, match="no delivery price"):
        tr.settle([call], 90_500.0, {EXPIRY: None})


def test_mark_point_shows_the_exit_cost_beside_the_mark():
    """A long and a short leg marked on a recorded snapshot: the exit sells the long at its bid and buys the
    short back at its ask (CSV rows)."""
    raw = pd.read_csv(FIXTURES / "deribit_options_snapshot_20260109T092126Z.csv")
    raw = raw[(raw["currency"] == "BTC") & raw["instrument_name"].str.contains("-23JAN26-")]
    raw = raw[(raw["bid_price"] > 0) & (raw["ask_price"] > 0)].set_index("instrument_name")
    long_name, short_name = raw.index[10], raw.index[20]
    expiry = datetime(2026, 1, 23, 8, tzinfo=timezone.utc)

    def rec(name, side, price):
        row = raw.loc[name]
        return {"instrument": name, "option_type": row["option_type"], "strike": float(row["strike"]),
                "expiry": expiry, "side_sign": side, "size": 1.0, "price_coin": price}

    recs = [rec(long_name, 1, 0.03), rec(short_name, -1, 0.02)]
    quotes = {n: {"mark_coin": raw.loc[n, "mark_price"], "bid_coin": raw.loc[n, "bid_price"],
                  "ask_coin": raw.loc[n, "ask_price"]} for n in (long_name, short_name)}
    index_t, index0 = float(raw["index_price"].median()), 90_000.0
    ts = pd.Timestamp(raw["timestamp"].max()).to_pydatetime()
    p = tr.mark_point(recs, index0, "BTC-X", ts, index_t, quotes, {})
    mark = raw.loc[long_name, "mark_price"] - raw.loc[short_name, "mark_price"]
    close = raw.loc[long_name, "bid_price"] - raw.loc[short_name, "ask_price"]
    assert p.pnl_coin == pytest.approx(mark - 0.01) and p.exit_pnl_coin == pytest.approx(close - 0.01)
    assert p.pnl_usd == pytest.approx(mark * index_t - 0.01 * index0)
    assert p.exit_cost_usd == pytest.approx((mark - close) * index_t) and p.exit_cost_usd > 0
    # no bid for the long leg: the mark-to-market stands, the exit cannot be priced
    no_bid = dict(quotes, **{long_name: dict(quotes[long_name], bid_coin=None)})
    q = tr.mark_point(recs, index0, "BTC-X", ts, index_t, no_bid, {})
    assert q.pnl_coin == pytest.approx(p.pnl_coin) and q.exit_pnl_usd is None and q.exit_cost_usd is None
    # a missing mark: no P/L at all, and the instrument named
    gone = tr.mark_point(recs, index0, "BTC-X", ts, index_t, {long_name: quotes[long_name]}, {})
    assert gone.pnl_usd is None and gone.missing == (short_name,)
