"""Health rules, pure: typed inputs (the jobs' latest runs, data ages, stream states) → `Condition`s.

Times are tz-aware UTC datetimes, durations seconds. Nothing here reads the store or the schedule: the step
(`qortcli.steps.alerts`) gathers the inputs, including each job's due times from the schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from qortcli.alerts.conditions import Condition
from qortcli.alerts.settings import (JobFailedRule, JobMissedRule, Rule, StaleDataRule, StreamDisconnectedRule)

RAN = ("ok", "failed", "running", "interrupted")     # run statuses of a run that actually started
FINISHED = ("ok", "failed")
START_TOLERANCE_S = 5.0                              # a run started this soon before its due time counts


@dataclass(frozen=True)
class FinishedRun:
    run_id: str
    status: str                 # "ok" | "failed"
    started_at: datetime
    ended_at: datetime | None
    error: str | None


@dataclass(frozen=True)
class JobHealth:
    """One scheduled job as its run records (`job_runs` tagged with the job id) show it at the evaluation time.

    every_s:   the interval of an `every` job; cron_fires: a cron job's recent fire times up to now, oldest
               first (enough to look back past any grace); chained: runs `after` another job.
    latest_*:  the newest record of any status (ok, failed, running, missed, skipped, ...);
    last_started_at: the newest record of a run that started; last_finished: the newest ok/failed run;
    failures_in_row: failed runs since the last ok one (among the records read).
    """

    job: str
    timing: str
    every_s: float | None = None
    cron_fires: tuple[datetime, ...] = ()
    chained: bool = False
    latest_status: str | None = None
    latest_at: datetime | None = None
    latest_error: str | None = None
    last_started_at: datetime | None = None
    last_finished: FinishedRun | None = None
    failures_in_row: int = 0


@dataclass(frozen=True)
class DataAge:
    """How old one dataset is: `latest_at` the time of its newest data (snapshot time; a daily bar's end),
    `cadence_s` how often it should be refreshed (None when no job refreshes it), `cadence_from` which setting."""

    dataset: str                # "options" | "summaries" | "prices"
    subject: str                # "options/BTC", "prices/ETH", ...
    latest_at: datetime | None
    cadence_s: float | None
    cadence_from: str


@dataclass(frozen=True)
class StreamState:
    """One currency's `live_marks` stream status: `last_message_at` (the feed's last frame), `updated_at` (the
    document's write), `expected` whether a stream should be running now and why (`expected_reason`)."""

    currency: str
    updated_at: datetime
    connected: bool
    last_message_at: datetime | None
    expected: bool
    expected_reason: str
    reconnects: int | None = None


@dataclass(frozen=True)
class HealthInputs:
    now: datetime
    jobs: tuple[JobHealth, ...] = ()
    data: tuple[DataAge, ...] = ()
    streams: tuple[StreamState, ...] = ()
    grace_s: float = 600.0              # the schedule's misfire grace (job_missed's default)


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment is not None else "never"


def _ago(now: datetime, moment: datetime) -> str:
    seconds = (now - moment).total_seconds()
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _jobs(rule, inputs: HealthInputs) -> list[JobHealth]:
    if rule.jobs is None:
        return list(inputs.jobs)
    return [j for j in inputs.jobs if j.job in rule.jobs]


def job_failed(rule: JobFailedRule, inputs: HealthInputs, open_subjects: frozenset[str]) -> list[Condition]:
    """The job's latest finished run failed (one episode until a run succeeds)."""
    out = []
    for job in _jobs(rule, inputs):
        last = job.last_finished
        if last is None:
            out.append(Condition.of(rule, job.job, None, f"job {job.job}: no finished run recorded",
                                  reason="no finished run recorded"))
            continue
        failed = last.status == "failed"
        title = (f"job {job.job} failed at {_when(last.started_at)}"
                 f"{f' ({job.failures_in_row} in a row)' if job.failures_in_row > 1 else ''}: {last.error or 'no error text'}"
                 if failed else f"job {job.job} ok at {_when(last.started_at)}")
        out.append(Condition.of(rule, job.job, failed, title, observed_at=last.ended_at or last.started_at,
                              values={"status": last.status, "error": last.error, "run_id": last.run_id,
                                      "failures_in_row": job.failures_in_row},
                              inputs={"timing": job.timing, "started_at": last.started_at, "ended_at": last.ended_at}))
    return out


def job_missed(rule: JobMissedRule, inputs: HealthInputs, open_subjects: frozenset[str]) -> list[Condition]:
    """The job did not start when due: the worker recorded a missed run, or no run started since it was due
    (interval jobs: last start + every; cron jobs: the last fire time) by more than the grace."""
    grace = rule.grace_s if rule.grace_s is not None else inputs.grace_s
    now = inputs.now
    out = []
    for job in _jobs(rule, inputs):
        if job.chained:
            continue  # runs after its leader: the leader's timing is watched, a failure is job_failed's
        due = None
        if job.every_s is not None and job.last_started_at is not None:
            due = job.last_started_at + timedelta(seconds=job.every_s)
        elif job.cron_fires:
            due = max((f for f in job.cron_fires if (now - f).total_seconds() >= grace), default=None)
        reason = None
        if job.latest_status == "missed":
            active = True
            title = f"job {job.job} missed its run: {job.latest_error or 'recorded missed'}"
        elif job.last_started_at is None:
            active, reason = None, "no run recorded for this job yet"
            title = f"job {job.job}: {reason}"
        elif due is None:
            active, reason = None, "not due yet" if job.cron_fires else "no due time (no timing of its own)"
            title = f"job {job.job}: {reason}"
        else:
            # interval: due = last start + every, so any later start has moved it; cron: due is the last fire
            # time at or before now − grace, so only a start since then counts
            started_since = job.every_s is None and job.last_started_at >= due - timedelta(seconds=START_TOLERANCE_S)
            active = not started_since and (now - due).total_seconds() > grace
            title = (f"job {job.job} ({job.timing}) has not started since it was due at {_when(due)} "
                     f"({_ago(now, due)} ago; last start {_when(job.last_started_at)})" if active else
                     f"job {job.job} on time (last start {_when(job.last_started_at)})")
        out.append(Condition.of(rule, job.job, active, title, observed_at=job.latest_at, reason=reason,
                              values={"due_at": due, "last_started_at": job.last_started_at,
                                      "latest_status": job.latest_status, "latest_error": job.latest_error},
                              thresholds={"grace_s": grace},
                              inputs={"timing": job.timing, "every_s": job.every_s}))
    return out


def stale_data(rule: StaleDataRule, inputs: HealthInputs, open_subjects: frozenset[str]) -> list[Condition]:
    """A dataset older than `cadence_multiple` × its cadence (or its explicit max_age)."""
    out = []
    for data in inputs.data:
        if data.dataset not in rule.datasets:
            continue
        currency = data.subject.split("/", 1)[-1]
        if data.dataset != "prices" and rule.currencies and currency not in rule.currencies:
            continue
        if data.dataset == "prices" and rule.symbols and currency not in rule.symbols:
            continue
        limit = rule.max_age_s.get(data.dataset)
        limit_from = f"max_age.{data.dataset}"
        if limit is None and data.cadence_s is not None:
            limit, limit_from = rule.cadence_multiple * data.cadence_s, \
                f"{rule.cadence_multiple:g} × {data.cadence_from} ({data.cadence_s:g} s)"
        reason = ("no data stored" if data.latest_at is None else
                  f"no cadence ({data.cadence_from}) and no max_age.{data.dataset}" if limit is None else None)
        age = None if data.latest_at is None else (inputs.now - data.latest_at).total_seconds()
        active = None if reason else age > limit
        title = (f"{data.subject}: {reason}" if reason else
                 f"{data.subject} is {_ago(inputs.now, data.latest_at)} old (latest {_when(data.latest_at)}; "
                 f"{'over' if active else 'within'} {limit / 60:g} min = {limit_from})")
        out.append(Condition.of(rule, data.subject, active, title, observed_at=data.latest_at, reason=reason,
                              values={"age_s": age, "latest_at": data.latest_at},
                              thresholds={"max_age_s": limit, "from": limit_from},
                              inputs={"dataset": data.dataset, "cadence_s": data.cadence_s,
                                      "cadence_from": data.cadence_from}))
    return out


def stream_disconnected(rule: StreamDisconnectedRule, inputs: HealthInputs,
                        open_subjects: frozenset[str]) -> list[Condition]:
    """The stream silent for more than `after_s` (no frame since `last_message_at`, or since the document's
    last write when it has none) while a stream is expected."""
    out = []
    for st in inputs.streams:
        if rule.currencies and st.currency not in rule.currencies:
            continue
        since = st.last_message_at or st.updated_at
        silent = (inputs.now - since).total_seconds()
        if not st.expected:
            active, reason = False, None
            title = f"{st.currency} stream not expected ({st.expected_reason})"
        else:
            active, reason = silent > rule.after_s, None
            state = "connected but silent" if st.connected else "disconnected"
            title = (f"{st.currency} stream {state} for {_ago(inputs.now, since)} (last message {_when(since)})"
                     if active else f"{st.currency} stream live (last message {_ago(inputs.now, since)} ago)")
        out.append(Condition.of(rule, st.currency, active, title, observed_at=st.updated_at, reason=reason,
                              values={"silent_s": silent, "connected": st.connected, "last_message_at": st.last_message_at,
                                      "updated_at": st.updated_at, "reconnects": st.reconnects},
                              thresholds={"after_s": rule.after_s},
                              inputs={"expected": st.expected, "expected_reason": st.expected_reason}))
    return out


EVALUATORS: dict[str, Callable[[Rule, HealthInputs, frozenset[str]], list[Condition]]] = {
    "job_failed": job_failed, "job_missed": job_missed, "stale_data": stale_data,
    "stream_disconnected": stream_disconnected,
}


def evaluate_health(rule: Rule, inputs: HealthInputs, open_subjects: frozenset[str] = frozenset()) -> list[Condition]:
    """The conditions of one health rule (one per job, dataset or currency)."""
    try:
        evaluator = EVALUATORS[rule.kind]
    except KeyError:
        raise ValueError(f"{rule.kind!r} is not a health rule kind ({', '.join(EVALUATORS)})") from None
    return evaluator(rule, inputs, open_subjects)

