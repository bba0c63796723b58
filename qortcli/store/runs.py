"""Run records: every step run writes one `job_runs` document (start, end, status, counts, error)."""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from qortcli.redact import redact, redact_obj
from qortcli.store import schema
from qortcli.store.ops import to_plain
from qortcli.timeutils import utcnow


@dataclass
class Run:
    """The live record of one step run; steps add to `counts` as they go."""

    run_id: str
    step: str
    args: dict
    counts: dict = field(default_factory=dict)
    trigger: str = "cli"


# Set by `run_context` (e.g. by the scheduled worker): the trigger and extra fields given to every run
# recorded inside it, and the list collecting the ids of those runs.
_RUN_CONTEXT: ContextVar[dict | None] = ContextVar("qort_run_context", default=None)


@contextmanager
def run_context(trigger: str, **fields):
    """Tag every run recorded inside this block (this thread/task) with `trigger` and `fields` (e.g. job=...).

    Yields the list of the run ids recorded inside, so a caller knows whether a step recorded its run.
    """
    recorded: list[str] = []
    token = _RUN_CONTEXT.set({"trigger": trigger, "fields": to_plain(fields), "recorded": recorded})
    try:
        yield recorded
    finally:
        _RUN_CONTEXT.reset(token)


def _safe_args(args: dict) -> dict:
    """Plain values, credentials redacted (a URL argument never stores its password)."""
    return redact_obj({k: (v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v))
                       for k, v in (args or {}).items()})


@contextmanager
def recorded_run(db, step: str, args: dict | None = None, trigger: str | None = None):
    """Record a step run in `job_runs`: "running" at start, then "ok" or "failed" with the error line.

    `trigger` defaults to the enclosing `run_context`'s (the worker's "scheduler"), else "cli".
    """
    context = _RUN_CONTEXT.get()
    trigger = trigger or (context["trigger"] if context else "cli")
    extra = context["fields"] if context else {}
    run = Run(run_id=uuid.uuid4().hex, step=step, args=_safe_args(args or {}), trigger=trigger)
    started = utcnow()
    clock = time.perf_counter()
    db[schema.JOB_RUNS].insert_one(to_plain({**extra, "_id": run.run_id, "step": step, "args": run.args,
                                             "trigger": trigger, "started_at": started, "status": "running",
                                             "counts": {}}))
    if context:
        context["recorded"].append(run.run_id)
    try:
        yield run
    except BaseException as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        _finish(db, run, status, time.perf_counter() - clock, f"{type(exc).__name__}: {message}")
        raise
    _finish(db, run, "ok", time.perf_counter() - clock, None)


def _finish(db, run: Run, status: str, seconds: float, error: str | None) -> None:
    db[schema.JOB_RUNS].update_one({"_id": run.run_id}, {"$set": to_plain({
        "ended_at": utcnow(), "status": status, "seconds": round(seconds, 3), "counts": run.counts,
        "error": redact(error)})})


def fail_recorded(db, run_ids: list[str], error: str) -> int:
    """Mark runs recorded "ok" as "failed" with `error`: the command around them failed afterwards (e.g.
    rendering or a later step of the same command), so job_runs never says ok when the command exited
    non-zero. Returns how many records changed."""
    changed = 0
    for run_id in run_ids:
        result = db[schema.JOB_RUNS].update_one({"_id": run_id, "status": "ok"},
                                                {"$set": {"status": "failed", "error": redact(error)}})
        changed += result.modified_count
    return changed


def record_event(db, step: str, status: str, error: str | None = None, trigger: str = "scheduler", **extra) -> str:
    """Write a one-shot run record (e.g. a missed scheduler job) and return its id."""
    run_id = uuid.uuid4().hex
    now = utcnow()
    db[schema.JOB_RUNS].insert_one(to_plain(redact_obj({"_id": run_id, "step": step, "args": {}, "trigger": trigger,
                                                        "started_at": now, "ended_at": now, "status": status,
                                                        "counts": {}, "error": error, **extra})))
    return run_id


def last_runs(db, limit: int = 10, step: str | None = None) -> list[dict]:
    """The most recent run records, newest first."""
    query = {"step": step} if step else {}
    return list(db[schema.JOB_RUNS].find(query).sort("started_at", -1).limit(limit))
