"""Collection names, natural keys, indexes and numbered schema migrations."""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from qortcli.timeutils import require_utc, utcnow

OPTIONS = "options_data"
PRICES = "price_data"
SURFACES = "volatility_surfaces"
PORTFOLIOS = "portfolio_data"
SUGGESTIONS = "strategy_suggestions"
JOB_RUNS = "job_runs"
SNAPSHOTS = "snapshots"
MIGRATIONS = "schema_migrations"
SUMMARIES = "snapshot_summaries"    # one small document per currency per snapshot (+ one per UTC day)
VOL_FORECASTS = "vol_forecasts"     # `qortcli vol`: measures, cone, forecasts and their evaluation
RISK = "risk"                       # `qortcli risk`: a book's valuation, greeks and scenario grid per chain
LIVE_MARKS = "live_marks"           # `qortcli stream`: the latest live marks of one currency, replaced in place
ALERTS = "alerts"                   # fired alerts (one per episode), acknowledgeable

COLLECTIONS = (OPTIONS, PRICES, SURFACES, PORTFOLIOS, SUGGESTIONS, JOB_RUNS, SNAPSHOTS, MIGRATIONS, SUMMARIES,
               VOL_FORECASTS, RISK, LIVE_MARKS, ALERTS)


def _stamp(value: datetime) -> str:
    return require_utc(value, "timestamp").strftime("%Y%m%dT%H%M%SZ")


def _day(value: datetime) -> str:
    return require_utc(value, "timestamp").strftime("%Y-%m-%d")


# The natural key of each collection, as the deterministic `_id` string every upsert uses.
NATURAL_KEYS: dict[str, Callable[[dict], str]] = {
    OPTIONS: lambda d: f"{d['symbol']}|{d['snapshot_id']}",
    PRICES: lambda d: f"{d['symbol']}|{_day(d['timestamp'])}",
    SURFACES: lambda d: str(d["snapshot_id"]),
    # optimiser portfolios: portfolio_id|as-of; a user's book (kind "book"): book|<name>, one document per book
    PORTFOLIOS: lambda d: (f"book|{d['book']}" if d.get("kind") == "book"
                           else f"{d['portfolio_id']}|{_stamp(d['timestamp'])}"),
    SUGGESTIONS: lambda d: f"{d['snapshot_id']}|{d['strategy']}|{require_utc(d['expiry'], 'expiry'):%Y%m%d}",
    SNAPSHOTS: lambda d: str(d["snapshot_id"]),
    # per snapshot: the snapshot id; the daily roll-up (resolution "day"): currency|day|YYYY-MM-DD
    SUMMARIES: lambda d: (str(d["snapshot_id"]) if d.get("resolution", "snapshot") == "snapshot"
                          else f"{d['currency']}|{d['resolution']}|{_day(d['timestamp'])}"),
    # one per currency and as-of day (the last day of data used): re-running on the same data replaces
    VOL_FORECASTS: lambda d: f"{d['currency']}|{_day(d['as_of'])}",
    RISK: lambda d: f"{d['book']}|{d['currency']}|{d['snapshot_id']}",
    LIVE_MARKS: lambda d: str(d["currency"]),
    ALERTS: lambda d: f"{d['rule']}|{d['subject']}|{_stamp(d['opened_at'])}",
}


def natural_key(collection: str, doc: dict) -> str:
    """The `_id` of `doc` in `collection` (KeyError names the missing field)."""
    try:
        return NATURAL_KEYS[collection](doc)
    except KeyError as exc:
        raise KeyError(f"{collection} document lacks natural-key field {exc.args[0]!r}") from None


# (collection, keys, options) — unique indexes enforce the natural keys, the others serve readers.
INDEXES: list[tuple[str, list[tuple[str, int]], dict]] = [
    (OPTIONS, [("symbol", 1), ("timestamp", 1)], {"unique": True, "name": "symbol_timestamp_unique"}),
    (OPTIONS, [("symbol", 1)], {"name": "symbol"}),
    (OPTIONS, [("underlying", 1), ("timestamp", -1)], {"name": "underlying_timestamp"}),
    (OPTIONS, [("expiry", 1)], {"name": "expiry"}),
    (OPTIONS, [("snapshot_id", 1)], {"name": "snapshot_id"}),
    (PRICES, [("symbol", 1), ("timestamp", -1)], {"unique": True, "name": "symbol_timestamp_unique"}),
    (PRICES, [("sector", 1)], {"name": "sector"}),
    (SURFACES, [("currency", 1), ("timestamp", -1)], {"name": "currency_timestamp"}),
    (PORTFOLIOS, [("portfolio_id", 1), ("timestamp", -1)], {"unique": True, "name": "portfolio_timestamp_unique"}),
    (SUGGESTIONS, [("currency", 1), ("timestamp", -1)], {"name": "currency_timestamp"}),
    (JOB_RUNS, [("step", 1), ("started_at", -1)], {"name": "step_started"}),
    (SNAPSHOTS, [("kind", 1), ("currency", 1), ("timestamp", -1)], {"name": "kind_currency_timestamp"}),
]


def _m1_indexes(db) -> str:
    """Create the collections and their indexes."""
    existing = set(db.list_collection_names())
    for name in COLLECTIONS:
        if name not in existing:
            db.create_collection(name)
    for collection, keys, options in INDEXES:
        db[collection].create_index(keys, **options)
    return f"{len(INDEXES)} indexes on {len(COLLECTIONS)} collections"


# Numbered migrations, applied once each in order and recorded in schema_migrations.
MIGRATION_STEPS: list[tuple[int, str, Callable]] = [
    (1, "collections and indexes of the original design, unique natural keys", _m1_indexes),
]


def applied_migrations(db) -> dict[int, dict]:
    return {doc["_id"]: doc for doc in db[MIGRATIONS].find({})}


def ensure_schema(db) -> list[dict]:
    """Apply every migration not yet recorded; returns one dict per migration (applied now or before)."""
    done = applied_migrations(db)
    report = []
    for number, description, apply in MIGRATION_STEPS:
        if number in done:
            report.append({"number": number, "description": description, "status": "already applied",
                           "applied_at": done[number].get("applied_at")})
            continue
        detail = apply(db)
        record = {"_id": number, "description": description, "detail": detail, "applied_at": utcnow()}
        db[MIGRATIONS].replace_one({"_id": number}, record, upsert=True)
        report.append({"number": number, "description": description, "status": "applied now",
                       "applied_at": record["applied_at"], "detail": detail})
    return report
