"""The live chain of one currency: what the stream knows now, repriced with the vectorised core.

`LiveChain` holds one row per option (numpy arrays aligned on `names`): terms (strike USD, expiry),
the latest coin mark and mark IV with Deribit's time of each, the quote fields of the last REST book
(bid/ask/mid coin, volume, volume USD, open interest, rate), and per expiry the forward (USD). It is
seeded from a REST `ParsedChain` (the collector's parsing), then updated by the stream's events:

- marks (`MarkPrices`): rows updated in place; an unknown instrument of the currency is added from its
  name; each expiry's forward follows its own marks by put-call parity (`qortcli.quant.parity`: the mark
  stream carries no forward) — `forward_source` says "parity" then, "seed" while only the REST seed's
  median forward is known;
- the spot index (`IndexPrice`);
- listings and expiries (`InstrumentState`): created/started → added, closed/terminated → removed,
  settled → removed once its expiry has passed;
- a REST book (`merge_book`): quote fields replaced, instruments missing from the chain added.

`freeze()` copies the arrays (cheap) so a writer thread can `reprice` while the event loop keeps applying
updates. `reprice` values the rows with a mark: Black-76 greeks from the mark IV on the expiry's forward
and the IV solved back from the coin mark (`iv_mark`), time in years from the marks' time on the day-count
basis; per expiry the ATM IV, 25Δ risk reversal and butterfly from the marks (`qortcli.quant.regime`), and
the constant-maturity ATM IV at `tenor_days`. `live_marks_document` and `parsed_chain` turn a view into
the `live_marks` document and into the `ParsedChain` that `collect.store_chain` writes as a snapshot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, NamedTuple

import numpy as np
import pandas as pd

from qortcli.quant import black76, implied_vol, smile
from qortcli.quant.parity import parity_forwards
from qortcli.sources.deribit import SKIP_EXPIRED, SKIP_NO_MARK, OptionRecord, ParsedChain, records_from_book_summary
from qortcli.sources.deribit_ws import ENDED_STATES, NEW_STATES, SETTLED, IndexPrice, InstrumentState, MarkPrices
from qortcli.timeutils import BASES, DEFAULT_BASIS, SECONDS_PER_DAY, expiry_code, parse_instrument

SOURCE = "deribit-stream"
SKIP_NO_FORWARD = "no_forward"
#: quote fields of a row: LiveChain array name → OptionRecord field
QUOTES = {"bid_coin": "bid_coin", "ask_coin": "ask_coin", "mid_coin": "mid_coin", "volume_coin": "volume",
          "volume_usd": "volume_usd", "open_interest_coin": "open_interest", "interest_rate": "interest_rate"}
#: greeks stored per instrument in live_marks (units: qortcli.quant.black76)
GREEKS = black76.GREEK_NAMES


def _epoch_s(moment: datetime) -> float:
    return moment.astimezone(timezone.utc).timestamp()


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc)


def _opt(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


class Terms(NamedTuple):
    """Static terms of one option: strike (USD), expiry (UTC, 08:00), type."""

    name: str
    strike_usd: float
    expiry: datetime
    option_type: str


@dataclass(frozen=True)
class LiveInputs:
    """An immutable copy of a LiveChain's state (what `reprice` and `parsed_chain` read)."""

    currency: str
    names: tuple[str, ...]
    strike_usd: np.ndarray
    expiry_s: np.ndarray          # per row, epoch seconds
    is_call: np.ndarray
    mark_coin: np.ndarray
    mark_iv: np.ndarray           # fraction
    mark_time_ms: np.ndarray
    expiry_row: np.ndarray        # per row: position in expiries_s
    expiries_s: np.ndarray        # sorted distinct expiries, epoch seconds
    forward_usd: np.ndarray       # per expiry
    forward_source: tuple[str, ...]
    forward_index: tuple[str | None, ...]
    quotes: dict
    quotes_at: datetime | None
    index_usd: float
    index_at: datetime | None
    marks_at: datetime | None
    version: int


class ExpiryStats(NamedTuple):
    """One expiry of a view: forward (USD) and smile statistics from the marks (fractions)."""

    expiry: datetime
    expiry_code: str
    t_years: float
    forward_usd: float
    forward_source: str
    atm_iv_marks: float
    rr25_marks: float
    bf25_marks: float
    n: int


@dataclass(frozen=True)
class LiveView:
    """A repriced live chain: one entry per option with a mark (sorted by expiry, strike, calls first).

    `rows` arrays: instrument, expiry_i (index into `expiries`), strike_usd, is_call, t_years, forward_usd,
    mark_coin, mark_usd (coin mark × spot index), mark_iv (Deribit, fraction), iv_mark (solved from the
    coin mark, fraction), mark_time_ms, and the greeks of `qortcli.quant.black76` (from the mark IV).
    """

    currency: str
    basis: str
    marks_at: datetime | None
    index_usd: float
    index_at: datetime | None
    rows: dict
    expiries: tuple[ExpiryStats, ...]
    atm_iv_30d_marks: float
    tenor_days: float
    front_expiry: str | None
    rr25_front_marks: float
    bf25_front_marks: float
    n_without_mark: int
    version: int


@dataclass
class LiveChain:
    """One currency's options in memory (see the module docstring)."""

    currency: str
    names: list = field(default_factory=list)
    strike_usd: np.ndarray = field(default_factory=lambda: np.empty(0))
    expiry_s: np.ndarray = field(default_factory=lambda: np.empty(0))
    is_call: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    mark_coin: np.ndarray = field(default_factory=lambda: np.empty(0))
    mark_iv: np.ndarray = field(default_factory=lambda: np.empty(0))
    mark_time_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    forward_index: list = field(default_factory=list)
    quotes: dict = field(default_factory=dict)
    quotes_at: datetime | None = None
    expiries_s: np.ndarray = field(default_factory=lambda: np.empty(0))
    forward_usd: np.ndarray = field(default_factory=lambda: np.empty(0))
    forward_source: list = field(default_factory=list)
    index_usd: float = float("nan")
    index_at: datetime | None = None
    marks_at: datetime | None = None
    version: int = 0
    ignored: int = 0              # instruments in updates that are not options of this currency

    def __post_init__(self):
        self.currency = self.currency.upper()
        if not self.quotes:
            self.quotes = {name: np.empty(0) for name in QUOTES}
        self.rows: dict[str, int] = {}
        self.expiry_row = np.empty(0, dtype=np.intp)
        self.partner = np.empty(0, dtype=np.intp)

    # --- building ---------------------------------------------------------------------------------

    @classmethod
    def from_parsed(cls, chain: ParsedChain) -> "LiveChain":
        """The live chain of a REST-collected chain (marks, per-expiry median forward, quotes, index)."""
        live = cls(chain.currency)
        live._load(chain)
        return live

    def reseed(self, chain: ParsedChain) -> tuple[int, int]:
        """Replace everything with a fresh REST chain (after a gap); returns (instruments added, removed)."""
        before = set(self.names)
        self._load(chain)
        after = set(self.names)
        return len(after - before), len(before - after)

    def _load(self, chain: ParsedChain) -> None:
        records = chain.records
        n = len(records)
        self.names = [r.symbol for r in records]
        self.strike_usd = np.array([r.strike_usd for r in records], dtype=float)
        self.expiry_s = np.array([_epoch_s(r.expiry) for r in records], dtype=float)
        self.is_call = np.array([r.option_type == "call" for r in records], dtype=bool)
        self.mark_coin = np.array([r.mark_coin for r in records], dtype=float)
        self.mark_iv = np.array([np.nan if r.mark_iv is None else r.mark_iv for r in records], dtype=float)
        self.mark_time_ms = np.full(n, chain.timestamp.timestamp() * 1000.0)
        self.forward_index = [r.forward_index for r in records]
        self.quotes = {name: np.array([np.nan if getattr(r, attr) is None else getattr(r, attr) for r in records],
                                      dtype=float) for name, attr in QUOTES.items()}
        self.quotes_at = chain.timestamp
        spots = np.array([r.index_price_usd for r in records], dtype=float)
        self.index_usd = float(np.median(spots)) if n else float("nan")
        self.index_at = chain.timestamp
        self.marks_at = chain.timestamp
        row_forward = np.array([r.forward_usd for r in records], dtype=float)
        self.expiries_s = np.unique(self.expiry_s)
        self._index_rows()
        fwd = np.full(self.expiries_s.size, np.nan)
        for e in range(self.expiries_s.size):  # one median per expiry (Deribit stamps rows separately)
            values = row_forward[self.expiry_row == e]
            values = values[np.isfinite(values)]
            fwd[e] = np.median(values) if values.size else np.nan
        self.forward_usd = fwd
        self.forward_source = ["seed"] * fwd.size
        self.version += 1

    def _index_rows(self) -> None:
        """Recompute the name → row map, the expiry of each row and each call's put (and back)."""
        self.rows = {name: i for i, name in enumerate(self.names)}
        self.expiry_row = np.searchsorted(self.expiries_s, self.expiry_s).astype(np.intp)
        n = len(self.names)
        partner = np.full(n, -1, dtype=np.intp)
        if n > 1:
            order = np.lexsort((self.is_call, self.strike_usd, self.expiry_s))
            e, k, c = self.expiry_s[order], self.strike_usd[order], self.is_call[order]
            pair = (e[1:] == e[:-1]) & (k[1:] == k[:-1]) & (c[1:] != c[:-1])
            left, right = order[:-1][pair], order[1:][pair]
            partner[left], partner[right] = right, left
        self.partner = partner

    def _restructure(self, keep: np.ndarray, added: list[Terms]) -> None:
        """Keep the rows where `keep` and append `added` (no mark yet); expiries and forwards follow."""
        old_expiries = dict(zip(self.expiries_s.tolist(), zip(self.forward_usd.tolist(), self.forward_source)))
        m = len(added)

        def grow(values: np.ndarray, fill, dtype=float) -> np.ndarray:
            return np.concatenate([values[keep], np.full(m, fill, dtype=dtype)])

        self.names = [name for name, k in zip(self.names, keep) if k] + [t.name for t in added]
        self.forward_index = [fi for fi, k in zip(self.forward_index, keep) if k] + [None] * m
        self.strike_usd = np.concatenate([self.strike_usd[keep], np.array([t.strike_usd for t in added], dtype=float)])
        self.expiry_s = np.concatenate([self.expiry_s[keep], np.array([_epoch_s(t.expiry) for t in added], dtype=float)])
        self.is_call = np.concatenate([self.is_call[keep], np.array([t.option_type == "call" for t in added], dtype=bool)])
        self.mark_coin = grow(self.mark_coin, np.nan)
        self.mark_iv = grow(self.mark_iv, np.nan)
        self.mark_time_ms = grow(self.mark_time_ms, np.nan)
        self.quotes = {name: grow(values, np.nan) for name, values in self.quotes.items()}
        self.expiries_s = np.unique(self.expiry_s)
        carried = [old_expiries.get(e, (np.nan, "none")) for e in self.expiries_s.tolist()]
        self.forward_usd = np.array([f for f, _ in carried], dtype=float)
        self.forward_source = [s for _, s in carried]
        self._index_rows()
        # a new instrument on a listed expiry takes that expiry's forward index name
        by_expiry = {}
        for i, fi in enumerate(self.forward_index):
            if fi is not None:
                by_expiry.setdefault(int(self.expiry_row[i]), fi)
        self.forward_index = [fi if fi is not None else by_expiry.get(int(e)) for fi, e in
                              zip(self.forward_index, self.expiry_row)]

    def _terms(self, names: Iterable[str]) -> list[Terms]:
        """Terms parsed from instrument names of this currency (others counted in `ignored`)."""
        out = []
        for name in names:
            try:
                parsed = parse_instrument(name)
            except ValueError:
                self.ignored += 1
                continue
            if parsed.underlying != self.currency:
                self.ignored += 1
                continue
            out.append(Terms(parsed.name, parsed.strike, parsed.expiry, parsed.option_type))
        return out

    def add(self, terms: list[Terms]) -> int:
        """Add instruments not in the chain yet (no mark until one arrives); returns how many were added."""
        new = [t for t in dict((t.name, t) for t in terms).values() if t.name not in self.rows]
        if new:
            self._restructure(np.ones(len(self.names), dtype=bool), new)
            self.version += 1
        return len(new)

    def remove(self, names: Iterable[str]) -> int:
        """Remove instruments (expired, closed); returns how many were removed."""
        drop = [self.rows[n] for n in names if n in self.rows]
        if drop:
            keep = np.ones(len(self.names), dtype=bool)
            keep[drop] = False
            self._restructure(keep, [])
            self.version += 1
        return len(drop)

    def prune_expired(self, now: datetime) -> int:
        """Remove the instruments whose expiry is at or before `now`."""
        gone = self.expiry_s <= _epoch_s(now)
        if gone.any():
            self._restructure(~gone, [])
            self.version += 1
        return int(gone.sum())

    # --- updates ----------------------------------------------------------------------------------

    def apply_marks(self, event: MarkPrices) -> int:
        """Apply one mark-price notification; returns the number of rows updated."""
        rows = np.fromiter((self.rows.get(n, -1) for n in event.instruments), dtype=np.intp,
                           count=len(event.instruments))
        if (rows < 0).any():
            unknown = [event.instruments[i] for i in np.flatnonzero(rows < 0)]
            if self.add(self._terms(unknown)):
                rows = np.fromiter((self.rows.get(n, -1) for n in event.instruments), dtype=np.intp,
                                   count=len(event.instruments))
        known = rows >= 0
        r = rows[known]
        if r.size == 0:
            return 0
        self.mark_coin[r] = event.mark_coin[known]
        self.mark_iv[r] = event.mark_iv[known]
        self.mark_time_ms[r] = event.mark_time_ms[known]
        self._parity_forwards(r)
        if self.marks_at is None or event.timestamp > self.marks_at:
            self.marks_at = event.timestamp
        self.version += 1
        return int(r.size)

    def _parity_forwards(self, updated: np.ndarray) -> None:
        """Each expiry's forward from the call/put pairs whose two marks are both in this update."""
        fresh = np.zeros(len(self.names), dtype=bool)
        fresh[updated] = True
        calls = updated[self.is_call[updated]]
        puts = self.partner[calls]
        ok = puts >= 0
        calls, puts = calls[ok], puts[ok]
        both = fresh[puts]
        calls, puts = calls[both], puts[both]
        if calls.size == 0:
            return
        result = parity_forwards(self.strike_usd[calls], self.mark_coin[calls], self.mark_coin[puts],
                                 self.expiry_row[calls], self.expiries_s.size, prior_forward_usd=self.forward_usd)
        found = np.isfinite(result.forward_usd)
        self.forward_usd[found] = result.forward_usd[found]
        for e in np.flatnonzero(found):
            self.forward_source[e] = "parity"

    def apply_index(self, event: IndexPrice) -> None:
        self.index_usd = event.price_usd
        self.index_at = event.timestamp
        self.version += 1

    def apply_state(self, event: InstrumentState) -> str:
        """Apply an instrument.state notification: returns "added", "removed" or "" (nothing to do)."""
        if event.state in NEW_STATES:
            return "added" if self.add(self._terms([event.instrument])) else ""
        row = self.rows.get(event.instrument)
        if row is None:
            return ""
        ended = event.state in ENDED_STATES or (event.state == SETTLED and
                                                self.expiry_s[row] <= _epoch_s(event.timestamp))
        return "removed" if ended and self.remove([event.instrument]) else ""

    def merge_book(self, rows: list[dict], at: datetime) -> int:
        """Quote fields from a REST book summary (`get_book_summary_by_currency` rows, parsed by the
        collector's own rules); instruments of the book missing from the chain are added with the book's
        mark. Rows absent from the book get no quotes. Returns the number of rows quoted."""
        parsed = records_from_book_summary(rows, self.currency, snapshot_time=at,
                                           index_price_usd=self.index_usd if math.isfinite(self.index_usd) else None,
                                           source="book_summary")
        records = {r.symbol: r for r in parsed.records}
        missing = [Terms(r.symbol, r.strike_usd, r.expiry, r.option_type) for r in records.values()
                   if r.symbol not in self.rows]
        if missing:
            self.add(missing)
            for t in missing:
                r, i = records[t.name], self.rows[t.name]
                self.mark_coin[i] = r.mark_coin
                self.mark_iv[i] = np.nan if r.mark_iv is None else r.mark_iv
                self.mark_time_ms[i] = at.timestamp() * 1000.0
                self.forward_index[i] = r.forward_index
                e = self.expiry_row[i]
                if not math.isfinite(self.forward_usd[e]):
                    self.forward_usd[e], self.forward_source[e] = r.forward_usd, "book"
        rows_i = np.fromiter((self.rows.get(s, -1) for s in records), dtype=np.intp, count=len(records))
        for name, attr in QUOTES.items():
            values = np.full(len(self.names), np.nan)
            values[rows_i] = [np.nan if getattr(r, attr) is None else getattr(r, attr) for r in records.values()]
            self.quotes[name] = values
        for s, i in zip(records, rows_i):
            if self.forward_index[i] is None:
                self.forward_index[i] = records[s].forward_index
        self.quotes_at = at
        self.version += 1
        return int(rows_i.size)

    def clear_quotes(self) -> None:
        """Forget the quote fields (the last book could not be refreshed): no stale bid/ask is stored."""
        self.quotes = {name: np.full(len(self.names), np.nan) for name in QUOTES}
        self.quotes_at = None

    def freeze(self) -> LiveInputs:
        """An immutable copy for a writer thread (numpy copies of ~20 arrays of the chain's length)."""
        return LiveInputs(
            currency=self.currency, names=tuple(self.names), strike_usd=self.strike_usd.copy(),
            expiry_s=self.expiry_s.copy(), is_call=self.is_call.copy(), mark_coin=self.mark_coin.copy(),
            mark_iv=self.mark_iv.copy(), mark_time_ms=self.mark_time_ms.copy(), expiry_row=self.expiry_row.copy(),
            expiries_s=self.expiries_s.copy(), forward_usd=self.forward_usd.copy(),
            forward_source=tuple(self.forward_source), forward_index=tuple(self.forward_index),
            quotes={k: v.copy() for k, v in self.quotes.items()}, quotes_at=self.quotes_at,
            index_usd=self.index_usd, index_at=self.index_at, marks_at=self.marks_at, version=self.version)


# --------------------------------------------------------------------------- pricing and output

def _live_rows(inputs: LiveInputs, at_s: float) -> np.ndarray:
    """Rows that can be priced: a finite positive mark, a forward, an expiry after `at_s`, in output order."""
    fwd = inputs.forward_usd[inputs.expiry_row] if inputs.expiry_row.size else np.empty(0)
    with np.errstate(invalid="ignore"):
        ok = (np.isfinite(inputs.mark_coin) & (inputs.mark_coin >= 0) & np.isfinite(fwd) & (fwd > 0)
              & (inputs.expiry_s > at_s) & (inputs.strike_usd > 0))
    idx = np.flatnonzero(ok)
    order = np.lexsort((~inputs.is_call[idx], inputs.strike_usd[idx], inputs.expiry_s[idx]))
    return idx[order]


def reprice(inputs: LiveInputs, basis: str = DEFAULT_BASIS, tenor_days: float = 30.0,
            front_min_days: float = 2.0) -> LiveView:
    """Value every marked option of `inputs` at the marks' time (see the module docstring for the units).

    `tenor_days` is the constant maturity of `atm_iv_30d_marks`; the front expiry (of `rr25_front_marks`) is
    the nearest with at least `front_min_days` to run. Vectorised over options; one small loop over
    expiries for the smile statistics.
    """
    if basis not in BASES:
        raise ValueError(f"unknown day-count basis {basis!r}; use one of {sorted(BASES)}")
    days_per_year = BASES[basis]
    at = inputs.marks_at or datetime.now(timezone.utc)
    at_s = _epoch_s(at)
    idx = _live_rows(inputs, at_s)
    K = inputs.strike_usd[idx]
    call = inputs.is_call[idx]
    expiry_pos = inputs.expiry_row[idx]
    F = inputs.forward_usd[expiry_pos]
    t = (inputs.expiry_s[idx] - at_s) / (days_per_year * SECONDS_PER_DAY)
    mark = inputs.mark_coin[idx]
    solved = implied_vol.implied_vol_coin(mark, F, K, t, call)
    mark_iv = inputs.mark_iv[idx]
    sigma = np.where(np.isfinite(mark_iv), mark_iv, solved.sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = black76.greeks(F, K, t, sigma, call, 0.0, days_per_year=days_per_year)
    # expiries present, in order; rows of one expiry are contiguous. Smile statistics: `quant.smile` (marks)
    used, first, counts = np.unique(expiry_pos, return_index=True, return_counts=True)
    frame = pd.DataFrame({"expiry": pd.to_datetime(inputs.expiries_s[expiry_pos], unit="s", utc=True),
                          "t_years": t, "expiry_forward_usd": F, "forward_usd": F, "strike_usd": K, "is_call": call,
                          "mark_iv": sigma, "delta": g["delta"]})
    by_expiry = {pd.Timestamp(s.expiry): s for s in smile.marks_expiry_stats(frame)}
    expiries = []
    for e, start, n in zip(used.tolist(), first.tolist(), counts.tolist()):
        expiry = _utc(float(inputs.expiries_s[e]))
        st = by_expiry.get(pd.Timestamp(expiry))
        expiries.append(ExpiryStats(expiry, expiry_code(expiry), float(t[start]), float(F[start]),
                                    inputs.forward_source[e], _nan(st.atm_iv if st else None),
                                    _nan(st.rr25 if st else None), _nan(st.bf25 if st else None), n))
    if by_expiry:
        (cm,) = smile.constant_maturity(list(by_expiry.values()), [tenor_days], days_per_year)
        atm30 = _nan(cm.atm_iv)
    else:
        atm30 = float("nan")
    front = next((x for x in expiries if x.t_years * days_per_year >= front_min_days), None)
    rows = {"instrument": np.array(inputs.names, dtype=object)[idx], "expiry_i": np.searchsorted(used, expiry_pos),
            "strike_usd": K, "is_call": call, "t_years": t, "forward_usd": F, "mark_coin": mark,
            "mark_usd": mark * inputs.index_usd, "mark_iv": mark_iv, "iv_mark": solved.sigma,
            "mark_time_ms": inputs.mark_time_ms[idx], **{name: g[name] for name in GREEKS}}
    unmarked = int((~np.isfinite(inputs.mark_coin)).sum())
    return LiveView(currency=inputs.currency, basis=basis, marks_at=inputs.marks_at, index_usd=inputs.index_usd,
                    index_at=inputs.index_at, rows=rows, expiries=tuple(expiries), atm_iv_30d_marks=atm30,
                    tenor_days=tenor_days, front_expiry=front.expiry_code if front else None,
                    rr25_front_marks=front.rr25_marks if front else float("nan"),
                    bf25_front_marks=front.bf25_marks if front else float("nan"), n_without_mark=unmarked,
                    version=inputs.version)


#: the per-instrument columns of a live_marks document, in order
COLUMNS = ("instrument", "expiry_i", "strike_usd", "is_call", "mark_coin", "mark_usd", "mark_iv", "iv_mark",
           "mark_time_ms") + GREEKS


def live_marks_document(view: LiveView, updated_at: datetime, stream: dict | None = None) -> dict:
    """The `live_marks` document of one currency (natural key: currency), columnar per instrument.

    Top level: currency, updated_at (write time, UTC), marks_at (Deribit time of the latest marks),
    index_usd (spot) and index_at, basis, source, atm_iv_30d_marks (constant-maturity ATM IV at
    `tenor_days`, from the marks), front_expiry with rr25_front_marks / bf25_front_marks, n_instruments,
    n_expiries, `expiries` [{expiry, expiry_code, t_years, forward_usd, forward_source, atm_iv_marks,
    rr25_marks, bf25_marks, n}], `instruments` {column: list} (COLUMNS; greeks in black76 units: delta,
    gamma per USD, vega USD per vol point, theta USD per day, rho USD per 1 %, and the coin set), and
    `stream` (session status: connected, reconnects, messages, ...).
    """
    rows = view.rows
    columns = {}
    for name in COLUMNS:
        values = rows[name]
        if values.dtype.kind == "f":
            columns[name] = np.where(np.isfinite(values), values, None).tolist()
        else:
            columns[name] = values.tolist()
    return {
        "currency": view.currency, "updated_at": updated_at, "marks_at": view.marks_at, "index_usd": _opt(view.index_usd),
        "index_at": view.index_at, "basis": view.basis, "source": SOURCE,
        "atm_iv_30d_marks": _opt(view.atm_iv_30d_marks), "tenor_days": view.tenor_days,
        "front_expiry": view.front_expiry, "rr25_front_marks": _opt(view.rr25_front_marks),
        "bf25_front_marks": _opt(view.bf25_front_marks), "n_instruments": int(len(rows["instrument"])),
        "n_without_mark": view.n_without_mark, "n_expiries": len(view.expiries),
        "expiries": [{"expiry": x.expiry, "expiry_code": x.expiry_code, "t_years": x.t_years,
                      "forward_usd": _opt(x.forward_usd), "forward_source": x.forward_source,
                      "atm_iv_marks": _opt(x.atm_iv_marks), "rr25_marks": _opt(x.rr25_marks),
                      "bf25_marks": _opt(x.bf25_marks), "n": x.n} for x in view.expiries],
        "instruments": columns, "stream": dict(stream or {}), "version": view.version,
    }


def parsed_chain(inputs: LiveInputs, source: str = SOURCE) -> ParsedChain:
    """The live chain as the collector's `ParsedChain` (for `collect.store_chain`): one record per
    option with a mark, at the marks' time (floored to the millisecond); forward = its expiry's live
    forward, spot = the live index, quotes as of the last REST book (None when unknown), greeks None (as
    for every book-summary source). Rows without a mark, forward or time left are counted as skipped."""
    at = inputs.marks_at or datetime.now(timezone.utc)
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)   # what BSON keeps
    at_s = _epoch_s(at)
    idx = _live_rows(inputs, at_s)
    fwd = inputs.forward_usd[inputs.expiry_row] if inputs.expiry_row.size else np.empty(0)
    skipped = {SKIP_NO_MARK: int((~np.isfinite(inputs.mark_coin)).sum()),
               SKIP_EXPIRED: int(((inputs.expiry_s <= at_s) & np.isfinite(inputs.mark_coin)).sum())}
    skipped[SKIP_NO_FORWARD] = len(inputs.names) - len(idx) - skipped[SKIP_NO_MARK] - skipped[SKIP_EXPIRED]
    skipped = {k: v for k, v in skipped.items() if v > 0}
    quotes = {name: [None if not math.isfinite(v) else v for v in values[idx].tolist()]
              for name, values in inputs.quotes.items()}
    names = [inputs.names[i] for i in idx.tolist()]
    strikes, expiries = inputs.strike_usd[idx].tolist(), inputs.expiry_s[idx].tolist()
    calls, marks, ivs = inputs.is_call[idx].tolist(), inputs.mark_coin[idx].tolist(), inputs.mark_iv[idx].tolist()
    forwards = fwd[idx].tolist()
    records = [OptionRecord(
        symbol=names[j], underlying=inputs.currency, strike_usd=strikes[j], expiry=_utc(expiries[j]),
        option_type="call" if calls[j] else "put", forward_usd=forwards[j], forward_index=inputs.forward_index[i],
        index_price_usd=inputs.index_usd, mark_coin=marks[j], bid_coin=quotes["bid_coin"][j],
        ask_coin=quotes["ask_coin"][j], mid_coin=quotes["mid_coin"][j],
        mark_iv=None if not math.isfinite(ivs[j]) else ivs[j], volume=quotes["volume_coin"][j],
        volume_usd=quotes["volume_usd"][j], open_interest=quotes["open_interest_coin"][j],
        interest_rate=quotes["interest_rate"][j], greeks=None) for j, i in enumerate(idx.tolist())]
    return ParsedChain(currency=inputs.currency, timestamp=at, records=records, skipped=skipped, source=source)
