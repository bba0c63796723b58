"""qortcli.quant.market on real recorded chains (the bundled January 2026 BTC+ETH snapshot, the 2026-03-13 BTC book
summary, two January snapshots 24 h apart): every figure against an independent computation written here from the
options_data documents — brute-force max pain, sums of open interest, a finite-difference USD gamma of the
coin-settled value V(F)·S, a dense-scan gamma flip, the straddle, instrument-by-instrument OI changes."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from scipy.stats import norm

from chain_fixtures import recorded_chain, recorded_docs
from qortcli.quant import market as mk

BOOK = "goodtrading_book_summary_BTC_option_20260313.json"
SAMPLE = "deribit_options_snapshot_20260111T211857Z.csv"
DAY_BEFORE = "deribit_options_snapshot_20260110T211832Z.csv"
CHAINS = [("BTC", SAMPLE), ("ETH", SAMPLE), ("BTC", BOOK)]


@pytest.fixture(scope="module")
def stats():
    return {(cur, file): mk.market_statistics(recorded_chain(cur, file), days_per_year=365.0)
            for cur, file in CHAINS}


def _live_docs(cur, file):
    """The unexpired documents of a recorded chain, grouped by expiry."""
    _, ts, docs = recorded_docs(cur, file)
    by_expiry = defaultdict(list)
    for d in docs:
        if d["expiry"] > ts:
            by_expiry[d["expiry"]].append(d)
    return ts, dict(sorted(by_expiry.items()))


def _spot(docs):
    return float(np.median([d["index_price"] for d in docs]))


# ------------------------------------------------------------------------------------------------ max pain

def _payouts(docs, settle):
    """Total payout to holders at each settlement price, by brute force over every document: (coin, USD)."""
    coin, usd = np.zeros(len(settle)), np.zeros(len(settle))
    for i, s in enumerate(settle):
        for d in docs:
            oi = d["open_interest"] or 0.0
            pay = max(s - d["strike"], 0.0) if d["option_type"] == "call" else max(d["strike"] - s, 0.0)
            usd[i] += oi * pay
            coin[i] += oi * pay / s
    return coin, usd


@pytest.mark.parametrize("cur,file", CHAINS)
def test_max_pain_is_the_brute_force_minimum_over_strikes_and_a_fine_grid(stats, cur, file):
    st = stats[(cur, file)]
    _, by_expiry = _live_docs(cur, file)
    groups = list(by_expiry.values()) + [[d for docs in by_expiry.values() for d in docs]]   # each expiry, then ALL
    rows = list(st.expiries.itertuples()) + list(st.overall.itertuples())
    assert [r.expiry_code for r in rows[:-1]] == [docs[0]["symbol"].split("-")[1] for docs in groups[:-1]]
    for row, docs in zip(rows, groups):
        strikes = np.array(sorted({d["strike"] for d in docs}))
        coin, usd = _payouts(docs, strikes)
        fine = np.linspace(strikes[0] * 0.8, strikes[-1] * 1.2, 4001)      # wider than the strikes, linear
        coin_fine, usd_fine = _payouts(docs, fine) if len(docs) < 120 else _grid_payouts(docs, fine)
        # the reported levels are the strike minima, and no grid price pays holders less
        assert row.max_pain_coin_payoff_usd == strikes[np.argmin(coin)], row.expiry_code
        assert row.max_pain_usd_payoff_usd == strikes[np.argmin(usd)], row.expiry_code
        # (cumulative sums over the whole chain: absolute rounding ~1e-16 of Σ OI·K, far below a cent)
        assert row.max_pain_payout_coin == pytest.approx(coin.min(), rel=1e-9, abs=1e-9)
        assert row.max_pain_payout_usd == pytest.approx(usd.min(), rel=1e-9, abs=1e-4)
        assert coin_fine.min() >= coin.min() * (1 - 1e-12) and usd_fine.min() >= usd.min() * (1 - 1e-12)
        assert row.max_pain_coin_payoff_source == row.max_pain_usd_payoff_source == "strike"


def _grid_payouts(docs, settle):
    """The same brute force, vectorised over prices (for the big ALL groups)."""
    K = np.array([d["strike"] for d in docs])
    oi = np.array([d["open_interest"] or 0.0 for d in docs])
    call = np.array([d["option_type"] == "call" for d in docs])
    pay = np.where(call[None, :], np.maximum(settle[:, None] - K, 0), np.maximum(K - settle[:, None], 0)) * oi
    usd = pay.sum(axis=1)
    return usd / settle, usd


def test_coin_and_usd_max_pain_differ_where_the_payoffs_do(stats):
    """ETH 27MAR26: the coin payoff (÷S) weighs low settlements more, so its minimum sits at a higher strike."""
    row = stats[("ETH", SAMPLE)].expiries.set_index("expiry_code").loc["27MAR26"]
    _, by_expiry = _live_docs("ETH", SAMPLE)
    docs = next(v for v in by_expiry.values() if v[0]["symbol"].startswith("ETH-27MAR26-"))
    strikes = np.array(sorted({d["strike"] for d in docs}))
    coin, usd = _payouts(docs, strikes)
    assert strikes[np.argmin(coin)] != strikes[np.argmin(usd)]
    assert (row.max_pain_coin_payoff_usd, row.max_pain_usd_payoff_usd) == (strikes[np.argmin(coin)],
                                                                         strikes[np.argmin(usd)])


def test_payout_at_each_strike(stats):
    st = stats[("BTC", SAMPLE)]
    _, by_expiry = _live_docs("BTC", SAMPLE)
    docs = next(v for v in by_expiry.values() if v[0]["symbol"].startswith("BTC-30JAN26-"))
    rows = st.by_strike[st.by_strike["expiry_code"] == "30JAN26"]
    coin, usd = _payouts(docs, rows["strike_usd"].to_numpy())
    np.testing.assert_allclose(rows["payout_at_strike_coin"], coin, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rows["payout_at_strike_usd"], usd, rtol=1e-9, atol=1e-4)


# ------------------------------------------------------------------------------------------------ OI / volume

@pytest.mark.parametrize("cur,file", CHAINS)
def test_open_interest_and_volume_totals_are_sums_over_the_documents(stats, cur, file):
    st = stats[(cur, file)]
    _, by_expiry = _live_docs(cur, file)
    every = [d for docs in by_expiry.values() for d in docs]
    spot = _spot(every)
    assert st.spot_usd == spot
    for row, docs in zip(list(st.expiries.itertuples()) + list(st.overall.itertuples()),
                         list(by_expiry.values()) + [every]):
        for side in ("call", "put"):
            oi = sum(d["open_interest"] or 0 for d in docs if d["option_type"] == side)
            vol = sum(d["volume"] or 0 for d in docs if d["option_type"] == side)
            assert getattr(row, f"oi_{side}s_coin") == pytest.approx(oi, rel=1e-12, abs=1e-9)
            assert getattr(row, f"volume_{side}s_coin") == pytest.approx(vol, rel=1e-12, abs=1e-9)
            assert getattr(row, f"oi_{side}s_usd") == pytest.approx(oi * spot, rel=1e-12, abs=1e-6)
            assert getattr(row, f"volume_{side}s_usd") == pytest.approx(vol * spot, rel=1e-12, abs=1e-6)
        calls = sum(d["open_interest"] for d in docs if d["option_type"] == "call")
        puts = sum(d["open_interest"] for d in docs if d["option_type"] == "put")
        assert row.pcr_oi == pytest.approx(puts / calls, rel=1e-12)
        assert row.n_options == len(docs)
    # by strike, all expiries together
    for strike in (80_000.0, 100_000.0) if cur == "BTC" else (3000.0,):
        line = st.all_by_strike.set_index("strike_usd").loc[strike]
        assert line.oi_calls_coin == pytest.approx(sum(d["open_interest"] for d in every
                                                       if d["strike"] == strike and d["option_type"] == "call"))
        assert line.oi_puts_coin == pytest.approx(sum(d["open_interest"] for d in every
                                                      if d["strike"] == strike and d["option_type"] == "put"))
    t = st.totals
    assert (t.oi_calls_coin, t.oi_puts_coin) == (st.overall.oi_calls_coin[0], st.overall.oi_puts_coin[0])


def test_by_strike_rows_carry_the_instrument_names(stats):
    rows = stats[("BTC", SAMPLE)].by_strike
    row = rows[(rows["expiry_code"] == "27MAR26") & (rows["strike_usd"] == 100_000.0)].iloc[0]
    assert (row.call_instrument, row.put_instrument) == ("BTC-27MAR26-100000-C", "BTC-27MAR26-100000-P")


# ------------------------------------------------------------------------------------------------ GEX / DEX

def _coin_value(F, K, T, sigma, call):
    """Black-76 coin premium V = C(F)/F, written out with math.erf (the test's own formula)."""
    s = sigma * math.sqrt(T)
    d1 = (math.log(F / K) + 0.5 * s * s) / s
    d2 = d1 - s
    n = lambda x: 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))  # noqa: E731
    usd = F * n(d1) - K * n(d2) if call else K * n(-d2) - F * n(-d1)
    return usd / F


def _usd_value(S, doc, spot, T):
    """USD value V(F)·S of one contract at spot S, the forward moving with spot (F = S·F0/S0)."""
    F = S * doc["forward"] / spot
    return _coin_value(F, doc["strike"], T, doc["implied_volatility"], doc["option_type"] == "call") * S


@pytest.mark.parametrize("cur,file,code,strike", [("BTC", SAMPLE, "27MAR26", 90_000.0), ("ETH", SAMPLE, "30JAN26", 3000.0),
                                                   ("BTC", BOOK, "27MAR26", 70_000.0)])
def test_gex_and_dex_at_one_strike_equal_a_hand_computation(stats, cur, file, code, strike):
    st = stats[(cur, file)]
    ts, by_expiry = _live_docs(cur, file)
    spot = _spot([d for docs in by_expiry.values() for d in docs])
    docs = [d for v in by_expiry.values() for d in v if d["symbol"].startswith(f"{cur}-{code}-{int(strike)}-")]
    assert len(docs) == 2
    row = st.by_strike[(st.by_strike["expiry_code"] == code) & (st.by_strike["strike_usd"] == strike)].iloc[0]
    h = spot * 1e-4
    want = {}
    for d in docs:
        T = (d["expiry"] - ts).total_seconds() / (365 * 86400)
        up, mid, down = (_usd_value(spot + h, d, spot, T), _usd_value(spot, d, spot, T), _usd_value(spot - h, d, spot, T))
        gamma_usd = (up - 2 * mid + down) / h ** 2              # d²(V·S)/dS², by finite differences
        delta_usd = (up - down) / (2 * h)
        # the closed form of the derivation: φ(d1)/(Sσ√T); N(d1) (call) / N(d1) − 1 (put)
        s = d["implied_volatility"] * math.sqrt(T)
        d1 = (math.log(d["forward"] / strike) + 0.5 * s * s) / s
        assert gamma_usd == pytest.approx(norm.pdf(d1) / (spot * s), rel=1e-5)
        assert delta_usd == pytest.approx(norm.cdf(d1) - (d["option_type"] == "put"), rel=1e-6, abs=1e-9)
        sign = 1 if d["option_type"] == "call" else -1           # default: dealers long calls, short puts
        want[d["option_type"]] = (sign * d["open_interest"] * gamma_usd * spot ** 2 / 100,
                                  sign * d["open_interest"] * delta_usd * spot / 100)
    assert row.gex_calls_usd_per_pct_marks == pytest.approx(want["call"][0], rel=1e-5)
    assert row.gex_puts_usd_per_pct_marks == pytest.approx(want["put"][0], rel=1e-5)
    assert row.gex_usd_per_pct_marks == pytest.approx(want["call"][0] + want["put"][0], rel=1e-5, abs=1e-3)
    assert row.dex_usd_per_pct_marks == pytest.approx(want["call"][1] + want["put"][1], rel=1e-5, abs=1e-3)


def test_dealer_convention_flips_the_signs():
    frame = recorded_chain("BTC", SAMPLE)
    base = mk.market_statistics(frame, days_per_year=365.0)
    short = mk.market_statistics(frame, days_per_year=365.0, dealer="short-all")
    np.testing.assert_allclose(short.by_strike["gex_calls_usd_per_pct_marks"], -base.by_strike["gex_calls_usd_per_pct_marks"])
    np.testing.assert_allclose(short.by_strike["gex_puts_usd_per_pct_marks"], base.by_strike["gex_puts_usd_per_pct_marks"])
    assert short.totals.dealer_convention == "short-all" and base.totals.dealer_convention == "long-calls-short-puts"
    assert (base.dealer.calls, base.dealer.puts) == (1, -1)
    with pytest.raises(ValueError, match="unknown dealer convention 'sideways'"):
        mk.market_statistics(frame, days_per_year=365.0, dealer="sideways")


def _net_gex(docs, ts, spot, levels):
    """Net dealer GEX (USD per 1 %) of `docs` at each spot level, sticky strike, forwards moving with spot."""
    K = np.array([d["strike"] for d in docs])
    F0 = np.array([d["forward"] for d in docs])
    sig = np.array([d["implied_volatility"] for d in docs])
    T = np.array([(d["expiry"] - ts).total_seconds() / (365 * 86400) for d in docs])
    pos = np.array([(1 if d["option_type"] == "call" else -1) * d["open_interest"] for d in docs])
    out = []
    for S in levels:
        F = F0 * S / spot
        d1 = (np.log(F / K) + 0.5 * sig ** 2 * T) / (sig * np.sqrt(T))
        out.append(np.sum(pos * norm.pdf(d1) / (S * sig * np.sqrt(T)) * S * S / 100))
    return np.array(out)


@pytest.mark.parametrize("cur,file,code", [("BTC", SAMPLE, None), ("BTC", SAMPLE, "30JAN26"), ("ETH", SAMPLE, None),
                                           ("BTC", BOOK, None), ("BTC", BOOK, "27MAR26")])
def test_gamma_flip_is_the_sign_change_nearest_spot_of_an_independent_scan(stats, cur, file, code):
    st = stats[(cur, file)]
    ts, by_expiry = _live_docs(cur, file)
    every = [d for v in by_expiry.values() for d in v]
    spot = _spot(every)
    docs = [d for d in every if code is None or d["symbol"].startswith(f"{cur}-{code}-")]
    docs = [d for d in docs if d["open_interest"]]
    levels = spot * np.linspace(0.7, 1.3, 1201)
    g = _net_gex(docs, ts, spot, levels)
    crossing = np.flatnonzero(np.sign(g[:-1]) * np.sign(g[1:]) < 0)
    assert crossing.size, "the recorded chain has a gamma flip within ±30 %"
    i = crossing[np.argmin(np.abs(levels[crossing] - spot))]
    lo, hi = levels[i], levels[i + 1]
    for _ in range(60):                                             # bisection to the root
        mid = 0.5 * (lo + hi)
        if np.sign(_net_gex(docs, ts, spot, [mid])[0]) == np.sign(_net_gex(docs, ts, spot, [lo])[0]):
            lo = mid
        else:
            hi = mid
    row = st.overall.iloc[0] if code is None else st.expiries.set_index("expiry_code").loc[code]
    assert row.gamma_flip_usd_marks == pytest.approx(0.5 * (lo + hi), abs=0.01)
    # the profile is the same function on the reported grid
    column = st.gex_profile[mk.ALL if code is None else code]
    np.testing.assert_allclose(column.to_numpy(), _net_gex(docs, ts, spot, column.index.to_numpy()), rtol=1e-9,
                               atol=1e-6 * np.abs(column).max())


def test_gex_grid_scales_with_the_requested_range():
    frame = recorded_chain("ETH", SAMPLE)
    st = mk.market_statistics(frame, days_per_year=365.0, grid=mk.SpotGrid(low=0.9, high=1.1, points=21))
    assert st.gex_profile.index[0] == pytest.approx(0.9 * st.spot_usd)
    assert st.gex_profile.index[-1] == pytest.approx(1.1 * st.spot_usd) and len(st.gex_profile) == 21
    with pytest.raises(ValueError, match="spot grid"):
        mk.SpotGrid(low=1.1, high=1.3)


# ------------------------------------------------------------------------------------------------ implied move

@pytest.mark.parametrize("cur,file", CHAINS)
def test_implied_move_is_the_straddle_coin_premium_times_index_over_forward(stats, cur, file):
    st = stats[(cur, file)]
    ts, by_expiry = _live_docs(cur, file)
    spot = _spot([d for v in by_expiry.values() for d in v])
    for row, docs in zip(st.expiries.itertuples(), by_expiry.values()):
        forward = float(np.median([d["forward"] for d in docs]))
        marks = defaultdict(dict)
        for d in docs:
            marks[d["strike"]][d["option_type"]] = d
        both = [k for k, v in marks.items() if len(v) == 2 and v["call"]["premium_crypto"] is not None
                and v["put"]["premium_crypto"] is not None]
        atm = min(both, key=lambda k: (abs(k - forward), k))
        call, put = marks[atm]["call"], marks[atm]["put"]
        straddle = call["premium_crypto"] + put["premium_crypto"]
        assert row.atm_strike_usd == atm
        assert row.straddle_coin_marks == pytest.approx(straddle, rel=1e-12)
        assert row.implied_move_fraction_marks == pytest.approx(straddle * spot / forward, rel=1e-12)
        assert row.implied_move_usd_marks == pytest.approx(straddle * spot, rel=1e-12)
        sigma = 0.5 * (call["implied_volatility"] + put["implied_volatility"])
        T = (call["expiry"] - ts).total_seconds() / (365 * 86400)
        assert row.atm_iv_marks == pytest.approx(sigma, rel=1e-12)
        assert row.one_sigma_low_usd_marks == pytest.approx(forward * math.exp(-sigma * math.sqrt(T)), rel=1e-12)
        assert row.one_sigma_high_usd_marks == pytest.approx(forward * math.exp(sigma * math.sqrt(T)), rel=1e-12)


def test_totals_record_front_and_30_day_expiries_for_the_summaries(stats):
    st = stats[("BTC", SAMPLE)]
    t = st.totals
    ex = st.expiries.set_index("expiry_code")
    days = ex["t_years"] * 365
    near = (days - 30).abs().idxmin()
    assert t.front_expiry_code == ex.index[0] and t.expiry_30d_code == near == "30JAN26"
    assert t.max_pain_30d_coin_payoff_usd == ex.loc[near, "max_pain_coin_payoff_usd"]
    assert t.implied_move_30d_fraction_marks == ex.loc[near, "implied_move_fraction_marks"]
    assert t.gamma_flip_usd_marks == st.overall.gamma_flip_usd_marks[0]
    doc = t.as_document()
    # the names docs/CONTRACTS.md gives the per-snapshot summaries
    assert {"oi_calls_coin", "oi_puts_coin", "oi_calls_usd", "oi_puts_usd", "volume_calls_coin", "volume_puts_coin",
            "volume_calls_usd", "volume_puts_usd", "pcr_oi", "pcr_volume"} <= set(doc)
    assert len(doc["market_expiries"]) == len(ex)
    from bsoncheck import assert_bson_roundtrip
    assert_bson_roundtrip(doc, "market totals")


# ------------------------------------------------------------------------------------------------ OI changes

def test_oi_changes_on_two_real_snapshots_24_hours_apart():
    now, before = recorded_chain("BTC", SAMPLE), recorded_chain("BTC", DAY_BEFORE)
    ch = mk.oi_changes(now, before)
    _, ts, docs_now = recorded_docs("BTC", SAMPLE)
    _, ts0, docs_before = recorded_docs("BTC", DAY_BEFORE)
    assert ch.totals.hours_between == pytest.approx((ts - ts0).total_seconds() / 3600) and 23.9 < ch.totals.hours_between < 24.1
    old = {d["symbol"]: d for d in docs_before}
    new = {d["symbol"]: d for d in docs_now}
    want = defaultdict(float)                         # (expiry, strike, type) → change, by hand
    for sym, d in new.items():
        want[(d["expiry"], d["strike"], d["option_type"])] += d["open_interest"] - (old[sym]["open_interest"] if sym in old else 0)
    expired = defaultdict(float)
    for sym, d in old.items():
        if sym not in new:
            if d["expiry"] <= ts:
                expired[d["option_type"]] += d["open_interest"]
            else:
                want[(d["expiry"], d["strike"], d["option_type"])] -= d["open_interest"]
    assert expired["call"] > 0                         # 11JAN26 settled in between
    assert ch.totals.expired_calls_coin == pytest.approx(expired["call"])
    assert ch.totals.expired_puts_coin == pytest.approx(expired["put"])
    for row in ch.by_strike.itertuples():
        assert row.oi_calls_change_coin == pytest.approx(want.pop((row.expiry, row.strike_usd, "call"), 0.0), abs=1e-9)
        assert row.oi_puts_change_coin == pytest.approx(want.pop((row.expiry, row.strike_usd, "put"), 0.0), abs=1e-9)
    assert not want                                    # every instrument is in some (expiry, strike) row
    changes = [new[s]["open_interest"] - old[s]["open_interest"] for s in new if s in old]
    added = sum(c for s, c in zip([s for s in new if s in old], changes) if c > 0 and new[s]["option_type"] == "call")
    added += sum(new[s]["open_interest"] for s in new if s not in old and new[s]["option_type"] == "call")
    assert ch.totals.calls_added_coin == pytest.approx(added)
    assert set(ch.by_instrument.loc[ch.by_instrument["status"] == "new", "instrument"]) == set(new) - set(old)
    top = ch.by_instrument.iloc[0]
    assert abs(top.oi_change_coin) == max(abs(new[s]["open_interest"] - old.get(s, {"open_interest": 0})["open_interest"])
                                          for s in new)
    # all expiries by strike sums the per-expiry rows
    strike = ch.all_by_strike.set_index("strike_usd").loc[90_000.0]
    assert strike.oi_change_coin == pytest.approx(ch.by_strike.loc[ch.by_strike["strike_usd"] == 90_000.0,
                                                                   "oi_change_coin"].sum())
    assert ch.by_expiry["oi_change_coin"].sum() == pytest.approx(ch.by_strike["oi_change_coin"].sum())


# ------------------------------------------------------------------------------------------------ bad input

def test_bad_input_gives_one_clear_line():
    frame = recorded_chain("BTC", SAMPLE)
    with pytest.raises(ValueError, match="lacks column.*open_interest_coin"):
        mk.market_statistics(frame.drop(columns=["open_interest_coin"]), days_per_year=365.0)
    bad = frame.copy()
    bad.loc[5, "open_interest_coin"] = -3.0
    with pytest.raises(ValueError, match=f"negative open_interest_coin -3 on {frame.loc[5, 'instrument']}"):
        mk.market_statistics(bad, days_per_year=365.0)
    expired = frame.assign(t_years=-1.0)
    with pytest.raises(ValueError, match="no unexpired options"):
        mk.market_statistics(expired, days_per_year=365.0)
    with pytest.raises(ValueError, match="days_per_year"):
        mk.market_statistics(frame, days_per_year=0)
    with pytest.raises(ValueError, match="must be a pandas DataFrame"):
        mk.market_statistics([{"a": 1}], days_per_year=365.0)
    with pytest.raises(ValueError, match="as_of"):
        mk.oi_changes(_without_attrs(frame.copy()), frame)


def _without_attrs(frame):
    frame.attrs.clear()
    return frame


def test_expired_rows_and_missing_vols_are_left_out_and_counted():
    frame = recorded_chain("BTC", SAMPLE).copy()
    front = frame["expiry_code"] == "12JAN26"
    frame.loc[front, "t_years"] = 0.0                                   # as if taken at 08:00 on expiry day
    frame.loc[frame.index[~front][:3], "mark_iv"] = np.nan
    st = mk.market_statistics(frame, days_per_year=365.0)
    assert st.n_expired == int(front.sum()) and "12JAN26" not in set(st.expiries["expiry_code"])
    with_oi = frame.loc[frame.index[~front][:3], "open_interest_coin"].gt(0).sum()
    assert st.n_without_greeks == with_oi
    assert st.overall.oi_calls_coin[0] == pytest.approx(frame.loc[~front & frame.is_call, "open_interest_coin"].sum())
