"""The worker: APScheduler 3 running the same step functions as the CLI on the schedule from the settings.

    python -m jobs.worker            # run until SIGTERM / Ctrl-C (same as `qortcli worker`)
    python -m jobs.worker --list     # print the schedule
    python -m jobs.worker --once collect_deribit   # run one job (and the jobs chained after it) now

Semantics:
- every job has max_instances=1 (a run never overlaps the previous one of the same job; the skipped
  start is recorded as "skipped"), coalesce=True (after a stall, one catch-up run, not a burst) and a
  misfire grace time (a run up to that many seconds late still happens; later ones are recorded "missed").
- a job's failure is recorded in `job_runs` (by the step's own `recorded_run`, or by the EVENT_JOB_ERROR
  listener when the step never got that far, e.g. it is not importable yet) and never stops the worker;
  jobs chained `after` it are skipped for that round.
- SIGTERM/SIGINT: no new runs start, the running ones finish (`shutdown(wait=True)`), exit code 0.
- with `[schedule] chains = "stream"` the collect_deribit poll is not scheduled: one long-lived stream
  session (job "stream") runs from the start until the worker stops (restarted after a failure, 5 s then
  doubling to 5 min), and the jobs chained after collect_deribit run after each round of snapshots it
  stores (one-off job "after_stream_snapshot"; a round while the previous one still runs is "skipped").
  On SIGTERM the session is asked to stop first: it writes its last live marks and final snapshot.
- the worker keeps a small `worker_state` collection (heartbeat, next runs, last result per job) that
  `qortcli status` reads with a handful of primary-key lookups.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from qortcli.schedule import (POLL_JOB, STREAM_JOB, WORKER_STATE, JobSpec, Schedule, StepUnavailable, load_schedule,
                              resolve_step, trigger_for)
from qortcli.store.ops import to_plain
from qortcli.store.runs import record_event, run_context
from qortcli.timeutils import utcnow

log = logging.getLogger("qortcli.worker")

HEARTBEAT_JOB = "_heartbeat"
AFTER_STREAM_JOB = "after_stream_snapshot"
STREAM_RESTART_S = (5.0, 300.0)   # first and longest wait before restarting a failed stream session


class JobFailed(Exception):
    """A job's step failed; `recorded` tells whether the step already wrote its failed run record."""

    def __init__(self, job_id: str, message: str, recorded: bool):
        super().__init__(f"{job_id}: {message}")
        self.job_id = job_id
        self.message = message
        self.recorded = recorded


class _Stop(Exception):
    """Raised in the main thread by the SIGTERM/SIGINT handler to leave the scheduler loop."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class Worker:
    """The scheduler with its jobs, listeners and the store handle (opened once, shared by all jobs)."""

    def __init__(self, db, schedule: Schedule, scheduler_cls=BlockingScheduler, run_at_start: bool = True):
        self.db = db
        self.schedule = schedule
        self.started_at = utcnow()
        self._stopping = threading.Event()
        self.scheduler = scheduler_cls(
            executors={"default": ThreadPoolExecutor(max_workers=max(1, schedule.max_workers))},
            job_defaults={"max_instances": 1, "coalesce": True,
                          "misfire_grace_time": schedule.misfire_grace_seconds},
            timezone=timezone.utc,
        )
        self.scheduler.add_listener(self._on_error, EVENT_JOB_ERROR)
        self.scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        self.scheduler.add_listener(self._on_max_instances, EVENT_JOB_MAX_INSTANCES)
        self.scheduler.add_listener(self._on_executed, EVENT_JOB_EXECUTED)
        now = datetime.now(timezone.utc)
        for spec in schedule.leaders():
            if schedule.streaming and spec.id == POLL_JOB:
                continue  # the stream session replaces the REST poll
            options: dict[str, Any] = {}
            if spec.every is not None and run_at_start:
                options["next_run_time"] = now  # interval jobs run once at start, then every interval
            self.scheduler.add_job(self.run_job, trigger_for(spec), args=[spec.id], id=spec.id,
                                   name=f"{spec.id} ({spec.timing})", **options)
        if schedule.streaming:
            self.scheduler.add_job(self.run_stream_session, "date", run_date=now, id=STREAM_JOB,
                                   name="stream (long-lived websocket session)")
        if schedule.heartbeat_seconds > 0:
            self.scheduler.add_job(self.heartbeat, "interval", seconds=schedule.heartbeat_seconds,
                                   id=HEARTBEAT_JOB, name="worker heartbeat", next_run_time=now)

    # --- running jobs -----------------------------------------------------------------------------

    def run_job(self, job_id: str, trigger: str = "scheduler") -> dict[str, Any]:
        """Run a job and then the jobs chained after it; the first failure raises JobFailed (the rest skip)."""
        results = {}
        for spec in [self.schedule.job(job_id), *self.schedule.followers(job_id)]:
            results[spec.id] = self.run_one(spec, trigger)
        return results

    def run_one(self, spec: JobSpec, trigger: str = "scheduler") -> Any:
        """Run one job's step with the store handle; its run records are tagged trigger=..., job=<id>."""
        started = utcnow()
        self._set_state(spec.id, {"last_status": "running", "last_started_at": started, "last_error": None})
        log.info("job %s: starting %s", spec.id, spec.step_path)
        try:
            func = resolve_step(spec.step)
        except StepUnavailable as exc:
            self._finish_state(spec.id, started, "failed", str(exc), None)
            raise JobFailed(spec.id, str(exc), recorded=False) from None
        with run_context(trigger, job=spec.id) as recorded:
            try:
                summary = func(self.db, **spec.args)
            except Exception as exc:
                message = _first_line(exc)
                self._finish_state(spec.id, started, "failed", message, recorded)
                log.warning("job %s failed: %s", spec.id, message)
                raise JobFailed(spec.id, message, recorded=bool(recorded)) from exc
        if not recorded:  # a step that keeps no run record of its own still leaves one
            record_event(self.db, spec.id, "ok", trigger=trigger, job=spec.id, started_at=started)
        self._finish_state(spec.id, started, "ok", None, recorded)
        log.info("job %s: ok", spec.id)
        return summary

    # --- chains = "stream" ---------------------------------------------------------------------------

    def run_stream_session(self) -> None:
        """Keep one stream session running until the worker stops; a failed session restarts after a wait."""
        spec = self.schedule.stream_spec()
        spec = replace(spec, args={**spec.args, "stop_event": self._stopping, "on_snapshot": self._after_stream_snapshot})
        wait, longest = STREAM_RESTART_S
        while not self._stopping.is_set():
            try:
                self.run_one(spec)
                wait = STREAM_RESTART_S[0]
            except JobFailed:
                pass  # recorded; try again after the wait
            if self._stopping.wait(wait):
                break
            wait = min(wait * 2.0, longest)

    def _after_stream_snapshot(self, rows: list[dict]) -> None:
        """Run the jobs chained after collect_deribit (price, surface) once per round of stream snapshots."""
        if not self.schedule.followers(POLL_JOB) or self._stopping.is_set():
            return
        try:
            self.scheduler.add_job(self.run_followers, args=[POLL_JOB], id=AFTER_STREAM_JOB, replace_existing=True,
                                   name=f"jobs after collect_deribit, for {len(rows)} stream snapshot(s)")
        except Exception:  # the scheduler may be shutting down: never disturb the stream
            log.exception("could not schedule the jobs after a stream snapshot")

    def run_followers(self, job_id: str, trigger: str = "scheduler") -> dict[str, Any]:
        """The jobs chained after `job_id`, in order (the first failure raises JobFailed)."""
        return {spec.id: self.run_one(spec, trigger) for spec in self.schedule.followers(job_id)}

    def run_once(self, job_id: str) -> dict[str, Any]:
        """Run one job (and its chain) now, outside the scheduler; failures are recorded as the listener would."""
        try:
            return self.run_job(job_id, trigger="worker-once")
        except JobFailed as exc:
            self.record_failure(exc, job_id, trigger="worker-once")
            raise

    # --- listeners (they never raise: a listener error must not disturb the scheduler) --------------

    def record_failure(self, exc: BaseException | None, job_id: str, trigger: str = "scheduler") -> None:
        """Write the failed run record unless the step already did."""
        if isinstance(exc, JobFailed):
            if exc.recorded:
                return
            job_id, message = exc.job_id, exc.message
        else:
            message = _first_line(exc) if exc else "unknown error"
        record_event(self.db, job_id, "failed", error=message, trigger=trigger, job=job_id)

    def _on_error(self, event) -> None:
        if event.job_id == HEARTBEAT_JOB:
            return
        if not isinstance(event.exception, JobFailed):  # a bug, not a step failure: keep the traceback
            log.error("job %s crashed", event.job_id, exc_info=event.exception)
        try:
            self.record_failure(event.exception, event.job_id)
        except Exception:  # the store may be down: log, keep scheduling
            log.exception("could not record the failure of job %s", event.job_id)

    def _on_missed(self, event) -> None:
        if event.job_id == HEARTBEAT_JOB:
            return
        try:
            when = event.scheduled_run_time
            record_event(self.db, event.job_id, "missed", job=event.job_id, scheduled_run_time=when,
                         error=f"run due at {when:%Y-%m-%d %H:%M:%S} UTC was more than "
                               f"{self.schedule.misfire_grace_seconds} s late and was skipped")
            self._set_state(event.job_id, {"last_status": "missed", "last_started_at": utcnow()})
        except Exception:
            log.exception("could not record the missed run of job %s", event.job_id)

    def _on_max_instances(self, event) -> None:
        if event.job_id == HEARTBEAT_JOB:
            return
        log.warning("job %s: previous run still running, this start skipped", event.job_id)
        try:
            record_event(self.db, event.job_id, "skipped", job=event.job_id,
                         error="the previous run of this job was still running (max_instances=1)")
        except Exception:
            log.exception("could not record the skipped run of job %s", event.job_id)

    def _on_executed(self, event) -> None:
        if event.job_id != HEARTBEAT_JOB:
            self.heartbeat()

    # --- worker_state ------------------------------------------------------------------------------

    def _set_state(self, job_id: str, fields: dict) -> None:
        try:
            self.db[WORKER_STATE].update_one({"_id": f"job:{job_id}"},
                                             {"$set": to_plain({"job": job_id, **fields, "updated_at": utcnow()})},
                                             upsert=True)
        except Exception:
            log.exception("could not update the state of job %s", job_id)

    def _finish_state(self, job_id: str, started: datetime, status: str, error: str | None, run_ids) -> None:
        ended = utcnow()
        self._set_state(job_id, {"last_status": status, "last_started_at": started, "last_ended_at": ended,
                                 "last_seconds": round((ended - started).total_seconds(), 3),
                                 "last_error": error, "last_run_ids": list(run_ids or [])})

    def next_run_times(self) -> dict[str, datetime | None] | None:
        """Next run of each job as scheduled now (chained jobs: their leader's); None if the scheduler is busy.

        Called from job threads: `shutdown(wait=True)` holds the job-store lock while it waits for those
        threads, so the lock is only tried (a blocking `get_jobs()` there would deadlock the shutdown).
        """
        lock = getattr(self.scheduler, "_jobstores_lock", None)
        if lock is not None and not lock.acquire(timeout=1.0):
            return None
        try:
            jobs = self.scheduler.get_jobs()
        finally:
            if lock is not None:
                lock.release()
        leaders = {job.id: getattr(job, "next_run_time", None) for job in jobs}
        return {spec.id: leaders.get(self.schedule.leader_of(spec.id).id) for spec in self.schedule.jobs}

    def heartbeat(self, stopped: bool = False) -> None:
        """Write the worker record: host, pid, start, heartbeat time and next runs."""
        try:
            doc = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": self.started_at,
                   "heartbeat_at": utcnow(), "heartbeat_seconds": self.schedule.heartbeat_seconds,
                   "jobs": self.schedule.ids, "stopped_at": utcnow() if stopped else None}
            if not stopped:
                upcoming = self.next_run_times()
                if upcoming is not None:
                    doc["next_runs"] = upcoming
            self.db[WORKER_STATE].update_one({"_id": "worker"}, {"$set": to_plain(doc)}, upsert=True)
        except Exception:
            log.exception("could not write the worker heartbeat")

    # --- lifecycle -----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop scheduling, wait for the running jobs to finish, mark the worker stopped."""
        self._stopping.set()  # a stream session flushes and returns
        if self.scheduler.running:
            log.info("stopping: waiting for running jobs to finish")
            self.scheduler.shutdown(wait=True)
        self.heartbeat(stopped=True)


def serve(db, schedule: Schedule) -> int:
    """Run the BlockingScheduler in this (main) thread until SIGTERM/SIGINT; returns the exit code 0."""
    worker = Worker(db, schedule)

    def on_signal(signum, _frame):
        name = signal.Signals(signum).name
        log.warning("%s received: finishing the running jobs, then exiting", name)
        # a second signal while stopping only logs; the exception unwinds the scheduler loop safely
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda s, f: log.warning("%s received again: still waiting for running jobs",
                                                        signal.Signals(s).name))
        raise _Stop(name)

    # step failures are logged as one warning line by run_one (APScheduler would add a traceback each time)
    logging.getLogger("apscheduler.executors.default").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("worker started on %s with jobs: %s", db.describe(), ", ".join(
        f"{spec.id} ({spec.timing})" for spec in schedule.jobs))
    try:
        worker.scheduler.start()
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        worker.stop()
    log.info("worker stopped")
    return 0


def open_store(url: str | None = None):
    """The store handle for the worker (schema migrations applied)."""
    from qortcli.store import connect, ensure_schema

    db = connect(url)
    ensure_schema(db)
    return db


def describe_schedule(schedule: Schedule) -> list[dict]:
    """One row per job: id, timing, step, command, next run computed from the settings."""
    from qortcli.schedule import next_runs

    nxt = next_runs(schedule)
    rows = [{"job": spec.id, "timing": spec.timing, "step": spec.step_path, "command": spec.command,
             "description": spec.description, "args": spec.args, "next_run": nxt.get(spec.id)}
            for spec in schedule.jobs]
    if schedule.streaming:
        for row in rows:
            if row["job"] == POLL_JOB:
                row["timing"] = 'replaced by the stream (chains = "stream")'
        spec = schedule.stream_spec()
        rows.insert(0, {"job": spec.id, "timing": "long-lived, from the start", "step": spec.step_path,
                        "command": spec.command, "description": spec.description, "args": spec.args, "next_run": None})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=None, help="store URL or directory (default QORT_DB)")
    parser.add_argument("--once", metavar="JOB", help="run one job (and its chain) now and exit")
    parser.add_argument("--list", action="store_true", help="print the schedule and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    schedule = load_schedule()
    if args.list:
        for row in describe_schedule(schedule):
            print(f"{row['job']:<16} {row['timing']:<28} {row['step']}")
        return 0
    db = open_store(args.db)
    try:
        if args.once:
            if args.once not in schedule.ids:
                print(f"error: unknown job {args.once!r} (jobs: {', '.join(schedule.ids)})", file=sys.stderr)
                return 2
            try:
                Worker(db, schedule).run_once(args.once)  # never started: runs by hand
            except JobFailed as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            return 0
        return serve(db, schedule)
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(main())
