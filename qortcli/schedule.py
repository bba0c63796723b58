"""The job schedule, read from the `[schedule]` section of the settings (shared by the worker, cron and status).

Each job runs one step function (imported lazily by dotted path, so a step that is not built yet only
fails its own job). A job has exactly one timing:
  every = "5m"            an interval ("30s", "5m", "1h", "1d"); first run when the worker starts
  cron  = "10 0 * * *"    a 5-field crontab expression, always in UTC
  after = "other_job"     runs right after `other_job` succeeds, in the same worker thread (a chain)
Options per job: `enabled = false` drops it, `args = {...}` are keyword arguments for the step,
`step = "pkg.module.func"` and `command = "..."` (the `qortcli` command line for cron) define new jobs,
`timeout = "4m"` is the job's deadline (default `[schedule] job_timeout`; "0" for none).

Deadlines: the worker runs each job in its own process and kills it at its deadline (the run is recorded
"timeout", what it left pending is discarded) so a stuck job never blocks its later runs. A job's timeout
is also how long a "running" record of that step, from a process on another host, may stay before it is
called abandoned (`step_timeout_seconds`). `stop_grace` bounds a SIGTERM: running jobs get that long to
finish, then they are killed and the worker exits (docker-compose's stop_grace_period must be longer).

Option chains come from one of two sources (`chains` in `[schedule]`):
  chains = "poll"     the collect_deribit job polls REST on its own timing (default, every 5 minutes)
  chains = "stream"   one long-lived `qortcli stream` session replaces that poll (the worker starts it at
                      start-up and restarts it after a failure); the jobs chained after collect_deribit
                      (price, then surface) run after each round of snapshots the stream stores.
                      `[schedule.stream]` holds the session's options (keyword arguments of run_stream,
                      e.g. snapshot_every = "5m", currencies = ["BTC", "ETH"]).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from qortcli.errors import ConfigError

# The worker's small state collection: _id "worker" (heartbeat, next runs) and "job:<id>" (last result).
WORKER_STATE = "worker_state"   # (= qortcli.store.worker_state.COLLECTION, which reads and writes it)

# The known jobs: id → (dotted path of the step function, qortcli command line, description).
CATALOG: dict[str, tuple[str, str, str]] = {
    "collect_deribit": ("qortcli.steps.collect.run_collect_deribit", "collect deribit", "Deribit option chains"),
    "price": ("qortcli.steps.price.run_price", "price", "Black-76 prices, Greeks, IVs of the latest chain"),
    "surface": ("qortcli.steps.surface.run_surface", "surface", "SVI volatility surfaces of the latest chain"),
    "risk": ("qortcli.steps.risk.run_risk", "risk --skip-missing", "the book's risk and scenario grid on the latest chain"),
    "collect_prices": ("qortcli.steps.collect.run_collect_prices", "collect prices", "daily crypto prices"),
    "vol": ("qortcli.steps.vol.run_vol", "vol", "realised vol, IV rank, vol cone and RV forecasts scored out of sample"),
    "optimize": ("qortcli.steps.optimize.run_optimize", "optimize", "sector portfolios and risk metrics"),
    "suggest": ("qortcli.steps.suggest.run_suggest", "suggest", "option strategy suggestions"),
    "track": ("qortcli.steps.suggest.run_track", "suggest --track", "track record of past suggestions"),
    "prune": ("qortcli.steps.prune.run_prune", "prune", "retention: thin chains older than the window to one a day"),
    "alerts": ("qortcli.steps.alerts.run_alerts", "alerts run", "market and job-health alerts, once per episode"),
}

# Used when the settings file has no [schedule.jobs] (the packaged settings.toml carries the same values).
DEFAULT_JOBS: dict[str, dict[str, Any]] = {
    "collect_deribit": {"every": "5m", "timeout": "4m"},
    "price": {"after": "collect_deribit", "timeout": "3m"},
    "surface": {"after": "price", "timeout": "3m"},
    "risk": {"after": "surface", "timeout": "3m"},
    "collect_prices": {"cron": "10 0 * * *", "timeout": "20m"},
    "vol": {"after": "collect_prices", "timeout": "10m"},
    "optimize": {"cron": "30 0 * * *", "timeout": "30m"},
    "suggest": {"cron": "15 * * * *", "timeout": "10m"},
    "track": {"cron": "45 * * * *", "timeout": "10m"},
    "prune": {"cron": "40 0 * * *", "timeout": "30m"},
    "alerts": {"every": "1m", "timeout": "2m"},
}
#: `chains` values, the job a stream session replaces, and the session's step
CHAINS = ("poll", "stream")
POLL_JOB = "collect_deribit"
STREAM_JOB = "stream"
STREAM_STEP = "qortcli.steps.stream.run_stream"
DEFAULT_MISFIRE_GRACE_SECONDS = 600
DEFAULT_MAX_WORKERS = 4
DEFAULT_HEARTBEAT_SECONDS = 60
DEFAULT_JOB_TIMEOUT_SECONDS = 900.0     # a job's deadline unless it sets its own `timeout`
DEFAULT_STOP_GRACE_SECONDS = 60.0       # after SIGTERM: how long running jobs may finish before they are killed

_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class JobSpec:
    """One scheduled job: which step it runs and when (exactly one of every / cron / after)."""

    id: str
    step: str | Callable  # dotted path "package.module.function", or a callable (tests)
    command: str = ""  # the equivalent `qortcli` command line, for cron
    description: str = ""
    every: timedelta | None = None
    cron: str | None = None
    after: str | None = None
    args: dict = field(default_factory=dict)
    timeout: timedelta | None = None  # the job's deadline; None: the schedule's job_timeout; 0: none

    @property
    def timing(self) -> str:
        """Human description of when it runs."""
        if self.every is not None:
            return f"every {format_every(self.every)}"
        if self.cron is not None:
            return f"cron {self.cron} (UTC)"
        return f"after {self.after}"

    @property
    def step_path(self) -> str:
        if isinstance(self.step, str):
            return self.step
        return f"{getattr(self.step, '__module__', '?')}.{getattr(self.step, '__qualname__', repr(self.step))}"


@dataclass(frozen=True)
class Schedule:
    """The jobs plus the scheduler options (job_defaults)."""

    jobs: tuple[JobSpec, ...]
    misfire_grace_seconds: int = DEFAULT_MISFIRE_GRACE_SECONDS
    max_workers: int = DEFAULT_MAX_WORKERS
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    chains: str = "poll"                   # "poll" | "stream" (see the module docstring)
    stream_args: dict = field(default_factory=dict)

    @property
    def streaming(self) -> bool:
        return self.chains == "stream"

    def stream_spec(self) -> JobSpec:
        """The long-lived stream session of chains = "stream" (started by the worker, not by a trigger)."""
        return JobSpec(STREAM_JOB, STREAM_STEP, command="stream", description="live Deribit websocket feed",
                       args=dict(self.stream_args))
    job_timeout_seconds: float = DEFAULT_JOB_TIMEOUT_SECONDS
    stop_grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS

    def timeout_seconds(self, spec: "JobSpec") -> float:
        """The deadline of a job in seconds (0: none)."""
        return self.job_timeout_seconds if spec.timeout is None else spec.timeout.total_seconds()

    def job(self, job_id: str) -> JobSpec:
        for spec in self.jobs:
            if spec.id == job_id:
                return spec
        raise KeyError(job_id)

    @property
    def ids(self) -> list[str]:
        return [spec.id for spec in self.jobs]

    def leaders(self) -> list[JobSpec]:
        """Jobs with their own timing (every/cron): the ones the scheduler triggers."""
        return [spec for spec in self.jobs if spec.after is None]

    def followers(self, job_id: str) -> list[JobSpec]:
        """Jobs that run right after `job_id`, in chain order (price, then surface after price, ...)."""
        chain: list[JobSpec] = []
        frontier = [job_id]
        while frontier:
            current = frontier.pop(0)
            for spec in self.jobs:
                if spec.after == current:
                    chain.append(spec)
                    frontier.append(spec.id)
        return chain

    def leader_of(self, job_id: str) -> JobSpec:
        """The job whose timing triggers `job_id` (itself unless it runs `after` another)."""
        spec = self.job(job_id)
        seen = {spec.id}
        while spec.after is not None:
            spec = self.job(spec.after)
            if spec.id in seen:  # pragma: no cover - load_schedule rejects cycles
                raise ConfigError(f"schedule: cycle through job {spec.id!r}")
            seen.add(spec.id)
        return spec


def parse_every(text: str | int | float, job_id: str = "?") -> timedelta:
    """"30s" / "5m" / "1h" / "1d" (or a number of seconds) → timedelta; ConfigError if malformed."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _EVERY.match(str(text))
        if not match:
            raise ConfigError(f"schedule job {job_id!r}: every = {text!r} is not like \"30s\", \"5m\", \"1h\", \"1d\"")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"schedule job {job_id!r}: every must be positive")
    return timedelta(seconds=seconds)


def parse_timeout(text, where: str) -> timedelta:
    """A timeout like `every` ("90s", "4m", or seconds); "0" / 0 means none (a zero timedelta)."""
    if str(text).strip() in ("0", "0s", "0m", "0.0"):
        return timedelta(0)
    try:
        return parse_every(text, where)
    except ConfigError:
        raise ConfigError(f"schedule {where}: timeout = {text!r} is not like \"90s\", \"4m\", \"1h\" (or 0 for none)") from None


def format_every(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size, name in (("d", 86400, "day"), ("h", 3600, "h"), ("m", 60, "min")):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {name}{'s' if name == 'day' and n > 1 else ''}"
    return f"{seconds:g} s"


def cron_trigger(expression: str, job_id: str = "?"):
    """APScheduler CronTrigger (UTC) from a 5-field crontab expression; ConfigError if malformed."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(expression, timezone=timezone.utc)
    except ValueError as exc:
        raise ConfigError(f"schedule job {job_id!r}: cron = {expression!r} is not a valid crontab line: {exc}") from None


def trigger_for(spec: JobSpec):
    """The APScheduler trigger of a job with its own timing."""
    from apscheduler.triggers.interval import IntervalTrigger

    if spec.every is not None:
        return IntervalTrigger(seconds=spec.every.total_seconds(), timezone=timezone.utc)
    if spec.cron is not None:
        return cron_trigger(spec.cron, spec.id)
    raise ValueError(f"job {spec.id!r} runs after {spec.after!r} and has no trigger of its own")


def load_schedule(section: dict | None = None) -> Schedule:
    """The schedule from a `[schedule]` settings section (default: the current settings)."""
    if section is None:
        from qortcli.config import get_settings

        section = get_settings().section("schedule")
    section = dict(section or {})
    jobs_cfg = section.get("jobs")
    if jobs_cfg is None:
        jobs_cfg = DEFAULT_JOBS
    if not isinstance(jobs_cfg, dict):
        raise ConfigError("[schedule.jobs] must be a table of jobs")
    specs = []
    for job_id, cfg in jobs_cfg.items():
        if not isinstance(cfg, dict):
            raise ConfigError(f"schedule job {job_id!r} must be a table, e.g. {{ every = \"5m\" }}")
        if cfg.get("enabled", True) is False:
            continue
        specs.append(_spec_from_config(job_id, cfg))
    ids = {s.id for s in specs}
    for spec in specs:
        if spec.after is not None and spec.after not in ids:
            raise ConfigError(f"schedule job {spec.id!r} runs after {spec.after!r}, which is not an enabled job")
    schedule = Schedule(
        jobs=tuple(specs),
        misfire_grace_seconds=int(section.get("misfire_grace_seconds", DEFAULT_MISFIRE_GRACE_SECONDS)),
        max_workers=int(section.get("max_workers", DEFAULT_MAX_WORKERS)),
        heartbeat_seconds=float(section.get("heartbeat_seconds", DEFAULT_HEARTBEAT_SECONDS)),
        chains=_chains(section),
        stream_args=_stream_args(section),
        job_timeout_seconds=parse_timeout(section.get("job_timeout", DEFAULT_JOB_TIMEOUT_SECONDS),
                                          "job_timeout").total_seconds(),
        stop_grace_seconds=parse_timeout(section.get("stop_grace", DEFAULT_STOP_GRACE_SECONDS),
                                         "stop_grace").total_seconds(),
    )
    for spec in specs:  # reject cycles (a after b after a)
        _acyclic(schedule, spec)
    return schedule


def _chains(section: dict) -> str:
    chains = section.get("chains", "poll")
    if chains not in CHAINS:
        raise ConfigError(f"[schedule] chains = {chains!r}: use \"poll\" (REST every collect_deribit run) or "
                          f"\"stream\" (the long-lived websocket session)")
    return chains


def _stream_args(section: dict) -> dict:
    args = section.get("stream") or {}
    if not isinstance(args, dict):
        raise ConfigError("[schedule.stream] must be a table of the stream session's options, e.g. snapshot_every = \"5m\"")
    return dict(args)


def _acyclic(schedule: Schedule, spec: JobSpec) -> bool:
    seen = set()
    current = spec
    while current.after is not None:
        if current.id in seen:
            raise ConfigError(f"schedule: jobs {sorted(seen)} run after each other in a cycle")
        seen.add(current.id)
        current = schedule.job(current.after)
    return True


def _spec_from_config(job_id: str, cfg: dict) -> JobSpec:
    known = CATALOG.get(job_id)
    step = cfg.get("step") or (known[0] if known else None)
    if not step:
        raise ConfigError(f"schedule job {job_id!r} is not a known job ({', '.join(CATALOG)}): give it step = \"pkg.module.func\"")
    command = cfg.get("command") or (known[1] if known and not cfg.get("step") else "")
    description = cfg.get("description") or (known[2] if known else "")
    timings = [k for k in ("every", "cron", "after") if cfg.get(k) is not None]
    if len(timings) != 1:
        raise ConfigError(f"schedule job {job_id!r} needs exactly one of every / cron / after (has {timings or 'none'})")
    every = parse_every(cfg["every"], job_id) if "every" in timings else None
    cron = str(cfg["cron"]).strip() if "cron" in timings else None
    if cron is not None:
        cron_trigger(cron, job_id)  # validate now
    args = cfg.get("args") or {}
    if not isinstance(args, dict):
        raise ConfigError(f"schedule job {job_id!r}: args must be a table of keyword arguments")
    timeout = parse_timeout(cfg["timeout"], f"job {job_id!r}") if cfg.get("timeout") is not None else None
    return JobSpec(id=job_id, step=step, command=command, description=description, every=every, cron=cron,
                   after=cfg.get("after"), args=dict(args), timeout=timeout)


def resolve_step(step: str | Callable) -> Callable:
    """Import `package.module.function` (or return a callable as is).

    Raises StepUnavailable with one clear line when the module or function does not exist (yet).
    """
    if callable(step):
        return step
    module_name, _, attr = str(step).rpartition(".")
    if not module_name:
        raise StepUnavailable(f"step {step!r} is not a dotted path package.module.function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StepUnavailable(f"step {step} is not available ({type(exc).__name__}: {exc})") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise StepUnavailable(f"step {step} is not available ({module_name} has no function {attr!r})")
    return func


class StepUnavailable(Exception):
    """The step a job names cannot be imported (not built yet, or a typo in the settings)."""


def next_runs(schedule: Schedule, now: datetime | None = None) -> dict[str, datetime | None]:
    """Next fire time of each job computed from the configuration alone (interval jobs: None, they count
    from the worker's start; chained jobs: their leader's next time)."""
    now = now or datetime.now(timezone.utc)
    leaders: dict[str, datetime | None] = {}
    for spec in schedule.leaders():
        leaders[spec.id] = trigger_for(spec).get_next_fire_time(None, now) if spec.cron is not None else None
    return {spec.id: leaders.get(schedule.leader_of(spec.id).id) for spec in schedule.jobs}


def step_timeout_seconds(step: str | None, job: str | None = None, schedule: Schedule | None = None) -> float:
    """How long a run of `step` (from the worker's `job`, when known) may take: that job's timeout, else the
    longest timeout of the jobs running that step (`qortcli.steps.<step>.*`), else the default job timeout.
    A timeout of 0 (none) counts as the default here: a record must become provably stale some day."""
    try:
        schedule = schedule or load_schedule()
    except ConfigError:
        return DEFAULT_JOB_TIMEOUT_SECONDS
    default = schedule.job_timeout_seconds or DEFAULT_JOB_TIMEOUT_SECONDS
    if job and job in schedule.ids:
        return schedule.timeout_seconds(schedule.job(job)) or default
    found = [schedule.timeout_seconds(spec) for spec in schedule.jobs
             if step and spec.step_path.startswith(f"qortcli.steps.{step}.")]
    return max([t or default for t in found], default=default)
def cadence(spec: JobSpec, now: datetime | None = None) -> timedelta | None:
    """How often a job with its own timing runs: its interval, or the gap between a cron job's next two fire
    times after `now` (None for a chained job)."""
    if spec.every is not None:
        return spec.every
    if spec.cron is None:
        return None
    trigger = trigger_for(spec)
    first = trigger.get_next_fire_time(None, now or datetime.now(timezone.utc))
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))
    return second - first


def fire_times(spec: JobSpec, start: datetime, end: datetime, limit: int = 1000) -> list[datetime]:
    """A cron job's fire times in [start, end], oldest first (at most `limit`, the latest ones); [] otherwise."""
    if spec.cron is None:
        return []
    trigger = trigger_for(spec)
    times: list[datetime] = []
    moment = trigger.get_next_fire_time(None, start)
    while moment is not None and moment <= end:
        times.append(moment)
        moment = trigger.get_next_fire_time(moment, moment + timedelta(seconds=1))
    return times[-limit:]


def with_jobs(schedule: Schedule, *jobs: JobSpec) -> Schedule:
    """A copy of `schedule` with `jobs` instead of its own (programmatic schedules, tests)."""
    return replace(schedule, jobs=tuple(jobs))


# --- cron -------------------------------------------------------------------------------------------

CRONTAB_HEADER = """\
# qortfolio crontab: the worker's schedule (qortcli/data/settings.toml [schedule]) as plain cron lines,
# for hosts that run `qortcli` from cron instead of the long-running worker (`qortcli worker`).
# Generated by `qortcli worker --crontab`; regenerate it after changing the schedule.
#
# Install:  edit QORT_DB / PATH / QORT_LOGS below, `mkdir -p` the log directory, then `crontab crontab`
#           (as the user that owns the store). Check with `crontab -l` and `qortcli status`.
# Times are UTC: CRON_TZ=UTC is honoured by cronie (Fedora/RHEL); Debian's cron ignores it, so there run
#           the host in UTC (timedatectl set-timezone UTC).
# Overlap:  every line runs under `flock -n` on its own lock file: if the previous run of the same job
#           still holds the lock, the new one exits at once instead of running twice.
# Chains:   price, surface and risk run right after each successful Deribit collection (`&&`), and vol
#           right after the daily prices, as in the worker (`risk --skip-missing` exits 0 when there is no book).
# Secrets:  a user crontab is readable only by its owner and root, so QORT_DB with a password may go here;
#           never commit the edited copy.
"""


def cron_expression(spec: JobSpec) -> str:
    """The crontab time fields of a job with its own timing (intervals must divide an hour or a day)."""
    if spec.cron is not None:
        return spec.cron
    if spec.every is None:
        raise ValueError(f"job {spec.id!r} runs after {spec.after!r}: it has no cron line of its own")
    seconds = int(spec.every.total_seconds())
    if seconds % 60 == 0 and seconds < 3600 and 60 % (seconds // 60) == 0:
        minutes = seconds // 60
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    if seconds % 3600 == 0 and seconds < 86400 and 24 % (seconds // 3600) == 0:
        hours = seconds // 3600
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    if seconds == 86400:
        return "0 0 * * *"
    raise ConfigError(f"job {spec.id!r}: every {format_every(spec.every)} has no exact crontab equivalent "
                      "(use a whole number of minutes dividing 60, hours dividing 24, or cron = ...)")


def render_crontab(schedule: Schedule) -> str:
    """The crontab text (header, environment lines, one flock-guarded line per leader job)."""
    lines = [CRONTAB_HEADER,
             "SHELL=/bin/sh",
             "PATH=/usr/local/bin:/usr/bin:/bin",
             "CRON_TZ=UTC",
             "# QORT_DB=mongodb://user:password@localhost:27017/qortfolio?authSource=qortfolio",
             "QORT_LOCKS=/tmp",
             "QORT_LOGS=/var/tmp/qortfolio",
             ""]
    for spec in schedule.leaders():
        chain = [spec, *schedule.followers(spec.id)]
        missing = [s.id for s in chain if not s.command]
        if missing:
            raise ConfigError(f"jobs {missing} have no `command` (the qortcli command line) for cron")
        commands = " && ".join(f"qortcli {s.command}" for s in chain)
        names = ", ".join(s.id for s in chain)
        lines.append(f"# {names}: {spec.timing}")
        lines.append(f'{cron_expression(spec)} flock -n "$QORT_LOCKS/qortfolio-{spec.id}.lock" '
                     f"sh -c '{commands}' >> \"$QORT_LOGS/{spec.id}.log\" 2>&1")
    return "\n".join(lines) + "\n"
