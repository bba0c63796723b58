"""Rule-based option strategies: rules on the market regime, strategy templates, legs by delta target.

Pure pandas/numpy, no I/O. Payoff maths lives in `qortcli.quant.payoff`, regime measures in
`qortcli.quant.regime`. Every threshold and delta target comes from the `cfg` dict (the `[suggest]`
section of settings.toml), never from code.

A chain is a DataFrame of one expiry with columns: symbol, option_type ("call"/"put"), strike (USD),
expiry (UTC datetime), t_years, delta (forward delta, calls 0..1, puts −1..0), bid_coin, ask_coin,
mark_coin (coin per contract, NaN when absent), iv (fraction), forward_usd, index_usd, and optionally
greeks (dict per row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from qortcli.quant.payoff import CALL, PUT, UNDERLYING, Leg

STRATEGIES = ("short_strangle", "iron_condor", "long_straddle", "long_strangle", "calendar_spread",
              "bull_call_spread", "bear_put_spread", "risk_reversal", "covered_call", "protective_put")


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


def evaluate_rules(regime: dict, cfg: dict) -> list[Rule]:
    """Evaluate every rule on `regime` (keys: iv_atm_30d, iv_percentile, iv_history_n, rv_30d, rv_age_days,
    term_front_iv, term_back_iv, rr25) with thresholds from `cfg`.

    `strength` is the exceedance past the threshold divided by the rule's ranking scale (> 0 when fired).
    A rule whose input is missing, too short (percentile) or stale (realised vol) is not evaluated.
    """
    rules: list[Rule] = []
    iv = regime.get("iv_atm_30d")
    scale = cfg.get("rank_scale", {})

    def level(name, desc, value, key, op, strategies, inputs, ok=True, note=""):
        thr = cfg[key]
        evaluated = ok and _finite(value)
        fired = bool(evaluated and (value > thr if op == ">" else value < thr if op == "<"
                                    else value >= thr if op == ">=" else value <= thr))
        strength = abs(value - thr) / float(scale.get(name, 1.0)) if fired else 0.0
        rules.append(Rule(name, desc, inputs, {key: thr}, evaluated, fired, strength, tuple(strategies), note))

    level("iv_above_high", "original rule: 30d ATM IV above iv_high → short strangle", iv, "iv_high", ">",
          ["short_strangle"], {"iv_atm_30d": iv})
    level("iv_below_low", "original rule: 30d ATM IV below iv_low → long straddle", iv, "iv_low", "<",
          ["long_straddle"], {"iv_atm_30d": iv})

    pct, n_hist = regime.get("iv_percentile"), regime.get("iv_history_n") or 0
    enough = n_hist >= int(cfg["min_history"])
    note = "" if enough else f"only {n_hist} stored points (< min_history {cfg['min_history']})"
    hist_inputs = {"iv_atm_30d": iv, "iv_percentile": pct, "history_points": n_hist,
                   "history_from": regime.get("iv_history_from"), "history_to": regime.get("iv_history_to")}
    level("iv_rich_percentile", "30d ATM IV percentile over stored history at or above iv_pct_high (rich IV)",
          pct, "iv_pct_high", ">=", ["short_strangle", "iron_condor", "covered_call"], hist_inputs, enough, note)
    level("iv_cheap_percentile", "30d ATM IV percentile over stored history at or below iv_pct_low (cheap IV)",
          pct, "iv_pct_low", "<=", ["long_straddle", "long_strangle", "protective_put"], hist_inputs, enough, note)

    rv, age = regime.get("rv_30d"), regime.get("rv_age_days")
    spread = iv - rv if _finite(iv) and _finite(rv) else None
    fresh = _finite(age) and age <= float(cfg["rv_max_age_days"])
    note = "" if fresh else (f"realised-vol window ends {age:.0f} days before the snapshot (> rv_max_age_days "
                             f"{cfg['rv_max_age_days']}): stale, not used" if _finite(age) else "no price history")
    rv_inputs = {"iv_atm_30d": iv, "rv_30d": rv, "iv_minus_rv": spread, "rv_window_start": regime.get("rv_start"),
                 "rv_window_end": regime.get("rv_end"), "rv_age_days": age}
    level("iv_over_rv", "30d ATM IV minus 30d realised vol at or above iv_rv_rich (IV rich vs RV)", spread,
          "iv_rv_rich", ">=", ["short_strangle", "iron_condor", "covered_call"], rv_inputs, fresh, note)
    level("iv_under_rv", "30d ATM IV minus 30d realised vol at or below iv_rv_cheap (IV cheap vs RV)", spread,
          "iv_rv_cheap", "<=", ["long_straddle", "long_strangle", "protective_put"], rv_inputs, fresh, note)

    front, back = regime.get("term_front_iv"), regime.get("term_back_iv")
    inversion = front - back if _finite(front) and _finite(back) else None
    level("term_inverted", "front ATM IV above back ATM IV by term_inverted or more (backwardation) → calendar",
          inversion, "term_inverted", ">=", ["calendar_spread"],
          {"term_front_iv": front, "term_back_iv": back, "front_minus_back": inversion,
           "front_days": regime.get("term_front_days"), "back_days": regime.get("term_back_days")})

    rr = regime.get("rr25")
    rr_inputs = {"rr25": rr, "expiry": regime.get("skew_expiry"), "call25_iv": regime.get("call25_iv"),
                 "put25_iv": regime.get("put25_iv")}
    level("put_skew", "25Δ risk reversal at or below −rr25_strong (puts rich): sell the put wing",
          -rr if _finite(rr) else None, "rr25_strong", ">=", ["bear_put_spread", "risk_reversal"], rr_inputs)
    level("call_skew", "25Δ risk reversal at or above rr25_strong (calls rich): sell the call wing",
          rr, "rr25_strong", ">=", ["bull_call_spread", "risk_reversal"], rr_inputs)
    return rules


def rank_strategies(rules: list[Rule], top: int, requested: list[str] | None = None) -> list[dict]:
    """Strategies whose rules fired, by total strength (desc), at most `top`; `requested` ones are added
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
        if s not in STRATEGIES:
            raise ValueError(f"unknown strategy {s!r}; choose from {', '.join(STRATEGIES)}")
        if s not in ranked:
            out.append({"strategy": s, "score": scores.get(s, 0.0), "rules": why.get(s, []), "requested": True})
    return out


def skew_direction(rules: list[Rule], regime: dict) -> str:
    """'put' if puts are rich (RR25 < 0), else 'call': the wing a risk reversal sells."""
    rr = regime.get("rr25")
    return "put" if not _finite(rr) or rr < 0 else "call"


# -------------------------------------------------------------------------------------------- legs

def _usable(chain: pd.DataFrame, side: int) -> pd.DataFrame:
    """Rows we can trade on `side`: a mark, and an ask to buy / a bid to sell (positive)."""
    quote = chain["ask_coin"] if side > 0 else chain["bid_coin"]
    ok = chain["mark_coin"].notna() & (chain["mark_coin"] > 0) & quote.notna() & (quote > 0)
    return chain[ok]


def pick_by_delta(chain: pd.DataFrame, option_type: str, target_delta: float, side: int,
                  strike_filter=None) -> pd.Series:
    """The tradable option of `option_type` whose forward delta is nearest `target_delta`
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
    """The strike nearest the forward at which every type in `option_types` is tradable on `side`
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


def build_legs(strategy: str, chain: pd.DataFrame, cfg: dict, currency: str, skew: str = "put",
               back_chain: pd.DataFrame | None = None) -> list[dict]:
    """Concrete legs of `strategy` on `chain` (one expiry) by the delta targets in `cfg`.

    Sells only where there is a bid, buys only where there is an ask (LegError otherwise). The calendar
    sells the ATM call of `chain` (front) and buys the same strike in `back_chain`.
    """
    size = float(cfg["size"])
    d_short, d_wing, d_long = float(cfg["delta_short"]), float(cfg["delta_wing"]), float(cfg["delta_spread_long"])
    forward = float(chain["forward_usd"].median())
    index = float(chain["index_usd"].median())
    buy, sell = 1, -1

    if strategy == "short_strangle":
        c = pick_by_delta(chain, CALL, d_short, sell)
        p = pick_by_delta(chain, PUT, -d_short, sell, lambda k: k < c["strike"])
        return [leg_record(c, sell, size, f"{d_short:.2f}Δ call"), leg_record(p, sell, size, f"-{d_short:.2f}Δ put")]
    if strategy == "iron_condor":
        c = pick_by_delta(chain, CALL, d_short, sell)
        p = pick_by_delta(chain, PUT, -d_short, sell, lambda k: k < c["strike"])
        cw = pick_by_delta(chain, CALL, d_wing, buy, lambda k: k > c["strike"])
        pw = pick_by_delta(chain, PUT, -d_wing, buy, lambda k: k < p["strike"])
        return [leg_record(pw, buy, size, f"-{d_wing:.2f}Δ put wing"), leg_record(p, sell, size, f"-{d_short:.2f}Δ put"),
                leg_record(c, sell, size, f"{d_short:.2f}Δ call"), leg_record(cw, buy, size, f"{d_wing:.2f}Δ call wing")]
    if strategy == "long_straddle":
        k = pick_atm(chain, (CALL, PUT), buy, forward)
        return [leg_record(_row(chain, CALL, k), buy, size, "ATM call"), leg_record(_row(chain, PUT, k), buy, size, "ATM put")]
    if strategy == "long_strangle":
        c = pick_by_delta(chain, CALL, d_short, buy)
        p = pick_by_delta(chain, PUT, -d_short, buy, lambda k: k < c["strike"])
        return [leg_record(c, buy, size, f"{d_short:.2f}Δ call"), leg_record(p, buy, size, f"-{d_short:.2f}Δ put")]
    if strategy == "calendar_spread":
        if back_chain is None or back_chain.empty:
            raise LegError("calendar needs a back expiry")
        k = pick_atm(chain, (CALL,), sell, forward, back_chain, buy)
        return [leg_record(_row(chain, CALL, k), sell, size, "front ATM call"),
                leg_record(_row(back_chain, CALL, k), buy, size, "back ATM call")]
    if strategy == "bull_call_spread":
        lo = pick_by_delta(chain, CALL, d_long, buy)
        hi = pick_by_delta(chain, CALL, d_short, sell, lambda k: k > lo["strike"])
        return [leg_record(lo, buy, size, f"{d_long:.2f}Δ call"), leg_record(hi, sell, size, f"{d_short:.2f}Δ call")]
    if strategy == "bear_put_spread":
        hi = pick_by_delta(chain, PUT, -d_long, buy)
        lo = pick_by_delta(chain, PUT, -d_short, sell, lambda k: k < hi["strike"])
        return [leg_record(hi, buy, size, f"-{d_long:.2f}Δ put"), leg_record(lo, sell, size, f"-{d_short:.2f}Δ put")]
    if strategy == "risk_reversal":
        if skew == "put":  # puts rich: sell the put wing, buy the call wing
            p = pick_by_delta(chain, PUT, -d_short, sell)
            c = pick_by_delta(chain, CALL, d_short, buy, lambda k: k > p["strike"])
            return [leg_record(p, sell, size, f"-{d_short:.2f}Δ put"), leg_record(c, buy, size, f"{d_short:.2f}Δ call")]
        c = pick_by_delta(chain, CALL, d_short, sell)
        p = pick_by_delta(chain, PUT, -d_short, buy, lambda k: k < c["strike"])
        return [leg_record(c, sell, size, f"{d_short:.2f}Δ call"), leg_record(p, buy, size, f"-{d_short:.2f}Δ put")]
    if strategy == "covered_call":
        hold = float(cfg["holding_coin"])
        c = pick_by_delta(chain, CALL, d_short, sell)
        return [holding_record(currency, hold, index), leg_record(c, sell, hold, f"{d_short:.2f}Δ call")]
    if strategy == "protective_put":
        hold = float(cfg["holding_coin"])
        p = pick_by_delta(chain, PUT, -d_short, buy)
        return [holding_record(currency, hold, index), leg_record(p, buy, hold, f"-{d_short:.2f}Δ put")]
    raise ValueError(f"unknown strategy {strategy!r}")


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
