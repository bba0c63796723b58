"""Reads behind the viewer's pages that no step needs: job runs, collection sizes, the optimiser's portfolios,
the suggestions of every currency and the store's change stamps.

Every query is served by an index of `qortcli.store.schema` (INDEXES) or a primary key, and costs what it
returns (a `limit`, one document per id), never a scan of a growing collection. Results are typed records
(`RunInfo`, `PortfolioHead`, `StoreStamp`) or the stored documents themselves (portfolios, suggestions:
their shapes are docs/CONTRACTS.md's).

Runs:        `recent_runs`, `last_run_of_job`.
Sizes:       `collection_counts`, `snapshot_count`, `price_symbols`, `newest_price_day`.
Portfolios:  `portfolio_heads` (every optimiser portfolio id, newest run of each), `latest_portfolio`.
Suggestions: `suggestion_currencies`, `latest_suggestions`, `recent_suggestions`, `suggestion_counts`.
Stamps:      `store_stamp` (what changes whenever a step or the stream writes), `live_stamp`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, NamedTuple

from qortcli.store import schema
from qortcli.timeutils import as_utc

__all__ = ["RunInfo", "PortfolioHead", "StoreStamp", "recent_runs", "last_run_of_job",
           "collection_counts", "snapshot_count", "price_symbols", "newest_price_day", "portfolio_heads",
           "latest_portfolio", "suggestion_currencies", "latest_suggestions", "recent_suggestions",
           "suggestion_counts", "store_stamp", "live_stamp", "BOOK_ID_PREFIX"]

#: optimiser portfolio ids never start with this; a book's `portfolio_id` is "book:<name>" (CONTRACTS)
BOOK_ID_PREFIX = "book:"
_RUN_FIELDS = {"step": 1, "job": 1, "status": 1, "started_at": 1, "ended_at": 1, "seconds": 1, "error": 1,
               "counts": 1, "trigger": 1}


def _when(value) -> datetime | None:
    return as_utc(value) if isinstance(value, datetime) else None


class RunInfo(NamedTuple):
    """One `job_runs` record: times UTC, `seconds` the run's wall time, `counts` the step's own counters."""

    run_id: str
    step: str
    job: str | None              # the schedule's job id (worker runs), None for CLI runs
    status: str                  # running | ok | failed | interrupted | missed | skipped
    trigger: str
    started_at: datetime | None
    ended_at: datetime | None
    seconds: float | None
    error: str
    counts: dict

    @classmethod
    def from_doc(cls, doc: dict) -> "RunInfo":
        seconds = doc.get("seconds")
        return cls(run_id=str(doc.get("_id")), step=str(doc.get("step") or "?"), job=doc.get("job") or None,
                   status=str(doc.get("status") or "?"), trigger=str(doc.get("trigger") or ""),
                   started_at=_when(doc.get("started_at")), ended_at=_when(doc.get("ended_at")),
                   seconds=float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
                   else None, error=str(doc.get("error") or ""), counts=dict(doc.get("counts") or {}))


class PortfolioHead(NamedTuple):
    """The newest stored run of one optimiser portfolio id: its as-of day (UTC midnight) and run time."""

    portfolio_id: str
    model: str
    timestamp: datetime | None   # as-of: the last day of returns used
    computed_at: datetime | None


class StoreStamp(NamedTuple):
    """What changes whenever anything the viewer shows is written: the newest runs (id, status, end) and
    each currency's latest complete snapshot. Equal stamps mean equal page data (for the same selection)."""

    runs: tuple
    snapshots: tuple

    def token(self) -> str:
        return repr((self.runs, self.snapshots))


# ------------------------------------------------------------------------------------------ runs

def recent_runs(db, limit: int = 12, step: str | None = None) -> list[RunInfo]:
    """The newest run records (of `step` if given), newest first."""
    query = {"step": step} if step else {}
    cursor = db[schema.JOB_RUNS].find(query, _RUN_FIELDS).sort("started_at", -1).limit(int(limit))
    return [RunInfo.from_doc(d) for d in cursor]


def last_run_of_job(db, job_id: str, step: str, looks_like=None, scan: int = 20) -> RunInfo | None:
    """The newest run of schedule job `job_id`: a worker run tagged with the job, or (CLI runs carry no job)
    the newest of the last `scan` runs of `step` that `looks_like(record)` accepts (any when None)."""
    tagged = list(db[schema.JOB_RUNS].find({"job": job_id}, _RUN_FIELDS).sort("started_at", -1).limit(1))
    best = RunInfo.from_doc(tagged[0]) if tagged else None
    for run in recent_runs(db, scan, step):
        if run.job not in (None, job_id) or (looks_like is not None and not looks_like(run)):
            continue
        if best is None or (run.started_at and best.started_at and run.started_at > best.started_at):
            best = run
        break
    return best


# ------------------------------------------------------------------------------------------ sizes

def collection_counts(db, names: Iterable[str] = schema.COLLECTIONS) -> dict[str, int]:
    """Documents per collection (the engine's stored count: no scan)."""
    return {name: int(db[name].count_documents({})) for name in names}


def snapshot_count(db, currency: str) -> int:
    """Complete options snapshots of `currency`."""
    return int(db[schema.SNAPSHOTS].count_documents({"kind": "options", "status": "complete",
                                                     "currency": currency.upper()}))


def price_symbols(db) -> list[str]:
    """Tickers with daily prices in `price_data`, sorted."""
    return sorted(str(s) for s in db[schema.PRICES].distinct("symbol") if s)


def newest_price_day(db) -> datetime | None:
    """The newest UTC day of any ticker in `price_data`, or None."""
    found = list(db[schema.PRICES].find({}, {"timestamp": 1}).sort("timestamp", -1).limit(1))
    return _when(found[0].get("timestamp")) if found else None


# ------------------------------------------------------------------------------------------ portfolios

def portfolio_heads(db) -> list[PortfolioHead]:
    """Every optimiser portfolio id (books excluded) with its newest run, newest as-of first (ties by id)."""
    ids = sorted(str(p) for p in db[schema.PORTFOLIOS].distinct("portfolio_id")
                 if p and not str(p).startswith(BOOK_ID_PREFIX))
    heads = []
    for pid in ids:
        found = list(db[schema.PORTFOLIOS].find({"portfolio_id": pid}, {"model": 1, "timestamp": 1, "computed_at": 1})
                     .sort("timestamp", -1).limit(1))
        if found:
            d = found[0]
            heads.append(PortfolioHead(pid, str(d.get("model") or ""), _when(d.get("timestamp")),
                                       _when(d.get("computed_at"))))
    floor = datetime.min.replace(tzinfo=timezone.utc)
    heads.sort(key=lambda h: (h.timestamp or floor, h.computed_at or floor), reverse=True)
    return heads


def latest_portfolio(db, portfolio_id: str) -> dict | None:
    """The newest stored document of optimiser portfolio `portfolio_id` (docs/CONTRACTS.md), or None."""
    found = list(db[schema.PORTFOLIOS].find({"portfolio_id": portfolio_id}).sort("timestamp", -1).limit(1))
    return found[0] if found else None


# ------------------------------------------------------------------------------------------ suggestions

def suggestion_currencies(db) -> list[str]:
    """Currencies with at least one stored suggestion, sorted."""
    return sorted(str(c) for c in db[schema.SUGGESTIONS].distinct("currency") if c)


def latest_suggestions(db, currency: str) -> tuple[str | None, list[dict]]:
    """(snapshot_id, documents) of the newest snapshot of `currency` that has suggestions."""
    found = list(db[schema.SUGGESTIONS].find({"currency": currency.upper()}, {"snapshot_id": 1})
                 .sort("timestamp", -1).limit(1))
    if not found:
        return None, []
    sid = found[0].get("snapshot_id")
    return sid, list(db[schema.SUGGESTIONS].find({"snapshot_id": sid}))


def recent_suggestions(db, currency: str, limit: int = 40, fields: dict | None = None) -> list[dict]:
    """The newest `limit` suggestions of `currency` (projected to `fields` if given), newest first."""
    cursor = db[schema.SUGGESTIONS].find({"currency": currency.upper()}, fields).sort("timestamp", -1)
    return list(cursor.limit(int(limit)))


def suggestion_counts(db, currency: str) -> dict[str, int]:
    """{"total", "open"} suggestions of `currency`."""
    cur = currency.upper()
    return {"total": int(db[schema.SUGGESTIONS].count_documents({"currency": cur})),
            "open": int(db[schema.SUGGESTIONS].count_documents({"status": "open", "currency": cur}))}


# ------------------------------------------------------------------------------------------ stamps

def store_stamp(db, runs: int = 8) -> StoreStamp:
    """The newest `runs` run records (id, status, end time) and each currency's latest complete snapshot id."""
    newest = tuple((r.run_id, r.status, r.ended_at) for r in recent_runs(db, runs))
    snaps = []
    for cur in sorted(str(c) for c in db[schema.SNAPSHOTS].distinct("currency", {"kind": "options",
                                                                                 "status": "complete"}) if c):
        found = list(db[schema.SNAPSHOTS].find({"kind": "options", "status": "complete", "currency": cur},
                                               {"_id": 1, "priced": 1}).sort("timestamp", -1).limit(1))
        if found:
            snaps.append((cur, str(found[0]["_id"]), repr(found[0].get("priced"))))
    return StoreStamp(newest, tuple(snaps))


def live_stamp(db, currency: str) -> datetime | None:
    """When the stream last wrote `currency`'s `live_marks` document (its `updated_at`), or None."""
    doc = db[schema.LIVE_MARKS].find_one({"_id": currency.upper()}, {"updated_at": 1})
    return _when(doc.get("updated_at")) if doc else None
