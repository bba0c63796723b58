"""Rule-based option strategies: rules on the market regime, a registry of strategy templates, legs by delta.

Pure pandas/numpy, no I/O. Payoff maths lives in `qortcli.quant.payoff`, smile statistics in
`qortcli.quant.smile`. Every threshold and delta target comes from the `cfg` dict (the `[suggest]`
section of settings.toml), never from code.

The registry (`REGISTRY`, names in `STRATEGIES`) holds one `StrategyTemplate` per strategy: its name, its
leg builder, whether it needs a second expiry (a calendar trades the chosen expiry against an earlier
"front" one; its legs are built on the earlier expiry's chain with the chosen one as `back_chain`), the
rules that select it, and an optional note for the reasoning. Adding a strategy is one template here (and
its tests); the rules, the ranking, the step and the CLI read the registry.

A chain is a DataFrame of one expiry with columns: symbol, option_type ("call"/"put"), strike (USD),
expiry (UTC datetime), t_years, delta (forward delta, calls 0..1, puts −1..0), bid_coin, ask_coin,
mark_coin (coin per contract, NaN when absent), iv (fraction), forward_usd, index_usd, and optionally
greeks (dict per row).

The regime the rules read (keys; vols as fractions, each saying its source): atm_iv_marks (constant-
maturity ATM IV at `iv_tenor_days` from the marks), atm_iv_marks_percentile, iv_history_n, rv_30d,
rv_age_days, term_front_atm_iv_marks, term_back_atm_iv_marks, rr25_marks (the chosen expiry's 25Δ risk
reversal from the marks), and for the IV-vs-forecast rules (tenor T = iv_vs_forecast_tenor_days)
atm_iv_{T}d_marks, forecast_rv_{T}d (the best-scoring model's forecast of the T-day realised vol) and the
forecast's model, scores, as-of day and age (`_forecast_rules`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from qortcli.quant.payoff import CALL, PUT, UNDERLYING, Leg


class LegError(ValueError):
    """No instrument satisfies a leg's requirements (quote on the side crossed, strike order)."""


# ------------------------------------------------------------------------------------------- rules

@dataclass
class Rule:
    """One rule's evaluation: inputs and thresholds as printed, whether it could be evaluated and fired."""

    name: str
    description: str
    inputs: dict
    thresholds: dict
    evaluated: bool
    fired: bool
    strength: float
    strategies: tuple
    note: str = ""

    def to_dict(self) -> dict:
        return {"rule": self.name, "description": self.description, "inputs": self.inputs,
                "thresholds": self.thresholds, "evaluated": self.evaluated, "fired": self.fired,
                "strength": self.strength, "strategies": list(self.strategies), "note": self.note}


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def selected_by(rule: str) -> tuple[str, ...]:
    """The strategy names (registry order) whose templates list `rule` among the rules that select them."""
    return tuple(name for name, t in REGISTRY.items() if rule in t.rules)


def evaluate_rules(regime: dict, cfg: dict) -> list[Rule]:
    """Evaluate every rule on `regime` (keys: atm_iv_marks, atm_iv_marks_percentile, iv_history_n, rv_30d,
    rv_age_days, term_front_atm_iv_marks, term_back_atm_iv_marks, rr25_marks, the forecast keys of
    `_forecast_rules`; vols and their differences as fractions, the percentile a fraction 0..1, ages in days)
    with thresholds from `cfg` in the same units;
    the strategies a rule selects come from the registry (`selected_by`).

    `strength` is the exceedance past the threshold divided by the rule's ranking scale (> 0 when fired).
    A rule whose input is missing, too short (percentile) or stale (realised vol) is not evaluated.
    """
    rules: list[Rule] = []
    iv = regime.get("atm_iv_marks")
    tenor = f"{float(cfg.get('iv_tenor_days', 30)):g}d"
    scale = cfg.get("rank_scale", {})

    def level(name, desc, value, key, op, inputs, ok=True, note=""):
        thr = cfg[key]
        evaluated = ok and _finite(value)
        fired = bool(evaluated and (value > thr if op == ">" else value < thr if op == "<"
                                    else value >= thr if op == ">=" else value <= thr))
        strength = abs(value - thr) / float(scale.get(name, 1.0)) if fired else 0.0
        rules.append(Rule(name, desc, inputs, {key: thr}, evaluated, fired, strength, selected_by(name), note))

    level("iv_above_high", f"original rule: {tenor} ATM IV (marks) above iv_high → short strangle", iv, "iv_high",
          ">", {"atm_iv_marks": iv})
    level("iv_below_low", f"original rule: {tenor} ATM IV (marks) below iv_low → long straddle", iv, "iv_low",
          "<", {"atm_iv_marks": iv})

    pct, n_hist = regime.get("atm_iv_marks_percentile"), regime.get("iv_history_n") or 0
    enough = n_hist >= int(cfg["min_history"])
    note = "" if enough else f"only {n_hist} stored points (< min_history {cfg['min_history']})"
    hist_inputs = {"atm_iv_marks": iv, "atm_iv_marks_percentile": pct, "history_points": n_hist,
                   "history_from": regime.get("iv_history_from"), "history_to": regime.get("iv_history_to")}
    level("iv_rich_percentile", f"{tenor} ATM IV (marks) percentile over stored history at or above iv_pct_high "
          "(rich IV)", pct, "iv_pct_high", ">=", hist_inputs, enough, note)
    level("iv_cheap_percentile", f"{tenor} ATM IV (marks) percentile over stored history at or below iv_pct_low "
          "(cheap IV)", pct, "iv_pct_low", "<=", hist_inputs, enough, note)

    rv, age = regime.get("rv_30d"), regime.get("rv_age_days")
    spread = iv - rv if _finite(iv) and _finite(rv) else None
    fresh = _finite(age) and age <= float(cfg["rv_max_age_days"])
    note = "" if fresh else (f"realised-vol window ends {age:.0f} days before the snapshot (> rv_max_age_days "
                             f"{cfg['rv_max_age_days']}): stale, not used" if _finite(age) else "no price history")
    rv_inputs = {"atm_iv_marks": iv, "rv_30d": rv, "iv_minus_rv": spread, "rv_window_start": regime.get("rv_start"),
                 "rv_window_end": regime.get("rv_end"), "rv_age_days": age}
    level("iv_over_rv", f"{tenor} ATM IV (marks) minus 30d realised vol at or above iv_rv_rich (IV rich vs RV)",
          spread, "iv_rv_rich", ">=", rv_inputs, fresh, note)
    level("iv_under_rv", f"{tenor} ATM IV (marks) minus 30d realised vol at or below iv_rv_cheap (IV cheap vs RV)",
          spread, "iv_rv_cheap", "<=", rv_inputs, fresh, note)

    _forecast_rules(rules, regime, cfg, level)

    front, back = regime.get("term_front_atm_iv_marks"), regime.get("term_back_atm_iv_marks")
    inversion = front - back if _finite(front) and _finite(back) else None
    level("term_inverted", "front ATM IV above back ATM IV (marks) by term_inverted or more (backwardation) → "
          "calendar", inversion, "term_inverted", ">=",
          {"term_front_atm_iv_marks": front, "term_back_atm_iv_marks": back, "front_minus_back": inversion,
           "front_days": regime.get("term_front_days"), "back_days": regime.get("term_back_days")})

    rr = regime.get("rr25_marks")
    rr_inputs = {"rr25_marks": rr, "expiry": regime.get("skew_expiry"), "call25_iv_marks": regime.get("call25_iv_marks"),
                 "put25_iv_marks": regime.get("put25_iv_marks")}
    level("put_skew", "25Δ risk reversal (marks) at or below −rr25_strong (puts rich): sell the put wing",
          -rr if _finite(rr) else None, "rr25_strong", ">=", rr_inputs)
    level("call_skew", "25Δ risk reversal (marks) at or above rr25_strong (calls rich): sell the call wing",
          rr, "rr25_strong", ">=", rr_inputs)
    return rules


FORECAST_SETTINGS = ("iv_vs_forecast_tenor_days", "iv_vs_forecast_rich", "iv_vs_forecast_cheap",
                     "forecast_max_age_days")
_FORECAST_RULES = (("iv_rich_vs_forecast", "iv_vs_forecast_rich", ">=", "at or above", "IV rich vs forecast"),
                   ("iv_cheap_vs_forecast", "iv_vs_forecast_cheap", "<=", "at or below", "IV cheap vs forecast"))


def _forecast_rules(rules: list[Rule], regime: dict, cfg: dict, level) -> None:
    """IV rich / cheap against the best-scoring forecast of the T-day realised vol (T = cfg
    iv_vs_forecast_tenor_days): IV − forecast RV (vol fractions) against iv_vs_forecast_rich / _cheap.

    Regime keys: atm_iv_{T}d_marks (the snapshot's T-day constant-maturity ATM IV from the marks; when absent
    and T equals iv_tenor_days, atm_iv_marks), forecast_rv_{T}d, forecast_model, forecast_qlike,
    forecast_implied_qlike, forecast_n_scored, forecast_as_of, forecast_age_days, forecast_source,
    forecast_reason (`qortcli.steps.vol.forecast_regime` builds them). Not evaluated without a forecast,
    when the forecast is older than forecast_max_age_days, or when the settings lack a key."""
    lacking = [k for k in FORECAST_SETTINGS if k not in cfg]
    if lacking:
        for name, key, _op, words, what in _FORECAST_RULES:
            rules.append(Rule(name, f"ATM IV (marks) minus the best-scoring RV forecast {words} {key} ({what})",
                              {}, {key: None}, False, False, 0.0, selected_by(name),
                              f"settings [suggest] lack {', '.join(lacking)}"))
        return
    tenor = int(cfg["iv_vs_forecast_tenor_days"])
    iv_key, fc_key = f"atm_iv_{tenor}d_marks", f"forecast_rv_{tenor}d"
    iv = regime.get(iv_key)
    if iv is None and float(cfg.get("iv_tenor_days", 0)) == tenor:
        iv = regime.get("atm_iv_marks")
    forecast, age = regime.get(fc_key), regime.get("forecast_age_days")
    spread = iv - forecast if _finite(iv) and _finite(forecast) else None
    max_age = float(cfg["forecast_max_age_days"])
    fresh = _finite(age) and age <= max_age
    if regime.get("forecast_reason"):
        note = str(regime["forecast_reason"])
    elif not _finite(forecast):
        note = f"no {tenor}d realised-vol forecast in the regime"
    elif not fresh:
        note = (f"forecast made {age:.1f} days before the snapshot (> forecast_max_age_days {max_age:g}): stale, "
                "not used" if _finite(age) else "forecast without an as-of day: not used")
    else:
        note = ""
    inputs = {iv_key: iv, fc_key: forecast, "iv_minus_forecast": spread,
              **{k: regime.get(k) for k in ("forecast_model", "forecast_qlike", "forecast_implied_qlike",
                                            "forecast_n_scored", "forecast_as_of", "forecast_age_days",
                                            "forecast_source")}}
    for name, key, op, words, what in _FORECAST_RULES:
        level(name, f"{tenor}d ATM IV (marks) minus the best-scoring {tenor}d RV forecast (lowest out-of-sample "
              f"QLIKE) {words} {key} ({what})", spread, key, op, inputs, fresh and not note, note)
        rules[-1].thresholds.update(iv_vs_forecast_tenor_days=tenor, forecast_max_age_days=max_age)


def rank_strategies(rules: list[Rule], top: int, requested: list[str] | None = None) -> list[dict]:
    """Strategies whose rules fired, by total strength (desc; dimensionless: exceedance / rank scale), at most
    `top`; `requested` ones are added
    (after the fired ones, even if no rule fired) in the given order."""
    scores: dict[str, float] = {}
    why: dict[str, list[str]] = {}
    for rule in rules:
        if rule.fired:
            for s in rule.strategies:
                scores[s] = scores.get(s, 0.0) + rule.strength
                why.setdefault(s, []).append(rule.name)
    ranked = sorted(scores, key=lambda s: (-scores[s], STRATEGIES.index(s)))[:max(top, 0)]
    out = [{"strategy": s, "score": scores[s], "rules": why[s], "requested": False} for s in ranked]
    for s in requested or []:
        check_strategy(s)
        if s not in ranked:
            out.append({"strategy": s, "score": scores.get(s, 0.0), "rules": why.get(s, []), "requested": True})
    return out


def skew_direction(rules: list[Rule], regime: dict) -> str:
    """'put' if puts are rich (RR25 from the marks, a vol difference as a fraction, < 0), else 'call': the
    wing a risk reversal sells."""
    rr = regime.get("rr25_marks")
    return "put" if not _finite(rr) or rr < 0 else "call"


# -------------------------------------------------------------------------------------------- templates

@dataclass(frozen=True)
class LegRequest:
    """What a leg builder gets: the chain of the (earliest) expiry traded, the settings, the currency, the
    richer wing ("put"/"call", from the marks' RR25) and, for a two-expiry strategy, the later expiry's chain."""

    chain: pd.DataFrame
    cfg: dict
    currency: str
    skew: str = "put"
    back_chain: pd.DataFrame | None = None

    @property
    def size(self) -> float:
        return float(self.cfg["size"])

    @property
    def forward_usd(self) -> float:
        return float(self.chain["forward_usd"].median())

    @property
    def index_usd(self) -> float:
        return float(self.chain["index_usd"].median())


@dataclass(frozen=True)
class StrategyTemplate:
    """One strategy: `build(request) -> [leg records]`, `needs_second_expiry` (built on an earlier front
    expiry with the chosen one as `back_chain`), the `rules` (names in `evaluate_rules`) that select it,
    and `note(skew) -> str | None` (a line for the reasoning, e.g. which wing a risk reversal sells)."""

    name: str
    description: str
    build: Callable[[LegRequest], list[dict]]
    rules: tuple[str, ...]
    needs_second_expiry: bool = False
    note: Callable[[str], str | None] | None = None


BUY, SELL = 1, -1


def _strangle(r: LegRequest, side: int) -> list[dict]:
    """The delta_short call and put (the put below the call), both bought (side +1) or sold (−1)."""
    d = float(r.cfg["delta_short"])
    c = pick_by_delta(r.chain, CALL, d, side)
    p = pick_by_delta(r.chain, PUT, -d, side, lambda k: k < c["strike"])
    return [leg_record(c, side, r.size, f"{d:.2f}Δ call"), leg_record(p, side, r.size, f"-{d:.2f}Δ put")]


def _short_strangle(r: LegRequest) -> list[dict]:
    return _strangle(r, SELL)


def _iron_condor(r: LegRequest) -> list[dict]:
    d, dw = float(r.cfg["delta_short"]), float(r.cfg["delta_wing"])
    c = pick_by_delta(r.chain, CALL, d, SELL)
    p = pick_by_delta(r.chain, PUT, -d, SELL, lambda k: k < c["strike"])
    cw = pick_by_delta(r.chain, CALL, dw, BUY, lambda k: k > c["strike"])
    pw = pick_by_delta(r.chain, PUT, -dw, BUY, lambda k: k < p["strike"])
    return [leg_record(pw, BUY, r.size, f"-{dw:.2f}Δ put wing"), leg_record(p, SELL, r.size, f"-{d:.2f}Δ put"),
            leg_record(c, SELL, r.size, f"{d:.2f}Δ call"), leg_record(cw, BUY, r.size, f"{dw:.2f}Δ call wing")]


def _long_straddle(r: LegRequest) -> list[dict]:
    k = pick_atm(r.chain, (CALL, PUT), BUY, r.forward_usd)
    return [leg_record(_row(r.chain, CALL, k), BUY, r.size, "ATM call"),
            leg_record(_row(r.chain, PUT, k), BUY, r.size, "ATM put")]


def _long_strangle(r: LegRequest) -> list[dict]:
    return _strangle(r, BUY)


def _calendar_spread(r: LegRequest) -> list[dict]:
    if r.back_chain is None or r.back_chain.empty:
        raise LegError("calendar needs a back expiry")
    k = pick_atm(r.chain, (CALL,), SELL, r.forward_usd, r.back_chain, BUY)
    return [leg_record(_row(r.chain, CALL, k), SELL, r.size, "front ATM call"),
            leg_record(_row(r.back_chain, CALL, k), BUY, r.size, "back ATM call")]


def _bull_call_spread(r: LegRequest) -> list[dict]:
    d, dl = float(r.cfg["delta_short"]), float(r.cfg["delta_spread_long"])
    lo = pick_by_delta(r.chain, CALL, dl, BUY)
    hi = pick_by_delta(r.chain, CALL, d, SELL, lambda k: k > lo["strike"])
    return [leg_record(lo, BUY, r.size, f"{dl:.2f}Δ call"), leg_record(hi, SELL, r.size, f"{d:.2f}Δ call")]


def _bear_put_spread(r: LegRequest) -> list[dict]:
    d, dl = float(r.cfg["delta_short"]), float(r.cfg["delta_spread_long"])
    hi = pick_by_delta(r.chain, PUT, -dl, BUY)
    lo = pick_by_delta(r.chain, PUT, -d, SELL, lambda k: k < hi["strike"])
    return [leg_record(hi, BUY, r.size, f"-{dl:.2f}Δ put"), leg_record(lo, SELL, r.size, f"-{d:.2f}Δ put")]


def _risk_reversal(r: LegRequest) -> list[dict]:
    d = float(r.cfg["delta_short"])
    if r.skew == "put":  # puts rich: sell the put wing, buy the call wing
        p = pick_by_delta(r.chain, PUT, -d, SELL)
        c = pick_by_delta(r.chain, CALL, d, BUY, lambda k: k > p["strike"])
        return [leg_record(p, SELL, r.size, f"-{d:.2f}Δ put"), leg_record(c, BUY, r.size, f"{d:.2f}Δ call")]
    c = pick_by_delta(r.chain, CALL, d, SELL)
    p = pick_by_delta(r.chain, PUT, -d, BUY, lambda k: k < c["strike"])
    return [leg_record(c, SELL, r.size, f"{d:.2f}Δ call"), leg_record(p, BUY, r.size, f"-{d:.2f}Δ put")]


def _covered_call(r: LegRequest) -> list[dict]:
    d, hold = float(r.cfg["delta_short"]), float(r.cfg["holding_coin"])
    c = pick_by_delta(r.chain, CALL, d, SELL)
    return [holding_record(r.currency, hold, r.index_usd), leg_record(c, SELL, hold, f"{d:.2f}Δ call")]


def _protective_put(r: LegRequest) -> list[dict]:
    d, hold = float(r.cfg["delta_short"]), float(r.cfg["holding_coin"])
    p = pick_by_delta(r.chain, PUT, -d, BUY)
    return [holding_record(r.currency, hold, r.index_usd), leg_record(p, BUY, hold, f"-{d:.2f}Δ put")]


_RICH = ("iv_rich_percentile", "iv_over_rv", "iv_rich_vs_forecast")
_CHEAP = ("iv_cheap_percentile", "iv_under_rv", "iv_cheap_vs_forecast")

REGISTRY: dict[str, StrategyTemplate] = {t.name: t for t in (
    StrategyTemplate("short_strangle", "sell the delta_short call and put", _short_strangle,
                     ("iv_above_high", *_RICH)),
    StrategyTemplate("iron_condor", "short strangle with delta_wing wings bought", _iron_condor, _RICH),
    StrategyTemplate("long_straddle", "buy the ATM call and put", _long_straddle, ("iv_below_low", *_CHEAP)),
    StrategyTemplate("long_strangle", "buy the delta_short call and put", _long_strangle, _CHEAP),
    StrategyTemplate("calendar_spread", "sell the front ATM call, buy the same strike in the chosen expiry",
                     _calendar_spread, ("term_inverted",), needs_second_expiry=True),
    StrategyTemplate("bull_call_spread", "buy the delta_spread_long call, sell the delta_short call",
                     _bull_call_spread, ("call_skew",)),
    StrategyTemplate("bear_put_spread", "buy the delta_spread_long put, sell the delta_short put",
                     _bear_put_spread, ("put_skew",)),
    StrategyTemplate("risk_reversal", "sell the richer 25Δ wing, buy the other", _risk_reversal,
                     ("put_skew", "call_skew"),
                     note=lambda skew: f"direction: sell the {skew} wing (the richer one), buy the other"),
    StrategyTemplate("covered_call", "hold holding_coin, sell the delta_short call", _covered_call, _RICH),
    StrategyTemplate("protective_put", "hold holding_coin, buy the delta_short put", _protective_put, _CHEAP),
)}
STRATEGIES = tuple(REGISTRY)


def check_strategy(name: str) -> StrategyTemplate:
    """The template of `name` (a registry name); ValueError listing the registry otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}") from None


def build_legs(strategy: str, chain: pd.DataFrame, cfg: dict, currency: str, skew: str = "put",
               back_chain: pd.DataFrame | None = None) -> list[dict]:
    """Concrete legs of `strategy` on `chain` (one expiry) by the delta targets in `cfg` (the registry's
    builder). Sells only where there is a bid, buys only where there is an ask (LegError otherwise); a
    two-expiry strategy is built on the earlier `chain` with the later one as `back_chain`."""
    return check_strategy(strategy).build(LegRequest(chain, cfg, currency, skew, back_chain))


# -------------------------------------------------------------------------------------------- legs

def _usable(chain: pd.DataFrame, side: int) -> pd.DataFrame:
    """Rows we can trade on `side`: a mark, and an ask to buy / a bid to sell (positive)."""
    quote = chain["ask_coin"] if side > 0 else chain["bid_coin"]
    ok = chain["mark_coin"].notna() & (chain["mark_coin"] > 0) & quote.notna() & (quote > 0)
    return chain[ok]


def pick_by_delta(chain: pd.DataFrame, option_type: str, target_delta: float, side: int,
                  strike_filter=None) -> pd.Series:
    """The tradable option of `option_type` whose forward delta (dimensionless) is nearest `target_delta`
    (calls > 0, puts < 0), optionally restricted by `strike_filter(strikes) -> bool mask`."""
    rows = _usable(chain[chain["option_type"] == option_type], side)
    rows = rows[rows["delta"].notna()]
    if strike_filter is not None:
        rows = rows[strike_filter(rows["strike"].to_numpy())]
    if rows.empty:
        raise LegError(f"no {option_type} with a {'ask' if side > 0 else 'bid'} near delta {target_delta:+.2f}")
    i = int(np.argmin(np.abs(rows["delta"].to_numpy() - target_delta)))
    return rows.iloc[i]


def pick_atm(chain: pd.DataFrame, option_types: tuple, side: int, forward_usd: float,
             other: pd.DataFrame | None = None, other_side: int | None = None) -> float:
    """The strike (USD) nearest the forward (USD, in log-moneyness) at which every type in `option_types` is
    tradable on `side`
    (and, for a calendar, also tradable in `other` on `other_side`)."""
    strikes = None
    for ot in option_types:
        s = set(_usable(chain[chain["option_type"] == ot], side)["strike"].tolist())
        if other is not None:
            s &= set(_usable(other[other["option_type"] == ot], other_side)["strike"].tolist())
        strikes = s if strikes is None else strikes & s
    if not strikes:
        raise LegError("no strike near the forward is tradable on every leg")
    arr = np.array(sorted(strikes))
    return float(arr[np.argmin(np.abs(np.log(arr / forward_usd)))])


def _row(chain: pd.DataFrame, option_type: str, strike: float) -> pd.Series:
    rows = chain[(chain["option_type"] == option_type) & (chain["strike"] == strike)]
    if rows.empty:
        raise LegError(f"no {option_type} at strike {strike:g}")
    return rows.iloc[0]


def leg_record(row: pd.Series, side: int, size: float, target: str) -> dict:
    """A leg as stored: instrument, side, size, mark (coin and USD), bid/ask, the price crossed."""
    cross = float(row["ask_coin"] if side > 0 else row["bid_coin"])
    index = float(row["index_usd"])
    return {
        "instrument": row["symbol"], "option_type": row["option_type"], "strike": float(row["strike"]),
        "expiry": row["expiry"], "side": "buy" if side > 0 else "sell", "side_sign": side, "size": float(size),
        "mark_coin": float(row["mark_coin"]), "mark_usd": float(row["mark_coin"]) * index,
        "bid_coin": None if pd.isna(row["bid_coin"]) else float(row["bid_coin"]),
        "ask_coin": None if pd.isna(row["ask_coin"]) else float(row["ask_coin"]),
        "cross": "ask" if side > 0 else "bid", "price_coin": cross, "price_usd": cross * index,
        "iv": None if pd.isna(row["iv"]) else float(row["iv"]),
        "delta": None if pd.isna(row["delta"]) else float(row["delta"]), "target": target,
        "delta_source": row.get("delta_source") if isinstance(row.get("delta_source"), str) else None,
        "forward_usd": float(row["forward_usd"]), "t_years": float(row["t_years"]), "index_usd": index,
        "greeks": row.get("greeks") if isinstance(row.get("greeks"), dict) else None,
    }


def holding_record(currency: str, size: float, index_usd: float) -> dict:
    """The coin a holder already owns (covered call, protective put): worth 1 coin = index USD per unit."""
    return {"instrument": f"{currency} (held)", "option_type": UNDERLYING, "strike": 0.0, "expiry": None,
            "side": "hold", "side_sign": 1, "size": float(size), "mark_coin": 1.0, "mark_usd": float(index_usd),
            "bid_coin": None, "ask_coin": None, "cross": None, "price_coin": 1.0, "price_usd": float(index_usd),
            "iv": None, "delta": 1.0, "target": "holding", "forward_usd": None, "t_years": None,
            "index_usd": float(index_usd),
            "greeks": {"delta": 1.0, "gamma": 0.0, "vega": 0.0, "theta": 0.0}}


def payoff_legs(records: list[dict], eval_t_years: float, entry: str = "cross") -> list[Leg]:
    """`Leg`s for the payoff maths from stored leg records, evaluated at the earliest expiry
    (`eval_t_years` from the snapshot); entry price = the price crossed ("cross") or the mark ("mark")."""
    legs = []
    for r in records:
        if r["option_type"] == UNDERLYING:
            legs.append(Leg(r["instrument"], UNDERLYING, 0.0, None, 1, r["size"], 1.0))
            continue
        left = max(float(r["t_years"]) - eval_t_years, 0.0)
        price = r["price_coin"] if entry == "cross" else r["mark_coin"]
        legs.append(Leg(r["instrument"], r["option_type"], r["strike"], r["expiry"], int(r["side_sign"]), r["size"],
                        float(price), t_left_years=left if left > 1e-9 else 0.0, iv=r.get("iv") if left > 1e-9 else None))
    return legs
