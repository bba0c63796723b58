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
    # one per currency, IV source ("marks"|"svi") and as-of day (the last price day used): re-running on the
    # same data replaces; `_id` order within CUR|source| is the as-of order (read.latest_vol relies on it)
    VOL_FORECASTS: lambda d: f"{d['currency']}|{d['source']}|{_day(d['as_of'])}",
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


# (collection, keys, options): the indexes every reader's query is served by (the embedded engine refuses
# a query no index serves). Unique natural keys are the `_id`s themselves.
INDEXES: list[tuple[str, list[tuple[str, int]], dict]] = [
    # the natural key (one document per instrument per snapshot), and every chain read (snapshot_id prefix)
    (OPTIONS, [("snapshot_id", 1), ("symbol", 1)], {"unique": True, "name": "snapshot_symbol_unique"}),
    (PRICES, [("symbol", 1), ("timestamp", -1)], {"unique": True, "name": "symbol_timestamp_unique"}),
    (PRICES, [("timestamp", -1)], {"name": "timestamp"}),
    (PRICES, [("sector", 1)], {"name": "sector"}),
    (SURFACES, [("currency", 1), ("timestamp", -1)], {"name": "currency_timestamp"}),
    (PORTFOLIOS, [("portfolio_id", 1), ("timestamp", -1)], {"unique": True, "name": "portfolio_timestamp_unique"}),
    (PORTFOLIOS, [("timestamp", -1)], {"name": "timestamp"}),
    (PORTFOLIOS, [("kind", 1), ("book", 1)], {"name": "kind_book"}),
    (SUGGESTIONS, [("currency", 1), ("timestamp", -1)], {"name": "currency_timestamp"}),
    (SUGGESTIONS, [("status", 1), ("timestamp", -1)], {"name": "status_timestamp"}),
    (SUGGESTIONS, [("snapshot_id", 1)], {"name": "snapshot_id"}),
    (JOB_RUNS, [("step", 1), ("started_at", -1)], {"name": "step_started"}),
    (JOB_RUNS, [("started_at", -1)], {"name": "started"}),
    (JOB_RUNS, [("status", 1), ("started_at", -1)], {"name": "status_started"}),
    (JOB_RUNS, [("job", 1), ("started_at", -1)], {"name": "job_started"}),
    (SNAPSHOTS, [("kind", 1), ("status", 1), ("currency", 1), ("timestamp", -1)], {"name": "kind_status_currency_timestamp"}),
    (SUMMARIES, [("currency", 1), ("resolution", 1), ("timestamp", -1)], {"name": "currency_resolution_timestamp"}),
    (VOL_FORECASTS, [("currency", 1), ("source", 1), ("as_of", -1)], {"name": "currency_source_as_of"}),
    (RISK, [("book", 1), ("currency", 1), ("timestamp", -1)], {"name": "book_currency_timestamp"}),
    (ALERTS, [("status", 1), ("opened_at", -1)], {"name": "status_opened"}),
    (ALERTS, [("rule", 1), ("subject", 1), ("opened_at", -1)], {"name": "rule_subject_opened"}),
]

# Indexes of earlier versions no reader uses any more (dropped by migration 2 where they exist).
OBSOLETE_INDEXES: list[tuple[str, str]] = [
    (OPTIONS, "symbol_timestamp_unique"), (OPTIONS, "symbol"), (OPTIONS, "underlying_timestamp"), (OPTIONS, "expiry"),
    (OPTIONS, "snapshot_id"),
    (SNAPSHOTS, "kind_currency_timestamp"),
]

# Small bookkeeping collections whose unindexed queries the embedded engine may evaluate in Python.
SCANNABLE = frozenset({MIGRATIONS, LIVE_MARKS, "worker_state", "migrate_checkpoints"})


def _create_indexes(db) -> int:
    for collection, keys, options in INDEXES:
        db[collection].create_index(keys, **options)
    return len(INDEXES)


def _m1_indexes(db) -> str:
    """Create the collections and their indexes."""
    existing = set(db.list_collection_names())
    for name in COLLECTIONS:
        if name not in existing:
            db.create_collection(name)
    return f"{_create_indexes(db)} indexes on {len(COLLECTIONS)} collections"


def _m2_reader_indexes(db) -> str:
    """Indexes for this round's readers (summaries, forecasts, risk, alerts, runs, suggestions); drop unused ones."""
    dropped = 0
    for collection, name in OBSOLETE_INDEXES:
        if name in db[collection].index_information():
            db[collection].drop_index(name)
            dropped += 1
    return f"{_create_indexes(db)} indexes ensured, {dropped} obsolete dropped"


# Numbered migrations, applied once each in order and recorded in schema_migrations.
MIGRATION_STEPS: list[tuple[int, str, Callable]] = [
    (1, "collections and indexes of the original design, unique natural keys", _m1_indexes),
    (2, "indexes serving every reader of the year-scale store; unused option indexes dropped", _m2_reader_indexes),
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
