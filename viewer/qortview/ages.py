"""How old each page's data is, and whether that is older than its schedule says it should be.

The schedule is the worker's (`qortcli.schedule.load_schedule()`): the chain is refreshed by
`collect_deribit` (every 5 min by default), surfaces and risk right after it, prices and portfolios daily,
suggestions and their tracking hourly. A datum is *stale* when its age exceeds its job's cadence plus the
scheduler's misfire grace (`[schedule] misfire_grace_seconds`, 600 s by default): one run missed and then
some. Jobs running `after` another inherit the leader's cadence; a cron job's cadence is the longest gap
between its next fire times. A job the schedule does not run gets an age but no stale flag.

No Reflex here: `age(...)` returns a typed `Age` the states display (the client renders the live "… ago").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from qortcli.timeutils import as_utc

from qortview import fmt

log = logging.getLogger("qortview")

#: what refreshes each kind of data the viewer shows (schedule job ids)
JOB_OF = {"chain": "collect_deribit", "summary": "surface", "surface": "surface", "prices": "collect_prices",
          "portfolio": "optimize", "suggestions": "suggest", "track": "track", "risk": "risk"}
#: data refreshed by no scheduled job but expected within a fixed time (seconds) and the rule in words
FIXED = {"live": (60.0, "the stream writes its live marks within seconds")}


@dataclass(frozen=True)
class Cadence:
    """How often a job runs (seconds) and the rule in words."""

    job: str
    seconds: float
    text: str


@dataclass(frozen=True)
class Age:
    """One datum's time (UTC) and age against its job's cadence."""

    label: str
    at: datetime | None
    seconds: float | None
    stale: bool
    rule: str                    # "collect_deribit: every 5 min" or "" when the schedule does not run it
    day: bool = False            # `at` is the end of a whole UTC day of data (shown as that day)

    @property
    def iso(self) -> str:
        return self.at.isoformat() if self.at else ""

    @property
    def at_text(self) -> str:
        if self.at is None:
            return fmt.DASH
        if self.day:
            return f"{self.at - timedelta(days=1):%Y-%m-%d} (whole day)"
        return f"{self.at:%Y-%m-%d %H:%M} UTC"

    @property
    def note(self) -> str:
        """In words, without the running age (the browser counts that): it changes only when the flag does."""
        if self.at is None:
            return f"{self.label}: none"
        base = f"{self.label} {self.at_text}"
        return base + (f" — older than its schedule ({self.rule})" if self.stale else f" — expected: {self.rule}"
                       if self.rule else "")


def _period(seconds: float) -> str:
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "min")):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return unit if n == 1 and unit != "min" else f"{n} {unit}{'s' if n > 1 and unit != 'min' else ''}"
    return f"{seconds:g} s"


def _cron_period(expression: str, now: datetime) -> float | None:
    from qortcli.schedule import cron_trigger

    trigger = cron_trigger(expression)
    fires = []
    previous = None
    moment = now
    for _ in range(5):
        nxt = trigger.get_next_fire_time(previous, moment)
        if nxt is None:
            break
        fires.append(nxt)
        previous, moment = nxt, nxt + timedelta(microseconds=1)
    gaps = [(b - a).total_seconds() for a, b in zip(fires, fires[1:])]
    return max(gaps) if gaps else None


@lru_cache(maxsize=1)
def _cadences_cached(day: str) -> tuple[dict, float]:
    return cadences_of(None, datetime.now(timezone.utc))


def cadences_of(schedule, now: datetime) -> tuple[dict, float]:
    """({job id: Cadence}, misfire grace seconds) of `schedule` (default: the settings' schedule)."""
    try:
        if schedule is None:
            from qortcli.schedule import load_schedule

            schedule = load_schedule()
    except Exception as exc:  # a bad settings file must not take the viewer down: ages without flags
        log.warning("schedule unavailable, no staleness flags: %s", exc)
        return {}, 0.0
    out: dict[str, Cadence] = {}
    for spec in schedule.jobs:
        leader = schedule.leader_of(spec.id)
        if leader.every is not None:
            seconds = leader.every.total_seconds()
        elif leader.cron is not None:
            seconds = _cron_period(leader.cron, now)
        else:
            seconds = None
        if seconds:
            via = "" if leader.id == spec.id else f" after {leader.id}"
            out[spec.id] = Cadence(spec.id, float(seconds), f"{spec.id}: every {_period(seconds)}{via}")
    return out, float(schedule.misfire_grace_seconds)


def cadences() -> tuple[dict, float]:
    """The current settings' cadences (computed once a day)."""
    return _cadences_cached(datetime.now(timezone.utc).strftime("%Y-%m-%d"))


def age(label: str, at, kind: str, now: datetime | None = None, schedule_cadences: tuple | None = None,
        day: bool = False) -> Age:
    """The age of datum `label` stamped `at` (datetime or ISO string), refreshed by the job of `kind`
    (a key of JOB_OF, or a job id); `day`: `at` is the end of the last whole UTC day of the data."""
    now = now or datetime.now(timezone.utc)
    if isinstance(at, str) and at:
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            at = None
    at = as_utc(at) if isinstance(at, datetime) else None
    if at is None:
        return Age(label, None, None, False, "", day)
    seconds = max(0.0, (now - at).total_seconds())
    if kind in FIXED:
        limit, rule = FIXED[kind]
        return Age(label, at, seconds, seconds > limit, rule, day)
    jobs, grace = schedule_cadences if schedule_cadences is not None else cadences()
    cadence = jobs.get(JOB_OF.get(kind, kind))
    stale = cadence is not None and seconds > cadence.seconds + grace
    return Age(label, at, seconds, stale, cadence.text if cadence else "", day)
