"""The risk step: a book valued on each currency's latest complete chain, with its scenario grid.

`run_risk(db, book="main", currency=None)` reads the book (`qortcli.store.read.book`), the latest chain and
the latest stored SVI surface of each currency it holds (or of `currency`), values it with
`qortcli.quant.risk.value_book` (maths and units there) on the grid of the `[risk]` settings, and stores one
`risk` document per currency per run (natural key book|currency|snapshot_id: re-running on the same
snapshot replaces it). Clear one-line errors: an empty book, a leg expired or no longer listed (with the
command that removes it), a missing surface when the book holds options. With `skip_missing` (the
worker's default) a book that does not exist or holds nothing is skipped: run status "ok", counts say so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd

from qortcli.config import get_settings
from qortcli.errors import ConfigError, StepError
from qortcli.quant import risk as qrisk
from qortcli.sources.positions import OPTION, Position
from qortcli.steps.book import book_name, check_against_chain, positions_frame
from qortcli.steps.common import day_count
from qortcli.store import ops, read, schema
from qortcli.store.runs import recorded_run
from qortcli.timeutils import BASES, as_utc, utcnow

#: `[risk]` settings and their defaults (vol shifts in vol points, spot moves and min_vol as fractions)
RISK_DEFAULTS = {"spot_move_min": -0.5, "spot_move_max": 0.5, "spot_steps": 21, "vol_shift_min": -30.0,
                 "vol_shift_max": 30.0, "vol_steps": 13, "horizons_days": [0, 1, 7], "min_vol": 0.01}


@dataclass(frozen=True)
class RiskSummary:
    """One risk run: the stored `risk` documents (one per currency), or why the book was skipped."""

    book: str
    reports: tuple[dict, ...]
    stored: int
    skipped: str | None = None
    step: str = field(default="risk")

    def to_dict(self) -> dict:
        return asdict(self)


def grid_from_settings(section: dict | None = None) -> qrisk.GridSpec:
    """The scenario grid of the `[risk]` settings (defaults `RISK_DEFAULTS`); ConfigError names a bad setting."""
    cfg = get_settings().section("risk") if section is None else dict(section)
    unknown = sorted(set(cfg) - set(RISK_DEFAULTS))
    if unknown:
        raise ConfigError(f"[risk] unknown setting(s) {', '.join(unknown)}; known: {', '.join(RISK_DEFAULTS)}")
    values = {**RISK_DEFAULTS, **cfg}
    for key, value in values.items():
        numbers = value if key == "horizons_days" else [value]
        if not isinstance(numbers, list) or not numbers or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) for v in numbers):
            want = "a list of numbers of days" if key == "horizons_days" else "a number"
            raise ConfigError(f"[risk] {key} = {value!r} must be {want}")
    try:
        return qrisk.GridSpec.linear(values["spot_move_min"], values["spot_move_max"], values["spot_steps"],
                                     values["vol_shift_min"], values["vol_shift_max"], values["vol_steps"],
                                     values["horizons_days"], values["min_vol"])
    except ValueError as exc:
        raise ConfigError(f"[risk] {exc}") from None


def _check_listed(name: str, positions: list[Position], chain) -> None:
    """Every leg must still trade on the chain; the message says how to drop one that does not."""
    for p in positions:
        try:
            check_against_chain([p], chain)
        except StepError as exc:
            raise StepError(f"{exc}; remove it with `qortcli book remove {p.instrument} --book {name}`") from None


def _records(frame) -> list[dict]:
    """Frame rows as plain dicts (NaT → None; the store's to_plain does the rest)."""
    return [{k: (None if v is pd.NaT else v) for k, v in row.items()} for row in frame.to_dict("records")]


def risk_document(name: str, revision: int, result: qrisk.BookRisk, chain, surface: dict | None, basis: str,
                  grid: qrisk.GridSpec) -> dict:
    """The stored `risk` document of one currency (docs/CONTRACTS.md "risk")."""
    snap = chain.snapshot
    positions = _records(result.positions)
    by_expiry = _records(result.by_expiry)
    g = result.grid
    notes = []
    surface_info = None
    if surface is not None:
        surface_info = {"snapshot_id": surface.get("snapshot_id"), "timestamp": surface.get("timestamp"),
                        "same_snapshot": surface.get("snapshot_id") == snap.snapshot_id}
        if not surface_info["same_snapshot"]:
            notes.append(f"the surface was fitted on {surface.get('snapshot_id')}, not on the chain's snapshot "
                         f"{snap.snapshot_id} (run `qortcli surface --currency {snap.currency}`)")
    if (result.positions["vol_source"] == "svi").any():
        notes.append("options without a mark IV are valued at the SVI vol (vol_source 'svi')")
    if (result.positions["forward_source"] == "interpolated").any():
        notes.append("futures with no option series on them are priced on the interpolated forward curve")
    if g.surface_fallbacks:
        notes.append(f"{g.surface_fallbacks} grid cells had no positive SVI variance: smile change taken as 0")
    return {
        "book": name, "book_revision": revision, "currency": snap.currency, "snapshot_id": snap.snapshot_id,
        "timestamp": snap.timestamp, "computed_at": utcnow(), "basis": basis, "index_usd": result.index_usd,
        "surface": surface_info, "positions": positions, "totals": asdict(result.totals),
        "account": asdict(result.account), "by_expiry": by_expiry,
        "grid": {"axes": list(g.axes), "spot_moves": g.spot_moves, "vol_shifts": g.vol_shifts,
                 "horizons_days": g.horizons_days, "spot_usd": g.spot_usd, "pnl_coin": g.pnl_coin,
                 "pnl_usd": g.pnl_usd, "value_change_usd": g.value_change_usd, "min_vol": g.min_vol,
                 "surface_fallbacks": g.surface_fallbacks},
        "worst": {k: {**asdict(w), "index": list(w.index)} for k, w in g.worst.items()},
        "method": dict(result.method), "notes": notes,
        "settings": {"spot_steps": int(grid.spot_moves.size), "vol_steps": int(grid.vol_shifts.size),
                     "min_vol": grid.min_vol},
    }


def run_risk(db, book: str | None = None, currency: str | None = None, basis: str | None = None,
             grid: qrisk.GridSpec | None = None, skip_missing: bool = True) -> RiskSummary:
    """Value book `book` (default "main") per currency on the latest chain and store one `risk` document each.

    `currency` restricts to one currency; `basis` defaults to `[pricing] day_count`; `grid` to the `[risk]`
    settings. `skip_missing`: a missing or empty book is a quiet skip (status ok) instead of a StepError.
    """
    name = book_name(book)
    basis = day_count(basis)
    grid = grid or grid_from_settings()
    cur_filter = currency.strip().upper() if currency else None
    with recorded_run(db, "risk", {"book": name, "currency": cur_filter, "basis": basis}) as run:
        record = read.book(db, name)
        if record is None or not record.positions:
            why = (f"no book {name!r} in the store" if record is None else f"book {name} is empty") + \
                  " — add positions with `qortcli book import FILE` or `qortcli book add INSTRUMENT SIZE`"
            run.counts.update(books=0 if record is None else 1, positions=0, stored=0)
            if skip_missing:
                return RiskSummary(book=name, reports=(), stored=0, skipped=why)
            raise StepError(why)
        positions = [Position.from_doc(p, source=f"book {name}") for p in record.positions]
        held = sorted({p.currency for p in positions})
        if cur_filter and cur_filter not in held:
            raise StepError(f"book {name} has no {cur_filter} position (it holds {', '.join(held)})")
        docs = []
        for cur in [cur_filter] if cur_filter else held:
            legs = [p for p in positions if p.currency == cur]
            chain = read.latest_chain(db, cur, basis)
            _check_listed(name, legs, chain)
            surface = read.latest_surface(db, cur)
            if surface is None and any(p.kind == OPTION for p in legs):
                raise StepError(f"no stored volatility surface for {cur}: the scenario grid takes its vols from it; "
                                f"run `qortcli surface --currency {cur}` first")
            try:
                result = qrisk.value_book(positions_frame(legs), chain.frame, surface, grid, BASES[basis],
                                          as_of=as_utc(chain.snapshot.timestamp))
            except ValueError as exc:
                raise StepError(f"book {name} on {chain.snapshot.snapshot_id}: {exc}") from None
            docs.append(risk_document(name, record.revision, result, chain, surface, basis, grid))
        stored = ops.upsert_many(db, schema.RISK, docs)
        run.counts.update(books=1, currencies=len(docs), positions=sum(len(d["positions"]) for d in docs), stored=stored)
    return RiskSummary(book=name, reports=tuple(ops.to_plain(d) for d in docs), stored=stored)
