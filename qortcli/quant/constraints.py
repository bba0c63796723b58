"""Portfolio weight constraints: bounds per asset and per group, feasibility, breaches, polishing (pure).

`Bounds` holds long-only per-asset floors and caps and a cap per group (fractions of the portfolio);
messages name each bound by `Bounds.labels` (the caller's own words; no CLI option names here).
`check_feasible` is exact for per-asset bounds with group caps; `violations` measures every breach;
`polish` removes solver slack (≤ `TOLERANCE`) or, for the hierarchical models, finishes riskfolio's
clip-and-redistribute; `linear_constraints` gives riskfolio's ``A w <= B`` rows. An infeasible or failed
constraint is an `OptimizationError` naming the model and the constraint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

TOLERANCE = 1e-7  # largest solver slack accepted (then polished away); beyond it the solve failed


class OptimizationError(RuntimeError):
    """An infeasible constraint or a failed solve; the message names the model and the constraint."""


#: how each bound is called in messages unless the caller says otherwise (`Bounds.labels`)
DEFAULT_LABELS = {"max_asset": "max_asset", "min_asset": "min_asset", "max_group": "max_group", "group": "group"}


@dataclass(frozen=True)
class Bounds:
    """Weight bounds as fractions of the portfolio.

    min_asset/max_asset: a float for every asset, or a {asset: bound} mapping (missing = 0 / 1).
    max_group: cap on the summed weight of each group (e.g. a sector) of `groups` (asset → group).
    labels: how messages call each bound and a group (keys max_asset, min_asset, max_group, group;
    defaults `DEFAULT_LABELS`): the caller names them in its own words (a step uses its option names).
    """

    min_asset: float | Mapping[str, float] = 0.0
    max_asset: float | Mapping[str, float] | None = None
    max_group: float | None = None
    groups: Mapping[str, str] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def label(self, name: str) -> str:
        """How messages call bound `name` (max_asset, min_asset, max_group) or a `group`."""
        return self.labels.get(name, DEFAULT_LABELS[name])

    @property
    def max_word(self) -> str:
        return self.label("max_asset")

    @property
    def min_word(self) -> str:
        return self.label("min_asset")

    @property
    def group_word(self) -> str:
        return self.label("max_group")

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
    """Raise OptimizationError when no long-only, fully invested weights (fractions) can meet `bounds`.

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
        raise OptimizationError(f"{label}: infeasible {bounds.group_word} {cap:g}: {len(groups)} "
                                f"{bounds.label('group')}s × {cap:g} = {len(groups) * cap:.3g} < 1 (weights must sum to 1)")
    reachable = sum(min(cap, float(hi[m].sum())) for m in groups.values())
    if reachable < 1 - 1e-12:
        raise OptimizationError(f"{label}: infeasible {bounds.describe()}: at most {reachable:.3g} can be invested")
    for group, members in groups.items():
        if lo[members].sum() > cap + 1e-12:
            raise OptimizationError(f"{label}: infeasible: {bounds.label('group')} {group}'s minimum weights add up to "
                                    f"{lo[members].sum():.3g} > {bounds.group_word} {cap:g}")


def violations(weights: pd.Series, bounds: Bounds) -> dict[str, float]:
    """Largest breach of each constraint (fractions of the portfolio, 0 when met): sum, negative, max_asset,
    min_asset, max_group."""
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


def polish(weights: pd.Series, bounds: Bounds, label: str, strict: bool = True) -> pd.Series:
    """Remove solver slack (≤ TOLERANCE, fractions): clip the weights into the bounds and renormalise to sum
    exactly 1.

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


def linear_constraints(assets: list[str], bounds: Bounds) -> tuple[np.ndarray | None, np.ndarray | None]:
    """riskfolio's `A w <= B` rows for the bounds (weights as fractions): asset caps, asset floors (negated),
    group caps."""
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
