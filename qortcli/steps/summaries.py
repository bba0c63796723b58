"""Per-snapshot summaries: one small document per currency per snapshot, the source of every history view.

Written by the surface step right after it stores a surface (`write_summary`), and for stored snapshots
that lack one by `qortcli surface --backfill` (`backfill`). A summary holds (docs/CONTRACTS.md
"snapshot_summaries"): constant-maturity ATM IV, RR25 and BF25 at 7/30/60/90/180 days from the marks and
from the SVI fit (both named), the 30-day variance-swap vol of the fit (DVOL-like), the term slope and
term structure, the spot index, and the positioning totals (open interest and volume by calls/puts in
coin and USD, put/call ratios, max pain, gamma exposure, implied moves). Beside each per-snapshot document
a daily roll-up (resolution "day") holds the day's last snapshot, so year-long views read 365 points.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from qortcli.quant import market, smile
from qortcli.store import ops, read, schema
from qortcli.timeutils import BASES, utcnow

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]


def summary_document(chain: read.Chain, surface: dict | None) -> dict:
    """The summary document of one chain (and its stored surface, or None: then every `_svi` field is None)."""
    frame = chain.frame
    info = chain.snapshot
    basis = frame.attrs.get("basis") or "ACT/365"
    days_per_year = BASES[basis]
    live = frame[frame["t_years"] > 0]
    stats = smile.summary_stats(live, surface, read.SUMMARY_TENORS_DAYS, days_per_year)
    index = frame["index_usd"].to_numpy(dtype=float)
    doc = {"currency": info.currency, "snapshot_id": info.snapshot_id, "timestamp": info.timestamp,
           "resolution": "snapshot", "basis": basis, "computed_at": utcnow(), "has_surface": stats.has_surface,
           "index_usd": float(np.nanmedian(index)) if np.isfinite(index).any() else None,
           "n_options": int(len(live)), "n_expiries": int(live["expiry"].nunique())}
    doc.update(stats.fields())
    try:
        totals = market.market_totals(live, days_per_year=days_per_year)
        doc.update(totals.as_document())
    except ValueError as exc:   # a chain without the columns/quotes positioning needs: say so, keep the rest
        doc["market_unavailable"] = str(exc)
    return doc


def write_summary(db, chain: read.Chain, surface: dict | None) -> dict:
    """Store the summary of one chain and, if it is the latest of its UTC day, the day's roll-up."""
    doc = summary_document(chain, surface)
    ops.upsert_many(db, schema.SUMMARIES, [doc])
    day_id = schema.natural_key(schema.SUMMARIES, {**doc, "resolution": "day"})
    current = read.summary_at(db, day_id)
    if current is None or current["timestamp"] <= doc["timestamp"]:
        ops.upsert_many(db, schema.SUMMARIES, [{**doc, "resolution": "day"}])
    return doc


def missing(db, currency: str) -> list[read.SnapshotInfo]:
    """Complete snapshots of `currency` that have no summary yet, oldest first."""
    have = set(read.summary_series(db, currency, columns=("snapshot_id",)).get("snapshot_id", []))
    return [info for info in read.snapshots(db, currency) if info.snapshot_id not in have]


def backfill(db, currency: str | None = None, basis: str = "ACT/365", progress: Progress | None = None) -> dict:
    """Write the summaries that stored snapshots lack (their stored surface where there is one, else marks
    only). Returns {"written", "failed": [{snapshot_id, error}], "currencies"}."""
    currencies = [currency.upper()] if currency else read.currencies(db)
    todo = [(cur, info) for cur in currencies for info in missing(db, cur)]
    written, failed = 0, []
    for i, (cur, info) in enumerate(todo):
        if progress:
            progress(info.snapshot_id, i, len(todo))
        try:
            chain = read.chain_at(db, info.snapshot_id, basis)
            write_summary(db, chain, read.surface_at(db, info.snapshot_id))
            written += 1
        except Exception as exc:  # one bad snapshot must not stop the others; each is named
            log.warning("summary of %s not written: %s", info.snapshot_id, exc)
            failed.append({"snapshot_id": info.snapshot_id, "error": f"{type(exc).__name__}: {exc}"})
    if progress:
        progress("done", len(todo), len(todo))
    return {"written": written, "failed": failed, "currencies": currencies, "candidates": len(todo)}
