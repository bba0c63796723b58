"""Portfolio construction on daily crypto returns with riskfolio-lib (pure: no I/O).

Returns
    `daily_returns(closes)` turns a wide frame of daily closes (USD, one column per asset, index = UTC
    calendar days) into simple daily returns on the 365-day crypto calendar. A day without a close gives
    no return that day *and* no return the next day (there is no previous close): gaps are never bridged
    or forward-filled. Assets with fewer than `min_history_days` returns are excluded with the reason;
    the rest are aligned on their common span and days on which any asset has no return are dropped
    (and counted), so every model sees a complete matrix of observed returns only.

Models (`MODELS`)
    hrp, herc           riskfolio `HCPortfolio` (HRP: single linkage; HERC: ward linkage), the risk
                        measure used for the bisection split is `risk_measure`.
    max-sharpe          riskfolio `Portfolio.optimization(obj="Sharpe")`, rf = 0.
    min-risk            riskfolio `Portfolio.optimization(obj="MinRisk")`.
    risk-parity         riskfolio `Portfolio.rp_optimization` (equal risk budgets); MDD is not supported.
    Risk measures (`RISK_MEASURES`): MV (variance), CVaR (95%), CDaR (95%), MDD (max drawdown of
    uncompounded cumulative returns) — riskfolio's own definitions, alpha = 0.05.

Bounds
    Per-asset `min_asset`/`max_asset` (fractions of the portfolio) and per-group `max_group` (a sector
    cap, fractions). The hierarchical models take per-asset bounds only (riskfolio's `w_min`/`w_max`);
    group caps on them are applied through the two-level sector model (`optimize_by_sector`).
    Every result is checked: weights are long-only, sum to 1 (within 1e-12 after `_polish`) and respect
    the bounds; anything else is an `OptimizationError` naming the model and the constraint. (riskfolio's
    HRP/HERC meet bounds by clipping and redistributing the excess, at most 100 rounds; `_polish` finishes
    that same procedure when riskfolio stops short, e.g. two assets with both a floor and a cap.)

Two levels (`optimize_by_sector`)
    1. Within each sector the same model splits the sector's assets (no bounds): weights v_s.
    2. Each sector's daily return series is its assets' returns weighted by v_s (within-sector model
       weights, *not* equal weights), and the model allocates across these sector series with the
       sector cap as the upper bound.
    3. Asset weight = sector weight × within-sector weight. Where that breaks `max_asset`/`min_asset`,
       the within-sector split is re-solved with the bounds scaled by the sector weight (the sector
       series of step 2 keep the unbounded split).

Walk-forward (`walk_forward`)
    At the first observed day of each period (week/month/quarter) with a full trailing window of
    `lookback_days` calendar days behind it, the model is fitted on that window only and the weights
    are held (buy and hold: they drift with prices) until the next rebalance. The equal-weight benchmark
    is rebalanced on the same dates. Returns are out-of-sample daily simple returns.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import pandas as pd

MODELS = ("hrp", "herc", "max-sharpe", "min-risk", "risk-parity")
HC_MODELS = ("hrp", "herc")
RISK_MEASURES = ("MV", "CVaR", "CDaR", "MDD")
REBALANCE_FREQUENCIES = {"weekly": "W", "monthly": "M", "quarterly": "Q"}
TOLERANCE = 1e-7  # largest solver slack accepted (then polished away); beyond it the solve failed

HRP_LINKAGE = "single"
HERC_LINKAGE = "ward"
CODEPENDENCE = "pearson"


class OptimizationError(RuntimeError):
    """An infeasible constraint or a failed solve; the message names the model and the constraint."""


# ----------------------------------------------------------------------------------------------- returns


@dataclass
class ReturnsPanel:
    """Aligned daily simple returns (fractions) and what was left out on the way.

    returns   DataFrame, index = UTC days (tz-naive midnight), one column per included asset, no NaN.
    excluded  [{symbol, reason, returns}] assets left out (too short a history, no data in the window).
    gaps      {symbol: missing calendar days between its first and last close (within the window)}.
    dropped_days  days in the common span on which some included asset had no return (left out).
    """

    returns: pd.DataFrame
    excluded: list[dict] = field(default_factory=list)
    gaps: dict[str, int] = field(default_factory=dict)
    dropped_days: int = 0
    span_start: pd.Timestamp | None = None
    span_end: pd.Timestamp | None = None

    def summary(self) -> dict:
        index = self.returns.index
        return {"first": index[0].date().isoformat() if len(index) else None,
                "last": index[-1].date().isoformat() if len(index) else None,
                "days": int(len(index)), "assets": list(self.returns.columns),
                "gaps": dict(self.gaps), "dropped_days": int(self.dropped_days)}


def _day_index(index) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(pd.to_datetime(index))
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.normalize()


def daily_returns(closes: pd.DataFrame, min_history_days: int = 365, start=None, end=None) -> ReturnsPanel:
    """Daily simple returns on the 365-day calendar from a wide frame of closes (USD).

    `closes`: index = days (datetime-like, UTC), columns = assets; NaN or non-positive = no close.
    `start`/`end` (inclusive, dates) restrict the *returns* window. Raises ValueError when fewer than two
    assets remain or the aligned history is shorter than `min_history_days`.
    """
    if closes.empty:
        raise ValueError("no closes to compute returns from")
    frame = closes.copy()
    frame.index = _day_index(frame.index)
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    frame = frame.apply(pd.to_numeric, errors="coerce").astype(float)
    frame = frame.where(frame > 0)  # a non-positive close is not a price
    calendar = pd.date_range(frame.index[0], frame.index[-1], freq="D")
    frame = frame.reindex(calendar)
    returns = frame / frame.shift(1) - 1.0  # NaN whenever either day lacks a close: nothing is bridged
    lo = pd.Timestamp(start).tz_localize(None) if start is not None and pd.Timestamp(start).tz else (
        pd.Timestamp(start) if start is not None else None)
    hi = pd.Timestamp(end).tz_localize(None) if end is not None and pd.Timestamp(end).tz else (
        pd.Timestamp(end) if end is not None else None)
    if lo is not None:
        returns, frame = returns.loc[returns.index >= lo.normalize()], frame.loc[frame.index >= lo.normalize()]
    if hi is not None:
        returns, frame = returns.loc[returns.index <= hi.normalize()], frame.loc[frame.index <= hi.normalize()]

    excluded: list[dict] = []
    gaps: dict[str, int] = {}
    keep: list[str] = []
    for symbol in frame.columns:
        observed = frame[symbol].dropna()
        n_returns = int(returns[symbol].notna().sum())
        if observed.empty:
            excluded.append({"symbol": symbol, "reason": "no closes in the window", "returns": 0})
            continue
        span = frame[symbol].loc[observed.index[0]:observed.index[-1]]
        gaps[symbol] = int(span.isna().sum())
        if n_returns < min_history_days:
            first, last = observed.index[0].date(), observed.index[-1].date()
            excluded.append({"symbol": symbol, "returns": n_returns,
                             "reason": f"{n_returns} daily returns ({first}…{last}) < minimum {min_history_days}"})
            continue
        keep.append(symbol)
    if len(keep) < 2:
        raise ValueError(f"{len(keep)} asset(s) with at least {min_history_days} daily returns; need 2 or more"
                         + (f" (excluded: {', '.join(e['symbol'] for e in excluded)})" if excluded else ""))
    kept = returns[keep]
    firsts = [kept[s].first_valid_index() for s in keep]
    lasts = [kept[s].last_valid_index() for s in keep]
    span_start, span_end = max(firsts), min(lasts)
    common = kept.loc[span_start:span_end]
    complete = common.dropna(how="any")
    dropped = int(len(common) - len(complete))
    if len(complete) < min_history_days:
        raise ValueError(f"the {len(keep)} assets share {len(complete)} complete days of returns "
                         f"({span_start.date()}…{span_end.date()}, {dropped} dropped for gaps) "
                         f"< minimum {min_history_days}")
    return ReturnsPanel(returns=complete, excluded=excluded, gaps=gaps, dropped_days=dropped,
                        span_start=span_start, span_end=span_end)


# ------------------------------------------------------------------------------------------------ bounds


@dataclass(frozen=True)
class Bounds:
    """Weight bounds as fractions of the portfolio.

    min_asset/max_asset: a float for every asset, or a {asset: bound} mapping (missing = 0 / 1).
    max_group: cap on the summed weight of each group (sector) of `groups` (asset → group).
    `words` name the CLI options in error messages (e.g. ("--max-sector", ...) at the sector level).
    """

    min_asset: float | Mapping[str, float] = 0.0
    max_asset: float | Mapping[str, float] | None = None
    max_group: float | None = None
    groups: Mapping[str, str] | None = None
    max_word: str = "--max-asset"
    min_word: str = "--min-asset"
    group_word: str = "--max-sector"

    def upper(self, assets: list[str]) -> pd.Series:
        if self.max_asset is None:
            return pd.Series(1.0, index=assets)
        if isinstance(self.max_asset, Mapping):
            return pd.Series({a: min(1.0, float(self.max_asset.get(a, 1.0))) for a in assets})
        return pd.Series(min(1.0, float(self.max_asset)), index=assets)

    def lower(self, assets: list[str]) -> pd.Series:
        if isinstance(self.min_asset, Mapping):
            return pd.Series({a: max(0.0, float(self.min_asset.get(a, 0.0))) for a in assets})
        return pd.Series(max(0.0, float(self.min_asset or 0.0)), index=assets)

    def has_upper(self) -> bool:
        return self.max_asset is not None

    def has_lower(self) -> bool:
        return bool(self.min_asset) if not isinstance(self.min_asset, Mapping) else any(
            v > 0 for v in self.min_asset.values())

    def describe(self) -> str:
        def one(value):
            if isinstance(value, Mapping):
                return "{" + ", ".join(f"{k} {v:.3g}" for k, v in value.items()) + "}"
            return f"{value:g}"

        parts = []
        if self.max_asset is not None:
            parts.append(f"{self.max_word} {one(self.max_asset)}")
        if self.has_lower():
            parts.append(f"{self.min_word} {one(self.min_asset)}")
        if self.max_group is not None:
            parts.append(f"{self.group_word} {self.max_group:g}")
        return ", ".join(parts) or "long-only, fully invested"

    def group_map(self, assets: list[str]) -> dict[str, list[str]]:
        if self.groups is None:
            raise ValueError("a group cap needs the asset → group map")
        out: dict[str, list[str]] = {}
        for asset in assets:
            out.setdefault(self.groups[asset], []).append(asset)
        return out


def check_feasible(assets: list[str], bounds: Bounds, label: str) -> None:
    """Raise OptimizationError when no long-only, fully invested weights can meet `bounds`.

    Exact for per-asset bounds with group caps: the largest reachable total is
    Σ_groups min(cap, Σ asset caps) and the smallest is Σ floors.
    """
    hi, lo = bounds.upper(assets), bounds.lower(assets)
    if (hi < lo - 1e-12).any():
        bad = hi.index[hi < lo - 1e-12][0]
        raise OptimizationError(f"{label}: {bounds.max_word} for {bad} ({hi[bad]:g}) is below its minimum {lo[bad]:g}")
    if lo.sum() > 1 + 1e-12:
        raise OptimizationError(f"{label}: infeasible {bounds.min_word}: the minimum weights add up to {lo.sum():.3g} > 1")
    if bounds.max_group is None:
        if hi.sum() < 1 - 1e-12:
            if isinstance(bounds.max_asset, Mapping):
                raise OptimizationError(f"{label}: infeasible {bounds.describe()}: the caps add up to {hi.sum():.3g} < 1")
            raise OptimizationError(f"{label}: infeasible {bounds.max_word} {bounds.max_asset:g}: {len(assets)} "
                                    f"× {bounds.max_asset:g} = {hi.sum():.3g} < 1 (weights must sum to 1)")
        return
    groups = bounds.group_map(assets)
    cap = float(bounds.max_group)
    if len(groups) * cap < 1 - 1e-12:
        raise OptimizationError(f"{label}: infeasible {bounds.group_word} {cap:g}: {len(groups)} sectors × {cap:g} "
                                f"= {len(groups) * cap:.3g} < 1 (weights must sum to 1)")
    reachable = sum(min(cap, float(hi[m].sum())) for m in groups.values())
    if reachable < 1 - 1e-12:
        raise OptimizationError(f"{label}: infeasible {bounds.describe()}: at most {reachable:.3g} can be invested")
    for group, members in groups.items():
        if lo[members].sum() > cap + 1e-12:
            raise OptimizationError(f"{label}: infeasible: sector {group}'s minimum weights add up to "
                                    f"{lo[members].sum():.3g} > {bounds.group_word} {cap:g}")


def violations(weights: pd.Series, bounds: Bounds) -> dict[str, float]:
    """Largest breach of each constraint (0 when met): sum, negative, max_asset, min_asset, max_group."""
    w = weights.astype(float)
    assets = list(w.index)
    out = {"sum": abs(float(w.sum()) - 1.0), "negative": float(max(0.0, -w.min()))}
    out["max_asset"] = float(max(0.0, (w - bounds.upper(assets)).max()))
    out["min_asset"] = float(max(0.0, (bounds.lower(assets) - w).max()))
    if bounds.max_group is not None:
        sums = w.groupby([bounds.groups[a] for a in assets]).sum()
        out["max_group"] = float(max(0.0, (sums - bounds.max_group).max()))
    else:
        out["max_group"] = 0.0
    return out


def _polish(weights: pd.Series, bounds: Bounds, label: str, strict: bool = True) -> pd.Series:
    """Remove solver slack (≤ TOLERANCE): clip into the bounds and renormalise to sum exactly 1.

    strict: a breach larger than TOLERANCE means the solve did not meet the constraint (OptimizationError).
    Not strict (hierarchical models, whose bounds riskfolio meets by clipping and redistributing the excess
    over the assets with room, at most 100 rounds): the same clip-and-redistribute is carried to the end.
    """
    w = weights.astype(float).copy()
    if not np.isfinite(w.to_numpy()).all() or w.sum() <= 0:
        raise OptimizationError(f"{label} returned no usable weights under {bounds.describe()}")
    bad = {k: v for k, v in violations(w / w.sum(), bounds).items() if v > TOLERANCE and k != "sum"}
    if bad and strict:
        what = ", ".join(f"{k} off by {v:.2g}" for k, v in bad.items())
        raise OptimizationError(f"{label} did not meet {bounds.describe()} ({what})")
    assets = list(w.index)
    hi, lo = bounds.upper(assets), bounds.lower(assets)
    group_of = pd.Series({a: bounds.groups[a] for a in assets}) if bounds.max_group is not None else None
    for _ in range(200):
        w = w.clip(lower=lo, upper=hi)
        if group_of is not None:
            sums = w.groupby(group_of.to_numpy()).sum()
            for group, total in sums.items():
                if total > bounds.max_group:
                    members = group_of.index[group_of.to_numpy() == group]
                    w[members] *= bounds.max_group / total
        residual = 1.0 - float(w.sum())
        if abs(residual) <= 1e-15:
            break
        if residual > 0:
            slack = np.array(w < hi, dtype=bool)
            if group_of is not None:
                sums = w.groupby(group_of.to_numpy()).sum()
                full = set(sums.index[sums >= bounds.max_group])
                slack = slack & ~np.array(group_of.isin(full), dtype=bool)
        else:
            slack = np.array(w > lo, dtype=bool)
        if not slack.any():
            break
        base = w[slack]
        w[slack] = base + (residual * base / base.sum() if base.sum() > 0 else residual / slack.sum())
    final = violations(w, bounds)
    if any(v > 1e-12 for v in final.values()):
        what = ", ".join(f"{k} off by {v:.2g}" for k, v in final.items() if v > 1e-12)
        raise OptimizationError(f"{label}: weights cannot be brought within {bounds.describe()} ({what})")
    return w


# ------------------------------------------------------------------------------------------------ models


def _label(model: str, risk_measure: str) -> str:
    return f"{model} ({risk_measure})"


@contextlib.contextmanager
def _quiet():
    """riskfolio prints to stdout on a failed solve and cvxpy warns: keep both off the CLI's output."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def validate(model: str, risk_measure: str) -> None:
    """ValueError for an unknown model / risk measure or an unsupported pair."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; use one of {', '.join(MODELS)}")
    if risk_measure not in RISK_MEASURES:
        raise ValueError(f"unknown risk measure {risk_measure!r}; use one of {', '.join(RISK_MEASURES)}")
    if model == "risk-parity" and risk_measure == "MDD":
        raise ValueError("risk-parity does not support the MDD risk measure (riskfolio rp_optimization); "
                         "use MV, CVaR or CDaR")


def optimize_weights(returns: pd.DataFrame, model: str = "hrp", risk_measure: str = "MV",
                     bounds: Bounds | None = None, label: str | None = None, precheck: bool = True) -> pd.Series:
    """Long-only weights (fractions summing to 1) of `model` on daily `returns` (no NaN), as a Series.

    `bounds.max_group` needs a mean-risk model (max-sharpe, min-risk, risk-parity); for hrp/herc use
    `optimize_by_sector`. `precheck=False` skips the arithmetic feasibility check so the solver's own
    failure path is exercised. Raises ValueError for a bad argument, OptimizationError for an infeasible
    or failed solve.
    """
    validate(model, risk_measure)
    bounds = bounds or Bounds()
    if bounds.max_group is not None and model in HC_MODELS:
        raise ValueError(f"{model} takes per-asset bounds only; a sector cap needs --by-sector")
    assets = [str(a) for a in returns.columns]
    label = label or _label(model, risk_measure)
    if returns.isna().to_numpy().any():
        raise ValueError("returns contain NaN; align them with daily_returns first")
    if precheck:
        check_feasible(assets, bounds, label)
    if len(assets) == 1:
        raw = pd.Series(1.0, index=assets)
    elif model in HC_MODELS:
        raw = _solve_hc(returns, model, risk_measure, bounds, label)
    else:
        raw = _solve_mean_risk(returns, model, risk_measure, bounds, label)
    return _polish(raw.reindex(assets), bounds, label, strict=model not in HC_MODELS)


def _solve_hc(returns: pd.DataFrame, model: str, risk_measure: str, bounds: Bounds, label: str) -> pd.Series:
    import riskfolio as rp

    assets = list(returns.columns)
    kwargs = {}
    if bounds.has_upper():
        kwargs["w_max"] = bounds.upper(assets).astype(float)
    if bounds.has_lower():
        kwargs["w_min"] = bounds.lower(assets).astype(float)
    port = rp.HCPortfolio(returns=returns, **kwargs)
    options = {"model": model.upper(), "codependence": CODEPENDENCE, "rm": risk_measure, "rf": 0,
               "linkage": HRP_LINKAGE if model == "hrp" else HERC_LINKAGE, "leaf_order": True}
    if model == "herc" and len(assets) <= 2:
        options["k"] = len(assets)  # riskfolio's gap statistic needs 3+ assets to pick k
    try:
        with _quiet():
            result = port.optimization(**options)
    except NameError as exc:  # riskfolio's way of rejecting bounds
        raise OptimizationError(f"{label}: {exc} under {bounds.describe()}") from None
    except (ValueError, np.linalg.LinAlgError, ZeroDivisionError) as exc:
        raise OptimizationError(f"{label} failed under {bounds.describe()}: {exc}") from None
    if result is None or result.empty:
        raise OptimizationError(f"{label} found no solution under {bounds.describe()}")
    return result["weights"].astype(float)


def linear_constraints(assets: list[str], bounds: Bounds) -> tuple[np.ndarray | None, np.ndarray | None]:
    """riskfolio's `A w <= B` rows for the bounds: asset caps, asset floors (negated), group caps."""
    rows, rhs = [], []
    n = len(assets)
    if bounds.has_upper():
        rows.append(np.eye(n))
        rhs.append(bounds.upper(assets).to_numpy())
    if bounds.has_lower():
        rows.append(-np.eye(n))
        rhs.append(-bounds.lower(assets).to_numpy())
    if bounds.max_group is not None:
        for members in bounds.group_map(assets).values():
            rows.append(np.array([[1.0 if a in members else 0.0 for a in assets]]))
            rhs.append(np.array([float(bounds.max_group)]))
    if not rows:
        return None, None
    return np.vstack(rows), np.concatenate(rhs).reshape(-1, 1)


def _solve_mean_risk(returns: pd.DataFrame, model: str, risk_measure: str, bounds: Bounds, label: str) -> pd.Series:
    import riskfolio as rp

    port = rp.Portfolio(returns=returns)
    port.solvers = ["CLARABEL", "SCS"]
    a, b = linear_constraints(list(returns.columns), bounds)
    if a is not None:
        port.ainequality, port.binequality = a, b
    with _quiet():
        port.assets_stats(method_mu="hist", method_cov="hist")
        try:
            if model == "risk-parity":
                result = port.rp_optimization(model="Classic", rm=risk_measure, rf=0, hist=True)
            else:
                obj = "Sharpe" if model == "max-sharpe" else "MinRisk"
                result = port.optimization(model="Classic", rm=risk_measure, obj=obj, rf=0, l=0, hist=True)
        except Exception as exc:  # cvxpy raises several kinds when the problem is ill-posed
            raise OptimizationError(f"{label} failed under {bounds.describe()}: {type(exc).__name__}: {exc}") from None
    if result is None or result.empty or result["weights"].isna().any():
        raise OptimizationError(f"{label} found no solution under {bounds.describe()} (riskfolio returned None)")
    return result["weights"].astype(float)


@dataclass
class Allocation:
    """Asset weights; for the two-level model also sector weights and within-sector splits (fractions)."""

    weights: pd.Series
    sector_weights: pd.Series
    within: dict[str, dict[str, float]] = field(default_factory=dict)
    sector_returns: pd.DataFrame | None = None


def optimize_by_sector(returns: pd.DataFrame, sectors: Mapping[str, str], model: str = "hrp",
                       risk_measure: str = "MV", bounds: Bounds | None = None) -> Allocation:
    """Two-level allocation: across sector return series, then within each sector (see the module doc).

    `sectors`: asset → sector. `bounds.max_group` caps each sector's weight; `max_asset`/`min_asset`
    bound the final asset weights.
    """
    validate(model, risk_measure)
    bounds = bounds or Bounds()
    assets = [str(a) for a in returns.columns]
    full = Bounds(min_asset=bounds.min_asset, max_asset=bounds.max_asset, max_group=bounds.max_group,
                  groups={a: sectors[a] for a in assets})
    label = f"{_label(model, risk_measure)} by sector"
    if full.max_group is not None:
        check_feasible(assets, full, label)
    else:
        check_feasible(assets, Bounds(min_asset=bounds.min_asset, max_asset=bounds.max_asset), label)
    groups = {g: m for g, m in full.group_map(assets).items()}
    hi, lo = full.upper(assets), full.lower(assets)

    within: dict[str, pd.Series] = {}
    for sector, members in groups.items():
        within[sector] = optimize_weights(returns[members], model, risk_measure,
                                          label=f"{_label(model, risk_measure)} within sector {sector}")
    sector_returns = pd.DataFrame({s: returns[m].to_numpy() @ within[s].to_numpy() for s, m in groups.items()},
                                  index=returns.index)
    # Sector-level bounds: the sector cap and the caps/floors the per-asset bounds imply.
    sector_cap = {s: min(float(hi[m].sum()), full.max_group if full.max_group is not None else 1.0)
                  for s, m in groups.items()}
    sector_floor = {s: float(lo[m].sum()) for s, m in groups.items()}
    if len(groups) == 1:
        sector_w = pd.Series(1.0, index=list(groups))
    else:
        capped = any(v < 1.0 for v in sector_cap.values())
        floored = any(v > 0 for v in sector_floor.values())
        sector_bounds = Bounds(max_asset=sector_cap if capped else None, min_asset=sector_floor if floored else 0.0,
                               max_word="sector cap", min_word="sector floor")
        sector_w = optimize_weights(sector_returns, model, risk_measure, bounds=sector_bounds,
                                    label=f"{label} across sectors")
    # Asset weight = sector weight × within-sector weight; re-split a sector whose product breaks the bounds.
    weights = pd.Series(0.0, index=assets)
    for sector, members in groups.items():
        s_w = float(sector_w[sector])
        v = within[sector]
        if s_w > 0 and ((v * s_w > hi[members] + 1e-12).any() or (v * s_w < lo[members] - 1e-12).any()):
            scaled = Bounds(max_asset={a: min(1.0, hi[a] / s_w) for a in members} if full.has_upper() else None,
                            min_asset={a: lo[a] / s_w for a in members} if full.has_lower() else 0.0)
            v = optimize_weights(returns[members], model, risk_measure, bounds=scaled,
                                 label=f"{_label(model, risk_measure)} within sector {sector} (sector weight {s_w:.3g})")
            within[sector] = v
        weights[members] = s_w * v.to_numpy()
    weights = _polish(weights, full, label)
    sector_weights = weights.groupby([full.groups[a] for a in assets]).sum().reindex(list(groups))
    return Allocation(weights=weights, sector_weights=sector_weights,
                      within={s: {a: float(x) for a, x in v.items()} for s, v in within.items()},
                      sector_returns=sector_returns)


# ----------------------------------------------------------------------------------------- rebalancing


def turnover(previous: Mapping[str, float], new: Mapping[str, float]) -> float:
    """One-way turnover: half the sum of absolute weight changes (assets missing on one side count as 0)."""
    names = set(previous) | set(new)
    return 0.5 * sum(abs(float(new.get(a, 0.0)) - float(previous.get(a, 0.0))) for a in names)


def rebalance_plan(previous: Mapping[str, float], new: Mapping[str, float], threshold: float = 0.005) -> list[dict]:
    """Per-asset changes from `previous` to `new` weights, biggest first, as buy/sell/hold suggestions.

    `threshold`: a change smaller than this (fraction of the portfolio) is "hold".
    """
    rows = []
    for asset in sorted(set(previous) | set(new)):
        before, after = float(previous.get(asset, 0.0)), float(new.get(asset, 0.0))
        change = after - before
        action = "hold" if abs(change) < threshold else ("buy" if change > 0 else "sell")
        rows.append({"asset": asset, "previous": before, "new": after, "change": change, "action": action})
    rows.sort(key=lambda r: -abs(r["change"]))
    return rows


# ------------------------------------------------------------------------------------------- backtests


def fixed_weight_returns(returns: pd.DataFrame, weights: pd.Series) -> pd.Series:
    """Daily returns of constant weights re-applied every day: R @ w (the in-sample series)."""
    return pd.Series(returns[weights.index].to_numpy() @ weights.to_numpy(), index=returns.index, name="portfolio")


def rebalance_dates(index: pd.DatetimeIndex, frequency: str, lookback_days: int) -> list[pd.Timestamp]:
    """First observed day of each period that has `lookback_days` calendar days of history behind it."""
    if frequency not in REBALANCE_FREQUENCIES:
        raise ValueError(f"unknown rebalance frequency {frequency!r}; use one of {', '.join(REBALANCE_FREQUENCIES)}")
    if len(index) == 0:
        return []
    periods = index.to_period(REBALANCE_FREQUENCIES[frequency])
    firsts = pd.Series(index, index=index).groupby(periods).min()
    earliest = index[0] + pd.Timedelta(days=lookback_days)
    return [pd.Timestamp(d) for d in firsts if d >= earliest]


def buy_and_hold_returns(returns: pd.DataFrame, weights: np.ndarray) -> np.ndarray:
    """Daily returns of a buy-and-hold position started with `weights` on the first row (drifts with prices)."""
    growth = np.cumprod(1.0 + returns.to_numpy(), axis=0)
    value = growth @ weights
    previous = np.concatenate([[float(np.sum(weights))], value[:-1]])
    return value / previous - 1.0


@dataclass
class WalkForward:
    """Out-of-sample daily returns of the walk-forward portfolio and its equal-weight benchmark."""

    returns: pd.Series
    benchmark: pd.Series
    rebalances: list[dict]  # [{date, weights {asset: w}, turnover}]


def walk_forward(returns: pd.DataFrame, fit: Callable[[pd.DataFrame], pd.Series], frequency: str = "monthly",
                 lookback_days: int = 365, min_window: int | None = None) -> WalkForward:
    """Fit on the trailing `lookback_days` before each rebalance date, hold until the next one.

    `fit(window_returns) -> weights Series`. A window with fewer than `min_window` observed days
    (default: half the lookback) is skipped, keeping the previous weights.
    """
    dates = rebalance_dates(returns.index, frequency, lookback_days)
    if not dates:
        raise ValueError(f"no {frequency} rebalance date has {lookback_days} days of history before it "
                         f"({returns.index[0].date()}…{returns.index[-1].date()})")
    min_window = min_window if min_window is not None else max(2, lookback_days // 2)
    n = returns.shape[1]
    equal = np.full(n, 1.0 / n)
    out_p, out_b, rebalances = [], [], []
    current: pd.Series | None = None
    for k, start in enumerate(dates):
        stop = dates[k + 1] if k + 1 < len(dates) else None
        window = returns.loc[(returns.index < start) & (returns.index >= start - pd.Timedelta(days=lookback_days))]
        if len(window) >= min_window:
            new = fit(window).reindex(returns.columns).fillna(0.0)
            rebalances.append({"date": start, "weights": {a: float(w) for a, w in new.items()},
                               "turnover": turnover(current.to_dict(), new.to_dict()) if current is not None else 1.0})
            current = new
        if current is None:
            continue
        held = returns.loc[(returns.index >= start) & ((returns.index < stop) if stop is not None else True)]
        if held.empty:
            continue
        out_p.append(pd.Series(buy_and_hold_returns(held, current.to_numpy()), index=held.index))
        out_b.append(pd.Series(buy_and_hold_returns(held, equal), index=held.index))
    if not out_p:
        raise ValueError("the walk-forward produced no out-of-sample days")
    return WalkForward(returns=pd.concat(out_p).rename("portfolio"), benchmark=pd.concat(out_b).rename("equal_weight"),
                       rebalances=rebalances)


def equity(returns: pd.Series) -> pd.Series:
    """Growth of 1 (compounded daily simple returns)."""
    return (1.0 + returns).cumprod()


