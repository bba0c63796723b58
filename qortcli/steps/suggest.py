"""Step `suggest`: rule-based option strategies with concrete legs, and their track record.

`run_suggest` reads the latest complete options snapshot of each currency (or `snapshot_id`), measures
the market regime from stored data, evaluates the rules of `[suggest]` in settings.toml, builds each
suggested strategy's legs from that snapshot by delta targets and stores `strategy_suggestions`.
`run_track` marks every open suggestion to market on each later stored snapshot and settles it once
its legs have expired.

Regime inputs (all from the store, as of the snapshot, no look-ahead; every figure names its source,
"marks" or "svi", and the smile statistics come from `qortcli.quant.smile`):
- IV level `atm_iv_marks`: constant-maturity ATM IV at `iv_tenor_days` from the snapshot's marks (ATM of
  each expiry linear in ln(K/F), total variance linear in T); the stored SVI surface's ATM IV at the same
  tenor (`atm_iv_svi`) and the chosen expiry's `rr25_svi`/`bf25_svi` are shown beside it.
- Days ↔ years on the `[pricing] day_count` basis (stored as `basis` on every suggestion).
- its percentile over the same measure at every stored complete snapshot of the currency up to then;
- IV − RV: realised vol of `price_data` closes of the currency's symbol (last `rv_window_days` daily log
  returns up to the snapshot, × √365), with the dates the window covers;
- term structure: ATM IV of the listed expiry nearest `term_front_days` minus the chosen expiry's;
- skew: 25Δ risk reversal `rr25_marks` of the chosen expiry from the marks (deltas: pricing `model.delta`,
  else Deribit's published delta).
- strategies: the registry of `qortcli.quant.strategies` (a two-expiry template is built on the front
  expiry nearest `term_front_days` with the chosen one as its back leg).

P/L conventions: see `qortcli.quant.payoff`. Entry prices are the prices crossed (ask to buy, bid to
sell); net premium at mark is reported too.

Probability of profit: risk-neutral P(USD P/L at expiry > 0): the USD breakevens split (0, ∞) into
intervals; POP sums CDF(b) − CDF(a) over the profitable ones, with CDF(K) = 1 − P(S_T > K) and
P(S_T > K) = −∂C/∂K along the smile: from the stored SVI surface (`surface.prob_above`) when the
snapshot has one, else from the snapshot's mark smile (`smile.MarkSmile`: vols linear in ln(K/F) with
their analytic slope, `payoff.rn_cdf`). `pop_reason` says why a POP is None.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from qortcli.config import get_settings
from qortcli.errors import StepError, UsageError
from qortcli.quant import payoff as pay
from qortcli.quant import realised, smile, vol_history
from qortcli.quant import strategies as strat
from qortcli.quant import tracking
from qortcli.steps.common import currencies_to_process, day_count, staleness
from qortcli.store import ops, read, schema
from qortcli.store.runs import recorded_run
from qortcli.timeutils import BASES, DEFAULT_BASIS, as_utc, expiry_code, expiry_time, utcnow

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
    cfg.setdefault("day_count", day_count())
    return cfg


def _num(value):
    return float(value) if value is not None else np.nan


# ------------------------------------------------------------------------------------------ reading

def load_chain(db, snapshot: dict, day_count: str = DEFAULT_BASIS) -> pd.DataFrame:
    """The snapshot's unexpired options as the strategy builder's chain frame (see `qortcli.quant.strategies`),
    from the store's one chain frame (`read.chain_at`): deltas from the price step, else Deribit's."""
    frame = read.chain_at(db, snapshot["_id"], day_count).frame
    frame = frame[frame["t_years"] > 0]   # never an expired leg
    if frame.empty:
        return pd.DataFrame()
    model_cols = ("delta", "gamma", "vega", "theta", "delta_coin", "gamma_coin", "vega_coin", "theta_coin")
    published_cols = {f"{g}_deribit": g for g in ("delta", "gamma", "vega", "theta", "rho")}
    model = frame[list(model_cols)]
    published = frame[list(published_cols)].rename(columns=published_cols)
    priced = model.notna().any(axis=1).to_numpy()
    greeks = [({k: v for k, v in m.items() if v == v} if p else {k: v for k, v in q.items() if v == v}) or None
              for m, q, p in zip(model.to_dict("records"), published.to_dict("records"), priced)]
    delta = frame["delta"].where(frame["delta"].notna(), frame["delta_deribit"])
    source = np.where(frame["delta"].notna(), "model", np.where(frame["delta_deribit"].notna(), "deribit", None))
    out = pd.DataFrame({"symbol": frame["instrument"], "option_type": frame["option_type"],
                        "strike": frame["strike_usd"], "expiry": [e.to_pydatetime() for e in frame["expiry"]],
                        "t_years": frame["t_years"], "delta": delta, "delta_source": source,
                        "bid_coin": frame["bid_coin"], "ask_coin": frame["ask_coin"], "mark_coin": frame["mark_coin"],
                        "iv": frame["mark_iv"], "forward_usd": frame["expiry_forward_usd"],
                        "index_usd": frame["index_usd"], "greeks": greeks})
    return out.sort_values(["expiry", "option_type", "strike"]).reset_index(drop=True)


def expiry_table(chain: pd.DataFrame, days_per_year: float = BASES[DEFAULT_BASIS]) -> pd.DataFrame:
    """Per expiry: t_years, days (on the chain's basis: `days_per_year`), forward, ATM IV from the marks
    (`smile.atm_iv_from_quotes`); `attrs["days_per_year"]` keeps the basis for `iv_level`."""
    out = []
    for expiry, g in chain.groupby("expiry"):
        f = float(g["forward_usd"].iloc[0])
        t = float(g["t_years"].iloc[0])
        atm = smile.atm_iv_from_quotes(g["strike"], g["iv"], f)
        out.append({"expiry": expiry, "code": expiry_code(expiry), "t_years": t, "days": t * days_per_year,
                    "forward_usd": f, "atm_iv": np.nan if atm is None else atm, "n": len(g)})
    table = pd.DataFrame(out).sort_values("t_years").reset_index(drop=True)
    table.attrs["days_per_year"] = float(days_per_year)
    return table


def iv_level(expiries: pd.DataFrame, tenor_days: float) -> float:
    """Constant-maturity ATM IV (marks) at `tenor_days` from per-expiry mark ATM IVs (NaN without any)."""
    dpy = expiries.attrs.get("days_per_year", BASES[DEFAULT_BASIS])
    vol, _ = smile.interpolate_total_variance(expiries["t_years"], expiries["atm_iv"], tenor_days / dpy)
    return float("nan") if vol is None else vol


def _marks_frame(g: pd.DataFrame) -> pd.DataFrame:
    """This step's chain rows of one expiry in the store's chain-frame columns (`qortcli.store.frames`)."""
    return pd.DataFrame({"expiry": g["expiry"], "expiry_code": [expiry_code(e) for e in g["expiry"]],
                         "t_years": g["t_years"], "expiry_forward_usd": g["forward_usd"], "forward_usd": g["forward_usd"],
                         "strike_usd": g["strike"], "is_call": g["option_type"].eq("call"), "mark_iv": g["iv"],
                         "delta": g["delta"]})


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
            when = expiry_time(wanted)
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



def _front_expiry(expiries: pd.DataFrame, chosen: pd.Series, cfg: dict,
                  tradeable_after: datetime | None = None) -> pd.Series | None:
    cand = expiries[(expiries["days"] >= cfg["term_front_min_days"]) & (expiries["t_years"] < chosen["t_years"])]
    if tradeable_after is not None:
        cand = cand[cand["expiry"] > tradeable_after]
    if cand.empty:
        return None
    return cand.iloc[int(np.argmin(np.abs(cand["days"].to_numpy() - cfg["term_front_days"])))]


def _iv_history(db, currency: str, as_of: datetime, cfg: dict, current_sid: str, current_value: float) -> list[dict]:
    """The IV-level measure (constant-maturity ATM IV from the marks) as of `as_of`, no look-ahead, from the
    per-snapshot summaries (`read.summary_history`: one point a day for earlier days, then every snapshot of
    `as_of`'s day) over `iv_history_days` — never the raw chains. The current snapshot counts with the value
    measured now."""
    column = f"atm_iv_{smile.tenor_label(cfg['iv_tenor_days'])}_marks"
    frame = read.summary_history(db, currency, as_of, float(cfg.get("iv_history_days", 365)), [column])
    out = []
    for ts, row in frame.iterrows():
        sid = row.get("snapshot_id")
        if sid == current_sid:
            continue
        value = row.get(column)
        out.append({"snapshot_id": sid, "timestamp": ts.to_pydatetime(),
                    "iv": float(value) if value is not None and value == value else float("nan")})
    out.append({"snapshot_id": current_sid, "timestamp": as_of, "iv": current_value})
    return sorted(out, key=lambda h: h["timestamp"])


def _realised(db, currency: str, as_of: datetime, cfg: dict) -> dict:
    """Realised vol of `price_data` closes of the currency's ticker: `realised.realised_vol` (the one gap-aware
    rule: a return spanning a missing day is dropped, not annualised as one day) over the `rv_window_days`
    calendar days ending on the last close at or before `as_of`; its age is checked by the rules."""
    window = int(cfg["rv_window_days"])
    prices = read.price_series(db, currency, end=as_of)
    out = {"rv": None, "n_returns": 0, "start": None, "end": None, "age_days": None, "symbol": currency,
           "window_days": window, "reason": "no price history"}
    if prices.empty:
        return out
    rv = realised.realised_vol(prices.tail(4 * window + 5), window, as_of=as_of,
                               days_per_year=float(cfg["rv_annualisation_days"]))
    out.update(rv=rv.vol, n_returns=rv.n_returns, reason=rv.reason, gap_returns=rv.n_gap_returns,
               missing_days=rv.n_missing_days)
    if rv.span_start is not None:
        out["start"] = rv.span_start - timedelta(days=1)   # the first close the window uses
        out["end"] = rv.span_end
        out["age_days"] = (as_of - rv.span_end).total_seconds() / 86400.0
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
    dpy = BASES[cfg["day_count"]]
    found = smile.marks_expiry_stats(_marks_frame(chain[chain["expiry"] == chosen["expiry"]]))
    skew = found[0] if found else None   # none: no forward on the chosen expiry's rows
    out = {
        "as_of": as_of, "basis": cfg["day_count"], "iv_tenor_days": float(cfg["iv_tenor_days"]),
        "iv_source": f"marks: {cfg['iv_tenor_days']}d constant-maturity ATM IV",
        "atm_iv_marks": level, "atm_iv_marks_percentile": vol_history.percentile_rank(level, values),
        "iv_history_n": int(np.isfinite(values).sum()) if values else 0,
        "iv_history_from": history[0]["timestamp"] if history else None,
        "iv_history_to": history[-1]["timestamp"] if history else None,
        "rv_30d": rv["rv"], "rv_start": rv["start"], "rv_end": rv["end"], "rv_age_days": rv["age_days"],
        "rv_n_returns": rv["n_returns"], "rv_symbol": currency,
        "term_front_expiry": front["code"] if front is not None else None,
        "term_front_days": float(front["days"]) if front is not None else None,
        "term_front_atm_iv_marks": float(front["atm_iv"]) if front is not None else None,
        "term_back_expiry": chosen["code"], "term_back_days": float(chosen["days"]),
        "term_back_atm_iv_marks": float(chosen["atm_iv"]),
        "term_shape": (None if front is None else "backwardation (inverted)" if front["atm_iv"] > chosen["atm_iv"]
                       else "contango"),
        "term_slope_marks_per_year": (None if front is None else float(
            (chosen["atm_iv"] - front["atm_iv"]) / (chosen["t_years"] - front["t_years"]))),
        "skew_expiry": chosen["code"], "rr25_marks": skew.rr25 if skew else None,
        "bf25_marks": skew.bf25 if skew else None, "call25_iv_marks": skew.call25_iv if skew else None,
        "put25_iv_marks": skew.put25_iv if skew else None,
        "term_structure": [{"expiry": r.code, "days": r.days, "atm_iv_marks": r.atm_iv} for r in expiries.itertuples()],
        "atm_iv_svi": None, "rr25_svi": None, "bf25_svi": None,
    }
    # the volatility-forecast input: the best-scoring out-of-sample forecast stored by `qortcli vol`
    from qortcli.steps.vol import forecast_regime

    tenor = int(cfg.get("iv_vs_forecast_tenor_days", cfg["iv_tenor_days"]))
    out.update(forecast_regime(read.latest_vol(db, currency), tenor, as_of))
    if tenor != cfg["iv_tenor_days"]:
        out[f"atm_iv_{tenor}d_marks"] = iv_level(expiries, tenor)
    svi = smile.svi_expiry_stats(surface) if surface else []
    if svi:
        (cm,) = smile.constant_maturity(svi, [cfg["iv_tenor_days"]], dpy)
        out["atm_iv_svi"] = cm.atm_iv
        for st in svi:
            if st.expiry is not None and as_utc(st.expiry) == chosen["expiry"]:
                out["rr25_svi"], out["bf25_svi"] = st.rr25, st.bf25
    return out


# ----------------------------------------------------------------------------------------- building

def _cdf_fn(surface: dict | None, chain_expiry: pd.DataFrame, forward: float, t_years: float):
    if surface:
        try:
            from qortcli.quant import surface as surf

            if smile.fitted_slices(surface):
                return (lambda k: 1.0 - np.asarray(surf.prob_above(np.asarray(k, dtype=float), forward, t_years, surface))), \
                    "risk-neutral CDF from the stored SVI surface: 1 − P(S_T > K), P = −∂C/∂K along the smile"
        except Exception as exc:  # a malformed surface must not stop the suggestion
            log.warning("surface unusable for POP: %s", exc)
    method = "risk-neutral CDF from the snapshot's mark smile (vols linear in ln(K/F), analytic slope): 1 + ∂C/∂K"
    try:
        marks = smile.MarkSmile(chain_expiry["strike"], chain_expiry["iv"], forward)
    except ValueError as exc:   # no usable vol: POP None with its reason
        return (lambda k: np.full(np.shape(k), np.nan)), f"{method} — {exc}"
    return (lambda k: pay.rn_cdf(k, forward, t_years, marks.vol, marks.dvol_dk)), method


def _reasoning(item: dict, rules: list[strat.Rule], skew: str) -> str:
    fired = [r for r in rules if r.fired and item["strategy"] in r.strategies]
    parts = []
    for r in fired:
        inputs = ", ".join(f"{k}={_short(v, k)}" for k, v in r.inputs.items() if v is not None)
        thr = ", ".join(f"{k}={_short(v, k)}" for k, v in r.thresholds.items())
        parts.append(f"{r.name}: {r.description} [{inputs}; threshold {thr}]")
    template = strat.check_strategy(item["strategy"])
    note = template.note(skew) if template.note else None
    if note:
        parts.append(note)
    if not fired:
        parts.append("requested explicitly; no rule fired for it on this snapshot")
    return " | ".join(parts)


#: rule inputs/thresholds that are vols (or vol differences, percentiles) as fractions: written in percent
_PERCENT_KEYS = {"rv_30d", "iv_minus_rv", "front_minus_back", "iv_high", "iv_low", "iv_rv_rich", "iv_rv_cheap",
                 "term_inverted", "rr25_strong", "iv_pct_high", "iv_pct_low", "iv_vs_forecast_rich",
                 "iv_vs_forecast_cheap", "iv_minus_forecast"}
_PERCENT_PREFIXES = ("atm_iv", "rr25", "bf25", "call25_iv", "put25_iv", "term_front_atm_iv", "term_back_atm_iv",
                     "forecast_rv", "rv_")


def _short(v, key: str = ""):
    if isinstance(v, float) and (key in _PERCENT_KEYS or key.startswith(_PERCENT_PREFIXES)):
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
    template = strat.check_strategy(item["strategy"])
    front_chain = chain[chain["expiry"] == chosen["expiry"]]
    back_chain = None
    if template.needs_second_expiry:   # built on the front expiry, the chosen one is the back leg
        front = _front_expiry(expiries, chosen, cfg, tradeable_after)
        if front is None:
            raise strat.LegError(f"no front expiry before the chosen one for {template.name}")
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
    metrics = pay.strategy_metrics(legs, index0).to_document()
    mark_legs = strat.payoff_legs(records, t_eval, "mark")
    metrics["net_premium_mark_coin"] = pay.net_premium_coin(mark_legs)
    metrics["net_premium_mark_usd"] = pay.net_premium_usd(mark_legs, index0)
    mark_options = [leg for leg in mark_legs if leg.option_type != pay.UNDERLYING]
    metrics["option_premium_mark_coin"] = pay.net_premium_coin(mark_options)
    metrics["option_premium_mark_usd"] = pay.net_premium_usd(mark_options, index0)
    metrics["crossing_cost_usd"] = metrics["net_premium_usd"] - metrics["net_premium_mark_usd"]
    metrics["net_greeks"] = pay.net_greeks(legs, [r.get("greeks") for r in records], index_usd=index0,
                                           forwards_usd=[r.get("forward_usd") for r in records]).to_dict()
    cdf, method = _cdf_fn(surface, front_chain, forward, t_eval)
    pop = pay.probability_of_profit(legs, index0, forward, t_eval, cdf_fn=cdf)
    metrics["pop"], metrics["pop_reason"] = pop.value, pop.reason
    metrics["pop_method"] = method + "; POP = Σ CDF(b) − CDF(a) over the intervals between USD breakevens " \
                                     "where the USD P/L at expiry is positive"
    if any(leg.t_left_years > 0 for leg in legs):
        metrics["evaluation"] = ("at the front expiry; the later leg valued with Black-76 at its entry mark IV "
                                 "on forward = S (extremes and breakevens found numerically)")
    grid = pay.payoff_grid(legs, index0, forward, float(cfg["grid_lo"]), float(cfg["grid_hi"]), int(cfg["grid_points"]))
    return {
        "currency": currency, "snapshot_id": snapshot["_id"], "timestamp": as_utc(snapshot["timestamp"]),
        "strategy": item["strategy"], "expiry": expiry, "expiry_code": expiry_code(expiry), "basis": cfg["day_count"],
        "expiries": sorted({r["expiry"] for r in option_recs}), "t_years": t_eval,
        "index_usd": index0, "forward_usd": forward, "score": item["score"], "rules": item["rules"],
        "requested": item["requested"], "reasoning": _reasoning(item, rules, skew),
        "regime": {**regime, "rules": [r.to_dict() for r in rules]}, "legs": records, "metrics": metrics,
        "payoff_grid": grid, "status": "open", "track": [], "settlement": None, "created_at": utcnow(),
    }


def _snapshot(db, currency: str, snapshot_id: str | None) -> dict:
    """The snapshot record ({_id, currency, timestamp, ...}) to suggest on: `snapshot_id`, else the latest."""
    info = read.snapshot_info(db, snapshot_id) if snapshot_id else read.latest_snapshot(db, currency)
    if info is None:
        if snapshot_id:
            raise UsageError(f"--snapshot {snapshot_id}: no complete snapshot with that id in the store")
        raise StepError(f"no complete {currency} options snapshot: run `qortcli collect` first")
    return _record(info)


def _record(info: read.SnapshotInfo) -> dict:
    return {"_id": info.snapshot_id, "currency": info.currency, "timestamp": info.timestamp, "source": info.source}


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
        try:
            strat.check_strategy(s)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    now = now or utcnow()
    args = {"currency": currency, "expiry": expiry, "top": top, "snapshot_id": snapshot_id, "strategies": strategies,
            "as_of_snapshot": as_of_snapshot}
    with recorded_run(db, "suggest", args) as run:
        requested = None
        if snapshot_id:
            requested = _snapshot(db, currency or "", snapshot_id)
            if currency and str(requested.get("currency", "")).upper() != currency.strip().upper():
                raise UsageError(f"--snapshot {snapshot_id} is a {requested.get('currency')} snapshot, not "
                                 f"{currency.strip().upper()}: drop --currency or pick a {currency.strip().upper()} snapshot")
            currencies = [requested["currency"]]
        else:
            currencies = currencies_to_process(db, currency)
        results, docs, stale_all = [], [], []
        for cur in currencies:
            snap = requested or _snapshot(db, cur, None)
            chain = load_chain(db, snap, cfg["day_count"])
            unpriced = None
            if not snapshot_id and not chain.empty and chain["delta"].isna().all():
                # a chain just collected without greeks, not priced yet: the newest one `price` has finished
                priced = read.latest_priced_snapshot(db, cur)
                if priced is not None and priced.snapshot_id != snap["_id"]:
                    unpriced = {"input": f"{cur} snapshot {snap['_id']}", "as_of": snap["timestamp"], "job": "price",
                                "message": f"{cur} snapshot {snap['_id']} has no deltas yet (not priced): suggesting "
                                           f"on {priced.snapshot_id}, the newest priced one"}
                    snap = _record(priced)
                    chain = load_chain(db, snap, cfg["day_count"])
            taken = as_utc(snap["timestamp"])
            tradeable_after = None if (snapshot_id or as_of_snapshot) else now
            if chain.empty:
                raise StepError(f"snapshot {snap['_id']} has no unexpired option")
            if chain["delta"].isna().all():
                raise StepError(f"snapshot {snap['_id']} has no deltas: run `qortcli price` first")
            expiries = expiry_table(chain, BASES[cfg["day_count"]])
            chosen = choose_expiry(expiries, cfg, expiry, tradeable_after, taken)
            surface = read.surface_at(db, snap["_id"])
            regime = measure_regime(db, cur, snap, chain, expiries, chosen, cfg, surface)
            stale = []
            if not snapshot_id:   # as of the snapshot's own time (--as-of-snapshot), the inputs are judged then
                judged_at = taken if as_of_snapshot else now
                stale = [n for n in (
                    staleness(f"{cur} snapshot {snap['_id']}", taken, "collect_deribit", judged_at),
                    staleness(f"{cur} price_data (realised-vol window ends {regime['rv_end']:%Y-%m-%d})",
                              as_utc(regime["rv_end"]) + timedelta(days=1), "collect_prices", judged_at)
                    if regime.get("rv_end") is not None else None) if n]
            if unpriced is not None:
                stale.insert(0, unpriced)
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
                old = read.suggestion(db, key)
                if old:  # keep the track record of a suggestion made before on this snapshot
                    doc.update(status=old.get("status", "open"), track=old.get("track", []),
                               settlement=old.get("settlement"), tracked_through=old.get("tracked_through"))
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
    """The settlement price for `expiry` from the stored summaries' spot index (never the raw chains):
    Deribit's rule, the 30-minute TWAP of the index before 08:00 UTC, where the stored snapshots cover that
    window (`tracking.settlement_twap`); else, approximately, the index of the snapshot nearest the expiry
    within `settle_index_tolerance_minutes`; else the expiry's last stored forward if at most
    `settle_max_forward_age_hours` old; None if none of these (the settlement waits)."""
    tol = timedelta(minutes=float(cfg["settle_index_tolerance_minutes"]))
    near = read.summary_series(db, currency, expiry - max(tol, timedelta(minutes=30)), expiry + tol, "snapshot",
                               ["index_usd"])
    if not near.empty:
        stamps = [t.to_pydatetime() for t in near.index]
        index = near["index_usd"].astype(float).to_numpy()
        twap = tracking.settlement_twap(stamps, index, expiry)
        if twap.price_usd is not None:
            return {"price_usd": float(twap.price_usd), "method": twap.method, "approximate": twap.approximate,
                    "detail": twap.detail}
    before = read.latest_summary(db, currency, before=expiry)
    if before is not None:
        hours = (expiry - as_utc(before["timestamp"])).total_seconds() / 3600
        point = next((p for p in before.get("term_structure") or []
                      if p.get("expiry") is not None and as_utc(p["expiry"]) == expiry and p.get("forward_usd")), None)
        if point is not None and hours <= float(cfg["settle_max_forward_age_hours"]):
            return {"price_usd": float(point["forward_usd"]), "method": "last forward", "approximate": True,
                    "detail": f"approximate: the expiry's forward in snapshot {before['snapshot_id']}, {hours:.1f} h "
                              f"before expiry (no stored index samples within {cfg['settle_index_tolerance_minutes']}"
                              " min of expiry)"}
    return None


def track_suggestion(db, doc: dict, cfg: dict, now: datetime) -> dict:
    """Mark `doc` to market on each complete snapshot stored since it was last tracked, and settle it once all
    its legs have expired.

    Incremental: the points already in its track record are kept and only snapshots after `tracked_through`
    (the last one tracked; the suggestion's own snapshot at first) are read — their legs' marks in one
    indexed read (`read.marks_at`), so a run costs what is new, not the history. The valuation is
    `qortcli.quant.tracking` (`mark_point`: mark-to-market in coin and spot-USD and the exit P/L crossing the
    spread back; `settle`); a live leg missing from a snapshot makes that point's P/L None. The snapshot's
    spot is the median index stamped on the legs' rows (as at entry).
    """
    cur, start = doc["currency"], as_utc(doc["timestamp"])
    recs = [dict(r, expiry=as_utc(r["expiry"]) if r.get("expiry") is not None else None) for r in doc["legs"]]
    expiries = sorted({r["expiry"] for r in recs if r["expiry"] is not None})
    deliveries = {e: delivery_price(db, cur, e, cfg) for e in expiries if e <= now}
    prices = {e: (d or {}).get("price_usd") for e, d in deliveries.items()}
    symbols = [r["instrument"] for r in recs if r["option_type"] != pay.UNDERLYING]
    legs_key = "|".join(sorted(symbols))
    resume = doc.get("tracked_through") and doc.get("tracked_legs") == legs_key   # else: track from the start
    path = [p for p in doc.get("track") or [] if not p.get("settlement")] if resume else []
    after = as_utc(doc["tracked_through"]) if resume else start
    end = min(expiries[-1], now) if expiries else now
    new = [i for i in read.snapshots(db, cur, start=after, end=end) if i.timestamp > after and
           (not expiries or i.timestamp < expiries[-1])]
    marks = read.marks_at(db, [i.snapshot_id for i in new], symbols)
    by_snapshot = {sid: g for sid, g in marks.groupby("snapshot_id")} if not marks.empty else {}
    for info in new:
        g = by_snapshot.get(info.snapshot_id)
        quotes, index = {}, None
        if g is not None:
            quotes = {r.instrument: {"mark_coin": _opt(r.mark_coin), "bid_coin": _opt(r.bid_coin),
                                     "ask_coin": _opt(r.ask_coin)} for r in g.itertuples()}
            stamped = g["index_usd"].dropna()
            index = float(stamped.median()) if not stamped.empty else None
        if index is None:   # none of the legs listed at that snapshot: the summary's spot index
            summary = read.summary_series(db, cur, info.timestamp, info.timestamp, "snapshot", ["index_usd"])
            index = _opt(summary["index_usd"].iloc[0]) if not summary.empty else None
        point = tracking.mark_point(recs, doc["index_usd"], info.snapshot_id, info.timestamp, index, quotes, prices)
        path.append(point.to_document())
    settlement = None
    if expiries and expiries[-1] <= now:
        if all(deliveries.get(e) for e in expiries):
            settled = tracking.settle(recs, doc["index_usd"], prices)
            settlement = {"timestamp": settled.timestamp, "deliveries": {expiry_code(e): deliveries[e] for e in expiries},
                          "pnl_coin": settled.pnl_coin, "pnl_usd": settled.pnl_usd,
                          "approximate": any(d.get("approximate") for d in deliveries.values())}
            path.append({"snapshot_id": None, "timestamp": settled.timestamp, "index_usd": prices[expiries[-1]],
                         "marks": {}, "missing": [], "pnl_coin": settled.pnl_coin, "pnl_usd": settled.pnl_usd,
                         "exit_pnl_coin": settled.pnl_coin, "exit_pnl_usd": settled.pnl_usd, "exit_cost_usd": 0.0,
                         "settlement": True})
        else:
            lacking = [expiry_code(e) for e in expiries if not deliveries.get(e)]
            settlement = {"pending": True, "reason": f"no stored index or recent forward at expiry {', '.join(lacking)}"}
    out = dict(doc)
    out["track"] = path
    out["settlement"] = settlement
    out["status"] = "settled" if settlement and not settlement.get("pending") else "open"
    out["tracked_at"] = now
    out["tracked_through"] = new[-1].timestamp if new else after
    out["tracked_legs"] = legs_key
    return out


def _opt(value) -> float | None:
    return None if value is None or value != value else float(value)


def run_track(db, currency: str | None = None, now: datetime | None = None, cfg: dict | None = None) -> dict:
    """Mark every open suggestion (of `currency`) to market on each later snapshot; settle expired ones.

    Returns {"step", "tracked", "settled", "strategies": [{id, currency, strategy, expiry, status, path,
    settlement, missing}]}.
    """
    cfg = suggest_settings(cfg)
    now = now or utcnow()
    with recorded_run(db, "suggest", {"track": True, "currency": currency}) as run:
        docs = read.open_suggestions(db, currency)
        updated = [track_suggestion(db, d, cfg, now) for d in docs]
        ops.upsert_many(db, schema.SUGGESTIONS, updated)
        run.counts.update(tracked=len(updated), settled=sum(d["status"] == "settled" for d in updated))
    rows = [{"id": d["_id"], "currency": d["currency"], "strategy": d["strategy"], "snapshot_id": d["snapshot_id"],
             "expiry": expiry_code(as_utc(d["expiry"])), "status": d["status"], "entry_premium_coin": d["metrics"]["net_premium_coin"],
             "entry_premium_usd": d["metrics"]["net_premium_usd"], "legs": [r["instrument"] for r in d["legs"]],
             "path": [{k: p.get(k) for k in ("snapshot_id", "timestamp", "index_usd", "pnl_coin", "pnl_usd",
                                             "exit_pnl_coin", "exit_pnl_usd", "exit_cost_usd", "missing")}
                      for p in d["track"]],
             "settlement": d["settlement"]} for d in updated]
    return {"step": "suggest-track", "tracked": len(rows), "settled": sum(r["status"] == "settled" for r in rows),
            "strategies": rows}
