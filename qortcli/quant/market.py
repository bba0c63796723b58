"""Market positioning of one options chain: open interest and volume by strike, put/call ratios, max pain,
dealer gamma and delta exposure with the gamma flip, implied moves, and open-interest changes between chains.

Pure numpy/pandas; Black-76 only through `qortcli.quant.black76`. Input: a chain frame with the columns of
the store's chain frame (one row per option) — `instrument, is_call, strike_usd, expiry` (UTC), `expiry_code,
t_years` (years on the caller's day-count basis), `forward_usd, expiry_forward_usd, index_usd, mark_coin,
mark_iv` (fraction), `open_interest_coin, volume_coin` (contracts; one Deribit option contract is one coin).
Options already expired (`t_years <= 0`) are left out and counted. Missing open interest or volume counts as 0.

Units and sources
-----------------
- Contracts are coin (`_coin`). USD notional (`_usd` on OI and volume) = contracts × the snapshot's **spot
  index** S (median of `index_usd`): the coin the contracts are written on, valued at today's spot. It is not
  Deribit's `volume_usd`, which is premium traded.
- Put/call ratios: put contracts / call contracts (NaN when there are no calls).
- Everything that uses a vol or a premium comes from Deribit's **marks** (`mark_iv`, `mark_coin`), never from
  the SVI fit: those fields carry `_marks` in their names.

Max pain (no vols: open interest only)
--------------------------------------
The settlement price S minimising the total payout to option holders of one expiry (or of all expiries
settled at one common price, for the "ALL" rows). Two payoffs, both reported:

- coin-settled (Deribit's): a call pays max(S − K, 0)/S coin per contract, a put max(K − S, 0)/S;
  `max_pain_coin_payoff_usd` is the price (USD) minimising the total coin payout `max_pain_payout_coin`;
- USD (linear) payoff: max(S − K, 0) USD per call; `max_pain_usd_payoff_usd`, payout `max_pain_payout_usd`.

The USD payout f(S) is convex and piecewise linear with kinks at the strikes, so its minimum is at a listed
strike. The coin payout f(S)/S is not piecewise linear, but on every segment between adjacent strikes
f(S) = a + bS, so f(S)/S = b + a/S is monotone, and below the lowest (above the highest) strike it falls (rises)
with S: its minimum is at a listed strike as well. Both payoffs are searched over every listed strike AND a
geometric grid of `max_pain_grid_points` prices spanning the strikes; the lower value is reported and
`*_source` says which search found it ("strike", or "grid" only if the grid was strictly lower). Settlement on
Deribit is the 30-minute TWAP of the index; max pain treats S as that settlement price.

Gamma and delta exposure (marks, sticky strike)
-----------------------------------------------
A coin-settled option's value in coin is V(F) = C(F)/F (Black-76, r = 0 as Deribit prices; C the USD price on
the forward F). Held as a position, its USD value at spot S is U = V(F)·S. With the forward moving with spot,
F = cS (c = F/S fixed),

    U(S) = C(cS)·S/(cS) = C(cS)/c
    dU/dS   = C'(F)·c/c      = N(d1)               (put: N(d1) − 1): Black-76 delta
    d²U/dS² = C''(F)·c²/c    = (F/S)·φ(d1)/(Fσ√T) = φ(d1)/(Sσ√T)

— the same as through the coin greeks of V: d²U/dS² = c·(2 dV/dF + F d²V/dF²), with dV/dF = (N(d1) − V)/F and
d²V/dF² = φ(d1)/(F²σ√T) − 2(N(d1) − V)/F². So the USD gamma of a coin-settled option is the Black-76 gamma
(per USD of forward) times F/S. Per contract held with sign s (the dealer's position) and open interest OI:

- `dex_usd_per_pct_marks` = s·OI·dU/dS·S/100: USD change of the dealers' option value for a +1 % spot move;
- `gex_usd_per_pct_marks` = s·OI·d²U/dS²·S²/100: USD change of the dealers' delta (coin × S) for a +1 % move.
  Positive: dealers hedge against the move (sell into rallies); negative: with it.

Dealer sign convention (`DealerSigns`, configurable): by default **dealers are long the calls and short the
puts** ("long-calls-short-puts": customers net short calls, e.g. overwriting, and net long puts, i.e. hedges),
s = +1 for calls and −1 for puts. Alternatives: "short-calls-long-puts", "long-all", "short-all".

The gamma profile reprices every option with open interest on a grid of spot levels S' = m·S (`SpotGrid`,
default m = 0.70 … 1.30 in 41 levels, 1.5 % apart) with each forward moving proportionally (F' = m·F), the same
T and its own mark IV (sticky strike), vectorised over grid × options. The gamma flip (`gamma_flip_usd_marks`) is the
spot level where the net exposure changes sign — the crossing nearest the current spot, located on the grid and
refined inside the bracketing cell by Illinois regula falsi (each step reprices every option once); NaN when
the net exposure keeps one sign over the whole grid.

Implied move (marks)
--------------------
Per expiry, the ATM straddle at the listed strike **nearest the forward** (no interpolation) that has both a
call and a put mark: `straddle_coin_marks` = call + put marks (coin); `implied_move_usd_marks` = the straddle's
USD premium paid now, straddle_coin × S; `implied_move_fraction_marks` = that / forward (a fraction: ±0.042 =
±4.2 %). A straddle prices the expected absolute move E|F_T − K| ≈ 0.8·σ√T·F, less than one sigma. The 1-σ range
from the ATM IV (`atm_iv_marks`: mean of that strike's call and put mark IVs) is lognormal:
F·exp(±σ√T) (`one_sigma_low_usd_marks`, `one_sigma_high_usd_marks`; `one_sigma_fraction_marks` = σ√T).

OI changes (`oi_changes(current, earlier)`) compare two chains instrument by instrument; options of expiries
that settled in between are counted as expired, not as removed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import NamedTuple

import numpy as np
import pandas as pd

from qortcli.quant import black76
from qortcli.quant.dealer import DEALER_CONVENTIONS, DEALER_DESCRIPTIONS, DEFAULT_DEALER  # noqa: F401 (re-exported)

__all__ = ["REQUIRED_COLUMNS", "DEALER_CONVENTIONS", "DEALER_DESCRIPTIONS", "DEFAULT_DEALER", "DealerSigns", "SpotGrid", "MarketTotals",
           "MarketStatistics", "OIChangeTotals", "OIChanges", "EXPIRY_COLUMNS", "STRIKE_COLUMNS", "ALL",
           "spot_index_usd", "market_statistics", "market_totals", "oi_changes"]

ALL = "ALL"
REQUIRED_COLUMNS = ("instrument", "is_call", "strike_usd", "expiry", "expiry_code", "t_years", "forward_usd",
                    "expiry_forward_usd", "index_usd", "mark_coin", "mark_iv", "open_interest_coin", "volume_coin")

#: columns of `MarketStatistics.expiries` / `.overall` (one row per expiry; "ALL": all expiries together)
EXPIRY_COLUMNS = (
    "expiry", "expiry_code", "t_years", "forward_usd", "n_options", "n_strikes",
    "oi_calls_coin", "oi_puts_coin", "oi_calls_usd", "oi_puts_usd",
    "volume_calls_coin", "volume_puts_coin", "volume_calls_usd", "volume_puts_usd", "pcr_oi", "pcr_volume",
    "max_pain_coin_payoff_usd", "max_pain_coin_payoff_source", "max_pain_payout_coin",
    "max_pain_usd_payoff_usd", "max_pain_usd_payoff_source", "max_pain_payout_usd",
    "gex_calls_usd_per_pct_marks", "gex_puts_usd_per_pct_marks", "gex_usd_per_pct_marks", "dex_usd_per_pct_marks",
    "gamma_flip_usd_marks",
    "atm_strike_usd", "straddle_coin_marks", "implied_move_usd_marks", "implied_move_fraction_marks",
    "atm_iv_marks", "one_sigma_fraction_marks", "one_sigma_low_usd_marks", "one_sigma_high_usd_marks")

#: columns of `MarketStatistics.by_strike` (per expiry and strike) / `.all_by_strike` (per strike)
STRIKE_COLUMNS = (
    "expiry", "expiry_code", "strike_usd", "call_instrument", "put_instrument",
    "oi_calls_coin", "oi_puts_coin", "oi_calls_usd", "oi_puts_usd",
    "volume_calls_coin", "volume_puts_coin", "volume_calls_usd", "volume_puts_usd",
    "payout_at_strike_coin", "payout_at_strike_usd",
    "gex_calls_usd_per_pct_marks", "gex_puts_usd_per_pct_marks", "gex_usd_per_pct_marks", "dex_usd_per_pct_marks")


@dataclass(frozen=True)
class DealerSigns:
    """The dealers' position per option type: +1 long the open interest, −1 short it.

    Default (`DEFAULT_DEALER`, "long-calls-short-puts"): dealers long calls and short puts, i.e. customers net
    short calls and net long puts."""

    calls: int = 1
    puts: int = -1

    def __post_init__(self):
        if self.calls not in (1, -1) or self.puts not in (1, -1):
            raise ValueError(f"dealer signs must be +1 or -1, got calls={self.calls!r}, puts={self.puts!r}")

    @property
    def name(self) -> str:
        return next(k for k, v in DEALER_CONVENTIONS.items() if v == (self.calls, self.puts))

    @property
    def description(self) -> str:
        return DEALER_DESCRIPTIONS[self.name]

    @classmethod
    def parse(cls, name: "str | DealerSigns") -> "DealerSigns":
        """A convention by name (one of `DEALER_CONVENTIONS`); ValueError listing them otherwise."""
        if isinstance(name, DealerSigns):
            return name
        key = str(name).strip().lower().replace("_", "-")
        if key not in DEALER_CONVENTIONS:
            raise ValueError(f"unknown dealer convention {name!r}; use one of {', '.join(DEALER_CONVENTIONS)}")
        calls, puts = DEALER_CONVENTIONS[key]
        return cls(calls, puts)


@dataclass(frozen=True)
class SpotGrid:
    """Spot levels of the gamma profile as multiples of the current spot: `points` from `low` to `high`
    (default 0.70 … 1.30 in 1.5 % steps); the flip is refined by `refine_steps` Illinois regula-falsi steps
    inside the grid cell where the sign changes."""

    low: float = 0.70
    high: float = 1.30
    points: int = 41
    refine_steps: int = 3

    def __post_init__(self):
        if not (0 < self.low < 1 < self.high) or self.points < 3 or self.refine_steps < 0:
            raise ValueError(f"spot grid needs 0 < low < 1 < high, points >= 3, refine_steps >= 0; got {self}")

    def multiples(self) -> np.ndarray:
        return np.linspace(self.low, self.high, self.points)


@dataclass(frozen=True)
class MarketTotals:
    """Positioning totals of one chain, named for the per-snapshot summaries (docs/CONTRACTS.md
    "snapshot_summaries"): contracts in coin, USD notional at the spot index, prices in USD, GEX/DEX in USD
    per 1 % spot move (marks, dealer convention `dealer_convention`). `front` = the nearest unexpired expiry;
    `30d` = the listed expiry nearest 30 days. `market_expiries`: one small record per expiry."""

    oi_calls_coin: float
    oi_puts_coin: float
    oi_calls_usd: float
    oi_puts_usd: float
    volume_calls_coin: float
    volume_puts_coin: float
    volume_calls_usd: float
    volume_puts_usd: float
    pcr_oi: float
    pcr_volume: float
    max_pain_coin_payoff_usd: float          # all expiries settled at one price
    max_pain_usd_payoff_usd: float
    front_expiry_code: str
    max_pain_front_coin_payoff_usd: float
    max_pain_front_usd_payoff_usd: float
    implied_move_front_fraction_marks: float
    expiry_30d_code: str
    max_pain_30d_coin_payoff_usd: float
    max_pain_30d_usd_payoff_usd: float
    implied_move_30d_fraction_marks: float
    implied_move_30d_usd_marks: float
    atm_iv_30d_expiry_marks: float           # ATM mark IV of the listed expiry nearest 30 days (not interpolated)
    gex_usd_per_pct_marks: float
    dex_usd_per_pct_marks: float
    gamma_flip_usd_marks: float
    dealer_convention: str
    market_expiries: tuple = field(default_factory=tuple)

    def as_document(self) -> dict:
        """Plain Python values (NaN → None) for a store document or JSON."""
        out = asdict(self)
        out["market_expiries"] = [dict(e) for e in self.market_expiries]
        return _plain(out)


class MarketStatistics(NamedTuple):
    """Everything `market_statistics` computes for one chain (frames' columns: `EXPIRY_COLUMNS`,
    `STRIKE_COLUMNS`; units in the module docstring)."""

    spot_usd: float                 # spot index (median of index_usd), USD
    dealer: DealerSigns
    grid: SpotGrid
    expiries: pd.DataFrame          # one row per unexpired expiry, nearest first
    overall: pd.DataFrame           # one row: all expiries together (expiry_code "ALL")
    by_strike: pd.DataFrame         # one row per (expiry, strike)
    all_by_strike: pd.DataFrame     # one row per strike, all expiries summed
    gex_profile: pd.DataFrame       # index spot_usd (grid levels); columns: expiry codes and "ALL"; USD per 1 %
    totals: MarketTotals
    n_options: int                  # unexpired options used
    n_expired: int                  # rows left out: t_years <= 0
    n_without_greeks: int           # options with open interest but no usable mark IV/forward (no GEX)


class OIChangeTotals(NamedTuple):
    """Open-interest changes in contracts (coin) between two chains; `_usd` at the current spot index."""

    hours_between: float
    calls_added_coin: float         # sum of per-instrument increases
    calls_removed_coin: float       # sum of per-instrument decreases (≤ 0)
    puts_added_coin: float
    puts_removed_coin: float
    net_calls_change_coin: float
    net_puts_change_coin: float
    net_change_usd: float
    expired_calls_coin: float       # OI of expiries that settled between the two chains
    expired_puts_coin: float


class OIChanges(NamedTuple):
    """`oi_changes` result. Frames:

    - by_instrument: instrument, expiry, expiry_code, strike_usd, is_call, oi_before_coin, oi_coin,
      oi_change_coin, status ("listed" in both, "new", "gone"), sorted by |change| descending;
    - by_strike (per expiry and strike) / all_by_strike (per strike): expiry, expiry_code, strike_usd,
      oi_calls_before_coin, oi_calls_coin, oi_calls_change_coin, oi_puts_before_coin, oi_puts_coin,
      oi_puts_change_coin, oi_change_coin (calls + puts), oi_change_usd (× current spot);
    - by_expiry: expiry, expiry_code and the same sums per expiry.
    Expired instruments are in `totals` only."""

    by_instrument: pd.DataFrame
    by_strike: pd.DataFrame
    all_by_strike: pd.DataFrame
    by_expiry: pd.DataFrame
    totals: OIChangeTotals


# ----------------------------------------------------------------------------------------------- helpers

def _plain(obj):
    """numpy scalars → Python, NaN → None, pandas Timestamps → datetimes (recursively through dicts/lists)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, pd.Timestamp):
        return None if pd.isna(obj) else obj.to_pydatetime()
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj.item() if isinstance(obj, np.generic) else obj


def _check_columns(frame: pd.DataFrame, needed=REQUIRED_COLUMNS, what: str = "chain frame") -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)} (expected the store's chain frame)")


def _num(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as float64 (anything not a number → NaN)."""
    values = frame[column].to_numpy()
    if values.dtype.kind in "fiub":
        return values.astype(float, copy=False)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def _expiry_ns(column: pd.Series) -> np.ndarray:
    """An expiry column (UTC datetimes) as datetime64[ns] in UTC (NaT where missing)."""
    if not isinstance(column.dtype, pd.DatetimeTZDtype):
        column = pd.to_datetime(column, utc=True, errors="coerce")
    return column.dt.tz_convert("UTC").to_numpy(dtype="datetime64[ns]")


def _non_negative(values: np.ndarray, names: np.ndarray, column: str) -> np.ndarray:
    values = np.nan_to_num(values, nan=0.0)
    bad = np.flatnonzero(values < 0)
    if bad.size:
        raise ValueError(f"negative {column} {values[bad[0]]:g} on {names[bad[0]]} ({bad.size} row(s))")
    return values


def spot_index_usd(frame: pd.DataFrame) -> float:
    """The snapshot's spot index (USD): the median of the rows' `index_usd`; ValueError if none is finite."""
    values = _num(frame, "index_usd")
    values = values[np.isfinite(values) & (values > 0)]
    if not values.size:
        raise ValueError("chain frame has no positive index_usd (spot index): cannot value contracts in USD")
    return float(np.median(values))


def _ratio(num, den):
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _groups(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by `keys` (first key slowest): (order, group id of each sorted row, equal keys = one group)."""
    order = np.lexsort(keys[::-1])
    change = np.zeros(order.size, dtype=bool)
    for key in keys:
        k = key[order]
        change[1:] |= k[1:] != k[:-1]
    return order, np.cumsum(change)


def _segment_first(block: np.ndarray, value: np.ndarray, n_blocks: int) -> np.ndarray:
    """Per block (ids 0..n_blocks−1), the index of the smallest `value` (the first one on ties); −1 if empty."""
    out = np.full(n_blocks, -1, dtype=int)
    if not value.size:
        return out
    order = np.lexsort((np.arange(value.size), value, block))
    sorted_blocks = block[order]
    wanted = np.arange(n_blocks)
    starts = np.searchsorted(sorted_blocks, wanted, side="left")
    found = starts < order.size
    found[found] = sorted_blocks[starts[found]] == wanted[found]
    out[found] = order[starts[found]]
    return out


# ----------------------------------------------------------------------------------------------- max pain

def _max_pain(block: np.ndarray, strikes: np.ndarray, call_oi: np.ndarray, put_oi: np.ndarray, n_blocks: int,
              grid_points: int) -> dict[str, np.ndarray]:
    """Max pain per block of strikes: blocks 0..n_blocks−1 contiguous and each non-empty, strikes ascending
    within a block (USD), call/put open interest in contracts at each strike."""
    ids = np.arange(n_blocks)
    starts = np.searchsorted(block, ids, side="left")
    ends = np.searchsorted(block, ids, side="right")
    zero = np.zeros(1)
    cc = np.concatenate([zero, np.cumsum(call_oi)])
    cck = np.concatenate([zero, np.cumsum(call_oi * strikes)])
    pc = np.concatenate([zero, np.cumsum(put_oi)])
    pck = np.concatenate([zero, np.cumsum(put_oi * strikes)])
    width = 2.0 * float(strikes.max()) + 1.0          # block × width + price: keys of different blocks never overlap
    keys = block * width + strikes

    def payout_usd(s: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Total USD payout Σ c (s − K)⁺ + Σ p (K − s)⁺ of block b's strikes at settlement price s."""
        j = np.searchsorted(keys, b * width + s, side="right")       # first strike of b above s
        st, en = starts[b], ends[b]
        return s * (cc[j] - cc[st]) - (cck[j] - cck[st]) + (pck[en] - pck[j]) - s * (pc[en] - pc[j])

    at_strike_usd = payout_usd(strikes, block)
    at_strike_coin = at_strike_usd / strikes
    has = (cc[ends] - cc[starts] + pc[ends] - pc[starts]) > 0
    lo, hi = strikes[starts], strikes[ends - 1]
    grid = lo[:, None] * (hi / lo)[:, None] ** np.linspace(0.0, 1.0, grid_points)[None, :]
    grid_usd = payout_usd(grid.ravel(), np.repeat(ids, grid_points)).reshape(grid.shape)
    out = {"payout_at_strike_usd": at_strike_usd, "payout_at_strike_coin": at_strike_coin}
    for label, at_strike, on_grid in (("usd", at_strike_usd, grid_usd), ("coin", at_strike_coin, grid_usd / grid)):
        best = _segment_first(block, at_strike, n_blocks)
        strike_value, strike_price = at_strike[best], strikes[best]
        g = np.argmin(on_grid, axis=1)
        grid_value, grid_price = on_grid[ids, g], grid[ids, g]
        use_grid = grid_value < strike_value
        out[f"max_pain_{label}_payoff_usd"] = np.where(has, np.where(use_grid, grid_price, strike_price), np.nan)
        out[f"max_pain_payout_{label}"] = np.where(has, np.where(use_grid, grid_value, strike_value), np.nan)
        out[f"max_pain_{label}_payoff_source"] = np.where(has, np.where(use_grid, "grid", "strike"), "")
    return out


# ----------------------------------------------------------------------------------------------- gamma

def _gex_profile(F, K, T, iv, pos, spot, e, n_exp, grid: SpotGrid):
    """Net GEX (USD per 1 %) on the spot grid per expiry and for all expiries (G × (n_exp + 1)), and the flip
    level (USD) of each column: the sign change nearest spot, refined by Illinois regula falsi in its cell."""
    m = grid.multiples()
    # Gamma does not depend on the option type: options with the same forward, strike, time and vol (a call and
    # its put, mostly) are repriced once, with their weights summed — the same numbers, about a third fewer
    # evaluations.
    same, inverse = np.unique(np.column_stack([e, F, K, T, iv]), axis=0, return_inverse=True)
    weight = np.bincount(inverse.ravel(), weights=pos * F * spot / 100.0, minlength=len(same))
    e, F, K, T, iv = same[:, 0].astype(int), same[:, 1], same[:, 2], same[:, 3], same[:, 4]
    kind = np.ones(F.size, dtype=bool)
    onehot = np.zeros((F.size, n_exp))
    onehot[np.arange(F.size), e] = 1.0
    # GEX(mS) = s·OI·(F/S)·Γ_B76(mF)·(mS)²/100 = weight·m²·Γ_B76(mF), weight = s·OI·F·S/100

    def gex_matrix(levels):
        """GEX at spot multiples `levels` (rows × distinct options)."""
        return black76.forward_gamma(F[None, :] * levels, K, T, iv) * weight * levels * levels

    coarse = gex_matrix(m[:, None]) @ onehot                                        # G × n_exp
    profile = np.column_stack([coarse, coarse.sum(axis=1)])
    n_col = n_exp + 1
    cols = np.arange(n_col)
    sign = np.sign(profile)
    cross = sign[:-1] * sign[1:] < 0
    dist = np.where(cross, np.abs(0.5 * (m[:-1] + m[1:]) - 1.0)[:, None], np.inf)
    cell = np.argmin(dist, axis=0)
    has = np.isfinite(dist[cell, cols])
    if not has.any():
        return profile, np.full(n_col, np.nan)
    a, b = m[cell], m[cell + 1]
    fa, fb = profile[cell, cols], profile[cell + 1, cols]
    last = np.zeros(n_col)                       # Illinois: +1 when `a` was replaced last step, −1 when `b` was
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(grid.refine_steps):
            x = np.where(has, b - fb * (b - a) / (fb - fa), 1.0)
            values = gex_matrix(np.vstack([x[e], np.broadcast_to(x[n_exp], e.shape)]))   # each option at its x
            fx = np.append(values[0] @ onehot, values[1].sum())
            keep_b = np.sign(fx) == np.sign(fa)                                    # x replaces a
            a, fa, b, fb = (np.where(keep_b, x, a), np.where(keep_b, fx, fa),
                            np.where(keep_b, b, x), np.where(keep_b, fb, fx))
            fb = np.where(keep_b & (last > 0), fb / 2.0, fb)                       # b kept twice: halve it
            fa = np.where(~keep_b & (last < 0), fa / 2.0, fa)
            last = np.where(keep_b, 1.0, -1.0)
        x = b - fb * (b - a) / (fb - fa)
    return profile, np.where(has & np.isfinite(x), spot * x, np.nan)


# ----------------------------------------------------------------------------------------------- statistics

def market_statistics(frame: pd.DataFrame, *, days_per_year: float, dealer: "DealerSigns | str" = DEFAULT_DEALER,
                      grid: SpotGrid | None = None, max_pain_grid_points: int = 1001) -> MarketStatistics:
    """Positioning statistics of one chain (one currency): per expiry, per strike, all expiries together,
    the gamma profile and the summary totals (conventions: the module docstring).

    Units: open interest and volume in contracts (`_coin`, 1 contract = 1 coin) and USD notional at the spot
    index (`_usd`); max-pain levels, strikes, forwards and the gamma flip in USD; payouts in coin or USD as
    named; GEX/DEX in USD per 1 % spot move; IVs, implied moves and σ√T as fractions; t_years in years.

    `days_per_year` is the day-count basis of the frame's `t_years` (365 for ACT/365): it picks the expiry
    nearest 30 days. ValueError (one line) on a frame without the chain columns, without unexpired options,
    or with negative open interest/volume."""
    _check_columns(frame)
    dealer = DealerSigns.parse(dealer)
    grid = grid or SpotGrid()
    if max_pain_grid_points < 2:
        raise ValueError(f"max_pain_grid_points must be >= 2, got {max_pain_grid_points}")
    if not days_per_year or days_per_year <= 0:
        raise ValueError(f"days_per_year must be positive, got {days_per_year!r}")
    t_all = _num(frame, "t_years")
    strike_all = _num(frame, "strike_usd")
    exp_all = _expiry_ns(frame["expiry"])
    live = (t_all > 0) & np.isfinite(strike_all) & (strike_all > 0) & ~np.isnat(exp_all)
    n_expired = int(np.count_nonzero(t_all <= 0))
    if not live.any():
        raise ValueError(f"chain frame has no unexpired options with a strike ({len(frame)} rows, "
                         f"{n_expired} expired)")
    index = _num(frame, "index_usd")[live]
    index = index[np.isfinite(index) & (index > 0)]
    if not index.size:
        raise ValueError("chain frame has no positive index_usd (spot index): cannot value contracts in USD")
    spot = float(np.median(index))
    names = frame["instrument"].to_numpy(dtype=object)[live]
    K, T = strike_all[live], t_all[live]
    call = frame["is_call"].to_numpy(dtype=bool)[live]
    put = ~call
    oi = _non_negative(_num(frame, "open_interest_coin")[live], names, "open_interest_coin")
    vol = _non_negative(_num(frame, "volume_coin")[live], names, "volume_coin")
    F_exp = _num(frame, "expiry_forward_usd")[live]
    F = _num(frame, "forward_usd")[live]
    F = np.where(np.isfinite(F) & (F > 0), F, F_exp)
    iv = _num(frame, "mark_iv")[live]
    mark = _num(frame, "mark_coin")[live]
    codes_all = frame["expiry_code"].to_numpy(dtype=object)[live]

    exp_values, first, e = np.unique(exp_all[live], return_index=True, return_inverse=True)
    e = e.ravel()
    n_exp = exp_values.size
    exp_codes = codes_all[first].astype(str)
    exp_t = T[first]
    exp_F = np.where(np.isfinite(F_exp[first]), F_exp[first], F[first])

    # ---- (expiry, strike) groups, and the strikes of all expiries together
    order, gid_sorted = _groups(e, K)
    gid = np.empty(order.size, dtype=int)
    gid[order] = gid_sorted
    n_groups = int(gid_sorted[-1]) + 1
    g_first = order[np.searchsorted(gid_sorted, np.arange(n_groups))]
    g_e, g_K = e[g_first], K[g_first]
    a_K, g_to_a = np.unique(g_K, return_inverse=True)
    g_to_a = g_to_a.ravel()
    n_all = a_K.size

    def per_group(weights):
        return np.bincount(gid, weights=weights, minlength=n_groups)

    g = {"oi_calls_coin": per_group(oi * call), "oi_puts_coin": per_group(oi * put),
         "volume_calls_coin": per_group(vol * call), "volume_puts_coin": per_group(vol * put)}

    # ---- greeks at spot and the gamma profile (options with open interest and a usable mark IV)
    usable = (oi > 0) & np.isfinite(iv) & (iv > 0) & np.isfinite(F) & (F > 0)
    n_without = int(np.count_nonzero((oi > 0) & ~usable))
    h = np.flatnonzero(usable)
    gex, dex = np.zeros(K.size), np.zeros(K.size)
    profile, flips = np.zeros((grid.points, n_exp + 1)), np.full(n_exp + 1, np.nan)
    if h.size:
        pos = np.where(call[h], dealer.calls, dealer.puts) * oi[h]
        gamma = black76.forward_gamma(F[h], K[h], T[h], iv[h])
        delta = black76.forward_delta(F[h], K[h], T[h], iv[h], call[h])
        gex[h] = pos * (F[h] / spot) * gamma * spot * spot / 100.0              # s·OI·d²U/dS²·S²/100
        dex[h] = pos * delta * spot / 100.0                                     # s·OI·dU/dS·S/100
        profile, flips = _gex_profile(F[h], K[h], T[h], iv[h], pos, spot, e[h], n_exp, grid)
    option_sums = {"gex_calls_usd_per_pct_marks": gex * call, "gex_puts_usd_per_pct_marks": gex * put,
                   "gex_usd_per_pct_marks": gex, "dex_usd_per_pct_marks": dex}
    g.update({k: per_group(w) for k, w in option_sums.items()})
    a = {k: np.bincount(g_to_a, weights=v, minlength=n_all) for k, v in g.items()}

    # ---- max pain: one block per expiry, then the ALL block
    pain = _max_pain(np.concatenate([g_e, np.full(n_all, n_exp)]), np.concatenate([g_K, a_K]),
                     np.concatenate([g["oi_calls_coin"], a["oi_calls_coin"]]),
                     np.concatenate([g["oi_puts_coin"], a["oi_puts_coin"]]), n_exp + 1, max_pain_grid_points)
    for key in ("payout_at_strike_coin", "payout_at_strike_usd"):
        g[key], a[key] = pain[key][:n_groups], pain[key][n_groups:]

    # ---- instruments, and the ATM straddle per expiry: the strike nearest the forward with both marks
    def per_group_value(values, rows, fill):
        out = np.full(n_groups, fill, dtype=values.dtype if fill == "" else float)
        out[gid[rows]] = values[rows]
        return out

    call_name, put_name = per_group_value(names, call, ""), per_group_value(names, put, "")
    call_mark, put_mark = per_group_value(mark, call, np.nan), per_group_value(mark, put, np.nan)
    call_iv, put_iv = per_group_value(iv, call, np.nan), per_group_value(iv, put, np.nan)
    quoted = (call_mark >= 0) & (put_mark >= 0)                 # False on NaN
    atm = _segment_first(g_e, np.where(quoted, np.abs(g_K - exp_F[g_e]), np.inf), n_exp)
    atm_ok = quoted[atm]
    straddle = np.where(atm_ok, call_mark[atm] + put_mark[atm], np.nan)
    both_iv = np.vstack([call_iv[atm], put_iv[atm]])
    n_iv = np.isfinite(both_iv).sum(axis=0)
    atm_iv = np.where(atm_ok & (n_iv > 0), np.nansum(both_iv, axis=0) / np.maximum(n_iv, 1), np.nan)
    one_sigma = atm_iv * np.sqrt(exp_t)

    # ---- per expiry (n_exp rows) and all expiries together (one row)
    ex = {k: np.bincount(g_e, weights=v, minlength=n_exp) for k, v in g.items()
          if k.startswith(("oi_", "volume_", "gex_", "dex_"))}
    al = {k: np.array([v.sum()]) for k, v in ex.items()}
    for part, sl in ((ex, slice(0, n_exp)), (al, slice(n_exp, n_exp + 1))):
        for side in ("calls", "puts"):
            part[f"oi_{side}_usd"] = part[f"oi_{side}_coin"] * spot
            part[f"volume_{side}_usd"] = part[f"volume_{side}_coin"] * spot
        part["pcr_oi"] = _ratio(part["oi_puts_coin"], part["oi_calls_coin"])
        part["pcr_volume"] = _ratio(part["volume_puts_coin"], part["volume_calls_coin"])
        for key in _PAIN_KEYS:
            part[key] = pain[key][sl]
        part["gamma_flip_usd_marks"] = flips[sl]
    exp_index = pd.DatetimeIndex(exp_values).tz_localize("UTC")
    ex.update(expiry=exp_index, expiry_code=exp_codes, t_years=exp_t, forward_usd=exp_F,
              n_options=np.bincount(e, minlength=n_exp), n_strikes=np.bincount(g_e, minlength=n_exp),
              atm_strike_usd=np.where(atm_ok, g_K[atm], np.nan), straddle_coin_marks=straddle,
              implied_move_usd_marks=straddle * spot, implied_move_fraction_marks=straddle * spot / exp_F,
              atm_iv_marks=atm_iv, one_sigma_fraction_marks=one_sigma,
              one_sigma_low_usd_marks=exp_F * np.exp(-one_sigma), one_sigma_high_usd_marks=exp_F * np.exp(one_sigma))
    nan1 = np.array([np.nan])
    al.update(expiry=pd.DatetimeIndex([pd.NaT], tz="UTC"), expiry_code=np.array([ALL]), t_years=nan1,
              forward_usd=nan1, n_options=np.array([K.size]), n_strikes=np.array([n_all]),
              **{k: nan1 for k in _MOVE_KEYS})

    # ---- per strike
    for part in (g, a):
        for side in ("calls", "puts"):
            part[f"oi_{side}_usd"] = part[f"oi_{side}_coin"] * spot
            part[f"volume_{side}_usd"] = part[f"volume_{side}_coin"] * spot
    g.update(expiry=exp_index[g_e], expiry_code=exp_codes[g_e], strike_usd=g_K, call_instrument=call_name,
             put_instrument=put_name)
    blank = np.full(n_all, "", dtype=object)
    a.update(expiry=pd.DatetimeIndex([pd.NaT] * n_all, tz="UTC"), expiry_code=np.full(n_all, ALL, dtype=object),
             strike_usd=a_K, call_instrument=blank, put_instrument=blank)

    return MarketStatistics(
        spot_usd=spot, dealer=dealer, grid=grid,
        expiries=_frame(ex, EXPIRY_COLUMNS), overall=_frame(al, EXPIRY_COLUMNS),
        by_strike=_frame(g, STRIKE_COLUMNS), all_by_strike=_frame(a, STRIKE_COLUMNS),
        gex_profile=pd.DataFrame(profile, columns=[*exp_codes, ALL],
                                 index=pd.Index(grid.multiples() * spot, name="spot_usd")),
        totals=_totals(ex, al, dealer, days_per_year), n_options=int(K.size), n_expired=n_expired,
        n_without_greeks=n_without)


_PAIN_KEYS = ("max_pain_coin_payoff_usd", "max_pain_coin_payoff_source", "max_pain_payout_coin",
              "max_pain_usd_payoff_usd", "max_pain_usd_payoff_source", "max_pain_payout_usd")
_MOVE_KEYS = ("atm_strike_usd", "straddle_coin_marks", "implied_move_usd_marks", "implied_move_fraction_marks",
              "atm_iv_marks", "one_sigma_fraction_marks", "one_sigma_low_usd_marks", "one_sigma_high_usd_marks")
_EXPIRY_RECORD = ("expiry", "expiry_code", "t_years", "forward_usd", "oi_calls_coin", "oi_puts_coin", "pcr_oi",
                  "pcr_volume", "max_pain_coin_payoff_usd", "max_pain_usd_payoff_usd", "gex_usd_per_pct_marks",
                  "gamma_flip_usd_marks", "implied_move_fraction_marks", "atm_iv_marks")
_OVERALL_TOTALS = ("oi_calls_coin", "oi_puts_coin", "oi_calls_usd", "oi_puts_usd", "volume_calls_coin",
                   "volume_puts_coin", "volume_calls_usd", "volume_puts_usd", "pcr_oi", "pcr_volume",
                   "max_pain_coin_payoff_usd", "max_pain_usd_payoff_usd", "gex_usd_per_pct_marks",
                   "dex_usd_per_pct_marks", "gamma_flip_usd_marks")


def _frame(columns: dict, order: tuple) -> pd.DataFrame:
    return pd.DataFrame({name: columns[name] for name in order})


def _totals(ex: dict, al: dict, dealer: DealerSigns, days_per_year: float) -> MarketTotals:
    """The summary record from the per-expiry (`ex`) and all-expiry (`al`) columns."""
    near = int(np.argmin(np.abs(ex["t_years"] * days_per_year - 30.0)))

    def at(key, i):
        return float(ex[key][i])

    records = []
    for i in range(ex["expiry_code"].size):          # one small record per expiry (≈ 12), not per option
        records.append(_plain({k: (ex[k][i].to_pydatetime() if k == "expiry" else
                                   str(ex[k][i]) if k == "expiry_code" else ex[k][i]) for k in _EXPIRY_RECORD}))
    return MarketTotals(
        **{k: float(al[k][0]) for k in _OVERALL_TOTALS},
        front_expiry_code=str(ex["expiry_code"][0]),
        max_pain_front_coin_payoff_usd=at("max_pain_coin_payoff_usd", 0),
        max_pain_front_usd_payoff_usd=at("max_pain_usd_payoff_usd", 0),
        implied_move_front_fraction_marks=at("implied_move_fraction_marks", 0),
        expiry_30d_code=str(ex["expiry_code"][near]),
        max_pain_30d_coin_payoff_usd=at("max_pain_coin_payoff_usd", near),
        max_pain_30d_usd_payoff_usd=at("max_pain_usd_payoff_usd", near),
        implied_move_30d_fraction_marks=at("implied_move_fraction_marks", near),
        implied_move_30d_usd_marks=at("implied_move_usd_marks", near),
        atm_iv_30d_expiry_marks=at("atm_iv_marks", near),
        dealer_convention=dealer.name, market_expiries=tuple(records))


def market_totals(frame: pd.DataFrame, *, days_per_year: float, dealer: "DealerSigns | str" = DEFAULT_DEALER,
                  grid: SpotGrid | None = None) -> MarketTotals:
    """The summary totals of one chain (`MarketTotals`: contracts in coin, USD notional at the spot index, prices
    in USD, GEX/DEX in USD per 1 % spot move, fractions for PCRs/moves/IVs): what the per-snapshot summary stores."""
    return market_statistics(frame, days_per_year=days_per_year, dealer=dealer, grid=grid).totals


# ----------------------------------------------------------------------------------------------- changes

_CHANGE_COLUMNS = ("instrument", "is_call", "strike_usd", "expiry", "expiry_code", "open_interest_coin")
_CHANGE_SUMS = ("oi_calls_before_coin", "oi_calls_coin", "oi_calls_change_coin", "oi_puts_before_coin", "oi_puts_coin",
                "oi_puts_change_coin", "oi_change_coin", "oi_change_usd")


def oi_changes(current: pd.DataFrame, earlier: pd.DataFrame, *, as_of: datetime | None = None,
               spot_usd: float | None = None) -> OIChanges:
    """Open-interest changes from `earlier` to `current` (two chain frames of one currency), instrument by
    instrument, summed by (expiry, strike), by strike and by expiry. Units: contracts (coin); `_usd` = contracts
    × the current spot index in USD (`spot_usd`, default the current frame's median `index_usd`); strikes USD;
    `hours_between` in hours (from the frames' `attrs["timestamp"]`, NaN when the earlier one has none).

    An instrument listed only in `current` starts from 0 ("new"); one listed only in `earlier` ends at 0
    ("gone") unless its expiry is at or before `as_of` (default `current.attrs["timestamp"]`): then it settled
    and is counted in `totals.expired_*_coin` only."""
    for what, f in (("current chain", current), ("earlier chain", earlier)):
        _check_columns(f, _CHANGE_COLUMNS, what)
    as_of = as_of or current.attrs.get("timestamp")
    if as_of is None:
        raise ValueError("oi_changes needs as_of (the current snapshot time): current.attrs has no 'timestamp'")
    as_of = pd.Timestamp(as_of)
    if as_of.tzinfo is None:
        raise ValueError(f"as_of is naive ({as_of.isoformat()}); pass a timezone-aware UTC time")
    spot = float(spot_usd) if spot_usd is not None else spot_index_usd(current)
    earlier_at = earlier.attrs.get("timestamp")
    hours = (as_of - pd.Timestamp(earlier_at)).total_seconds() / 3600.0 if earlier_at is not None else np.nan

    cur_names = current["instrument"].to_numpy(dtype=object)
    old_names = earlier["instrument"].to_numpy(dtype=object)
    cur_oi = _non_negative(_num(current, "open_interest_coin"), cur_names, "open_interest_coin")
    old_oi = _non_negative(_num(earlier, "open_interest_coin"), old_names, "open_interest_coin")
    where_old = pd.Index(old_names).get_indexer(cur_names)
    listed = where_old >= 0
    matched = np.zeros(old_names.size, dtype=bool)
    matched[where_old[listed]] = True
    old_exp = _expiry_ns(earlier["expiry"])
    old_call = earlier["is_call"].to_numpy(dtype=bool)
    settled = ~matched & (old_exp <= np.datetime64(as_of.tz_convert("UTC").tz_localize(None), "ns"))
    gone = ~matched & ~settled                       # listed before, not now, not expired: closed out to 0

    def union(now_values, old_values):
        return np.concatenate([now_values, old_values[gone]])

    exp = union(_expiry_ns(current["expiry"]), old_exp)
    K = union(_num(current, "strike_usd"), _num(earlier, "strike_usd"))
    keep = np.isfinite(K) & ~np.isnat(exp)
    exp, K = exp[keep], K[keep]
    names = union(cur_names, old_names)[keep]
    codes_all = union(current["expiry_code"].to_numpy(dtype=object), earlier["expiry_code"].to_numpy(dtype=object))[keep]
    is_call = union(current["is_call"].to_numpy(dtype=bool), old_call)[keep]
    oi_before = union(np.where(listed, old_oi[np.maximum(where_old, 0)], 0.0), old_oi)[keep]
    oi_now = union(cur_oi, np.zeros(old_oi.size))[keep]
    status = union(np.where(listed, "listed", "new").astype(object), np.full(old_oi.size, "gone", dtype=object))[keep]
    change = oi_now - oi_before

    exp_values, first_e, e = np.unique(exp, return_index=True, return_inverse=True)
    e = e.ravel()
    n_exp = exp_values.size
    exp_index = pd.DatetimeIndex(exp_values).tz_localize("UTC")
    codes = codes_all[first_e]
    sums = {"oi_calls_before_coin": oi_before * is_call, "oi_calls_coin": oi_now * is_call,
            "oi_puts_before_coin": oi_before * ~is_call, "oi_puts_coin": oi_now * ~is_call}

    def summed(ids, n, head: dict) -> pd.DataFrame:
        out = dict(head)
        for key, w in sums.items():
            out[key] = np.bincount(ids, weights=w, minlength=n)
        for side in ("calls", "puts"):
            out[f"oi_{side}_change_coin"] = out[f"oi_{side}_coin"] - out[f"oi_{side}_before_coin"]
        out["oi_change_coin"] = out["oi_calls_change_coin"] + out["oi_puts_change_coin"]
        out["oi_change_usd"] = out["oi_change_coin"] * spot
        return pd.DataFrame({k: out[k] for k in (*head, *_CHANGE_SUMS)})

    order, gid_sorted = _groups(e, K)
    gid = np.empty(order.size, dtype=int)
    gid[order] = gid_sorted
    n_groups = int(gid_sorted[-1]) + 1 if order.size else 0
    g_first = order[np.searchsorted(gid_sorted, np.arange(n_groups))]
    by_strike = summed(gid, n_groups, {"expiry": exp_index[e[g_first]], "expiry_code": codes[e[g_first]],
                                       "strike_usd": K[g_first]})
    a_K, a_id = np.unique(K, return_inverse=True)
    all_by_strike = summed(a_id.ravel(), a_K.size, {"expiry": pd.DatetimeIndex([pd.NaT] * a_K.size, tz="UTC"),
                                                    "expiry_code": np.full(a_K.size, ALL, dtype=object),
                                                    "strike_usd": a_K})
    by_expiry = summed(e, n_exp, {"expiry": exp_index, "expiry_code": codes})

    rank = np.argsort(-np.abs(change), kind="stable")
    by_instrument = pd.DataFrame({"instrument": names[rank], "expiry": exp_index[e[rank]], "expiry_code": codes_all[rank],
                                  "strike_usd": K[rank], "is_call": is_call[rank], "oi_before_coin": oi_before[rank],
                                  "oi_coin": oi_now[rank], "oi_change_coin": change[rank], "status": status[rank]})
    up, down = np.maximum(change, 0.0), np.minimum(change, 0.0)
    totals = OIChangeTotals(
        hours_between=float(hours), calls_added_coin=float(np.sum(up[is_call])),
        calls_removed_coin=float(np.sum(down[is_call])), puts_added_coin=float(np.sum(up[~is_call])),
        puts_removed_coin=float(np.sum(down[~is_call])), net_calls_change_coin=float(np.sum(change[is_call])),
        net_puts_change_coin=float(np.sum(change[~is_call])), net_change_usd=float(np.sum(change) * spot),
        expired_calls_coin=float(np.sum(old_oi[settled & old_call])),
        expired_puts_coin=float(np.sum(old_oi[settled & ~old_call])))
    return OIChanges(by_instrument=by_instrument, by_strike=by_strike, all_by_strike=all_by_strike,
                     by_expiry=by_expiry, totals=totals)
