"""Coin-settled option strategy payoffs: legs, premiums, P/L at expiry, extremes, breakevens, greeks.

Pure numpy/scipy, no I/O.

Conventions (Deribit inverse options):
- A leg is bought (side +1) or sold (side −1) in `size` coin contracts at `price_coin` coin per contract.
- Payoff at expiry per contract, in coin: call max(S−K, 0)/S, put max(K−S, 0)/S, where S is the
  delivery (index) price in USD. The USD payoff is the coin payoff × S: call max(S−K, 0), put max(K−S, 0).
- A holding of the coin itself (covered call, protective put) is a leg with option_type "underlying":
  it is worth 1 coin, i.e. S USD, per unit, bought at 1 coin (the index price `index0_usd` in USD).
- Net premium `net_premium_coin` = Σ side·size·price_coin (positive = debit paid, negative = credit).
  In USD it is converted at the entry spot index: `net_premium_usd = net_premium_coin × index0_usd`.
- P/L at expiry in coin: `pnl_coin(S) = payoff_coin(S) − net_premium_coin` (a coin-margined account).
  P/L at expiry in USD: `pnl_usd(S) = payoff_usd(S) − net_premium_usd` (a USD-funded trader who
  converts the premium at entry and the payoff at expiry). These two are NOT proportional:
  pnl_usd(S) ≠ pnl_coin(S) × S unless the premium is zero, so their breakevens differ slightly.
  `pnl_coin(S) × S` (the coin account valued in USD at expiry) has exactly the coin breakevens.
- Asymptotics differ between the units: a short call loses at most ~1 coin per contract as S→∞
  (bounded in coin) but without limit in USD; a long put gains without limit in coin as S→0 (K/S − 1)
  but at most K USD. Both are reported honestly (`*_unbounded` flags).

Which USD: premiums and payoffs in USD here are **spot-USD** (coin × the index). Deribit's published
greeks (and `qortcli.quant.black76`'s USD greeks) are **forward-USD** (derivatives of V·F); `net_greeks`
names both and converts through the coin greeks (`vega_spot_usd` = Σ vega_coin × index) where they are
set beside premiums.

Typed results: `strategy_metrics` returns `StrategyMetrics` with each extreme an `Extreme(value, at_usd,
unbounded)` (value None when unbounded, never ±inf); `probability_of_profit` a `ProbabilityOfProfit`
(value, reason: "ok", "expired" or "no_distribution", never a NaN without a reason); `net_greeks` a
`NetGreeks`.

Legs expiring after the evaluation date (the back leg of a calendar) carry `t_left_years > 0` and an
implied vol `iv`; at the evaluation date they are valued with Black-76 on forward = S (zero rate, the
forward of an expiring contract equals the index) and that vol held constant ("sticky strike").
Extremes and breakevens are then found numerically; otherwise they are exact (piecewise linear).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Callable, Sequence

import numpy as np

from qortcli.quant import black76
from qortcli.quant.records import Record

CALL, PUT, UNDERLYING = "call", "put", "underlying"


@dataclass(frozen=True)
class Leg:
    """One leg: `size` coin contracts bought (side +1) or sold (side −1) at `price_coin` per contract.

    strike in USD (0 for the underlying), expiry timezone-aware UTC (None for the underlying),
    t_left_years: years the leg still has to run at the strategy's evaluation expiry (0 = expires then),
    iv: implied vol (fraction) used to value it then if t_left_years > 0.
    """

    instrument: str
    option_type: str
    strike: float
    expiry: datetime | None
    side: int
    size: float
    price_coin: float
    t_left_years: float = 0.0
    iv: float | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.option_type not in (CALL, PUT, UNDERLYING):
            raise ValueError(f"leg {self.instrument}: option_type must be call, put or underlying")
        if self.side not in (1, -1):
            raise ValueError(f"leg {self.instrument}: side must be +1 (buy) or -1 (sell)")
        if not (self.size > 0):
            raise ValueError(f"leg {self.instrument}: size must be positive")
        if self.t_left_years > 0 and not (self.iv and self.iv > 0):
            raise ValueError(f"leg {self.instrument}: a leg alive after the evaluation date needs an iv")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_price(self, price_coin: float) -> "Leg":
        return replace(self, price_coin=float(price_coin))


def _arrays(legs: Sequence[Leg]):
    kind = np.array([leg.option_type for leg in legs])
    strike = np.array([float(leg.strike) for leg in legs])
    qty = np.array([leg.side * float(leg.size) for leg in legs])
    t_left = np.array([float(leg.t_left_years) for leg in legs])
    iv = np.array([float(leg.iv) if leg.iv else 0.0 for leg in legs])
    return kind, strike, qty, t_left, iv


def black76_coin(forward_usd, strike_usd, t_years, vol, is_call):
    """Black-76 undiscounted price in coin (C(F)/F), zero rate (`qortcli.quant.black76.price_coin`)."""
    return black76.price_coin(forward_usd, strike_usd, t_years, vol, is_call)


def payoff_coin(legs: Sequence[Leg], s_usd) -> np.ndarray:
    """Value of the position in coin at the evaluation expiry, for index prices `s_usd` (array, USD > 0)."""
    s = np.atleast_1d(np.asarray(s_usd, dtype=float))[:, None]
    kind, strike, qty, t_left, iv = _arrays(legs)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_contract = np.where(kind == CALL, np.maximum(s - strike, 0.0) / s,
                                np.where(kind == PUT, np.maximum(strike - s, 0.0) / s, 1.0))
    later = (t_left > 0) & (kind != UNDERLYING)
    if later.any():
        value = black76_coin(s, strike[later], t_left[later], iv[later], kind[later] == CALL)
        per_contract[:, later] = value
    return per_contract @ qty


def payoff_usd(legs: Sequence[Leg], s_usd) -> np.ndarray:
    """Value of the position in USD at the evaluation expiry (coin value × S)."""
    s = np.atleast_1d(np.asarray(s_usd, dtype=float))
    return payoff_coin(legs, s) * s


def net_premium_coin(legs: Sequence[Leg]) -> float:
    """Σ side·size·price_coin: positive = debit paid, negative = credit received (coin)."""
    return float(sum(leg.side * leg.size * leg.price_coin for leg in legs))


def net_premium_usd(legs: Sequence[Leg], index0_usd: float) -> float:
    """Net premium (spot-USD) converted at the entry spot index `index0_usd` (USD)."""
    return net_premium_coin(legs) * float(index0_usd)


def pnl_coin(legs: Sequence[Leg], s_usd) -> np.ndarray:
    """P/L at the evaluation expiry in coin: payoff_coin(S) − net premium (coin)."""
    return payoff_coin(legs, s_usd) - net_premium_coin(legs)


def pnl_usd(legs: Sequence[Leg], s_usd, index0_usd: float) -> np.ndarray:
    """P/L at the evaluation expiry in USD: payoff_usd(S) − net premium converted at `index0_usd`."""
    return payoff_usd(legs, s_usd) - net_premium_usd(legs, index0_usd)


def _intrinsic_only(legs: Sequence[Leg]) -> bool:
    return all(leg.t_left_years <= 0 or leg.option_type == UNDERLYING for leg in legs)


# ---------------------------------------------------------------- piecewise-linear machinery

def _pl_roots(points: np.ndarray, values: np.ndarray, end_slope: float) -> list[float]:
    """Roots of a continuous piecewise-linear function known at sorted `points` (first one = domain
    start, excluded as a root) and with slope `end_slope` after the last point."""
    roots: list[float] = []
    for i in range(len(points) - 1):
        a, b, fa, fb = points[i], points[i + 1], values[i], values[i + 1]
        if fb == 0.0:
            roots.append(float(b))
        elif fa * fb < 0:
            roots.append(float(a + (b - a) * fa / (fa - fb)))
    last, f_last = points[-1], values[-1]
    if end_slope != 0 and f_last * end_slope < 0:
        roots.append(float(last - f_last / end_slope))
    out: list[float] = []
    for r in sorted(roots):
        if r > points[0] and (not out or abs(r - out[-1]) > 1e-9 * max(1.0, abs(r))):
            out.append(r)
    return out


def _usd_linear_pieces(legs, index0_usd):
    """USD P/L knots: S = 0 and every strike; slope for S→∞ is Σ qty over calls and the underlying."""
    kind, strike, qty, _, _ = _arrays(legs)
    knots = np.unique(np.concatenate([[0.0], strike[kind != UNDERLYING]]))
    s_pos = np.where(knots > 0, knots, 1.0)
    values = pnl_usd(legs, s_pos, index0_usd)
    if knots[0] == 0.0:  # S→0 limit: calls 0, puts K, underlying 0
        values[0] = float(np.sum(qty * np.where(kind == PUT, strike, 0.0))) - net_premium_usd(legs, index0_usd)
    slope_inf = float(np.sum(qty[(kind == CALL) | (kind == UNDERLYING)]))
    return knots, values, slope_inf


def _coin_linear_pieces(legs):
    """Coin P/L is piecewise linear in x = 1/S: call (1 − Kx)^+, put (Kx − 1)^+, underlying 1.

    Knots x = 0 (S→∞) and x = 1/K; slope for x→∞ (S→0) is Σ qty·K over puts.
    """
    kind, strike, qty, _, _ = _arrays(legs)
    opt = kind != UNDERLYING
    xs = np.unique(np.concatenate([[0.0], 1.0 / strike[opt]]))
    values = np.empty_like(xs)
    prem = net_premium_coin(legs)
    for i, x in enumerate(xs):
        per = np.where(kind == CALL, np.maximum(1.0 - strike * x, 0.0),
                       np.where(kind == PUT, np.maximum(strike * x - 1.0, 0.0), 1.0))
        values[i] = float(per @ qty) - prem
    slope_x_inf = float(np.sum(qty[kind == PUT] * strike[kind == PUT]))
    return xs, values, slope_x_inf


def _extreme(knots, values, end_slope, at_end_limit: float, at_knot: Callable[[float], float]):
    """Max and min of a piecewise-linear function with a linear tail; returns dicts with value, at, unbounded."""
    i_max, i_min = int(np.argmax(values)), int(np.argmin(values))
    hi = {"value": float(values[i_max]), "at_usd": at_knot(knots[i_max]), "unbounded": False}
    lo = {"value": float(values[i_min]), "at_usd": at_knot(knots[i_min]), "unbounded": False}
    if end_slope > 0:
        hi = {"value": float("inf"), "at_usd": at_end_limit, "unbounded": True}
    elif end_slope < 0:
        lo = {"value": float("-inf"), "at_usd": at_end_limit, "unbounded": True}
    return hi, lo


# ---------------------------------------------------------------- numeric fallback (calendars)

def _numeric_grid(legs, index0_usd, lo=1e-3, hi=50.0, n=6001):
    ref = max([leg.strike for leg in legs if leg.option_type != UNDERLYING] + [index0_usd])
    return np.geomspace(ref * lo, ref * hi, n)


def _numeric_roots(fn: Callable[[np.ndarray], np.ndarray], grid: np.ndarray) -> list[float]:
    from scipy.optimize import brentq

    vals = fn(grid)
    roots = []
    for i in np.nonzero(np.sign(vals[:-1]) * np.sign(vals[1:]) < 0)[0]:
        roots.append(float(brentq(lambda s: float(fn(np.array([s]))[0]), grid[i], grid[i + 1], xtol=1e-10)))
    for i in np.nonzero(vals == 0.0)[0]:
        roots.append(float(grid[i]))
    return sorted(roots)


def _numeric_extremes(fn, grid, slope_at_zero_limit: float, slope_at_inf: float):
    """Max/min of fn over the grid, refined; tails flagged unbounded from the asymptotic slopes."""
    from scipy.optimize import minimize_scalar

    vals = fn(grid)
    out = []
    for sign in (1.0, -1.0):
        i = int(np.argmax(sign * vals))
        a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        res = minimize_scalar(lambda s: -sign * float(fn(np.array([s]))[0]), bounds=(a, b), method="bounded",
                              options={"xatol": 1e-8 * b})
        if i in (0, len(grid) - 1):  # monotone towards a tail: the extreme is the limit S→0 or S→∞
            value, at = vals[i], (0.0 if i == 0 else float("inf"))
        elif -res.fun >= sign * vals[i]:
            value, at = sign * -res.fun, float(res.x)
        else:
            value, at = vals[i], grid[i]
        out.append({"value": float(value), "at_usd": float(at), "unbounded": False})
    hi, lo = out
    if slope_at_inf > 0:
        hi = {"value": float("inf"), "at_usd": float("inf"), "unbounded": True}
    elif slope_at_inf < 0:
        lo = {"value": float("-inf"), "at_usd": float("inf"), "unbounded": True}
    if slope_at_zero_limit > 0:
        hi = {"value": float("inf"), "at_usd": 0.0, "unbounded": True}
    elif slope_at_zero_limit < 0:
        lo = {"value": float("-inf"), "at_usd": 0.0, "unbounded": True}
    return hi, lo


# ---------------------------------------------------------------- public metrics

@dataclass(frozen=True)
class Extreme(Record):
    """One extreme of a P/L at expiry: `value` (coin or USD; None when `unbounded`), `at_usd` the index
    price where it is attained (USD; 0.0 for the limit S→0, inf for the limit S→∞), `unbounded`."""

    value: float | None
    at_usd: float
    unbounded: bool

    @property
    def limit(self) -> str | None:
        """"S→0" / "S→∞" when the extreme is a limit rather than attained at a price, else None."""
        if self.at_usd == 0.0:
            return "S→0"
        if np.isinf(self.at_usd):
            return "S→∞"
        return None


@dataclass(frozen=True)
class Extremes(Record):
    """Max profit and max loss (the minimum P/L, negative for a loss) of one unit (coin or USD)."""

    max_profit: Extreme
    max_loss: Extreme


def _as_extreme(d: dict) -> Extreme:
    return Extreme(value=None if d["unbounded"] else float(d["value"]), at_usd=float(d["at_usd"]),
                   unbounded=bool(d["unbounded"]))


def extremes_usd(legs: Sequence[Leg], index0_usd: float) -> Extremes:
    """Max profit and max loss of the USD P/L at expiry over S in (0, ∞) (USD).

    max_loss.value is the minimum P/L (negative for a loss); an unbounded side has value None and at_usd
    inf (S→∞) or 0 (S→0).
    """
    if _intrinsic_only(legs):
        knots, values, slope = _usd_linear_pieces(legs, index0_usd)
        hi, lo = _extreme(knots, values, slope, float("inf"), float)
    else:
        kind, _, qty, _, _ = _arrays(legs)
        slope_inf = float(np.sum(qty[(kind == CALL) | (kind == UNDERLYING)]))
        hi, lo = _numeric_extremes(lambda s: pnl_usd(legs, s, index0_usd), _numeric_grid(legs, index0_usd),
                                   0.0, slope_inf)
    return Extremes(_as_extreme(hi), _as_extreme(lo))


def extremes_coin(legs: Sequence[Leg]) -> Extremes:
    """Max profit and max loss of the coin P/L at expiry over S in (0, ∞) (coin; see `extremes_usd`).

    The S→∞ limit is finite in coin (calls tend to 1 coin): it is reported with at_usd = inf
    (approached, not attained). Puts make the coin P/L unbounded as S→0 (at_usd = 0).
    """
    if _intrinsic_only(legs):
        xs, values, slope = _coin_linear_pieces(legs)
        hi, lo = _extreme(xs, values, slope, 0.0, lambda x: float("inf") if x == 0 else float(1.0 / x))
    else:
        kind, strike, qty, _, _ = _arrays(legs)
        slope0 = float(np.sum(qty[kind == PUT] * strike[kind == PUT]))
        hi, lo = _numeric_extremes(lambda s: pnl_coin(legs, s), _numeric_grid(legs, 1.0), slope0, 0.0)
        ref = np.array([1e12])  # S→∞ limit of a calendar in coin (finite): compare with the interior
        lim = float(pnl_coin(legs, ref)[0])
        if not hi["unbounded"] and lim > hi["value"]:
            hi = {"value": lim, "at_usd": float("inf"), "unbounded": False}
        if not lo["unbounded"] and lim < lo["value"]:
            lo = {"value": lim, "at_usd": float("inf"), "unbounded": False}
    return Extremes(_as_extreme(hi), _as_extreme(lo))


def breakevens_usd(legs: Sequence[Leg], index0_usd: float) -> list[float]:
    """Index prices S (USD) where the USD P/L at expiry is zero, ascending."""
    if _intrinsic_only(legs):
        knots, values, slope = _usd_linear_pieces(legs, index0_usd)
        return _pl_roots(knots, values, slope)
    return _numeric_roots(lambda s: pnl_usd(legs, s, index0_usd), _numeric_grid(legs, index0_usd))


def breakevens_coin(legs: Sequence[Leg]) -> list[float]:
    """Index prices S (USD) where the coin P/L at expiry is zero, ascending (equal to the roots of
    pnl_coin(S)·S, the coin account valued in USD; not those of `pnl_usd` unless the premium is 0)."""
    if _intrinsic_only(legs):
        xs, values, slope = _coin_linear_pieces(legs)
        roots_x = _pl_roots(xs, values, slope)
        return sorted(1.0 / x for x in roots_x if x > 0)
    return _numeric_roots(lambda s: pnl_coin(legs, s), _numeric_grid(legs, 1.0))


@dataclass(frozen=True)
class NetGreeks(Record):
    """Σ side·size·greek over the legs; None where a leg lacks what the greek needs.

    delta          forward delta (Deribit's N(d1) set), coin per coin; a held coin adds 1. With the
                   forwards moving with the index it is also d(spot-USD value)/dS.
    gamma_fwd_usd  Deribit's gamma, per USD of forward
    vega_fwd_usd   Deribit's vega: forward-USD (d(V·F)/dσ) per vol point
    theta_fwd_usd  forward-USD per day
    delta_coin, gamma_coin, vega_coin, theta_coin   the coin premium's greeks (coin per USD, per USD²,
                   per vol point, per day); a held coin adds 0
    vega_spot_usd  vega_coin × index: spot-USD per vol point, the unit of premium_usd / mark_usd
    theta_spot_usd theta_coin × index: spot-USD per day
    """

    delta: float | None
    gamma_fwd_usd: float | None
    vega_fwd_usd: float | None
    theta_fwd_usd: float | None
    delta_coin: float | None
    gamma_coin: float | None
    vega_coin: float | None
    theta_coin: float | None
    vega_spot_usd: float | None
    theta_spot_usd: float | None


_FWD_NAMES = {"gamma_fwd_usd": "gamma", "vega_fwd_usd": "vega", "theta_fwd_usd": "theta"}


def _leg_greek(leg: Leg, greeks: dict | None, name: str, forward_usd: float | None):
    """One leg's greek `name` (per contract); coin vega/theta fall back to the forward-USD ones / F."""
    if leg.option_type == UNDERLYING:
        return 1.0 if name == "delta" else 0.0
    greeks = greeks or {}
    value = greeks.get(_FWD_NAMES.get(name, name))
    if value is None and name in ("vega_coin", "theta_coin") and forward_usd:
        usd = greeks.get(name.removesuffix("_coin"))
        value = None if usd is None else float(usd) / float(forward_usd)
    return value


def net_greeks(legs: Sequence[Leg], per_leg: Sequence[dict | None], *, index_usd: float | None = None,
               forwards_usd: Sequence[float | None] | None = None) -> NetGreeks:
    """Net greeks of a position (units in `NetGreeks`): per-leg greeks (dicts with Deribit's forward-USD
    names delta, gamma, vega, theta and the coin ones delta_coin, gamma_coin, vega_coin, theta_coin)
    times side·size. `forwards_usd` (per leg, USD) turns a forward-USD vega/theta into coin when the coin
    one is missing; `index_usd` (spot, USD) converts the coin vega and theta into spot-USD."""
    forwards = list(forwards_usd) if forwards_usd is not None else [None] * len(legs)
    totals: dict = {}
    for name in ("delta", "gamma_fwd_usd", "vega_fwd_usd", "theta_fwd_usd", "delta_coin", "gamma_coin",
                 "vega_coin", "theta_coin"):
        total = 0.0
        for leg, greeks, fwd in zip(legs, per_leg, forwards):
            value = _leg_greek(leg, greeks, name, fwd)
            if value is None:
                total = None
                break
            total += leg.side * leg.size * float(value)
        totals[name] = total
    for name, coin in (("vega_spot_usd", "vega_coin"), ("theta_spot_usd", "theta_coin")):
        totals[name] = None if totals[coin] is None or index_usd is None else totals[coin] * float(index_usd)
    return NetGreeks(**totals)


# ---------------------------------------------------------------- probability of profit

def rn_cdf(strikes_usd, forward_usd: float, t_years: float, vol_fn: Callable[[np.ndarray], np.ndarray],
           dvol_dk_fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Risk-neutral P(S_T ≤ K) (probability) from a smile: `vol_fn(K)` the vols (fractions) at strikes K
    (USD) and `dvol_dk_fn(K)` its analytic slope dσ/d ln K; zero rate (Deribit's forwards).

    1 − the skew-aware digital of `qortcli.quant.black76.prob_above` with w = σ²T and ∂w/∂k = 2σT dσ/dk
    (P(S_T > K) = −dC/dK = N(d2) − φ(d2)·√T·dσ/dk), clipped to [0, 1]; K ≤ 0 → 0; NaN where the smile
    gives no vol.
    """
    k = np.atleast_1d(np.asarray(strikes_usd, dtype=float))
    out = np.zeros_like(k)
    ok = k > 0
    if not ok.any():
        return out
    kk = k[ok]
    sigma = np.asarray(vol_fn(kk), dtype=float)
    slope = np.asarray(dvol_dk_fn(kk), dtype=float)
    t = max(float(t_years), 0.0)
    w = sigma * sigma * t
    above = black76.prob_above(np.log(kk / forward_usd), w, 2.0 * sigma * t * slope)
    out[ok] = 1.0 - np.asarray(above)
    return out


POP_OK, POP_EXPIRED, POP_NO_DISTRIBUTION = "ok", "expired", "no_distribution"


@dataclass(frozen=True)
class ProbabilityOfProfit(Record):
    """Risk-neutral probability (0..1) that the USD P/L at expiry is > 0, and why it may be NaN:
    `reason` "ok", "expired" (t_years ≤ 0: nothing left to price) or "no_distribution" (the CDF gave no
    value at a breakeven, e.g. no usable vol there)."""

    value: float
    reason: str


def probability_of_profit(legs: Sequence[Leg], index0_usd: float, forward_usd: float, t_years: float,
                          vol_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                          cdf_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                          dvol_dk_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> ProbabilityOfProfit:
    """Risk-neutral probability that the USD P/L at expiry is > 0 (`ProbabilityOfProfit`).

    The USD P/L's breakevens (USD) split (0, ∞) into intervals of constant sign; the sign of each is read
    at its midpoint (or 2× its start for the last), and POP = Σ over positive intervals of CDF(b) − CDF(a)
    with the CDF `cdf_fn(K) = P(S_T ≤ K)` if given, else `rn_cdf` of the smile `vol_fn` with its slope
    `dvol_dk_fn` (both needed: pass a zero slope for a flat smile). `t_years` in years.
    """
    if cdf_fn is None:
        if vol_fn is None or dvol_dk_fn is None:
            raise ValueError("probability_of_profit needs cdf_fn, or vol_fn with its slope dvol_dk_fn")

        def cdf_fn(k):
            return rn_cdf(k, forward_usd, t_years, vol_fn, dvol_dk_fn)

    if not (t_years > 0):
        return ProbabilityOfProfit(float("nan"), POP_EXPIRED)
    edges = [0.0] + breakevens_usd(legs, index0_usd) + [float("inf")]
    pop = 0.0
    for a, b in zip(edges[:-1], edges[1:]):
        probe = 0.5 * (a + b) if np.isfinite(b) else (2.0 * a if a > 0 else forward_usd)
        if a == 0.0 and np.isfinite(b):
            probe = 0.5 * b
        if float(pnl_usd(legs, np.array([probe]), index0_usd)[0]) > 0:
            cdf_b = 1.0 if not np.isfinite(b) else float(np.atleast_1d(cdf_fn(np.array([b])))[0])
            cdf_a = 0.0 if a == 0.0 else float(np.atleast_1d(cdf_fn(np.array([a])))[0])
            pop += cdf_b - cdf_a
    if not np.isfinite(pop):
        return ProbabilityOfProfit(float("nan"), POP_NO_DISTRIBUTION)
    return ProbabilityOfProfit(float(min(max(pop, 0.0), 1.0)), POP_OK)


def payoff_grid(legs: Sequence[Leg], index0_usd: float, forward_usd: float, lo: float = 0.5, hi: float = 1.5,
                n: int = 201) -> dict:
    """P/L at expiry on n index prices (USD) from lo·F to hi·F: {"s_usd", "pnl_coin", "pnl_usd", "payoff_coin",
    "payoff_usd"} as lists (coin and spot-USD, for plotting)."""
    s = np.linspace(lo * forward_usd, hi * forward_usd, n)
    return {"s_usd": s.tolist(), "payoff_coin": payoff_coin(legs, s).tolist(),
            "payoff_usd": payoff_usd(legs, s).tolist(), "pnl_coin": pnl_coin(legs, s).tolist(),
            "pnl_usd": pnl_usd(legs, s, index0_usd).tolist()}


@dataclass(frozen=True)
class StrategyMetrics(Record):
    """Premium, extremes and breakevens of a strategy at expiry.

    net_premium_coin (coin; > 0 debit) and net_premium_usd (spot-USD at the entry index) include a held
    coin bought at 1 coin; option_premium_* count the option legs only. max_profit_/max_loss_ usd/coin are
    `Extreme`s; breakevens_usd / breakevens_coin are index prices (USD) where the USD / coin P/L is zero.
    `to_document()` gives the stored flat fields (`max_profit_usd`, `_unbounded`, `_at` — None for S→∞).
    """

    net_premium_coin: float
    net_premium_usd: float
    option_premium_coin: float
    option_premium_usd: float
    max_profit_usd: Extreme
    max_loss_usd: Extreme
    max_profit_coin: Extreme
    max_loss_coin: Extreme
    breakevens_usd: tuple
    breakevens_coin: tuple

    def to_document(self) -> dict:
        """The flat stored fields (docs/CONTRACTS.md "strategy_suggestions" metrics)."""
        out = {k: getattr(self, k) for k in ("net_premium_coin", "net_premium_usd", "option_premium_coin",
                                             "option_premium_usd")}
        for name in ("max_profit_usd", "max_loss_usd", "max_profit_coin", "max_loss_coin"):
            e: Extreme = getattr(self, name)
            out[name] = e.value
            out[f"{name}_unbounded"] = e.unbounded
            out[f"{name}_at"] = None if np.isinf(e.at_usd) else e.at_usd
        out["breakevens_usd"] = list(self.breakevens_usd)
        out["breakevens_coin"] = list(self.breakevens_coin)
        return out


def strategy_metrics(legs: Sequence[Leg], index0_usd: float) -> StrategyMetrics:
    """Premium, max P/L (coin and USD) and breakevens (coin and USD) of a strategy at expiry.

    `net_premium_*` includes a held coin bought at 1 coin (index USD); `option_premium_*` counts the
    option legs only (what a holder actually pays or receives). `index0_usd` is the entry spot index.
    """
    ex_usd, ex_coin = extremes_usd(legs, index0_usd), extremes_coin(legs)
    options = [leg for leg in legs if leg.option_type != UNDERLYING]
    return StrategyMetrics(
        net_premium_coin=net_premium_coin(legs), net_premium_usd=net_premium_usd(legs, index0_usd),
        option_premium_coin=net_premium_coin(options), option_premium_usd=net_premium_usd(options, index0_usd),
        max_profit_usd=ex_usd.max_profit, max_loss_usd=ex_usd.max_loss,
        max_profit_coin=ex_coin.max_profit, max_loss_coin=ex_coin.max_loss,
        breakevens_usd=tuple(breakevens_usd(legs, index0_usd)), breakevens_coin=tuple(breakevens_coin(legs)))
