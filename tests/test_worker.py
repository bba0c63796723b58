"""The scheduled worker: scheduling semantics on a real embedded store, chains, failures, SIGTERM, status, cron."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from jobs.worker import JobFailed, Worker
from qortcli.errors import ConfigError, StepError
from qortcli.schedule import (CATALOG, WORKER_STATE, JobSpec, Schedule, load_schedule, parse_every,
                              render_crontab)
from qortcli.store import schema
from qortcli.store.runs import recorded_run

ROOT = Path(__file__).resolve().parents[1]


def wait_until(predicate, what: str, limit_s: float = 90.0, poll_s: float = 0.25):
    """Poll `predicate` until true; the limit only guards against a hang (it is not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll_s)
    raise AssertionError(f"gave up waiting for: {what}")


class FakeSteps:
    """Small step callables with the real step signature `(db, **kwargs)`, counting what happened."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = {"fast": 0, "follow": 0, "boom": 0, "after_boom": 0, "slow": 0}
        self.slow_running = 0
        self.slow_max_running = 0
        self.release_slow = threading.Event()

    def _count(self, name):
        with self.lock:
            self.calls[name] += 1

    def fast(self, db):
        with recorded_run(db, "fast", {}) as run:
            self._count("fast")
            run.counts["n"] = 1
        return {"ok": True}

    def follow(self, db):
        with recorded_run(db, "follow", {}):
            self._count("follow")

    def boom(self, db):
        with recorded_run(db, "boom", {}):
            self._count("boom")
            raise StepError("boom: no snapshot to work on")

    def after_boom(self, db):
        self._count("after_boom")

    def slow(self, db):
        with recorded_run(db, "slow", {}):
            with self.lock:
                self.calls["slow"] += 1
                self.slow_running += 1
                self.slow_max_running = max(self.slow_max_running, self.slow_running)
            try:
                self.release_slow.wait(60)
            finally:
                with self.lock:
                    self.slow_running -= 1


def runs(db, **query):
    return list(db[schema.JOB_RUNS].find(query))


def test_scheduler_runs_steps_never_overlaps_records_failures_and_goes_on(embedded_db):
    db = embedded_db
    fake = FakeSteps()
    every = parse_every
    schedule = Schedule(jobs=(
        JobSpec("fast", fake.fast, every=every("0.5s")),
        JobSpec("follow", fake.follow, after="fast"),
        JobSpec("boom", fake.boom, every=every("0.5s")),
        JobSpec("after_boom", fake.after_boom, after="boom"),
        JobSpec("slow", fake.slow, every=every("0.5s")),
        JobSpec("real", "qortcli.steps.migrate.run_migrate", every=every("1s")),
        JobSpec("missing", "qortcli.steps.not_built_yet.run_nothing", every=every("1s")),
    ), misfire_grace_seconds=30, max_workers=6, heartbeat_seconds=2)
    worker = Worker(db, schedule, scheduler_cls=BackgroundScheduler)
    worker.scheduler.start()
    try:
        for job in worker.scheduler.get_jobs():  # the job defaults asked of the scheduler, applied to each job
            assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, 30)
        wait_until(lambda: runs(db, job="slow", status="skipped"), "a skipped start of the slow job")
        wait_until(lambda: len(runs(db, job="boom", status="failed")) >= 2, "two recorded failures of boom")
        first_failure = min(r["started_at"] for r in runs(db, job="boom", status="failed"))
        wait_until(lambda: any(r["started_at"] > first_failure for r in runs(db, job="fast", status="ok")),
                   "fast running after boom failed")
        wait_until(lambda: runs(db, job="real", step="migrate", status="ok"), "the real migrate step")
        wait_until(lambda: runs(db, job="missing", status="failed"), "the unavailable step's failure")
        assert fake.slow_running == 1  # still blocked: every later start was skipped, none overlapped
    finally:
        fake.release_slow.set()
        worker.stop()

    # overlapping runs were never started: one slow run at a time, the other starts recorded as skipped
    assert fake.slow_max_running == 1
    assert len(runs(db, job="slow", status={"$ne": "skipped"})) == fake.calls["slow"] == 1
    skipped = runs(db, job="slow", status="skipped")
    assert skipped and all("still running" in r["error"] for r in skipped)

    # each failure recorded once, by the step itself (the listener does not duplicate it); chain stopped
    failed = runs(db, job="boom")
    assert len(failed) == fake.calls["boom"] >= 2
    assert all(r["status"] == "failed" and "boom: no snapshot" in r["error"] for r in failed)
    assert fake.calls["after_boom"] == 0

    # the others went on: fast ran several times with its follower right after each success
    assert fake.calls["fast"] >= 2
    assert fake.calls["follow"] >= fake.calls["fast"] - 1  # the last chain may have been cut by shutdown
    assert all(r["trigger"] == "scheduler" for r in runs(db, job="fast"))

    # a step that is not importable yet: a clear failure recorded by the EVENT_JOB_ERROR listener
    missing = runs(db, job="missing")
    assert missing and all("not available" in r["error"] and "not_built_yet" in r["error"] for r in missing)

    # the real step ran through the same path and wrote its own run record
    real = runs(db, job="real", status="ok")
    assert real and all(r["step"] == "migrate" for r in real)

    state = {d["_id"]: d for d in db[WORKER_STATE].find({})}
    assert state["job:fast"]["last_status"] == "ok"
    assert state["job:boom"]["last_status"] == "failed" and "boom" in state["job:boom"]["last_error"]
    assert state["worker"]["stopped_at"] is not None


def test_missed_run_is_recorded(embedded_db):
    fake = FakeSteps()
    schedule = Schedule(jobs=(JobSpec("fast", fake.fast, every=parse_every("1h")),),
                        misfire_grace_seconds=1, heartbeat_seconds=0)
    worker = Worker(embedded_db, schedule, scheduler_cls=BackgroundScheduler, run_at_start=False)
    worker.scheduler.start()
    try:  # a run due an hour ago, far beyond the 1 s grace time
        late = datetime.now(timezone.utc) - timedelta(hours=1)
        worker.scheduler.add_job(worker.run_job, "date", run_date=late, args=["fast"], id="fast_late")
        wait_until(lambda: runs(embedded_db, job="fast_late", status="missed"), "the missed record")
    finally:
        worker.stop()
    missed = runs(embedded_db, job="fast_late", status="missed")
    assert len(missed) == 1 and "late" in missed[0]["error"]
    assert fake.calls["fast"] == 0


def test_run_once_runs_the_chain_and_records_unavailable_steps(embedded_db):
    fake = FakeSteps()
    schedule = Schedule(jobs=(JobSpec("fast", fake.fast, every=parse_every("5m")),
                              JobSpec("follow", fake.follow, after="fast"),
                              JobSpec("missing", "qortcli.steps.nope.run_nope", cron="0 * * * *")))
    worker = Worker(embedded_db, schedule)
    result = worker.run_once("fast")
    assert list(result) == ["fast", "follow"] and fake.calls == {**fake.calls, "fast": 1, "follow": 1}
    assert {r["trigger"] for r in runs(embedded_db, job="fast")} == {"worker-once"}
    with pytest.raises(JobFailed, match="not available"):
        worker.run_once("missing")
    assert [r["status"] for r in runs(embedded_db, job="missing")] == ["failed"]


def test_schedule_settings_and_validation():
    packaged = load_schedule()  # the packaged settings.toml [schedule]
    assert packaged.job("collect_deribit").every == timedelta(minutes=5)
    assert [s.id for s in packaged.followers("collect_deribit")] == ["price", "surface", "risk"]
    assert packaged.job("collect_prices").cron == "10 0 * * *"
    assert {"optimize", "suggest", "track"} <= set(packaged.ids)
    assert packaged.misfire_grace_seconds > 1  # APScheduler's 1 s default would silently drop runs
    for spec in packaged.jobs:  # every default job names the step function the issue lists
        assert spec.step == CATALOG[spec.id][0]
    assert parse_every("30s") == timedelta(seconds=30) and parse_every("1d") == timedelta(days=1)
    for bad in ({"jobs": {"price": {"every": "5x"}}}, {"jobs": {"price": {"cron": "61 * * * *"}}},
                {"jobs": {"price": {"every": "5m", "cron": "* * * * *"}}}, {"jobs": {"price": {"after": "ghost"}}},
                {"jobs": {"a": {"step": "x.y", "after": "b"}, "b": {"step": "x.y", "after": "a"}}},
                {"jobs": {"mystery": {"every": "5m"}}}):
        with pytest.raises(ConfigError):
            load_schedule(bad)
    assert "price" not in load_schedule({"jobs": {"price": {"every": "1h", "enabled": False}}}).ids


def _settings_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(body)
    return path


def test_cli_once_and_status_shows_next_runs_and_last_results(tmp_path, monkeypatch, qort_env):
    from typer.testing import CliRunner

    from qortcli.cli import app
    from qortcli.store import connect
    from qortcli.steps.status import status_sections

    settings = _settings_file(tmp_path, """
[schedule.jobs]
schema = { step = "qortcli.steps.migrate.run_migrate", command = "migrate", cron = "10 0 * * *" }
ghost = { step = "qortcli.steps.ghost.run_ghost", command = "ghost", every = "5m" }
""")
    monkeypatch.setenv("QORT_SETTINGS", str(settings))
    cli = CliRunner()
    ok = cli.invoke(app, ["worker", "--once", "schema"])
    assert ok.exit_code == 0, ok.output
    bad = cli.invoke(app, ["worker", "--once", "ghost"])
    assert bad.exit_code == 1 and "not available" in bad.output
    assert cli.invoke(app, ["worker", "--once", "nope"]).exit_code == 2

    def next_0010(now):  # by hand: the next 00:10 UTC strictly after `now`
        today_0010 = now.replace(hour=0, minute=10, second=0, microsecond=0)
        return today_0010 if now < today_0010 else today_0010 + timedelta(days=1)

    db = connect(str(qort_env))
    try:
        before = datetime.now(timezone.utc)
        section = status_sections(db)[0]
        after = datetime.now(timezone.utc)
        rows = {row[0]: dict(zip(section["columns"], row)) for row in section["rows"]}
        assert rows["schema"]["next run (UTC)"] in {next_0010(before), next_0010(after)}
        assert rows["schema"]["last status"] == "ok"
        assert rows["ghost"]["last status"] == "failed" and "not available" in rows["ghost"]["error"]
        assert "no worker has run" in section["title"]
        assert runs(db, job="schema", step="migrate", trigger="worker-once")
    finally:
        db.close()
    status = cli.invoke(app, ["status", "--json"])
    assert status.exit_code == 0 and '"Schedule' in status.output


def test_status_is_read_only_without_worker_state(embedded_db):
    from qortcli.steps.status import status_sections

    before = set(embedded_db.list_collection_names())
    section = status_sections(embedded_db)[0]  # the schedule (then the open alerts)
    assert [row[0] for row in section["rows"]] == load_schedule().ids
    assert set(embedded_db.list_collection_names()) == before  # no worker_state created by reading


def test_sigterm_lets_the_running_job_finish_then_exits_cleanly(tmp_path):
    """`python -m jobs.worker` in a subprocess: SIGTERM while a job runs → the job completes, exit 0."""
    helper = tmp_path / "slowstep.py"
    helper.write_text('''
import time
from pathlib import Path
from qortcli.store.runs import recorded_run

def run_slow(db, marker_dir):
    with recorded_run(db, "slow", {}):
        Path(marker_dir, "started").touch()
        while not Path(marker_dir, "release").exists():
            time.sleep(0.05)
        Path(marker_dir, "finished").touch()
''')
    settings = _settings_file(tmp_path, f"""
[schedule]
heartbeat_seconds = 1
[schedule.jobs]
slow = {{ step = "slowstep.run_slow", every = "1h", args = {{ marker_dir = "{tmp_path}" }} }}
""")
    env = {**os.environ, "QORT_DB": str(tmp_path / "db"), "QORT_SETTINGS": str(settings),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.worker"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: (tmp_path / "started").exists() or proc.poll() is not None, "the job to start")
        assert proc.poll() is None, proc.stdout.read()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # give the worker a chance to (wrongly) exit before the job is released
        assert proc.poll() is None, "the worker exited while its job was still running"
        (tmp_path / "release").touch()
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert (tmp_path / "finished").exists()
    assert "SIGTERM received" in output

    from qortcli.store import connect

    db = connect(str(tmp_path / "db"))
    try:
        (run,) = runs(db, job="slow")
        assert run["status"] == "ok" and run["trigger"] == "scheduler"
        assert db[WORKER_STATE].find_one({"_id": "worker"})["stopped_at"] is not None
    finally:
        db.close()


def test_crontab_file_is_the_schedule_with_locks():
    committed = (ROOT / "crontab").read_text()
    assert committed == render_crontab(load_schedule()), "regenerate with: qortcli worker --crontab > crontab"
    lines = [ln for ln in committed.splitlines() if ln and not ln.startswith("#") and "=" not in ln.split()[0]]
    assert len(lines) == len(load_schedule().leaders())
    for line in lines:
        fields = line.split(None, 5)
        command = fields[5]
        assert command.startswith('flock -n "$QORT_LOCKS/qortfolio-'), line
        assert "%" not in command  # cron turns % into newlines
        check = subprocess.run(["sh", "-n", "-c", command], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    chain = next(ln for ln in lines if "collect deribit" in ln)
    assert chain.startswith("*/5 * * * * ") and "qortcli collect deribit && qortcli price && qortcli surface" in chain
    assert re.search(r"^10 0 \* \* \* .*qortcli collect prices", committed, re.M)
    assert re.search(r"^45 \* \* \* \* .*qortcli suggest --track", committed, re.M)
