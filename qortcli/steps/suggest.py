"""Step `suggest`: rule-based option strategies with concrete legs, and their track record.

`run_suggest` reads the latest complete options snapshot of each currency (or `snapshot_id`), measures
the market regime from stored data, evaluates the rules of `[suggest]` in settings.toml, builds each
suggested strategy's legs from that snapshot by delta targets and stores `strategy_suggestions`.
`run_track` marks every open suggestion to market on each later stored snapshot and settles it once
its legs have expired.

Regime inputs (all from the store, as of the snapshot, no look-ahead):
- IV level: constant-maturity ATM IV at `iv_tenor_days` from the snapshot's marks (ATM of each expiry
  linear in ln(K/F), total variance linear in T); the stored surface's `atm_vol_30d` is shown beside it.
- its percentile over the same measure at every stored complete snapshot of the currency up to then;
- IV − RV: realised vol of `price_data` closes of the currency's symbol (last `rv_window_days` daily log
  returns up to the snapshot, × √365), with the dates the window covers;
- term structure: ATM IV of the listed expiry nearest `term_front_days` minus the chosen expiry's;
- skew: 25Δ risk reversal of the chosen expiry from the marks (deltas: pricing `model.delta`, else
  Deribit's published delta).

P/L conventions: see `qortcli.quant.payoff`. Entry prices are the prices crossed (ask to buy, bid to
sell); net premium at mark is reported too.

Probability of profit: risk-neutral P(USD P/L at expiry > 0): the USD breakevens split (0, ∞) into
intervals; POP sums CDF(b) − CDF(a) over the profitable ones, with CDF(K) = 1 − P(S_T > K) and
P(S_T > K) = −∂C/∂K along the smile: from the stored SVI surface (`surface.prob_above`) when the
snapshot has one, else from the snapshot's mark smile (`payoff.rn_cdf`, vols linear in ln(K/F)).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from qortcli.config import get_settings
from qortcli.errors import StepError, UsageError
from qortcli.quant import payoff as pay
from qortcli.quant import regime as reg
from qortcli.quant import strategies as strat
from qortcli.steps.common import currencies_to_process, staleness
from qortcli.store import ops, schema
from qortcli.store.runs import recorded_run
from qortcli.timeutils import BASES, as_utc, expiry_code, utcnow, year_fraction

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("expiry_min_days", "expiry_max_days", "iv_tenor_days", "iv_high", "iv_low", "iv_pct_high",
                 "iv_pct_low", "min_history", "iv_rv_rich", "iv_rv_cheap", "rv_window_days",
                 "rv_annualisation_days", "rv_max_age_days", "term_front_days", "term_front_min_days",
                 "term_inverted", "rr25_strong", "delta_short", "delta_wing", "delta_spread_long", "size",
                 "holding_coin", "grid_lo", "grid_hi", "grid_points", "settle_index_tolerance_minutes",
                 "settle_max_forward_age_hours")

_PROJECTION = {"symbol": 1, "option_type": 1, "strike": 1, "expiry": 1, "bid_crypto": 1, "ask_crypto": 1,
               "premium_crypto": 1, "implied_volatility": 1, "forward": 1, "index_price": 1, "greeks": 1,
               "model": 1, "timestamp": 1}


def suggest_settings(cfg: dict | None = None) -> dict:
    """The `[suggest]` settings (or `cfg`), checked for every key the rules need."""
    settings = get_settings()
    cfg = cfg if cfg is not None else settings.section("suggest")
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise StepError(f"settings [suggest] lacks {', '.join(missing)} ({settings.settings_file})")
    cfg = dict(cfg)
    cfg.setdefault("day_count", settings.section("pricing").get("day_count", "ACT/365"))
    return cfg


def _num(value):
    return float(value) if value is not None else np.nan


# ------------------------------------------------------------------------------------------ reading

def load_chain(db, snapshot: dict, day_count: str = "ACT/365") -> pd.DataFrame:
    """The snapshot's unexpired options as a chain DataFrame (see `qortcli.quant.strategies`)."""
    docs = ops.snapshot_documents(db, snapshot["_id"], _PROJECTION)
    taken = as_utc(snapshot["timestamp"])
    rows = []
    for d in docs:
        expiry = as_utc(d["expiry"])
        t = year_fraction(taken, expiry, day_count)
        if t <= 0:
            continue  # never an expired leg
        model = d.get("model") or {}
        published = d.get("greeks") or {}
        delta, source = model.get("delta"), "model"
        if delta is None:
            delta, source = published.get("delta"), "deribit"
        greeks = {k: model[k] for k in ("delta", "gamma", "vega", "theta", "delta_coin", "gamma_coin",
                                        "vega_coin", "theta_coin") if model.get(k) is not None}
        if not greeks:
            greeks = {k: v for k, v in published.items() if v is not None}
        rows.append({"symbol": d["symbol"], "option_type": d["option_type"], "strike": float(d["strike"]),
                     "expiry": expiry, "t_years": t, "delta": _num(delta), "delta_source": source if delta is not None else None,
                     "bid_coin": _num(d.get("bid_crypto")), "ask_coin": _num(d.get("ask_crypto")),
                     "mark_coin": _num(d.get("premium_crypto")), "iv": _num(d.get("implied_volatility")),
                     "forward_usd": _num(d.get("forward")), "index_usd": _num(d.get("index_price")),
                     "greeks": greeks or None})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    # one forward per expiry (Deribit stamps rows separately): the median
    frame["forward_usd"] = frame.groupby("expiry")["forward_usd"].transform("median")
    return frame.sort_values(["expiry", "option_type", "strike"]).reset_index(drop=True)


def _load_marks(db, snapshot: dict, day_count: str) -> pd.DataFrame:
    """Just what the IV level needs (expiry, t_years, forward_usd, strike, iv) for one snapshot, vectorised."""
    docs = ops.snapshot_documents(db, snapshot["_id"], {"_id": 0, "expiry": 1, "strike": 1,
                                                         "implied_volatility": 1, "forward": 1})
    if not docs:
        return pd.DataFrame()
    frame = pd.DataFrame(docs)
    expiry = pd.to_datetime(frame["expiry"], utc=True)
    seconds = (expiry - pd.Timestamp(as_utc(snapshot["timestamp"]))).dt.total_seconds().to_numpy()
    frame = pd.DataFrame({"expiry": expiry, "t_years": seconds / (BASES[day_count] * 86400.0),
                          "forward_usd": pd.to_numeric(frame["forward"], errors="coerce"),
                          "strike": pd.to_numeric(frame["strike"], errors="coerce"),
                          "iv": pd.to_numeric(frame["implied_volatility"], errors="coerce")})
    frame = frame[frame["t_years"] > 0].copy()
    frame["forward_usd"] = frame.groupby("expiry")["forward_usd"].transform("median")
    return frame


def expiry_table(chain: pd.DataFrame) -> pd.DataFrame:
    """Per expiry: t_years, days, forward, ATM IV from the marks."""
    out = []
    for expiry, g in chain.groupby("expiry"):
        f = float(g["forward_usd"].iloc[0])
        t = float(g["t_years"].iloc[0])
        out.append({"expiry": expiry, "code": expiry_code(expiry), "t_years": t, "days": t * 365.0,
                    "forward_usd": f, "atm_iv": reg.atm_iv(g["strike"], g["iv"], f), "n": len(g)})
    return pd.DataFrame(out).sort_values("t_years").reset_index(drop=True)


def iv_level(expiries: pd.DataFrame, tenor_days: float) -> float:
    """Constant-maturity ATM IV at `tenor_days` from per-expiry mark ATM IVs."""
    return reg.constant_maturity_atm(expiries["t_years"], expiries["atm_iv"], tenor_days / 365.0)


def choose_expiry(expiries: pd.DataFrame, cfg: dict, code: str | None, tradeable_after: datetime | None = None,
                  taken: datetime | None = None) -> pd.Series:
    """The expiry given by `code` (e.g. 27MAR26), else the nearest with expiry_min_days..max_days to run.

    `tradeable_after` (now, when suggesting on the latest snapshot) excludes expiries that have already
    passed: an explicit one is a UsageError saying so, and none left is a StepError naming the stale
    snapshot. `taken` (the snapshot time) lets an unlisted code that expired before the snapshot say so.
    """
    live = expiries if tradeable_after is None else expiries[expiries["expiry"] > tradeable_after]
    if code:
        wanted = code.strip().upper().lstrip("0")
        hit = expiries[expiries["code"] == wanted]
        listed = ", ".join(live["code"]) or "none"
        if hit.empty:
            when = _code_time(wanted)
            if when is not None and taken is not None and when <= taken:
                raise UsageError(f"expiry {code} is not listed: it expired on {when:%Y-%m-%d} 08:00 UTC, before the "
                                 f"snapshot ({taken:%Y-%m-%d %H:%M} UTC); listed: {listed}")
            raise UsageError(f"expiry {code} is not listed (unexpired) in the snapshot; listed: {listed}")
        row = hit.iloc[0]
        if tradeable_after is not None and row["expiry"] <= tradeable_after:
            raise UsageError(f"expiry {code} expired on {row['expiry']:%Y-%m-%d %H:%M} UTC: the latest snapshot "
                             f"({taken:%Y-%m-%d %H:%M} UTC) is stale; collect a fresh chain (qortcli collect deribit), "
                             f"or pass --as-of-snapshot / --snapshot ID to suggest as of a snapshot's own time (still "
                             f"tradeable: {listed})")
        return row
    ok = live[(live["days"] >= cfg["expiry_min_days"]) & (live["days"] <= cfg["expiry_max_days"])]
    if ok.empty:
        if tradeable_after is not None and len(live) < len(expiries):
            raise StepError(f"no unexpired expiry with {cfg['expiry_min_days']:g}–{cfg['expiry_max_days']:g} days to run: "
                            f"the latest snapshot ({taken:%Y-%m-%d %H:%M} UTC) is stale, {len(expiries) - len(live)} of "
                            f"its {len(expiries)} expiries have passed; collect a fresh chain (qortcli collect deribit), "
                            f"pass --expiry (still tradeable: {', '.join(live['code']) or 'none'}), or --as-of-snapshot "
                            "to suggest as of the snapshot's own time")
        raise StepError(f"no expiry with {cfg['expiry_min_days']:g}–{cfg['expiry_max_days']:g} days to run; "
                        f"pass --expiry (listed: {', '.join(expiries['code'])})")
    return ok.iloc[0]


def _code_time(code: str) -> datetime | None:
    try:
        return datetime.strptime(code, "%d%b%y").replace(hour=8, tzinfo=timezone.utc)
    except ValueError:
        return None


def _front_expiry(expiries: pd.DataFrame, chosen: pd.Series, cfg: dict,
                  tradeable_after: datetime | None = None) -> pd.Series | None:
    cand = expiries[(expiries["days"] >= cfg["term_front_min_days"]) & (expiries["t_years"] < chosen["t_years"])]
    if tradeable_after is not None:
        cand = cand[cand["expiry"] > tradeable_after]
    if cand.empty:
        return None
    return cand.iloc[int(np.argmin(np.abs(cand["days"].to_numpy() - cfg["term_front_days"])))]


def _iv_history(db, currency: str, as_of: datetime, cfg: dict, current_sid: str, current_value: float) -> list[dict]:
    """The IV-level measure at every stored complete snapshot of `currency` up to `as_of`."""
    out = []
    for snap in ops.list_snapshots(db, "options", currency):
        ts = as_utc(snap["timestamp"])
        if ts > as_of:
            continue
        if snap["_id"] == current_sid:
            value = current_value
        else:
            marks = _load_marks(db, snap, cfg["day_count"])
            value = iv_level(expiry_table(marks), cfg["iv_tenor_days"]) if not marks.empty else float("nan")
        out.append({"snapshot_id": snap["_id"], "timestamp": ts, "iv": value})
    return out


def _realised(db, currency: str, as_of: datetime, cfg: dict) -> dict:
    docs = list(db[schema.PRICES].find({"symbol": currency, "timestamp": {"$lte": as_of}},
                                       {"timestamp": 1, "close": 1}).sort("timestamp", -1)
                .limit(int(cfg["rv_window_days"]) + 1))
    if not docs:
        return {"rv": None, "n_returns": 0, "start": None, "end": None, "age_days": None, "symbol": currency}
    out = reg.realised_vol([as_utc(d["timestamp"]) for d in docs], [d["close"] for d in docs], as_of,
                           int(cfg["rv_window_days"]), float(cfg["rv_annualisation_days"]))
    out["symbol"] = currency
    return out


def measure_regime(db, currency: str, snapshot: dict, chain: pd.DataFrame, expiries: pd.DataFrame,
                   chosen: pd.Series, cfg: dict, surface: dict | None) -> dict:
    """Every regime input the rules use, with where each came from."""
    as_of = as_utc(snapshot["timestamp"])
    level = iv_level(expiries, cfg["iv_tenor_days"])
    history = _iv_history(db, currency, as_of, cfg, snapshot["_id"], level)
    values = [h["iv"] for h in history]
    rv = _realised(db, currency, as_of, cfg)
    front = _front_expiry(expiries, chosen, cfg)
    g = chain[chain["expiry"] == chosen["expiry"]]
    calls, puts = g[g["option_type"] == "call"], g[g["option_type"] == "put"]
    skew = reg.risk_reversal_butterfly(calls["delta"], calls["iv"], puts["delta"], puts["iv"], float(chosen["atm_iv"]))
    out = {
        "as_of": as_of, "iv_source": f"marks: {cfg['iv_tenor_days']}d constant-maturity ATM IV",
        "iv_atm_30d": level, "iv_percentile": reg.percentile_rank(level, values),
        "iv_history_n": int(np.isfinite(values).sum()) if values else 0,
        "iv_history_from": history[0]["timestamp"] if history else None,
        "iv_history_to": history[-1]["timestamp"] if history else None,
        "rv_30d": rv["rv"], "rv_start": rv["start"], "rv_end": rv["end"], "rv_age_days": rv["age_days"],
        "rv_n_returns": rv["n_returns"], "rv_symbol": currency,
        "term_front_expiry": front["code"] if front is not None else None,
        "term_front_days": float(front["days"]) if front is not None else None,
        "term_front_iv": float(front["atm_iv"]) if front is not None else None,
        "term_back_expiry": chosen["code"], "term_back_days": float(chosen["days"]),
        "term_back_iv": float(chosen["atm_iv"]),
        "term_shape": (None if front is None else "backwardation (inverted)" if front["atm_iv"] > chosen["atm_iv"]
                       else "contango"),
        "term_slope_per_year": (None if front is None else
                                float((chosen["atm_iv"] - front["atm_iv"]) / (chosen["t_years"] - front["t_years"]))),
        "skew_expiry": chosen["code"], "rr25": skew["rr"], "bf25": skew["bf"], "call25_iv": skew["call_iv"],
        "put25_iv": skew["put_iv"],
        "term_structure": [{"expiry": r.code, "days": r.days, "atm_iv": r.atm_iv} for r in expiries.itertuples()],
    }
    if surface:
        diag = surface.get("diagnostics") or {}
        out["surface_atm_vol_30d"] = (diag.get("atm_vol_30d") or {}).get("vol")
        for s in surface.get("slices", []):
            if s.get("expiry") is not None and as_utc(s["expiry"]) == chosen["expiry"]:
                out["surface_rr25"], out["surface_bf25"] = s.get("rr25"), s.get("bf25")
    return out


# ----------------------------------------------------------------------------------------- building

def _cdf_fn(surface: dict | None, chain_expiry: pd.DataFrame, forward: float, t_years: float):
    if surface:
        try:
            from qortcli.quant import surface as surf

            if surf._fitted(surface):
                return (lambda k: 1.0 - np.asarray(surf.prob_above(np.asarray(k, dtype=float), forward, t_years, surface))), \
                    "risk-neutral CDF from the stored SVI surface: 1 − P(S_T > K), P = −∂C/∂K along the smile"
        except Exception as exc:  # a malformed surface must not stop the suggestion
            log.warning("surface unusable for POP: %s", exc)
    g = chain_expiry[np.isfinite(chain_expiry["iv"]) & (chain_expiry["iv"] > 0)]
    uk, inv = np.unique(g["strike"].to_numpy(), return_inverse=True)
    uv = np.bincount(inv, weights=g["iv"].to_numpy()) / np.bincount(inv)
    x = np.log(uk / forward)

    def vol_fn(k):
        return np.interp(np.log(np.asarray(k, dtype=float) / forward), x, uv)

    return (lambda k: pay.rn_cdf(k, forward, t_years, vol_fn)), \
        "risk-neutral CDF from the snapshot's mark smile (vols linear in ln(K/F)): 1 + ∂C/∂K"


def _reasoning(item: dict, rules: list[strat.Rule], skew: str) -> str:
    fired = [r for r in rules if r.fired and item["strategy"] in r.strategies]
    parts = []
    for r in fired:
        inputs = ", ".join(f"{k}={_short(v, k)}" for k, v in r.inputs.items() if v is not None)
        thr = ", ".join(f"{k}={_short(v, k)}" for k, v in r.thresholds.items())
        parts.append(f"{r.name}: {r.description} [{inputs}; threshold {thr}]")
    if item["strategy"] == "risk_reversal":
        parts.append(f"direction: sell the {skew} wing (the richer one), buy the other")
    if not fired:
        parts.append("requested explicitly; no rule fired for it on this snapshot")
    return " | ".join(parts)


#: rule inputs/thresholds that are vols (or vol differences, percentiles) as fractions: written in percent
_PERCENT_KEYS = {"iv_atm_30d", "rv_30d", "iv_minus_rv", "term_front_iv", "term_back_iv", "front_minus_back", "rr25",
                 "call25_iv", "put25_iv", "iv_percentile", "iv_high", "iv_low", "iv_rv_rich", "iv_rv_cheap",
                 "term_inverted", "rr25_strong", "iv_pct_high", "iv_pct_low"}


def _short(v, key: str = ""):
    if isinstance(v, float) and key in _PERCENT_KEYS:
        return f"{100 * v:.2f}%"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d")
    return str(v)


def build_suggestion(currency: str, snapshot: dict, chain: pd.DataFrame, expiries: pd.DataFrame,
                     chosen: pd.Series, item: dict, rules: list[strat.Rule], regime: dict, cfg: dict,
                     surface: dict | None, tradeable_after: datetime | None = None) -> dict:
    """One `strategy_suggestions` document (legs, metrics, payoff grid); raises LegError if unbuildable.

    `tradeable_after`: no leg on an expiry at or before it (now, on the latest snapshot)."""
    skew = strat.skew_direction(rules, regime)
    front_chain = chain[chain["expiry"] == chosen["expiry"]]
    back_chain = None
    if item["strategy"] == "calendar_spread":
        front = _front_expiry(expiries, chosen, cfg, tradeable_after)
        if front is None:
            raise strat.LegError("no front expiry before the chosen one for a calendar")
        back_chain = front_chain
        front_chain = chain[chain["expiry"] == front["expiry"]]
    records = strat.build_legs(item["strategy"], front_chain, cfg, currency, skew, back_chain)
    option_recs = [r for r in records if r["option_type"] != pay.UNDERLYING]
    eval_rec = min(option_recs, key=lambda r: r["t_years"])
    t_eval, expiry, forward = eval_rec["t_years"], eval_rec["expiry"], eval_rec["forward_usd"]
    # entry index: the median spot index stamped on the option legs' rows (Deribit stamps each row)
    index0 = float(np.median([r["index_usd"] for r in option_recs]))
    for r in records:
        if r["option_type"] == pay.UNDERLYING:
            r.update(mark_usd=index0, price_usd=index0, index_usd=index0)
    legs = strat.payoff_legs(records, t_eval, "cross")
    metrics = pay.strategy_metrics(legs, index0)
    mark_legs = strat.payoff_legs(records, t_eval, "mark")
    metrics["net_premium_mark_coin"] = pay.net_premium_coin(mark_legs)
    metrics["net_premium_mark_usd"] = pay.net_premium_usd(mark_legs, index0)
    mark_options = [leg for leg in mark_legs if leg.option_type != pay.UNDERLYING]
    metrics["option_premium_mark_coin"] = pay.net_premium_coin(mark_options)
    metrics["option_premium_mark_usd"] = pay.net_premium_usd(mark_options, index0)
    metrics["crossing_cost_usd"] = metrics["net_premium_usd"] - metrics["net_premium_mark_usd"]
    metrics["net_greeks"] = pay.net_greeks(legs, [r.get("greeks") for r in records])
    cdf, method = _cdf_fn(surface, front_chain, forward, t_eval)
    metrics["pop"] = pay.probability_of_profit(legs, index0, forward, t_eval, vol_fn=None, cdf_fn=cdf)
    metrics["pop_method"] = method + "; POP = Σ CDF(b) − CDF(a) over the intervals between USD breakevens " \
                                     "where the USD P/L at expiry is positive"
    if any(leg.t_left_years > 0 for leg in legs):
        metrics["evaluation"] = ("at the front expiry; the later leg valued with Black-76 at its entry mark IV "
                                 "on forward = S (extremes and breakevens found numerically)")
    grid = pay.payoff_grid(legs, index0, forward, float(cfg["grid_lo"]), float(cfg["grid_hi"]), int(cfg["grid_points"]))
    return {
        "currency": currency, "snapshot_id": snapshot["_id"], "timestamp": as_utc(snapshot["timestamp"]),
        "strategy": item["strategy"], "expiry": expiry, "expiry_code": expiry_code(expiry),
        "expiries": sorted({r["expiry"] for r in option_recs}), "t_years": t_eval,
        "index_usd": index0, "forward_usd": forward, "score": item["score"], "rules": item["rules"],
        "requested": item["requested"], "reasoning": _reasoning(item, rules, skew),
        "regime": {**regime, "rules": [r.to_dict() for r in rules]}, "legs": records, "metrics": metrics,
        "payoff_grid": grid, "status": "open", "track": [], "settlement": None, "created_at": utcnow(),
    }


def _snapshot(db, currency: str, snapshot_id: str | None) -> dict:
    if snapshot_id:
        snap = db[schema.SNAPSHOTS].find_one({"_id": snapshot_id, "status": ops.COMPLETE})
        if not snap:
            raise UsageError(f"--snapshot {snapshot_id}: no complete snapshot with that id in the store")
        return snap
    snap = ops.latest_snapshot(db, "options", currency)
    if not snap:
        raise StepError(f"no complete {currency} options snapshot: run `qortcli collect` first")
    return snap


def run_suggest(db, currency: str | None = None, expiry: str | None = None, top: int = 5,
                snapshot_id: str | None = None, strategies: list[str] | None = None,
                cfg: dict | None = None, now: datetime | None = None, as_of_snapshot: bool = False) -> dict:
    """Suggest strategies on the latest complete snapshot of each currency (or `snapshot_id`).

    On the latest snapshot, only expiries after `now` (default: the current time) are traded: an
    expired `expiry` is a UsageError, and a stale snapshot is reported in `stale` (as is a realised-vol
    window older than the prices schedule). `snapshot_id` suggests as of that snapshot, and
    `as_of_snapshot` as of the latest one (history, recorded data: the snapshot's own time is "now");
    with `currency` too, a `snapshot_id` must be of that currency.
    Stores one `strategy_suggestions` document per suggestion (re-running keeps its track record) and
    returns {"step", "currencies": [{currency, snapshot_id, expiry, regime, rules, suggestions, skipped,
    stale}], "stale", "stored"}. `strategies` adds named strategies even if no rule fired (`requested`).
    """
    cfg = suggest_settings(cfg)
    if top < 0:
        raise UsageError("--top must be ≥ 0")
    for s in strategies or []:
        if s not in strat.STRATEGIES:
            raise UsageError(f"unknown strategy {s!r}; choose from {', '.join(strat.STRATEGIES)}")
    now = now or utcnow()
    args = {"currency": currency, "expiry": expiry, "top": top, "snapshot_id": snapshot_id, "strategies": strategies,
            "as_of_snapshot": as_of_snapshot}
    with recorded_run(db, "suggest", args) as run:
        if snapshot_id:
            snap = _snapshot(db, currency or "", snapshot_id)
            if currency and str(snap.get("currency", "")).upper() != currency.strip().upper():
                raise UsageError(f"--snapshot {snapshot_id} is a {snap.get('currency')} snapshot, not "
                                 f"{currency.strip().upper()}: drop --currency or pick a {currency.strip().upper()} snapshot")
            currencies = [snap["currency"]]
        else:
            currencies = currencies_to_process(db, currency)
        results, docs, stale_all = [], [], []
        for cur in currencies:
            snap = _snapshot(db, cur, snapshot_id)
            taken = as_utc(snap["timestamp"])
            tradeable_after = None if (snapshot_id or as_of_snapshot) else now
            chain = load_chain(db, snap, cfg["day_count"])
            if chain.empty:
                raise StepError(f"snapshot {snap['_id']} has no unexpired option")
            if chain["delta"].isna().all():
                raise StepError(f"snapshot {snap['_id']} has no deltas: run `qortcli price` first")
            expiries = expiry_table(chain)
            chosen = choose_expiry(expiries, cfg, expiry, tradeable_after, taken)
            surface = db[schema.SURFACES].find_one({"_id": snap["_id"]})
            regime = measure_regime(db, cur, snap, chain, expiries, chosen, cfg, surface)
            stale = []
            if not snapshot_id:
                stale = [n for n in (
                    staleness(f"{cur} snapshot {snap['_id']}", taken, "collect_deribit", now),
                    staleness(f"{cur} price_data (realised-vol window ends {regime['rv_end']:%Y-%m-%d})",
                              as_utc(regime["rv_end"]) + timedelta(days=1), "collect_prices", now)
                    if regime.get("rv_end") is not None else None) if n]
            stale_all += stale
            rules = strat.evaluate_rules(regime, cfg)
            ranked = strat.rank_strategies(rules, top, strategies)
            built, skipped = [], []
            for item in ranked:
                try:
                    doc = build_suggestion(cur, snap, chain, expiries, chosen, item, rules, regime, cfg, surface,
                                           tradeable_after)
                except strat.LegError as exc:
                    skipped.append({"strategy": item["strategy"], "reason": str(exc)})
                    continue
                key = schema.natural_key(schema.SUGGESTIONS, doc)
                old = db[schema.SUGGESTIONS].find_one({"_id": key}, {"status": 1, "track": 1, "settlement": 1})
                if old:  # keep the track record of a suggestion made before on this snapshot
                    doc.update(status=old.get("status", "open"), track=old.get("track", []),
                               settlement=old.get("settlement"))
                doc["_id"] = key
                built.append(doc)
            docs.extend(built)
            results.append({"currency": cur, "snapshot_id": snap["_id"], "timestamp": taken,
                            "expiry": chosen["code"], "regime": regime, "rules": [r.to_dict() for r in rules],
                            "suggestions": built, "skipped": skipped, "stale": stale, "top": top})
        run.counts["suggestions"] = ops.upsert_many(db, schema.SUGGESTIONS, docs)
        run.counts["skipped"] = sum(len(r["skipped"]) for r in results)
    return {"step": "suggest", "currencies": results, "stale": stale_all, "stored": len(docs)}


# ----------------------------------------------------------------------------------------- tracking

def delivery_price(db, currency: str, expiry: datetime, cfg: dict) -> dict | None:
    """The settlement price for `expiry`: the index of a snapshot within the tolerance of the expiry if
    stored, else the expiry's last stored forward if recent enough; None if neither (with why)."""
    tol = timedelta(minutes=float(cfg["settle_index_tolerance_minutes"]))
    snaps = ops.list_snapshots(db, "options", currency)
    near = [s for s in snaps if abs(as_utc(s["timestamp"]) - expiry) <= tol]
    if near:
        best = min(near, key=lambda s: abs(as_utc(s["timestamp"]) - expiry))
        doc = db[schema.OPTIONS].find_one({"snapshot_id": best["_id"]}, {"index_price": 1})
        if doc and doc.get("index_price"):
            minutes = (as_utc(best["timestamp"]) - expiry).total_seconds() / 60
            return {"price_usd": float(doc["index_price"]), "method": "index at expiry",
                    "detail": f"index of snapshot {best['_id']} ({minutes:+.0f} min from expiry)"}
    before = [s for s in snaps if as_utc(s["timestamp"]) < expiry]
    for snap in reversed(before):
        docs = list(db[schema.OPTIONS].find({"snapshot_id": snap["_id"], "expiry": expiry}, {"forward": 1}))
        fwd = [d["forward"] for d in docs if d.get("forward")]
        if not fwd:
            continue
        hours = (expiry - as_utc(snap["timestamp"])).total_seconds() / 3600
        if hours > float(cfg["settle_max_forward_age_hours"]):
            return None
        return {"price_usd": float(np.median(fwd)), "method": "last forward",
                "detail": f"median forward of the expiry in snapshot {snap['_id']}, {hours:.1f} h before expiry "
                          f"(no stored index within {cfg['settle_index_tolerance_minutes']} min of expiry)"}
    return None


def _settled_value_coin(rec: dict, price: float) -> float:
    if rec["option_type"] == "call":
        return max(price - rec["strike"], 0.0) / price
    return max(rec["strike"] - price, 0.0) / price


def track_suggestion(db, doc: dict, cfg: dict, now: datetime) -> dict:
    """Mark `doc` to market on every later complete snapshot and settle it if all its legs expired.

    P/L per point: coin Σ side·size·(value_coin − entry_coin); USD Σ side·size·value_usd − net premium at
    the entry index. A live leg is valued at its mark (coin; × the snapshot's index in USD: the median
    `index_price` stamped on the legs' rows, as at entry), an expired one
    at its coin payoff at the delivery price (× the delivery price in USD, converted at expiry), the held
    coin at 1 coin (the index in USD). A live leg missing from a snapshot makes that point's P/L None.
    """
    cur, start = doc["currency"], as_utc(doc["timestamp"])
    recs = doc["legs"]
    qty = [r["side_sign"] * r["size"] for r in recs]
    entry_coin = sum(q * r["price_coin"] for q, r in zip(qty, recs))
    entry_usd = entry_coin * doc["index_usd"]
    expiries = sorted({as_utc(r["expiry"]) for r in recs if r["expiry"] is not None})
    deliveries: dict = {}
    for e in expiries:
        if e <= now:
            deliveries[e] = delivery_price(db, cur, e, cfg)
    symbols = [r["instrument"] for r in recs if r["option_type"] != pay.UNDERLYING]
    path = []
    for snap in ops.list_snapshots(db, "options", cur):
        ts = as_utc(snap["timestamp"])
        if ts <= start or (expiries and ts >= expiries[-1]):
            continue  # before the suggestion, or after its last expiry (the settlement point closes the path)
        found = {d["symbol"]: d for d in db[schema.OPTIONS].find(
            {"snapshot_id": snap["_id"], "symbol": {"$in": symbols}},
            {"symbol": 1, "premium_crypto": 1, "index_price": 1})}
        stamped = [d["index_price"] for d in found.values() if d.get("index_price")]
        index = float(np.median(stamped)) if stamped else None
        if index is None:
            any_doc = db[schema.OPTIONS].find_one({"snapshot_id": snap["_id"]}, {"index_price": 1})
            index = any_doc.get("index_price") if any_doc else None
        value_coin, value_usd, missing, marks = 0.0, 0.0, [], {}
        for q, r in zip(qty, recs):
            if r["option_type"] == pay.UNDERLYING:
                value_coin += q
                value_usd += q * (index or np.nan)
                continue
            e = as_utc(r["expiry"])
            if ts >= e:
                dp = deliveries.get(e)
                if dp is None:
                    missing.append(f"{r['instrument']} (expired, no delivery price)")
                    continue
                v = _settled_value_coin(r, dp["price_usd"])
                marks[r["instrument"]] = {"settled_coin": v, "delivery_usd": dp["price_usd"]}
                value_coin += q * v
                value_usd += q * v * dp["price_usd"]
                continue
            d = found.get(r["instrument"])
            if d is None or d.get("premium_crypto") is None:
                missing.append(r["instrument"])
                continue
            marks[r["instrument"]] = {"mark_coin": float(d["premium_crypto"])}
            value_coin += q * float(d["premium_crypto"])
            value_usd += q * float(d["premium_crypto"]) * (index or np.nan)
        ok = not missing and index is not None
        path.append({"snapshot_id": snap["_id"], "timestamp": ts, "index_usd": index, "marks": marks,
                     "missing": missing, "pnl_coin": value_coin - entry_coin if ok else None,
                     "pnl_usd": value_usd - entry_usd if ok else None})
    settlement = None
    if expiries and expiries[-1] <= now:
        if all(deliveries.get(e) for e in expiries):
            value_coin = value_usd = 0.0
            for q, r in zip(qty, recs):
                if r["option_type"] == pay.UNDERLYING:
                    last = deliveries[expiries[-1]]["price_usd"]
                    value_coin += q
                    value_usd += q * last
                    continue
                dp = deliveries[as_utc(r["expiry"])]
                v = _settled_value_coin(r, dp["price_usd"])
                value_coin += q * v
                value_usd += q * v * dp["price_usd"]
            settlement = {"timestamp": expiries[-1], "deliveries": {expiry_code(e): deliveries[e] for e in expiries},
                          "pnl_coin": value_coin - entry_coin, "pnl_usd": value_usd - entry_usd}
            path.append({"snapshot_id": None, "timestamp": expiries[-1], "index_usd": deliveries[expiries[-1]]["price_usd"],
                         "marks": {}, "missing": [], "pnl_coin": settlement["pnl_coin"],
                         "pnl_usd": settlement["pnl_usd"], "settlement": True})
        else:
            lacking = [expiry_code(e) for e in expiries if not deliveries.get(e)]
            settlement = {"pending": True, "reason": f"no stored index or recent forward at expiry {', '.join(lacking)}"}
    out = dict(doc)
    out["track"] = path
    out["settlement"] = settlement
    out["status"] = "settled" if settlement and not settlement.get("pending") else "open"
    out["tracked_at"] = now
    return out


def run_track(db, currency: str | None = None, now: datetime | None = None, cfg: dict | None = None) -> dict:
    """Mark every open suggestion (of `currency`) to market on each later snapshot; settle expired ones.

    Returns {"step", "tracked", "settled", "strategies": [{id, currency, strategy, expiry, status, path,
    settlement, missing}]}.
    """
    cfg = suggest_settings(cfg)
    now = now or utcnow()
    query: dict = {"status": "open"}
    if currency:
        query["currency"] = currency.upper()
    with recorded_run(db, "suggest", {"track": True, "currency": currency}) as run:
        docs = list(db[schema.SUGGESTIONS].find(query).sort("timestamp", 1))
        updated = [track_suggestion(db, d, cfg, now) for d in docs]
        ops.upsert_many(db, schema.SUGGESTIONS, updated)
        run.counts.update(tracked=len(updated), settled=sum(d["status"] == "settled" for d in updated))
    rows = [{"id": d["_id"], "currency": d["currency"], "strategy": d["strategy"], "snapshot_id": d["snapshot_id"],
             "expiry": expiry_code(as_utc(d["expiry"])), "status": d["status"], "entry_premium_coin": d["metrics"]["net_premium_coin"],
             "entry_premium_usd": d["metrics"]["net_premium_usd"], "legs": [r["instrument"] for r in d["legs"]],
             "path": [{k: p.get(k) for k in ("snapshot_id", "timestamp", "index_usd", "pnl_coin", "pnl_usd", "missing")}
                      for p in d["track"]],
             "settlement": d["settlement"]} for d in updated]
    return {"step": "suggest-track", "tracked": len(rows), "settled": sum(r["status"] == "settled" for r in rows),
            "strategies": rows}
