"""Reads of stored strategy suggestions (`strategy_suggestions`)."""

from __future__ import annotations

from datetime import datetime

from qortcli.store import schema
from qortcli.timeutils import as_utc

__all__ = ["open_suggestions", "suggestion", "tracking_floor"]


def open_suggestions(db, currency: str | None = None) -> list[dict]:
    """Suggestions still open (not settled), oldest first (of `currency` if given)."""
    query: dict = {"status": "open"}
    if currency:
        query["currency"] = currency.upper()
    return list(db[schema.SUGGESTIONS].find(query).sort("timestamp", 1))


def suggestion(db, suggestion_id: str) -> dict | None:
    """One stored suggestion by its id (`snapshot|strategy|expiry`), or None."""
    return db[schema.SUGGESTIONS].find_one({"_id": suggestion_id})


def tracking_floor(db, currency: str) -> datetime | None:
    """The oldest time open suggestions of `currency` still need chains from: for each, the last point its
    track record holds (`tracked_through`), else its own snapshot time. None when nothing is open."""
    floor = None
    for doc in db[schema.SUGGESTIONS].find({"status": "open", "currency": currency.upper()},
                                           {"timestamp": 1, "tracked_through": 1}):
        moment = as_utc(doc.get("tracked_through") or doc["timestamp"])
        floor = moment if floor is None or moment < floor else floor
    return floor
