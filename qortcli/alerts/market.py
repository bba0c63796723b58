"""Market rules, pure: typed inputs (summaries, spot points, tracked suggestions) → `Condition`s.

Units: IVs, RR25 and term differences are fractions (0.01 = one vol point), spot in USD, moves fractions,
P/L in USD (the suggestion's spot-USD P/L: USD payoff − premium at the entry index), times tz-aware UTC.
Every smile figure names its source (`_marks` or `_svi`): the rule's `source` picks the summary column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from qortcli.alerts.conditions import Condition, clear_level, crossed
from qortcli.alerts.settings import (IvRankRule, Rr25FlipRule, Rule, SpotMoveRule, SuggestionRule, SuggestionTargetRule,
                                     TermInversionRule)
from qortcli.quant.vol_history import rank_percentile


@dataclass(frozen=True)
class TrackedSuggestion:
    """An open suggestion at its latest track point at or before the evaluation time.

    pnl_usd_marks: P/L at the marks; pnl_usd_exit: closing there (longs at the bid, shorts at the ask), None
    without a quote. max_loss_usd ≤ 0 (None when unbounded), max_profit_usd ≥ 0 (None when unbounded),
    option_premium_usd: the options' net premium at entry (signed, USD), the reference when a side is unbounded.
    """

    suggestion_id: str
    currency: str
    strategy: str
    expiry_code: str | None
    entered_at: datetime
    point_at: datetime | None
    point_snapshot_id: str | None
    pnl_usd_marks: float | None
    pnl_usd_exit: float | None
    max_loss_usd: float | None
    max_profit_usd: float | None
    option_premium_usd: float | None


@dataclass(frozen=True)
class MarketInputs:
    """What the market rules read, as of `now` (nothing later).

    recent:  per currency, the per-snapshot summaries of the last hours (index: snapshot time, UTC; the
             stored columns: atm_iv_{T}d_{marks|svi}, rr25_{T}d_..., index_usd, snapshot_id, ...)
    history: per currency, the summaries over the rank lookback (a point a day, then today's snapshots)
    spot:    per currency, spot index points in USD (summaries' index_usd plus the stream's live index)
    """

    now: datetime
    recent: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    history: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    spot: Mapping[str, pd.Series] = field(default_factory=dict)
    suggestions: tuple[TrackedSuggestion, ...] = ()


def _ts(value) -> datetime | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def _age_s(now: datetime, moment: datetime | None) -> float | None:
    return None if moment is None else (pd.Timestamp(now) - pd.Timestamp(moment)).total_seconds()


def _column(frame: pd.DataFrame | None, column: str) -> pd.Series:
    """A finite float series of one summary column, by time (empty if the frame or column is missing)."""
    if frame is None or frame.empty or column not in frame.columns:
        return pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype=float)
    values = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return values[np.isfinite(values.to_numpy())].sort_index(kind="stable")


def _currencies(rule: Rule, available) -> list[str]:
    return sorted(rule.currencies) if rule.currencies else sorted(available)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _vp(value: float) -> str:
    """A vol difference in vol points, signed: +0.42 vol pts."""
    return f"{100 * value:+.2f} vol pts"


def _too_old(rule, now: datetime, observed: datetime | None) -> str | None:
    age = _age_s(now, observed)
    if age is None:
        return "no data"
    if age > rule.max_age_s:
        return f"latest data {age / 3600:.1f} h old (max_age {rule.max_age_s / 3600:g} h)"
    return None


# ------------------------------------------------------------------------------------------- rules

def iv_rank(rule: IvRankRule, inputs: MarketInputs, open_subjects: frozenset[str]) -> list[Condition]:
    """The ATM IV's rank or percentile over the lookback beyond the level (`quant.vol_history.rank_percentile`)."""
    column = f"atm_iv_{rule.tenor_days}d_{rule.source}"
    out = []
    for cur in _currencies(rule, inputs.history):
        rp = rank_percentile(_column(inputs.history.get(cur), column), rule.lookback_days, inputs.now, rule.min_points)
        value = rp.rank if rule.measure == "rank" else rp.percentile
        reason = rp.reason if value is None else _too_old(rule, inputs.now, rp.span_end)
        active = None if reason else crossed(value, rule.level, rule.direction, rule.hysteresis, cur in open_subjects)
        what = f"{cur} {rule.tenor_days}d ATM IV {rule.measure} ({rule.source})"
        if value is None:
            title = f"{what}: {reason}"
        else:
            sign = ">" if rule.direction == "above" else "<"
            title = (f"{what} {value:.2f} {sign if active else 'not ' + sign} {rule.level:.2f} over "
                     f"{rule.lookback_days} d (IV {_pct(rp.value)}, {rp.n_points} points)")
        out.append(Condition.of(
            rule, cur, active, title, observed_at=rp.span_end, reason=reason,
            values={rule.measure: value, "rank": rp.rank, "percentile": rp.percentile, "atm_iv": rp.value,
                    "n_points": rp.n_points},
            thresholds={"direction": rule.direction, "level": rule.level, "hysteresis": rule.hysteresis,
                        "clear_level": clear_level(rule.level, rule.direction, rule.hysteresis)},
            inputs={"column": column, "lookback_days": rule.lookback_days, "min_points": rule.min_points,
                    "span_start": rp.span_start, "span_end": rp.span_end, "covers_lookback": rp.covers_lookback}))
    return out


def established_signs(values: np.ndarray, band: float) -> np.ndarray:
    """The sign each point establishes: +1 above +band, −1 below −band, 0 inside (the sign carries on)."""
    values = np.asarray(values, dtype=float)
    return np.where(values > band, 1, np.where(values < -band, -1, 0)).astype(int)


def rr25_flip(rule: Rr25FlipRule, inputs: MarketInputs, open_subjects: frozenset[str]) -> list[Condition]:
    """The RR25 sign flipping, with a ±band dead zone; one subject per sign (`CUR/30d/positive`)."""
    column = f"rr25_{rule.tenor_days}d_{rule.source}"
    out = []
    now = pd.Timestamp(inputs.now)
    for cur in _currencies(rule, inputs.recent):
        series = _column(inputs.recent.get(cur), column)
        series = series[(series.index > now - pd.Timedelta(seconds=rule.lookback_s)) & (series.index <= now)]
        signs = established_signs(series.to_numpy(), rule.band)
        set_at = np.flatnonzero(signs)
        observed = _ts(series.index[-1]) if len(series) else None
        reason = _too_old(rule, inputs.now, observed)
        if reason is None and set_at.size == 0:
            reason = f"no {column} point outside ±{rule.band:g} in the lookback"
        current = int(signs[set_at[-1]]) if set_at.size else 0
        opposite = set_at[signs[set_at] == -current] if current else np.array([], dtype=int)
        flip_i = int(set_at[set_at > opposite[-1]][0]) if opposite.size else None
        common = {"observed_at": observed, "reason": reason,
                  "inputs": {"column": column, "lookback_s": rule.lookback_s, "n_points": int(len(series)),
                             "first_point": _ts(series.index[0]) if len(series) else None}}
        for sign, label in ((1, "positive"), (-1, "negative")):
            subject = f"{cur}/{rule.tenor_days}d/{label}"
            if reason:
                active = None
            elif current != sign:
                active = False
            else:
                active = subject in open_subjects or flip_i is not None
            latest = float(series.iloc[-1]) if len(series) else None
            flip_at = _ts(series.index[flip_i]) if flip_i is not None and current == sign else None
            what = f"{cur} {rule.tenor_days}d RR25 ({rule.source})"
            if reason:
                title = f"{what}: {reason}"
            elif active and flip_at is not None:
                title = (f"{what} flipped {label}: {_vp(float(series.iloc[flip_i]))} at {flip_at:%Y-%m-%d %H:%M} UTC, "
                         f"now {_vp(latest)}")
            elif active:
                title = f"{what} still {label}: now {_vp(latest)}"
            else:
                title = f"{what} {_vp(latest)}, not {label}"
            out.append(Condition.of(
                rule, subject, active, title,
                values={"rr25": latest, "established_sign": current, "flip_at": flip_at,
                        "rr25_at_flip": float(series.iloc[flip_i]) if flip_at is not None else None,
                        "previous_sign": -current if opposite.size else None,
                        "opposite_at": _ts(series.index[opposite[-1]]) if opposite.size else None},
                thresholds={"band": rule.band, "sign": sign}, **common))
    return out


def term_inversion(rule: TermInversionRule, inputs: MarketInputs, open_subjects: frozenset[str]) -> list[Condition]:
    """Front ATM IV minus back ATM IV above the level (inverted term structure), at the latest summary."""
    front_col = f"atm_iv_{rule.front_days}d_{rule.source}"
    back_col = f"atm_iv_{rule.back_days}d_{rule.source}"
    out = []
    for cur in _currencies(rule, inputs.recent):
        front, back = _column(inputs.recent.get(cur), front_col), _column(inputs.recent.get(cur), back_col)
        both = pd.concat([front, back], axis=1, join="inner").dropna()
        both = both[both.index <= pd.Timestamp(inputs.now)]
        observed = _ts(both.index[-1]) if len(both) else None
        reason = _too_old(rule, inputs.now, observed)
        f_iv, b_iv = (float(both.iloc[-1, 0]), float(both.iloc[-1, 1])) if len(both) else (None, None)
        value = None if f_iv is None else f_iv - b_iv
        active = None if reason else crossed(value, rule.level, "above", rule.hysteresis, cur in open_subjects)
        what = f"{cur} term structure ({rule.source}) {rule.front_days}d − {rule.back_days}d ATM IV"
        title = (f"{what}: {reason}" if reason else
                 f"{what} = {_pct(f_iv)} − {_pct(b_iv)} = {_vp(value)} "
                 f"{'>' if active else 'not >'} {_vp(rule.level)}{' (inverted)' if active else ''}")
        snapshot = None
        frame = inputs.recent.get(cur)
        if observed is not None and frame is not None and "snapshot_id" in frame.columns:
            snapshot = frame.loc[frame.index == pd.Timestamp(observed), "snapshot_id"].iloc[-1]
        out.append(Condition.of(
            rule, cur, active, title, observed_at=observed, reason=reason,
            values={"front_minus_back": value, "atm_iv_front": f_iv, "atm_iv_back": b_iv},
            thresholds={"level": rule.level, "hysteresis": rule.hysteresis,
                        "clear_level": clear_level(rule.level, "above", rule.hysteresis)},
            inputs={"front_column": front_col, "back_column": back_col, "snapshot_id": snapshot}))
    return out


def largest_move(times: pd.DatetimeIndex, spot_usd: np.ndarray, window_s: float) -> tuple[float, int] | None:
    """The largest |S_last / S_i − 1| over the points i within `window_s` before the last point: (signed move as a
    fraction, i). None with fewer than two points in the window. Units: spot in USD (any one unit), seconds."""
    spot_usd = np.asarray(spot_usd, dtype=float)
    if len(times) != spot_usd.size:
        raise ValueError(f"times ({len(times)}) and spot_usd ({spot_usd.size}) differ in length")
    if spot_usd.size < 2:
        return None
    if not np.all(spot_usd > 0):
        raise ValueError("spot_usd must be positive")
    start = times[-1] - pd.Timedelta(seconds=float(window_s))
    lo = int(times.searchsorted(start, side="left"))
    if lo >= spot_usd.size - 1:
        return None
    moves = spot_usd[-1] / spot_usd[lo:-1] - 1.0
    i = int(np.argmax(np.abs(moves)))
    return float(moves[i]), lo + i


def spot_move(rule: SpotMoveRule, inputs: MarketInputs, open_subjects: frozenset[str]) -> list[Condition]:
    """The spot index moving by at least `move` within the window (largest move of the last point)."""
    out = []
    now = pd.Timestamp(inputs.now)
    for cur in _currencies(rule, inputs.spot):
        series = inputs.spot.get(cur)
        series = (pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype=float) if series is None
                  else pd.to_numeric(series, errors="coerce").astype(float))
        series = series[np.isfinite(series.to_numpy()) & (series.to_numpy() > 0)]
        series = series[series.index <= now].sort_index(kind="stable")
        series = series[~series.index.duplicated(keep="last")]
        last_at = _ts(series.index[-1]) if len(series) else None
        window = f"{rule.window_s / 60:g} min"
        found = largest_move(series.index, series.to_numpy(), rule.window_s) if len(series) else None
        reason = None
        if last_at is None or _age_s(inputs.now, last_at) > rule.window_s:
            reason = f"no spot index point in the last {window}"
        elif found is None:
            reason = f"one spot index point in the last {window}: no move to measure"
        move, i = found if found is not None and reason is None else (None, None)
        active = None if reason else crossed(abs(move), rule.move, "above", rule.hysteresis, cur in open_subjects)
        if reason:
            title = f"{cur} spot: {reason}"
        else:
            minutes = (series.index[-1] - series.index[i]).total_seconds() / 60
            title = (f"{cur} spot {100 * move:+.2f}% in {minutes:.0f} min ({series.iloc[i]:,.0f} → "
                     f"{series.iloc[-1]:,.0f} USD), {'≥' if active else 'under'} {_pct(rule.move)} in {window}")
        out.append(Condition.of(
            rule, cur, active, title, observed_at=last_at, reason=reason,
            values={"move": move, "abs_move": None if move is None else abs(move),
                    "from_usd": None if i is None else float(series.iloc[i]),
                    "from_at": None if i is None else _ts(series.index[i]),
                    "to_usd": None if last_at is None else float(series.iloc[-1]), "to_at": last_at},
            thresholds={"move": rule.move, "hysteresis": rule.hysteresis, "window_s": rule.window_s,
                        "clear_move": rule.move - rule.hysteresis},
            inputs={"n_points": int(len(series)), "source": "summaries index_usd + live index"}))
    return out


def _suggestion_level(rule: SuggestionRule, s: TrackedSuggestion) -> tuple[float | None, str]:
    """The P/L level in USD (negative for a loss, positive for a target) and how it was set."""
    target = isinstance(rule, SuggestionTargetRule)
    bound = s.max_profit_usd if target else s.max_loss_usd
    premium = abs(s.option_premium_usd) if s.option_premium_usd is not None else None
    sign = 1.0 if target else -1.0
    side = "max profit" if target else "max loss"
    if bound is not None and math.isfinite(bound) and sign * bound > 0:
        return sign * rule.fraction * abs(bound), f"{rule.fraction:g} × the {side} {bound:,.0f} USD"
    if bound is None and premium:
        return sign * rule.premium_multiple * premium, f"{rule.premium_multiple:g} × the option premium " \
                                                       f"{premium:,.0f} USD ({side} unbounded)"
    return None, f"no {side} level ({side} {bound!r}, option premium {s.option_premium_usd!r})"


def suggestion_pnl(rule: SuggestionRule, inputs: MarketInputs, open_subjects: frozenset[str]) -> list[Condition]:
    """A tracked suggestion's P/L reaching its max-loss level (`suggestion_max_loss`) or its target
    (`suggestion_target`), at its latest track point."""
    target = isinstance(rule, SuggestionTargetRule)
    direction = "above" if target else "below"
    out = []
    for s in inputs.suggestions:
        if rule.currencies and s.currency not in rule.currencies:
            continue
        use_exit = rule.pnl == "exit" and s.pnl_usd_exit is not None
        pnl = s.pnl_usd_exit if use_exit else s.pnl_usd_marks
        level, basis = _suggestion_level(rule, s)
        reason = ("no track point yet" if s.point_at is None else "no P/L at the latest track point" if pnl is None
                  else basis if level is None else None)
        hysteresis = rule.hysteresis * abs(level) if level is not None else 0.0
        active = None if reason else crossed(pnl, level, direction, hysteresis, s.suggestion_id in open_subjects)
        what = f"{s.currency} {s.strategy} {s.expiry_code or ''} ({s.suggestion_id.split('|')[0]})"
        if reason:
            title = f"{what}: {reason}"
        else:
            word = ("target reached" if target else "max-loss level reached") if active else "within levels"
            title = f"{what} P/L {pnl:+,.0f} USD ({'exit' if use_exit else 'marks'}): {word} ({level:+,.0f} USD = {basis})"
        out.append(Condition.of(
            rule, s.suggestion_id, active, title, observed_at=s.point_at, reason=reason,
            values={"pnl_usd": pnl, "pnl_source": "exit" if use_exit else "marks", "pnl_usd_marks": s.pnl_usd_marks,
                    "pnl_usd_exit": s.pnl_usd_exit},
            thresholds={"level_usd": level, "basis": basis, "direction": direction, "hysteresis_usd": hysteresis,
                        "fraction": rule.fraction, "premium_multiple": rule.premium_multiple},
            inputs={"suggestion_id": s.suggestion_id, "strategy": s.strategy, "currency": s.currency,
                    "entered_at": s.entered_at, "point_snapshot_id": s.point_snapshot_id,
                    "max_loss_usd": s.max_loss_usd, "max_profit_usd": s.max_profit_usd,
                    "option_premium_usd": s.option_premium_usd}))
    return out


EVALUATORS: dict[str, Callable[[Rule, MarketInputs, frozenset[str]], list[Condition]]] = {
    "iv_rank": iv_rank, "rr25_flip": rr25_flip, "term_inversion": term_inversion, "spot_move": spot_move,
    "suggestion_max_loss": suggestion_pnl, "suggestion_target": suggestion_pnl,
}


def evaluate_market(rule: Rule, inputs: MarketInputs, open_subjects: frozenset[str] = frozenset()) -> list[Condition]:
    """The conditions of one market rule (one per subject); `open_subjects`: the rule's subjects with an open
    episode (for the hysteresis)."""
    try:
        evaluator = EVALUATORS[rule.kind]
    except KeyError:
        raise ValueError(f"{rule.kind!r} is not a market rule kind ({', '.join(EVALUATORS)})") from None
    return evaluator(rule, inputs, open_subjects)
