"""Reads for the optimizer: daily closes of many symbols, and stored allocations of one portfolio."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from qortcli.store import schema

__all__ = ["CLOSE_COLUMNS", "closes_long", "portfolio_at", "portfolio_before"]

#: the columns of `closes_long` (close and price_usd in USD; sector as stored by `collect prices`)
CLOSE_COLUMNS = ("symbol", "timestamp", "close", "price_usd", "sector")


def closes_long(db, symbols: list[str] | None = None, start: datetime | None = None,
                end: datetime | None = None) -> pd.DataFrame:
    """Daily price rows of `symbols` (default: every symbol) with start <= timestamp <= end (UTC), one row per
    stored document, columns CLOSE_COLUMNS (missing fields NaN). Served by the (symbol, timestamp) index."""
    query: dict = {}
    if symbols:
        query["symbol"] = {"$in": list(symbols)}
    window: dict = {}
    if start is not None:
        window["$gte"] = start
    if end is not None:
        window["$lte"] = end
    if window:
        query["timestamp"] = window
    projection = {"_id": 0, **{c: 1 for c in CLOSE_COLUMNS}}
    return pd.DataFrame(list(db[schema.PRICES].find(query, projection)), columns=list(CLOSE_COLUMNS))


def portfolio_at(db, portfolio_id: str, when: datetime) -> dict | None:
    """The stored allocation of `portfolio_id` as of exactly `when`, or None."""
    return db[schema.PORTFOLIOS].find_one({"portfolio_id": portfolio_id, "timestamp": when})


def portfolio_before(db, portfolio_id: str, before: datetime | None = None) -> dict | None:
    """The latest stored allocation of `portfolio_id` strictly before `before` (of all when None), or None."""
    query: dict = {"portfolio_id": portfolio_id}
    if before is not None:
        query["timestamp"] = {"$lt": before}
    found = list(db[schema.PORTFOLIOS].find(query).sort("timestamp", -1).limit(1))
    return found[0] if found else None
