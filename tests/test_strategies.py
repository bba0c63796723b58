"""Rules, regime measures and leg selection (pure), on hand-made regimes and the recorded Jan 2026 chain."""

from __future__ import annotations

from pathlib import Path

import math
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from qortcli.config import get_settings
from qortcli.quant import realised, vol_history
from qortcli.quant import smile
from qortcli.quant import strategies as strat
FIXTURES = Path(__file__).parent / "fixtures"

FIRST = FIXTURES / "deribit_options_snapshot_20260105T041127Z.csv"


@pytest.fixture(scope="module")
def cfg():
    return get_settings().section("suggest")


def csv_chain(path, currency: str) -> pd.DataFrame:
    """A chain DataFrame straight from a recorded CSV (Deribit's published deltas)."""
    raw = pd.read_csv(path)
    raw = raw[raw["currency"] == currency]
    ts = pd.to_datetime(raw["timestamp"], utc=True)
    exp = pd.to_datetime(raw["expiry_datetime"], utc=True)
    return pd.DataFrame({
        "symbol": raw["instrument_name"], "option_type": raw["option_type"], "strike": raw["strike"].astype(float),
        "expiry": exp, "t_years": (exp - ts).dt.total_seconds() / (365 * 86400), "delta": raw["delta"],
        "bid_coin": raw["bid_price"], "ask_coin": raw["ask_price"], "mark_coin": raw["mark_price"],
        "iv": raw["implied_volatility"], "forward_usd": raw["underlying"], "index_usd": raw["index_price"],
    }).reset_index(drop=True)


# ------------------------------------------------------------------------------------------ regime

def test_atm_iv_interpolates_in_log_moneyness():
    # F = 100: between K=90 (0.50) and K=110 (0.40) at ln(100/90) / ln(110/90) of the way
    w = math.log(100 / 90) / math.log(110 / 90)
    assert smile.atm_iv_from_quotes([90, 110, 110], [0.50, 0.40, 0.40], 100.0) == pytest.approx(0.50 + w * (0.40 - 0.50))


def test_constant_maturity_atm_is_linear_in_total_variance():
    # 10d at 0.50, 40d at 0.40: w(30d) = w10 + (20/30)(w40 − w10)
    t1, t2, t = 10 / 365, 40 / 365, 30 / 365
    w = 0.5 ** 2 * t1 + (t - t1) / (t2 - t1) * (0.4 ** 2 * t2 - 0.5 ** 2 * t1)
    assert smile.interpolate_total_variance([t2, t1], [0.40, 0.50], t) == (pytest.approx(math.sqrt(w / t)), False)
    assert smile.interpolate_total_variance([t1, t2], [0.5, 0.4], 5 / 365) == (0.5, True)  # flat before the first


def test_percentile_rank():
    assert vol_history.percentile_rank(3.0, [1, 2, 3, 4]) == pytest.approx(0.625)  # (2 below + ½·1 equal)/4
    assert math.isnan(vol_history.percentile_rank(1.0, []))


def test_realised_vol_on_recorded_btc_closes():
    """The rules' realised vol: the 30 daily log returns of the recorded BTC-USD closes up to 2023-03-31
    (gap-free), annualised √(365 × mean r²) — the project's one RV rule (`quant.realised`, zero mean)."""
    raw = pd.read_csv(FIXTURES / "prices" / "BTC-USD.csv", parse_dates=["Date"])
    prices = pd.DataFrame({"close": raw["Close"].to_numpy()},
                          index=pd.DatetimeIndex(raw["Date"]).tz_localize("UTC"))
    as_of = datetime(2026, 1, 5, 4, tzinfo=timezone.utc)
    out = realised.realised_vol(prices, 30, as_of=as_of, days_per_year=365)
    last = raw["Close"].to_numpy()[-31:]
    r = np.log(last[1:] / last[:-1])
    assert out.vol == pytest.approx(math.sqrt(365 * np.mean(r * r)))
    assert out.n_returns == 30 and out.n_gap_returns == 0
    assert out.span_end.date().isoformat() == "2023-03-31"
    assert out.span_start.date() == (raw["Date"].iloc[-30]).date()   # the first return: close −31 → close −30
    assert (as_of - out.span_end).days > 1000  # the recorded history is ~2¾ years older than the Jan 2026 options
    # as of an earlier date only earlier closes are used
    earlier = realised.realised_vol(prices, 30, as_of=datetime(2022, 1, 1, tzinfo=timezone.utc))
    assert earlier.span_end.date().isoformat() == "2022-01-01"


def test_risk_reversal_from_recorded_deltas():
    chain = csv_chain(FIRST, "BTC")
    g = chain[chain["expiry"] == chain["expiry"].sort_values().unique()[6]]  # 23JAN26
    c, p = g[g.option_type == "call"], g[g.option_type == "put"]
    out = {"call_iv": smile.vol_at_delta(c["delta"], c["iv"], 0.25), "put_iv": smile.vol_at_delta(p["delta"], p["iv"], -0.25)}
    out["rr"] = out["call_iv"] - out["put_iv"]
    # hand: linear interpolation of IV in delta between the two calls / puts bracketing ±0.25
    cs = c.sort_values("delta")
    i = np.searchsorted(cs["delta"].to_numpy(), 0.25)
    d0, d1 = cs["delta"].iloc[i - 1], cs["delta"].iloc[i]
    v0, v1 = cs["iv"].iloc[i - 1], cs["iv"].iloc[i]
    assert out["call_iv"] == pytest.approx(v0 + (0.25 - d0) / (d1 - d0) * (v1 - v0))
    assert out["rr"] == pytest.approx(out["call_iv"] - out["put_iv"])


# ------------------------------------------------------------------------------------------- rules

def _regime(**kw):
    base = {"atm_iv_marks": 0.45, "atm_iv_marks_percentile": 0.5, "iv_history_n": 100, "rv_30d": 0.45,
            "rv_age_days": 0.5, "term_front_atm_iv_marks": 0.45, "term_back_atm_iv_marks": 0.45, "rr25_marks": 0.0}
    base.update(kw)
    return base


def fired(rules):
    return {r.name for r in rules if r.fired}


def test_original_design_rules(cfg):
    assert cfg["iv_high"] == 0.60 and cfg["iv_low"] == 0.30
    rules = strat.evaluate_rules(_regime(atm_iv_marks=0.65, rv_30d=0.62), cfg)
    assert fired(rules) == {"iv_above_high"}
    hit = next(r for r in rules if r.name == "iv_above_high")
    assert hit.strategies == ("short_strangle",)
    assert hit.strength == pytest.approx((0.65 - 0.60) / cfg["rank_scale"]["iv_above_high"])
    assert fired(strat.evaluate_rules(_regime(atm_iv_marks=0.25, rv_30d=0.25), cfg)) == {"iv_below_low"}
    assert fired(strat.evaluate_rules(_regime(atm_iv_marks=0.60, rv_30d=0.60), cfg)) == set()  # strictly above


def test_thresholds_come_from_config(cfg):
    mine = dict(cfg, iv_high=0.40)
    assert "iv_above_high" in fired(strat.evaluate_rules(_regime(atm_iv_marks=0.45), mine))
    assert "iv_above_high" not in fired(strat.evaluate_rules(_regime(atm_iv_marks=0.45), cfg))


def test_percentile_rules_need_history(cfg):
    rich = _regime(atm_iv_marks_percentile=0.95)
    assert "iv_rich_percentile" in fired(strat.evaluate_rules(rich, cfg))
    short = strat.evaluate_rules(dict(rich, iv_history_n=cfg["min_history"] - 1), cfg)
    rule = next(r for r in short if r.name == "iv_rich_percentile")
    assert not rule.evaluated and not rule.fired and "min_history" in rule.note
    assert "iv_cheap_percentile" in fired(strat.evaluate_rules(_regime(atm_iv_marks_percentile=0.05), cfg))


def test_iv_vs_rv_rules_and_staleness(cfg):
    assert "iv_over_rv" in fired(strat.evaluate_rules(_regime(atm_iv_marks=0.55, rv_30d=0.45), cfg))
    assert "iv_under_rv" in fired(strat.evaluate_rules(_regime(atm_iv_marks=0.40, rv_30d=0.45), cfg))
    stale = strat.evaluate_rules(_regime(atm_iv_marks=0.55, rv_30d=0.45, rv_age_days=1000), cfg)
    rule = next(r for r in stale if r.name == "iv_over_rv")
    assert not rule.evaluated and "stale" in rule.note
    assert rule.inputs["iv_minus_rv"] == pytest.approx(0.10)  # still printed


def test_term_and_skew_rules(cfg):
    inv = strat.evaluate_rules(_regime(term_front_atm_iv_marks=0.47, term_back_atm_iv_marks=0.45), cfg)
    assert fired(inv) == {"term_inverted"}
    assert fired(strat.evaluate_rules(_regime(term_front_atm_iv_marks=0.45, term_back_atm_iv_marks=0.47), cfg)) == set()
    puts = strat.evaluate_rules(_regime(rr25_marks=-0.03), cfg)
    assert fired(puts) == {"put_skew"}
    assert strat.skew_direction(puts, {"rr25_marks": -0.03}) == "put"
    assert fired(strat.evaluate_rules(_regime(rr25_marks=0.03), cfg)) == {"call_skew"}


def test_rank_strategies(cfg):
    rules = strat.evaluate_rules(_regime(atm_iv_marks=0.70, rv_30d=0.55, atm_iv_marks_percentile=0.9, rr25_marks=-0.03), cfg)
    ranked = strat.rank_strategies(rules, 3)
    # short strangle gathers three rules (original, percentile, IV>RV): strongest
    assert ranked[0]["strategy"] == "short_strangle"
    assert set(ranked[0]["rules"]) == {"iv_above_high", "iv_rich_percentile", "iv_over_rv"}
    assert len(ranked) == 3
    assert [r["score"] for r in ranked] == sorted([r["score"] for r in ranked], reverse=True)
    extra = strat.rank_strategies(rules, 1, ["calendar_spread"])
    assert [r["strategy"] for r in extra] == ["short_strangle", "calendar_spread"] and extra[1]["requested"]
    with pytest.raises(ValueError):
        strat.rank_strategies(rules, 1, ["butterfly"])


# -------------------------------------------------------------------------------------------- legs

@pytest.fixture(scope="module")
def btc_23jan():
    chain = csv_chain(FIRST, "BTC")
    exp = sorted(chain["expiry"].unique())
    return chain[chain["expiry"] == exp[6]].reset_index(drop=True), chain[chain["expiry"] == exp[4]].reset_index(drop=True)


def _nearest_tradable(chain, option_type, target, side, extra=None):
    quote = "ask_coin" if side > 0 else "bid_coin"
    rows = chain[(chain.option_type == option_type) & (chain[quote] > 0) & (chain.mark_coin > 0)]
    if extra is not None:
        rows = rows[extra(rows)]
    return rows.iloc[(rows["delta"] - target).abs().argsort().iloc[0]]


@pytest.mark.parametrize("name", strat.STRATEGIES)
def test_build_legs_on_recorded_chain(name, cfg, btc_23jan):
    chain, front = btc_23jan
    if name == "calendar_spread":
        legs = strat.build_legs(name, front, cfg, "BTC", back_chain=chain)
    else:
        legs = strat.build_legs(name, chain, cfg, "BTC", "put")
    raw = pd.concat([chain, front]).set_index("symbol")
    for leg in legs:
        if leg["option_type"] == "underlying":
            assert leg["size"] == cfg["holding_coin"]
            continue
        row = raw.loc[leg["instrument"]]
        if leg["side"] == "sell":
            assert row["bid_coin"] > 0 and leg["price_coin"] == row["bid_coin"]
        else:
            assert row["ask_coin"] > 0 and leg["price_coin"] == row["ask_coin"]
        assert leg["mark_coin"] == row["mark_coin"]
        assert leg["mark_usd"] == pytest.approx(row["mark_coin"] * row["index_usd"])
    by = {(leg["option_type"], leg["side"]): leg for leg in legs}
    if name in ("short_strangle", "iron_condor"):
        c = _nearest_tradable(chain, "call", cfg["delta_short"], -1)
        assert by[("call", "sell")]["instrument"] == c["symbol"]
        p = _nearest_tradable(chain, "put", -cfg["delta_short"], -1)
        assert by[("put", "sell")]["instrument"] == p["symbol"]
    if name == "iron_condor":
        assert by[("call", "buy")]["strike"] > by[("call", "sell")]["strike"]
        assert by[("put", "buy")]["strike"] < by[("put", "sell")]["strike"]
        wing = _nearest_tradable(chain, "call", cfg["delta_wing"], 1, lambda r: r.strike > by[("call", "sell")]["strike"])
        assert by[("call", "buy")]["instrument"] == wing["symbol"]
    if name == "long_straddle":
        assert by[("call", "buy")]["strike"] == by[("put", "buy")]["strike"]
        fwd = chain["forward_usd"].median()
        assert abs(by[("call", "buy")]["strike"] - fwd) <= chain["strike"].diff().abs().replace(0, np.nan).max()
    if name == "bull_call_spread":
        assert by[("call", "buy")]["strike"] < by[("call", "sell")]["strike"]
        assert by[("call", "buy")]["instrument"] == _nearest_tradable(chain, "call", cfg["delta_spread_long"], 1)["symbol"]
    if name == "bear_put_spread":
        assert by[("put", "buy")]["strike"] > by[("put", "sell")]["strike"]
    if name == "risk_reversal":  # put skew: sell the put wing, buy the call wing
        assert set(by) == {("put", "sell"), ("call", "buy")}
    if name == "calendar_spread":
        assert legs[0]["side"] == "sell" and legs[1]["side"] == "buy"
        assert legs[0]["strike"] == legs[1]["strike"] and legs[0]["expiry"] < legs[1]["expiry"]


def test_never_sells_without_bid_or_buys_without_ask(cfg, btc_23jan):
    chain, _ = btc_23jan
    # remove the bids of every call: a short strangle cannot be built, a long strangle can
    no_bids = chain.assign(bid_coin=np.where(chain.option_type == "call", np.nan, chain.bid_coin))
    with pytest.raises(strat.LegError):
        strat.build_legs("short_strangle", no_bids, cfg, "BTC")
    legs = strat.build_legs("long_strangle", no_bids, cfg, "BTC")
    assert all(leg["side"] == "buy" for leg in legs)
    # the 25Δ call loses its ask: the buyer takes the nearest call that has one
    c = _nearest_tradable(chain, "call", cfg["delta_short"], 1)
    no_ask = chain.assign(ask_coin=np.where(chain.symbol == c["symbol"], np.nan, chain.ask_coin))
    legs = strat.build_legs("long_strangle", no_ask, cfg, "BTC")
    assert c["symbol"] not in {leg["instrument"] for leg in legs}


def test_payoff_legs_value_the_back_leg_at_the_front_expiry(cfg, btc_23jan):
    chain, front = btc_23jan
    recs = strat.build_legs("calendar_spread", front, cfg, "BTC", back_chain=chain)
    legs = strat.payoff_legs(recs, recs[0]["t_years"])
    assert legs[0].t_left_years == 0.0
    assert legs[1].t_left_years == pytest.approx(recs[1]["t_years"] - recs[0]["t_years"])
    assert legs[1].iv == recs[1]["iv"]
    assert legs[0].price_coin == recs[0]["bid_coin"] and legs[1].price_coin == recs[1]["ask_coin"]
    marks = strat.payoff_legs(recs, recs[0]["t_years"], entry="mark")
    assert [leg.price_coin for leg in marks] == [r["mark_coin"] for r in recs]


# -------------------------------------------------------------------------------------------- registry

def test_rules_select_the_strategies_their_templates_name(cfg):
    rules = strat.evaluate_rules(_regime(), cfg)
    names = {r.name for r in rules}
    for template in strat.REGISTRY.values():
        assert set(template.rules) <= names, template.name    # every template names real rules
    for rule in rules:                                       # and each rule selects exactly those templates
        assert rule.strategies == tuple(n for n, t in strat.REGISTRY.items() if rule.name in t.rules)
    assert strat.STRATEGIES == tuple(strat.REGISTRY)
    assert [n for n, t in strat.REGISTRY.items() if t.needs_second_expiry] == ["calendar_spread"]


def test_adding_a_strategy_is_one_template(cfg, btc_23jan, monkeypatch):
    """A new template (a short put selected by put_skew) is ranked, named in the error message, and built."""
    chain, _ = btc_23jan

    def short_put(r):
        p = strat.pick_by_delta(r.chain, "put", -float(r.cfg["delta_short"]), -1)
        return [strat.leg_record(p, -1, r.size, "short put")]

    registry = dict(strat.REGISTRY, short_put=strat.StrategyTemplate("short_put", "sell a put", short_put, ("put_skew",)))
    monkeypatch.setattr(strat, "REGISTRY", registry)
    monkeypatch.setattr(strat, "STRATEGIES", tuple(registry))
    rules = strat.evaluate_rules(_regime(rr25_marks=-0.05), cfg)
    assert "short_put" in next(r for r in rules if r.name == "put_skew").strategies
    assert "short_put" in {x["strategy"] for x in strat.rank_strategies(rules, 10)}
    legs = strat.build_legs("short_put", chain, cfg, "BTC")
    assert [leg["side"] for leg in legs] == ["sell"] and legs[0]["option_type"] == "put"
    with pytest.raises(ValueError, match="short_put"):
        strat.check_strategy("butterfly")
