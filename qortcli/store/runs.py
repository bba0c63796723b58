"""Run records: every step run writes one `job_runs` document (start, end, status, counts, error).

Each record also names its process (`host`, `pid`, `proc_start`: the process's start time in clock ticks
since boot, read from /proc on Linux), so a record left "running" by a process that was killed can be
proven dead: on the same host its pid is gone, a zombie, or now belongs to a process started at another
time (a restarted container reuses pids); on another host, it has run longer than its step's timeout.
`stale_runs` finds those records and `abandon_runs` marks them "abandoned" with the reason; every
`recorded_run` does so at its start (see `qortcli.store.maintenance.clean_leftovers`).
"""

from __future__ import annotations

import os
import socket
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


ABANDONED = "abandoned"


def _proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after "pid (comm)" (state is [0], starttime [19]); [] when unreadable
    (no such process, not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return []
    return text.rpartition(")")[2].split()


def process_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (/proc/<pid>/stat field 22), or None when it
    cannot be read (no such process, not Linux)."""
    try:
        return int(_proc_stat(pid)[19])
    except (IndexError, ValueError):
        return None


def process_identity() -> dict:
    """`host`, `pid` and `proc_start` of this process (what a run record names)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "proc_start": process_start(pid)}


def process_alive(host: str | None, pid: int | None, proc_start: int | None = None) -> bool | None:
    """Whether the process a record names is still running: True/False on this host, None (unknown) for
    another host or a record without a pid. A zombie, or a pid now held by a process started at another
    time than `proc_start`, is dead."""
    if host != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    if _proc_stat(pid)[:1] == ["Z"]:
        return False
    if proc_start is not None:
        now_start = process_start(pid)
        if now_start is not None and now_start != proc_start:
            return False
    return True


def run_alive(record: dict, timeout_s: float, now=None) -> bool:
    """Whether the process of a "running" record may still be running (see the module docstring)."""
    alive = process_alive(record.get("host"), record.get("pid"), record.get("proc_start"))
    return alive if alive is not None else _within_timeout(record, timeout_s, now)


def _within_timeout(record: dict, timeout_s: float, now=None) -> bool:
    """A record whose process cannot be checked (another host): younger than its step's timeout."""
    started = record.get("started_at")
    if started is None:
        return False
    from qortcli.timeutils import as_utc

    return ((now or utcnow()) - as_utc(started)).total_seconds() < timeout_s


def stale_runs(db, timeout_for=None, step: str | None = None) -> list[dict]:
    """"running" records whose process is provably gone. `timeout_for(step, job) -> seconds` bounds records of
    other hosts (default: the schedule's timeouts, `qortcli.schedule.step_timeout_seconds`)."""
    query: dict = {"status": "running"}
    if step:
        query["step"] = step
    records = list(db[schema.JOB_RUNS].find(query).sort("started_at", -1).limit(1000))
    if not records:
        return []
    now = utcnow()
    out = []
    for record in records:
        alive = process_alive(record.get("host"), record.get("pid"), record.get("proc_start"))
        if alive is None:
            if timeout_for is None:
                from qortcli.schedule import step_timeout_seconds as timeout_for
            alive = _within_timeout(record, timeout_for(record.get("step"), record.get("job")), now)
        if not alive:
            out.append(record)
    return out


def abandon_reason(record: dict, timeout_s: float | None = None) -> str:
    """Why a record is abandoned, in one line."""
    if process_alive(record.get("host"), record.get("pid"), record.get("proc_start")) is False:
        return f"abandoned: process {record.get('pid')} on {record.get('host')} is gone (killed or crashed)"
    limit = f" than its step's {timeout_s:g} s timeout" if timeout_s else ""
    return f"abandoned: no end recorded, older{limit} (host {record.get('host') or 'unknown'})"


def abandon_runs(db, records: list[dict], reason: str | None = None, found_by: str | None = None) -> list[dict]:
    """Mark "running" records "abandoned" (conditionally: a record that ended meanwhile is left alone); returns
    [{run_id, step, job, started_at, reason}] of those marked."""
    marked = []
    now = utcnow()
    for record in records:
        why = reason or abandon_reason(record)
        fields = {"status": ABANDONED, "ended_at": now, "error": why}
        if found_by:
            fields["abandoned_by"] = found_by
        done = db[schema.JOB_RUNS].update_one({"_id": record["_id"], "status": "running"}, {"$set": to_plain(fields)})
        if done.matched_count:
            marked.append({"run_id": record["_id"], "step": record.get("step"), "job": record.get("job"),
                           "started_at": record.get("started_at"), "reason": why})
    return marked


def _safe_args(args: dict) -> dict:
    """Plain values, credentials redacted (a URL argument never stores its password)."""
    return redact_obj({k: (v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v))
                       for k, v in (args or {}).items()})


@contextmanager
def recorded_run(db, step: str, args: dict | None = None, trigger: str | None = None, clean: bool = True):
    """Record a step run in `job_runs`: "running" at start, then "ok" or "failed" with the error line.

    `trigger` defaults to the enclosing `run_context`'s (the worker's "scheduler"), else "cli".
    With `clean` (default) the run first cleans what dead processes left behind (runs stuck "running",
    pending snapshots of dead writers: `qortcli.store.maintenance.clean_leftovers`) and counts it in its own
    `counts` (`abandoned_runs`, `discarded_snapshots`, `discarded_documents`).
    """
    context = _RUN_CONTEXT.get()
    trigger = trigger or (context["trigger"] if context else "cli")
    extra = context["fields"] if context else {}
    run = Run(run_id=uuid.uuid4().hex, step=step, args=_safe_args(args or {}), trigger=trigger)
    started = utcnow()
    clock = time.perf_counter()
    db[schema.JOB_RUNS].insert_one(to_plain({**extra, "_id": run.run_id, "step": step, "args": run.args,
                                             "trigger": trigger, "started_at": started, "status": "running",
                                             "counts": {}, **process_identity()}))
    if context:
        context["recorded"].append(run.run_id)
    try:
        if clean:
            from qortcli.store.engine.query import QueryError
            from qortcli.store.maintenance import clean_leftovers

            try:
                run.counts.update(clean_leftovers(db, found_by=f"{step} run {run.run_id}").counts())
            except QueryError:
                pass  # a store whose schema is not applied yet (`migrate` applies it): nothing to clean
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


def end_process_runs(db, pid: int, status: str, reason: str, host: str | None = None) -> list[str]:
    """Mark the "running" records of process `pid` on `host` (default: this host) — a job process that was
    killed — with `status` ("timeout", "stopped", ...) and `reason`; returns their ids."""
    host = host or socket.gethostname()
    marked = []
    for record in db[schema.JOB_RUNS].find({"status": "running", "pid": pid}, {"_id": 1, "host": 1}):
        if record.get("host") != host:
            continue
        done = db[schema.JOB_RUNS].update_one({"_id": record["_id"], "status": "running"},
                                       {"$set": to_plain({"status": status, "ended_at": utcnow(), "error": reason})})
        if done.matched_count:
            marked.append(record["_id"])
    return marked

