"""Portfolio allocation with riskfolio-lib (pure: no I/O): the models, one level or two (by sector).

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
    Every result is checked: weights are long-only, sum to 1 (within 1e-12 after `constraints.polish`) and respect
    the bounds; anything else is an `OptimizationError` naming the model and the constraint. (riskfolio's
    HRP/HERC meet bounds by clipping and redistributing the excess, at most 100 rounds; `constraints.polish` finishes
    that same procedure when riskfolio stops short, e.g. two assets with both a floor and a cap.)

Two levels (`optimize_by_sector`)
    1. Within each sector the same model splits the sector's assets (no bounds): weights v_s.
    2. Each sector's daily return series is its assets' returns weighted by v_s (within-sector model
       weights, *not* equal weights), and the model allocates across these sector series with the
       sector cap as the upper bound.
    3. Asset weight = sector weight × within-sector weight. Where that breaks `max_asset`/`min_asset`,
       the within-sector split is re-solved with the bounds scaled by the sector weight (the sector
       series of step 2 keep the unbounded split).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from qortcli.quant.choices import HC_MODELS, MODELS, RISK_MEASURES  # noqa: F401  (re-exported)
from qortcli.quant.constraints import Bounds, OptimizationError, check_feasible, linear_constraints, polish

HRP_LINKAGE = "single"
HERC_LINKAGE = "ward"
CODEPENDENCE = "pearson"

__all__ = ["MODELS", "HC_MODELS", "RISK_MEASURES", "HRP_LINKAGE", "HERC_LINKAGE", "CODEPENDENCE", "Allocation",
           "OptimizationError", "validate", "optimize_weights", "optimize_by_sector"]


def _label(model: str, risk_measure: str) -> str:
    return f"{model} ({risk_measure})"


@contextlib.contextmanager
def _quiet():
    """riskfolio prints to stdout on a failed solve and cvxpy warns: keep both off the CLI's output."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def validate(model: str, risk_measure: str) -> None:
    """ValueError for an unknown model / risk measure or an unsupported pair (names only: no units)."""
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
        raise ValueError(f"{model} takes per-asset bounds only; a group cap needs the two-level model "
                         "(optimize_by_sector)")
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
    return polish(raw.reindex(assets), bounds, label, strict=model not in HC_MODELS)


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
                  groups={a: sectors[a] for a in assets}, labels={"group": "sector", **bounds.labels})
    label = f"{_label(model, risk_measure)} by sector"
    check_feasible(assets, full, label)            # the group map counts only when there is a group cap
    groups = full.group_map(assets)
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
                               labels={"max_asset": "sector cap", "min_asset": "sector floor"})
        sector_w = optimize_weights(sector_returns, model, risk_measure, bounds=sector_bounds,
                                    label=f"{label} across sectors")
    # Asset weight = sector weight × within-sector weight; re-split a sector whose product breaks the bounds.
    weights = pd.Series(0.0, index=assets)
    for sector, members in groups.items():
        s_w = float(sector_w[sector])
        v = within[sector]
        if s_w > 0 and ((v * s_w > hi[members] + 1e-12).any() or (v * s_w < lo[members] - 1e-12).any()):
            scaled = Bounds(max_asset={a: min(1.0, hi[a] / s_w) for a in members} if full.has_upper() else None,
                            min_asset={a: lo[a] / s_w for a in members} if full.has_lower() else 0.0,
                            labels=full.labels)
            v = optimize_weights(returns[members], model, risk_measure, bounds=scaled,
                                 label=f"{_label(model, risk_measure)} within sector {sector} (sector weight {s_w:.3g})")
            within[sector] = v
        weights[members] = s_w * v.to_numpy()
    weights = polish(weights, full, label)
    sector_weights = weights.groupby([full.groups[a] for a in assets]).sum().reindex(list(groups))
    return Allocation(weights=weights, sector_weights=sector_weights,
                      within={s: {a: float(x) for a, x in v.items()} for s, v in within.items()},
                      sector_returns=sector_returns)
