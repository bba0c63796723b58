"""Risk of a coin-settled book on one chain: value, P/L, greeks, the account's delta and a full-revaluation
spot × vol × horizon scenario grid. Pure numpy/pandas; no I/O.

Inputs
------
- `positions`: a frame with one row per position (`POSITION_COLUMNS`): `instrument`, `kind` ("option" |
  "future" | "spot"), `size_coin` (options: signed coin contracts; spot: coin held), `size_usd` (inverse
  futures: signed USD contracts), `entry_price_coin` (options: coin per option), `entry_price_usd`
  (futures: USD per coin), `expiry` (UTC; NaT for perpetuals and spot).
- `chain`: one currency's chain frame (columns as in the store's chain adapter: instrument, strike_usd,
  is_call, t_years, forward_usd, expiry_forward_usd, forward_index, index_usd, mark_coin, mark_iv, expiry).
- `surface`: a stored SVI surface document (or its slices) of the same currency, queried with
  `qortcli.quant.surface.total_variance_at`. Needed only when the book holds options.

Valuation today (from marks)
----------------------------
Spot index S = the median of the chain's `index_usd`. Every USD figure here is **spot-USD**: the coin
figure × S (× the shocked S' in a scenario); the P/L is computed in coin, then converted.
- Option: Black-76 (`qortcli.quant.black76`) on the row's forward F (Deribit's `underlying_price`) at
  Deribit's mark IV σ₀ (`mark_iv`; the SVI vol at the option's k and T when the chain has none:
  `vol_source` says which), T = the chain's `t_years`. Coin value V = size × C(F)/F; P/L = size × (V₁ − entry).
- Inverse future (N USD contracts entered at F_e): coin value = P/L = N (1/F_e − 1/F). F = the median
  forward of the chain rows priced on that future (`forward_index`), else the log-basis ln(F/S)
  interpolated linearly in T between the chain's expiry forwards (through 0 at T = 0; beyond the last
  expiry at its carry rate), and S for a perpetual (funding ignored). `forward_source` says which.
- Coin held (spot): coin value = size; coin P/L 0 (a coin is worth one coin).

Greeks, per position (× size) and summed
----------------------------------------
USD set (Deribit's forward-USD Black-76 set, greeks of the forward-USD value U = V·F): `delta` (coin
per coin, i.e. USD per USD), `gamma` (per USD), `vega` (USD per vol point), `theta` (USD per day).
Coin set (greeks of the coin value V(F)): `delta_coin` = dV/dF (coin per USD), `delta_pa` = F dV/dF (coin:
the premium-adjusted delta), `gamma_coin` (coin per USD²), `vega_coin` (coin per vol point), `theta_coin`
(coin per day). For every position `delta = value_coin + delta_pa` (d(V·F)/dF = V + F dV/dF):
- option: delta N(d1) (put N(d1) − 1), delta_pa N(d1) − V (`black76.greeks`);
- inverse future: V = N(1/F_e − 1/F) moves with 1/F, so dV/dF = N/F², delta_pa = N/F (Deribit's
  `size_currency`), d²V/dF² = −2N/F³; its USD value V·F = N(F/F_e − 1) has delta N/F_e, gamma 0;
- coin held: delta 1 per coin, every coin greek 0.

The account's delta (`AccountDelta`), with forwards moving with spot (F = S × its basis ratio):
- of the **USD value** U = S × W (W the coin value): ∂U/∂S = Σ delta — the coin held adds +1 per coin.
  In coin (coin-equivalent exposure) and in USD (× S: the USD notional of that exposure), without and
  with the coin collateral.
- of the **coin value** W: S ∂W/∂S = Σ delta_pa (coin) and ∂W/∂F = Σ delta_coin (coin per USD). The coin
  held adds nothing (∂U/∂S = W + S ∂W/∂S: holding coin raises both U's delta and W by the same amount).

Scenario grid (full revaluation; never a greek expansion)
---------------------------------------------------------
Axes: horizon h (days) × vol shift v (fraction: 0.01 = one vol point) × spot move x (fraction). For each
cell: S' = S(1 + x); every forward moves with spot, F' = F(1 + x); T' = T − h / days_per_year.
- Options with T' > 0: Black-76 at σ' = max(σ₀ + σ_svi(k', T') − σ_svi(k₀, T₀) + v, `min_vol`), where
  σ_svi(k, T) = √(w(k, T)/T) is the stored surface's vol at log-moneyness k = ln(K/F) on the total variance
  interpolated at T. **Sticky moneyness**: the smile is held fixed in k = ln(K/F') and rolled down to the
  shortened T'; each option keeps its own mark-IV offset from the fit (so the zero-shock cell reproduces
  today's valuation exactly). Where the surface has no positive variance the smile change is taken as 0
  (counted in `surface_fallbacks`).
- Options with T' ≤ 0 (expiring within the horizon) are settled by the coin payoff at S': a call pays
  max(S' − K, 0)/S' coin, a put max(K − S', 0)/S' (Deribit settles on the index; the 30-minute TWAP is
  approximated by S').
- Futures: N (1/F_e − 1/F'), F' = S' for perpetuals and for futures expiring within the horizon.
- Coin held: unchanged in coin.
`pnl_coin` = P/L since entry in coin (the zero-shock cell at h = 0 is today's P/L); `pnl_usd` = pnl_coin × S';
`value_change_usd` = S'·W' − S·W, the change of the account's USD value from now, collateral included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from qortcli.quant import black76
from qortcli.quant.surface import total_variance_at
from qortcli.timeutils import BASES, DEFAULT_BASIS

OPTION, FUTURE, SPOT = "option", "future", "spot"
POSITION_COLUMNS = ("instrument", "kind", "size_coin", "size_usd", "entry_price_coin", "entry_price_usd", "expiry")
USD_GREEKS = ("delta", "gamma", "vega", "theta")
COIN_GREEKS = ("delta_coin", "delta_pa", "gamma_coin", "vega_coin", "theta_coin")
GREEKS = USD_GREEKS + COIN_GREEKS
SUM_COLUMNS = ("value_coin", "value_usd", "pnl_coin", "pnl_usd") + GREEKS
GRID_AXES = ("horizon_days", "vol_shift", "spot_move")
PERPETUAL_CODE, SPOT_CODE = "PERPETUAL", "SPOT"

#: the columns of `BookRisk.positions` (units: module docstring)
POSITION_RESULT_COLUMNS = ("instrument", "kind", "expiry", "expiry_code", "t_years", "size", "size_unit",
                           "entry_price", "price_unit", "strike_usd", "option_type", "forward_usd",
                           "forward_source", "mark_coin", "model_coin", "vol", "vol_source") + SUM_COLUMNS

METHOD = {
    "valuation": "Black-76 on each row's forward at Deribit's mark IV (vol_source 'mark_iv'; 'svi' where the chain "
                 "has no mark IV); inverse futures N(1/F_entry − 1/F); coin held at 1 coin",
    "usd": "spot-USD: coin figures × the spot index (× the shocked index in the grid)",
    "greeks_usd": "Deribit's forward-USD Black-76 set (delta, gamma per USD, vega per vol point, theta per day)",
    "greeks_coin": "greeks of the coin value V(F): delta_coin dV/dF, delta_pa F·dV/dF, gamma_coin, vega_coin, theta_coin",
    "grid": "full revaluation: S' = S(1+x), F' = F(1+x), T' = T − h; vol = mark IV + [SVI(k', T') − SVI(k, T)] + shift "
            "(sticky moneyness, k = ln(K/F'), SVI total variance at the shortened T'), floored at min_vol; legs "
            "expiring within the horizon settled by the coin payoff at S'",
}


@dataclass(frozen=True)
class GridSpec:
    """The scenario axes: relative spot moves (fractions), additive vol shifts (fractions: 0.01 = one vol
    point), horizons in calendar days (≥ 0), and the floor on shocked vols (fraction)."""

    spot_moves: np.ndarray
    vol_shifts: np.ndarray
    horizons_days: np.ndarray
    min_vol: float = 0.01

    def __post_init__(self):
        for name in ("spot_moves", "vol_shifts", "horizons_days"):
            values = np.atleast_1d(np.asarray(getattr(self, name), dtype=float))
            if values.size == 0 or not np.isfinite(values).all():
                raise ValueError(f"grid {name} must be a non-empty list of finite numbers")
            object.__setattr__(self, name, values)
        if (self.spot_moves <= -1.0).any():
            raise ValueError("grid spot moves must be above −100 % (a spot price stays positive)")
        if (self.horizons_days < 0).any():
            raise ValueError("grid horizons must be ≥ 0 days")
        if not (np.isfinite(self.min_vol) and self.min_vol > 0):
            raise ValueError(f"grid min_vol must be a positive fraction, got {self.min_vol}")

    @classmethod
    def linear(cls, spot_min: float = -0.5, spot_max: float = 0.5, spot_steps: int = 21,
               vol_min_points: float = -30.0, vol_max_points: float = 30.0, vol_steps: int = 13,
               horizons_days=(0, 1, 7), min_vol: float = 0.01) -> "GridSpec":
        """Evenly spaced spot moves (fractions) and vol shifts (given in vol points), plus the horizons."""
        for name, steps in (("spot_steps", spot_steps), ("vol_steps", vol_steps)):
            if int(steps) != steps or steps < 1:
                raise ValueError(f"grid {name} must be a whole number ≥ 1, got {steps}")
        for name, lo, hi in (("spot", spot_min, spot_max), ("vol", vol_min_points, vol_max_points)):
            if not lo <= hi:
                raise ValueError(f"grid {name} range is empty: min {lo} > max {hi}")
        spots = _snap(np.linspace(spot_min, spot_max, int(spot_steps)))
        vols = _snap(np.linspace(vol_min_points, vol_max_points, int(vol_steps))) / 100.0
        return cls(spots, vols, np.asarray(horizons_days, dtype=float), float(min_vol))

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.horizons_days.size, self.vol_shifts.size, self.spot_moves.size)


@dataclass(frozen=True)
class WorstCell:
    """The worst (lowest) cell of one grid measure and where it is."""

    measure: str                 # "pnl_coin" | "pnl_usd" | "value_change_usd"
    value: float                 # in the measure's unit
    horizon_days: float
    vol_shift: float             # fraction (0.01 = one vol point)
    spot_move: float             # fraction
    spot_usd: float              # the shocked spot index
    index: tuple[int, int, int]  # (horizon, vol, spot) position in the grid


@dataclass(frozen=True)
class ScenarioGrid:
    """Full-revaluation grid; arrays are indexed [horizon, vol shift, spot move] (`GRID_AXES`)."""

    spot_moves: np.ndarray       # (M,) fractions
    vol_shifts: np.ndarray       # (V,) fractions
    horizons_days: np.ndarray    # (H,) days
    spot_usd: np.ndarray         # (M,) shocked spot index, USD
    pnl_coin: np.ndarray         # (H, V, M) P/L since entry, coin
    pnl_usd: np.ndarray          # (H, V, M) pnl_coin × shocked spot, USD
    value_change_usd: np.ndarray  # (H, V, M) S'·W' − S·W, USD (collateral included)
    worst: dict[str, WorstCell]
    min_vol: float
    surface_fallbacks: int = 0
    axes: tuple[str, str, str] = GRID_AXES


@dataclass(frozen=True)
class AccountDelta:
    """The account's delta (module docstring): of its USD value (coin-equivalent and USD notional), without
    and with the coin collateral, and of its coin value (unchanged by collateral)."""

    index_usd: float
    collateral_coin: float
    usd_value_delta_coin: float
    usd_value_delta_coin_with_collateral: float
    usd_value_delta_usd: float
    usd_value_delta_usd_with_collateral: float
    coin_value_delta_coin: float
    coin_value_delta_per_usd: float


@dataclass(frozen=True)
class RiskTotals:
    """Sums over every position (coin held included): value and P/L in coin and spot-USD, greeks."""

    value_coin: float
    value_usd: float
    pnl_coin: float
    pnl_usd: float
    delta: float
    gamma: float
    vega: float
    theta: float
    delta_coin: float
    delta_pa: float
    gamma_coin: float
    vega_coin: float
    theta_coin: float


@dataclass(frozen=True)
class BookRisk:
    """A book valued on one chain: positions (`POSITION_RESULT_COLUMNS`), totals, the account's delta,
    greeks by expiry (one row per expiry code, then PERPETUAL and SPOT) and the scenario grid."""

    currency: str | None
    as_of: pd.Timestamp
    index_usd: float
    days_per_year: float
    positions: pd.DataFrame
    totals: RiskTotals
    account: AccountDelta
    by_expiry: pd.DataFrame
    grid: ScenarioGrid
    method: dict = field(default_factory=lambda: dict(METHOD))


# ------------------------------------------------------------------------------------------ inputs

def _snap(values: np.ndarray) -> np.ndarray:
    """Round grid axes to 12 decimals so that 0 is exactly 0 (linspace leaves 1e-17 residues)."""
    return np.round(values, 12) + 0.0


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float) if name in frame else np.full(len(frame), np.nan)


def _as_of(chain: pd.DataFrame, as_of) -> pd.Timestamp:
    when = as_of if as_of is not None else chain.attrs.get("timestamp")
    if when is None:
        raise ValueError("the valuation time is unknown: pass as_of or a chain frame with attrs['timestamp']")
    stamp = pd.Timestamp(when)
    if stamp.tzinfo is None:
        raise ValueError(f"the valuation time {when} is naive; pass a timezone-aware UTC time")
    return stamp.tz_convert("UTC")


def _years(expiry: pd.Series, as_of: pd.Timestamp, days_per_year: float) -> np.ndarray:
    seconds = (pd.to_datetime(expiry, utc=True) - as_of).dt.total_seconds().to_numpy(dtype=float)
    return seconds / (days_per_year * 86_400.0)


def _check_positions(positions: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in POSITION_COLUMNS if c not in positions.columns]
    if missing:
        raise ValueError(f"positions lack columns {missing}")
    frame = positions.reset_index(drop=True).copy()
    frame["expiry"] = pd.to_datetime(frame["expiry"], utc=True)
    kinds = frame["kind"].astype(str)
    bad = ~kinds.isin([OPTION, FUTURE, SPOT])
    if bad.any():
        raise ValueError(f"position {frame.loc[bad, 'instrument'].iloc[0]}: unknown kind {kinds[bad].iloc[0]!r}")
    size = np.where(kinds == FUTURE, _column(frame, "size_usd"), _column(frame, "size_coin"))
    if not np.isfinite(size).all():
        i = int(np.flatnonzero(~np.isfinite(size))[0])
        raise ValueError(f"position {frame['instrument'].iloc[i]}: no finite size")
    return frame


def expiry_forwards(chain: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(t_years, forward_usd) of each expiry of the chain (the expiry's median forward), by T."""
    table = chain.groupby("expiry", sort=True).agg(t=("t_years", "first"), f=("forward_usd", "median"))
    table = table[np.isfinite(table["t"]) & (table["t"] > 0) & np.isfinite(table["f"])]
    return table["t"].to_numpy(dtype=float), table["f"].to_numpy(dtype=float)


def future_forwards(chain: pd.DataFrame, names: np.ndarray, t_years: np.ndarray, perpetual: np.ndarray,
                    index_usd: float) -> tuple[np.ndarray, np.ndarray]:
    """(forward USD, source) of futures: the options' underlying when priced on that future, S for a
    perpetual, else the log-basis interpolated in T (module docstring)."""
    out = np.full(names.size, np.nan)
    source = np.full(names.size, "interpolated", dtype=object)
    if "forward_index" in chain:
        marks = chain.groupby("forward_index")["forward_usd"].median()
        found = pd.Series(names).map(marks).to_numpy(dtype=float)
        hit = np.isfinite(found) & ~perpetual
        out[hit], source[hit] = found[hit], "future"
    out[perpetual], source[perpetual] = index_usd, "index (perpetual)"
    todo = ~np.isfinite(out)
    if todo.any():
        ts, fs = expiry_forwards(chain)
        if ts.size == 0:
            raise ValueError("the chain has no expiry forward to interpolate a future's price from")
        basis = np.log(fs / index_usd)
        t = t_years[todo]
        inside = np.interp(t, np.concatenate([[0.0], ts]), np.concatenate([[0.0], basis]))
        out[todo] = index_usd * np.exp(np.where(t > ts[-1], t * basis[-1] / ts[-1], inside))
    return out, source


def _svi_vol(surface, k: np.ndarray, t: np.ndarray) -> np.ndarray:
    """σ_svi = √(w(k, T)/T) of the surface (NaN where T ≤ 0 or w ≤ 0)."""
    w = total_variance_at(surface, k, np.maximum(t, 1e-12))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((w > 0) & (t > 0), np.sqrt(np.abs(w) / np.where(t > 0, t, 1.0)), np.nan)


# ------------------------------------------------------------------------------------------ valuation

def value_book(positions: pd.DataFrame, chain: pd.DataFrame, surface=None, grid: GridSpec | None = None,
               days_per_year: float = BASES[DEFAULT_BASIS], as_of=None) -> BookRisk:
    """Value `positions` on one currency's `chain` and revalue them on the scenario `grid` (module docstring).

    `surface` (a stored SVI surface document or its slices) is required when the book holds options.
    `days_per_year` converts theta, the horizons and the futures' T (365 for ACT/365: the basis the chain's
    `t_years` were measured on);
    `as_of` defaults to `chain.attrs["timestamp"]`. ValueError names the position for an option not in
    the chain, an expired leg, or an unusable price.
    """
    grid = grid or GridSpec.linear()
    frame = _check_positions(positions)
    as_of = _as_of(chain, as_of)
    index = _column(chain, "index_usd")
    index = index[np.isfinite(index) & (index > 0)]
    if index.size == 0:
        raise ValueError("the chain has no spot index (index_usd)")
    spot = float(np.median(index))
    kinds = frame["kind"].astype(str).to_numpy()
    n = len(frame)
    cols = {name: np.zeros(n) for name in SUM_COLUMNS}
    info = {"t_years": np.full(n, np.nan), "forward_usd": np.full(n, np.nan), "mark_coin": np.full(n, np.nan),
            "model_coin": np.full(n, np.nan), "vol": np.full(n, np.nan), "strike_usd": np.full(n, np.nan),
            "forward_source": np.full(n, "", dtype=object), "vol_source": np.full(n, "", dtype=object),
            "option_type": np.full(n, None, dtype=object)}

    opt = _option_legs(frame, kinds == OPTION, chain, surface, as_of)
    fut = _future_legs(frame, kinds == FUTURE, chain, spot, as_of, days_per_year)
    held = kinds == SPOT
    collateral = float(_column(frame, "size_coin")[held].sum())

    if opt is not None:
        idx, size = opt["idx"], opt["size"]
        g = black76.greeks(opt["F"], opt["K"], opt["T"], opt["sigma"], opt["call"], 0.0, days_per_year=days_per_year)
        cols["value_coin"][idx] = size * g["price_coin"]
        cols["pnl_coin"][idx] = size * (g["price_coin"] - opt["entry"])
        for name in GREEKS:
            cols[name][idx] = size * g[name]
        info["model_coin"][idx] = g["price_coin"]
        for key, src in (("t_years", "T"), ("forward_usd", "F"), ("mark_coin", "mark"), ("vol", "sigma"),
                         ("strike_usd", "K"), ("vol_source", "vol_source")):
            info[key][idx] = opt[src]
        info["forward_source"][idx] = "row forward"
        info["option_type"][idx] = np.where(opt["call"], "call", "put")
    if fut is not None:
        idx, N, Fe, F = fut["idx"], fut["N"], fut["Fe"], fut["F"]
        value = N * (1.0 / Fe - 1.0 / F)
        cols["value_coin"][idx] = value
        cols["pnl_coin"][idx] = value
        cols["delta"][idx] = N / Fe
        cols["delta_coin"][idx] = N / F ** 2
        cols["delta_pa"][idx] = N / F
        cols["gamma_coin"][idx] = -2.0 * N / F ** 3
        info["t_years"][idx] = fut["T"]
        info["forward_usd"][idx] = F
        info["forward_source"][idx] = fut["source"]
    if held.any():
        cols["value_coin"][held] = _column(frame, "size_coin")[held]
        cols["delta"][held] = _column(frame, "size_coin")[held]
    cols["value_usd"] = cols["value_coin"] * spot
    cols["pnl_usd"] = cols["pnl_coin"] * spot

    table = _position_table(frame, kinds, cols, info)
    totals = RiskTotals(**{name: float(cols[name].sum()) for name in SUM_COLUMNS})
    usd_delta = float(cols["delta"][~held].sum())
    account = AccountDelta(
        index_usd=spot, collateral_coin=collateral, usd_value_delta_coin=usd_delta,
        usd_value_delta_coin_with_collateral=usd_delta + collateral, usd_value_delta_usd=usd_delta * spot,
        usd_value_delta_usd_with_collateral=(usd_delta + collateral) * spot,
        coin_value_delta_coin=float(cols["delta_pa"].sum()), coin_value_delta_per_usd=float(cols["delta_coin"].sum()))
    scenario = scenario_grid(opt, fut, collateral, float(cols["value_coin"].sum()), spot, surface, grid, days_per_year)
    currency = chain.attrs.get("currency")
    return BookRisk(currency=currency, as_of=as_of, index_usd=spot, days_per_year=days_per_year, positions=table,
                    totals=totals, account=account, by_expiry=greeks_by_expiry(table), grid=scenario)


def _option_legs(frame: pd.DataFrame, mask: np.ndarray, chain: pd.DataFrame, surface, as_of) -> dict | None:
    if not mask.any():
        return None
    names = frame.loc[mask, "instrument"].astype(str).to_numpy()
    rows = chain.drop_duplicates("instrument").set_index("instrument")
    missing = [name for name in names if name not in rows.index]
    if missing:
        where = chain.attrs.get("snapshot_id") or "given"
        raise ValueError(f"option {missing[0]} is not in the {where} chain")
    picked = rows.loc[names]
    T = picked["t_years"].to_numpy(dtype=float)
    if not (T > 0).all():
        bad = names[~(T > 0)][0]
        raise ValueError(f"option {bad} has expired (T = {T[~(T > 0)][0]:.6f} years at {as_of:%Y-%m-%d %H:%M} UTC)")
    F = picked["forward_usd"].to_numpy(dtype=float)
    F = np.where(np.isfinite(F) & (F > 0), F, picked["expiry_forward_usd"].to_numpy(dtype=float))
    K = picked["strike_usd"].to_numpy(dtype=float)
    sigma = picked["mark_iv"].to_numpy(dtype=float)
    has_mark_iv = np.isfinite(sigma) & (sigma > 0)
    if surface is None:
        raise ValueError("the book holds options: a volatility surface is needed for the scenario grid")
    base_svi = _svi_vol(surface, np.log(K / F), T)
    sigma = np.where(has_mark_iv, sigma, base_svi)
    if not (np.isfinite(sigma) & (sigma > 0) & np.isfinite(F) & (F > 0)).all():
        bad = names[~(np.isfinite(sigma) & (sigma > 0) & np.isfinite(F) & (F > 0))][0]
        raise ValueError(f"option {bad}: no usable forward or vol (no mark IV and no surface vol)")
    entry = _column(frame, "entry_price_coin")[mask]
    if not np.isfinite(entry).all():
        raise ValueError(f"option {names[~np.isfinite(entry)][0]} has no entry price in coin")
    return {"idx": np.flatnonzero(mask), "names": names, "size": _column(frame, "size_coin")[mask], "K": K, "F": F,
            "T": T, "sigma": sigma, "base_svi": base_svi, "call": picked["is_call"].to_numpy(dtype=bool),
            "entry": entry, "mark": picked["mark_coin"].to_numpy(dtype=float),
            "vol_source": np.where(has_mark_iv, "mark_iv", "svi").astype(object)}


def _future_legs(frame: pd.DataFrame, mask: np.ndarray, chain: pd.DataFrame, spot: float, as_of,
                 days_per_year) -> dict | None:
    if not mask.any():
        return None
    names = frame.loc[mask, "instrument"].astype(str).to_numpy()
    expiry = frame.loc[mask, "expiry"]
    perpetual = expiry.isna().to_numpy()
    with np.errstate(invalid="ignore"):
        T = np.where(perpetual, np.inf, _years(expiry, as_of, days_per_year))
    if not (T > 0).all():
        bad = names[~(T > 0)][0]
        raise ValueError(f"future {bad} has expired ({expiry[~(T > 0)].iloc[0]:%Y-%m-%d %H:%M} UTC, valuation at "
                         f"{as_of:%Y-%m-%d %H:%M} UTC)")
    F, source = future_forwards(chain, names, T, perpetual, spot)
    Fe = _column(frame, "entry_price_usd")[mask]
    if not (np.isfinite(Fe) & (Fe > 0)).all():
        raise ValueError(f"future {names[~(np.isfinite(Fe) & (Fe > 0))][0]} has no positive entry price in USD")
    return {"idx": np.flatnonzero(mask), "names": names, "N": _column(frame, "size_usd")[mask], "Fe": Fe, "F": F,
            "T": T, "perpetual": perpetual, "source": source}


def _position_table(frame: pd.DataFrame, kinds: np.ndarray, cols: dict, info: dict) -> pd.DataFrame:
    expiry = frame["expiry"]
    codes = np.where(kinds == SPOT, SPOT_CODE, PERPETUAL_CODE).astype(object)
    dated = expiry.notna().to_numpy()
    if dated.any():
        e = expiry[dated]
        codes[dated] = (e.dt.day.astype(str) + e.dt.strftime("%b").str.upper() + e.dt.strftime("%y")).to_numpy()
    futures = kinds == FUTURE
    table = pd.DataFrame({
        "instrument": frame["instrument"].astype(str).to_numpy(), "kind": kinds, "expiry": expiry,
        "expiry_code": codes, "t_years": info["t_years"],
        "size": np.where(futures, _column(frame, "size_usd"), _column(frame, "size_coin")),
        "size_unit": np.where(futures, "usd", "coin"),
        "entry_price": np.where(kinds == OPTION, _column(frame, "entry_price_coin"), _column(frame, "entry_price_usd")),
        "price_unit": np.where(kinds == OPTION, "coin", "usd"),
        "strike_usd": info["strike_usd"], "option_type": info["option_type"], "forward_usd": info["forward_usd"],
        "forward_source": info["forward_source"], "mark_coin": info["mark_coin"], "model_coin": info["model_coin"],
        "vol": info["vol"], "vol_source": info["vol_source"],
        **{name: cols[name] for name in SUM_COLUMNS},
    })
    return table[list(POSITION_RESULT_COLUMNS)]


def greeks_by_expiry(table: pd.DataFrame) -> pd.DataFrame:
    """Sums of value, P/L and greeks per expiry code (dated by expiry, then PERPETUAL, then SPOT)."""
    if table.empty:
        return pd.DataFrame(columns=["expiry_code", "expiry", "t_years", "positions", *SUM_COLUMNS])
    order = table.assign(_rank=np.select([table["expiry_code"] == PERPETUAL_CODE, table["expiry_code"] == SPOT_CODE],
                                         [1, 2], 0))
    grouped = order.groupby(["_rank", "expiry_code"], sort=False)
    out = grouped[list(SUM_COLUMNS)].sum()
    out["expiry"] = grouped["expiry"].first()
    out["t_years"] = grouped["t_years"].max()
    out["positions"] = grouped.size()
    out = out.reset_index().sort_values(["_rank", "expiry"], kind="stable").drop(columns="_rank")
    return out[["expiry_code", "expiry", "t_years", "positions", *SUM_COLUMNS]].reset_index(drop=True)


# ------------------------------------------------------------------------------------------ scenarios

def scenario_grid(opt: dict | None, fut: dict | None, collateral_coin: float, value_coin_now: float, spot: float,
                  surface, grid: GridSpec, days_per_year: float) -> ScenarioGrid:
    """Full revaluation of the legs on `grid` (module docstring), vectorised over legs × cells."""
    x = grid.spot_moves                                 # (M,)
    h = grid.horizons_days / days_per_year              # (H,) years
    v = grid.vol_shifts                                 # (V,)
    H, V, M = grid.shape
    spot_s = spot * (1.0 + x)                           # (M,)
    pnl = np.zeros((H, V, M))
    value = np.full((H, V, M), collateral_coin)
    fallbacks = 0
    if opt is not None:
        size, K, call = opt["size"], opt["K"][:, None, None, None], opt["call"][:, None, None, None]
        F_s = opt["F"][:, None, None, None] * (1.0 + x)[None, None, None, :]           # (n,1,1,M)
        T_s = opt["T"][:, None, None, None] - h[None, :, None, None]                 # (n,H,1,1)
        live = T_s > 0
        k_s = np.log(K / F_s)                                                        # (n,1,1,M)
        svi_s = _svi_vol(surface, np.broadcast_to(k_s, (size.size, H, 1, M)), np.broadcast_to(T_s, (size.size, H, 1, M)))
        change = svi_s - opt["base_svi"][:, None, None, None]
        unusable = ~np.isfinite(change) & np.broadcast_to(live, change.shape)
        fallbacks = int(unusable.sum())
        change = np.where(np.isfinite(change), change, 0.0)
        same = (x == 0)[None, None, None, :] & (h == 0)[None, :, None, None]
        change = np.where(same, 0.0, change)            # the unshocked cell is exactly today's vol
        sigma = np.maximum(opt["sigma"][:, None, None, None] + change + v[None, None, :, None], grid.min_vol)
        t_live = np.where(live, T_s, 1.0)
        price = black76.price_coin(F_s, K, t_live, sigma, call)                      # (n,H,V,M)
        s_cell = spot_s[None, None, None, :]
        payoff = np.where(call, np.maximum(s_cell - K, 0.0), np.maximum(K - s_cell, 0.0)) / s_cell
        leg_value = np.where(live, price, payoff)
        pnl += np.einsum("n,nhvm->hvm", size, leg_value - opt["entry"][:, None, None, None])
        value += np.einsum("n,nhvm->hvm", size, leg_value)
    if fut is not None:
        F_s = fut["F"][:, None, None] * (1.0 + x)[None, None, :]                    # (n,1,M)
        settled = (fut["perpetual"][:, None, None]) | (fut["T"][:, None, None] - h[None, :, None] <= 0)   # (n,H,1)
        F_eff = np.where(settled, spot_s[None, None, :], F_s)                        # (n,H,M)
        fut_value = (fut["N"][:, None, None] * (1.0 / fut["Fe"][:, None, None] - 1.0 / F_eff)).sum(axis=0)  # (H,M)
        pnl += fut_value[:, None, :]
        value += fut_value[:, None, :]
    pnl_usd = pnl * spot_s[None, None, :]
    change_usd = value * spot_s[None, None, :] - value_coin_now * spot
    worst = {name: _worst(name, arr, grid, spot_s) for name, arr in
             (("pnl_coin", pnl), ("pnl_usd", pnl_usd), ("value_change_usd", change_usd))}
    return ScenarioGrid(spot_moves=x, vol_shifts=v, horizons_days=grid.horizons_days, spot_usd=spot_s, pnl_coin=pnl,
                        pnl_usd=pnl_usd, value_change_usd=change_usd, worst=worst, min_vol=grid.min_vol,
                        surface_fallbacks=fallbacks)


def _worst(measure: str, values: np.ndarray, grid: GridSpec, spot_s: np.ndarray) -> WorstCell:
    i, j, m = np.unravel_index(int(np.argmin(values)), values.shape)
    return WorstCell(measure=measure, value=float(values[i, j, m]), horizon_days=float(grid.horizons_days[i]),
                     vol_shift=float(grid.vol_shifts[j]), spot_move=float(grid.spot_moves[m]),
                     spot_usd=float(spot_s[m]), index=(int(i), int(j), int(m)))
