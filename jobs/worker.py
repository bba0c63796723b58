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
- deadlines: a job whose step is a dotted path runs in its own process (`python -m jobs.worker --child`,
  the job's spec on stdin, its result in a file) and is killed at its deadline (`timeout` per job,
  `[schedule] job_timeout` by default): its run record becomes "timeout" with the reason, what it left
  pending is discarded, the job's later runs go on. A job that cannot run in a process (a Python callable,
  arguments that are not plain data, a store handle that cannot be reopened) runs in the scheduler's thread
  without a deadline.
- SIGTERM/SIGINT: no new runs start; the running ones get `[schedule] stop_grace` (60 s) to finish, then their
  processes are killed (recorded "interrupted") and the worker exits 0 — inside docker-compose's
  stop_grace_period (90 s). Job processes run in their own session, so a terminal's Ctrl-C reaches only
  the worker, which decides.
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
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from qortcli.schedule import (POLL_JOB, STREAM_JOB, JobSpec, Schedule, StepUnavailable, load_schedule,
                              resolve_step, trigger_for)
from qortcli.store.ops import to_plain
from qortcli.store.runs import record_event, run_context
from qortcli.store import worker_state
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
        self._stop_deadline: float | None = None   # monotonic time after which running job processes are killed
        self._active = 0                            # jobs running now (threads inside run_job)
        self._active_cond = threading.Condition()
        self._address = store_address(db)
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
        with self._counted():
            for spec in [self.schedule.job(job_id), *self.schedule.followers(job_id)]:
                if self._stopping.is_set():
                    break  # stopping: the rest of the chain does not start
                results[spec.id] = self.run_one(spec, trigger)
        return results

    @contextmanager
    def _counted(self):
        """Counts the block as a running job: stop() waits for it (within the grace)."""
        with self._active_cond:
            self._active += 1
        try:
            yield
        finally:
            with self._active_cond:
                self._active -= 1
                self._active_cond.notify_all()

    def run_one(self, spec: JobSpec, trigger: str = "scheduler") -> Any:
        """Run one job's step with the store handle; its run records are tagged trigger=..., job=<id>.

        A dotted-path step runs in its own process with the job's deadline (`run_isolated`); otherwise in
        this thread (no deadline)."""
        started = utcnow()
        self._set_state(spec.id, {"last_status": "running", "last_started_at": started, "last_error": None})
        log.info("job %s: starting %s", spec.id, spec.step_path)
        if self.isolated(spec):
            return self.run_isolated(spec, trigger, started)
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
        with self._counted():   # stop() waits for the session's final flush
            while not self._stopping.is_set():
                try:
                    self.run_one(spec)   # in this thread: its arguments are live objects, not plain data
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

    # --- a job in its own process, with a deadline ----------------------------------------------------

    def isolated(self, spec: JobSpec) -> bool:
        """Whether the job runs in its own process: a dotted-path step, plain-data arguments and a store the
        child can open by its address."""
        return isinstance(spec.step, str) and self._address is not None and _plain_data(spec.args)

    def run_isolated(self, spec: JobSpec, trigger: str, started: datetime) -> Any:
        """Run the step in `python -m jobs.worker --child` and wait for it until the job's deadline (or the
        stop deadline after SIGTERM); a process still running then is killed and its run marked."""
        module = str(spec.step).rpartition(".")[0]
        try:
            found = importlib.util.find_spec(module) if module else None
        except (ImportError, ValueError):
            found = None
        if found is None:
            message = f"step {spec.step} is not available (no module named {module!r})"
            self._finish_state(spec.id, started, "failed", message, None)
            raise JobFailed(spec.id, message, recorded=False)
        timeout = self.schedule.timeout_seconds(spec)
        url, name = self._address
        payload = {"step": spec.step, "args": spec.args, "db": url, "db_name": name, "trigger": trigger,
                   "job": spec.id, "log_level": logging.getLogger().getEffectiveLevel()}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        with tempfile.TemporaryDirectory(prefix="qort-job-") as tmp:
            result_path = Path(tmp) / "result.json"
            proc = subprocess.Popen([sys.executable, "-m", "jobs.worker", "--child", str(result_path)],
                                    stdin=subprocess.PIPE, env=env, start_new_session=True)
            try:  # the spec (with the store URL and its credentials) goes on stdin, never on the command line
                proc.stdin.write(json.dumps(payload, default=str).encode())
                proc.stdin.close()
            except OSError:
                pass
            try:
                outcome = self._wait(proc, timeout)
            except BaseException:  # Ctrl-C of `worker --once`, or any error here: never leave the process behind
                _kill(proc)
                self._mark_child_runs(proc.pid, "interrupted", f"interrupted: the worker running job {spec.id} "
                                                               "was interrupted")
                raise
            result = _read_result(result_path) if outcome == "exited" else None
        if outcome != "exited":
            why = (f"cancelled at its {timeout:g} s deadline" if outcome == "timeout" else
                   "cancelled: the worker was stopped (SIGTERM) and the job outlived the stop grace")
            status = "timeout" if outcome == "timeout" else "interrupted"
            marked = self._mark_child_runs(proc.pid, status, f"{status}: {why} (job {spec.id}, process {proc.pid})")
            self._clean_after_child(spec)
            log.warning("job %s: %s", spec.id, why)
            self._finish_state(spec.id, started, status, why, marked)
            raise JobFailed(spec.id, why, recorded=bool(marked))
        if result is None:
            why = f"the job's process exited with code {proc.returncode} without a result"
            self._clean_after_child(spec)
            self._finish_state(spec.id, started, "failed", why, None)
            raise JobFailed(spec.id, why, recorded=False)
        recorded = result.get("recorded") or []
        if not result.get("ok"):
            message = result.get("error") or "failed"
            self._finish_state(spec.id, started, "failed", message, recorded)
            log.warning("job %s failed: %s", spec.id, message)
            raise JobFailed(spec.id, message, recorded=bool(recorded) and not result.get("unavailable"))
        if not recorded:  # a step that keeps no run record of its own still leaves one
            record_event(self.db, spec.id, "ok", trigger=trigger, job=spec.id, started_at=started)
        self._finish_state(spec.id, started, "ok", None, recorded)
        log.info("job %s: ok", spec.id)
        return result.get("summary")

    def _wait(self, proc: subprocess.Popen, timeout: float) -> str:
        """Wait for a job process: "exited", "timeout" (killed at its deadline) or "stopped" (killed after the
        stop grace)."""
        deadline = time.monotonic() + timeout if timeout > 0 else None
        while True:
            try:
                proc.wait(timeout=0.2)
                return "exited"
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                _kill(proc)
                return "timeout"
            if self._stop_deadline is not None and now >= self._stop_deadline:
                _kill(proc)
                return "stopped"

    def _mark_child_runs(self, pid: int, status: str, reason: str) -> list[str]:
        """Mark the "running" records a killed job process left with `status` and the reason; their ids."""
        from qortcli.store.runs import end_process_runs

        try:
            return end_process_runs(self.db, pid, status, reason)
        except Exception:
            log.exception("could not mark the runs of the killed job process %s", pid)
            return []

    def _clean_after_child(self, spec: JobSpec) -> None:
        """Discard what a dead job process left pending (its claim's owner is gone now)."""
        try:
            from qortcli.store.maintenance import clean_leftovers

            cleaned = clean_leftovers(self.db, found_by=f"worker, after job {spec.id}")
            if cleaned:
                log.warning("job %s: cleaned after its process: %s", spec.id, cleaned.counts())
        except Exception:
            log.exception("could not clean after job %s", spec.id)

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
            worker_state.set_state(self.db, f"job:{job_id}", {"job": job_id, **fields, "updated_at": utcnow()})
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
            worker_state.set_state(self.db, "worker", doc)
        except Exception:
            log.exception("could not write the worker heartbeat")

    # --- lifecycle -----------------------------------------------------------------------------------

    def stop(self) -> int:
        """Stop scheduling; running jobs get the stop grace to finish, then their processes are killed; mark the
        worker stopped. Returns how many in-thread jobs are still running (they cannot be killed)."""
        grace = self.schedule.stop_grace_seconds
        self._stopping.set()
        self._stop_deadline = time.monotonic() + grace
        if self.scheduler.running:
            log.info("stopping: running jobs get %g s to finish", grace)
            self.scheduler.shutdown(wait=False)
        with self._active_cond:  # job processes are killed at the stop deadline by their waiting threads
            self._active_cond.wait_for(lambda: self._active == 0, timeout=grace + 10.0)
            left = self._active
        if left:
            log.warning("%d in-thread job(s) still running after the %g s stop grace: exiting without them "
                        "(their runs are marked abandoned by the next run)", left, grace)
        self.heartbeat(stopped=True)
        return left


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
    left = 0
    try:
        worker.scheduler.start()
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        left = worker.stop()
    log.info("worker stopped")
    if left:  # the pool's threads would keep the interpreter alive past the compose grace
        logging.shutdown()
        os._exit(0)
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


# --- job processes ----------------------------------------------------------------------------------

def store_address(db) -> tuple[str, str] | None:
    """(url, database name) by which a job process reopens the worker's store, or None when it cannot (a
    read-only or in-memory handle, e.g. mongomock in tests)."""
    from qortcli.store.connect import MongoDatabase

    if getattr(type(db), "is_embedded", False) is True:
        return None if vars(db).get("read_only") else (str(db.path), db.name)
    if isinstance(db, MongoDatabase):
        import pymongo

        return (db.url, db.name) if isinstance(vars(db).get("_client"), pymongo.MongoClient) else None
    return None


def _plain_data(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_data(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain_data(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def _kill(proc: subprocess.Popen) -> None:
    """SIGTERM the job process (and its group), then SIGKILL if it is still there 2 s later."""
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _read_result(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_child(result_path: str) -> int:
    """The job process: read the job's spec from stdin, run its step on the store, write the result JSON
    ({ok, summary, recorded, error, unavailable}) to `result_path`. Exit 0 when it ran (even if it failed)."""
    from qortcli.store import connect

    spec = json.loads(sys.stdin.read())
    logging.getLogger().setLevel(int(spec.get("log_level") or logging.INFO))
    result: dict[str, Any] = {"ok": False, "recorded": []}
    try:
        func = resolve_step(spec["step"])
    except StepUnavailable as exc:
        result.update(error=str(exc), unavailable=True)
        func = None
    if func is not None:
        db = connect(spec["db"], spec["db_name"])
        try:
            with run_context(spec.get("trigger") or "scheduler", job=spec.get("job")) as recorded:
                try:
                    summary = func(db, **(spec.get("args") or {}))
                    result.update(ok=True, summary=_jsonable(summary))
                except Exception as exc:
                    result["error"] = _first_line(exc)
                result["recorded"] = list(recorded)
        finally:
            db.close()
    tmp = Path(result_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=str))
    os.replace(tmp, result_path)
    return 0


def _jsonable(value):
    """A JSON-safe copy of a step summary (numpy → Python, datetimes → ISO text)."""
    try:
        return json.loads(json.dumps(to_plain(value), default=lambda v: v.isoformat() if hasattr(v, "isoformat")
                                     else str(v)))
    except (TypeError, ValueError):
        return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=None, help="store URL or directory (default QORT_DB)")
    parser.add_argument("--once", metavar="JOB", help="run one job (and its chain) now and exit")
    parser.add_argument("--list", action="store_true", help="print the schedule and exit")
    parser.add_argument("--child", metavar="RESULT", help=argparse.SUPPRESS)  # a job process (see run_child)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if args.child:
        return run_child(args.child)
    if not args.list:
        from qortcli.errors import ConfigError
        from qortcli.placeholders import refuse_placeholders

        try:
            refuse_placeholders("the worker")
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2   # a configuration error, as `qortcli worker` reports it
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
