"""Helpers shared by the step functions."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Iterator

from qortcli.errors import StepError, UsageError
from qortcli.store import read
from qortcli.timeutils import BASES, DEFAULT_BASIS, as_utc, utcnow

NO_SNAPSHOT = read.NO_SNAPSHOT

_CURRENCY = re.compile(r"^[A-Z][A-Z0-9_]{1,11}$")


def check_currency(db, currency: str) -> str:
    """`currency` upper-cased if the store has a complete options snapshot of it; else a UsageError
    naming the currencies it has (an unknown currency is a usage error, not a missing collection)."""
    wanted = str(currency).strip().upper()
    if not _CURRENCY.match(wanted):
        raise UsageError(f"--currency {currency!r} is not a currency code like BTC or ETH")
    found = read.currencies(db)
    if wanted not in found:
        have = f"it has {', '.join(found)}" if found else "it has none yet (qortcli collect deribit / collect sample)"
        raise UsageError(f"no {wanted} option snapshot in the store ({have})")
    return wanted


def day_count(basis: str | None = None) -> str:
    """The day-count basis a step uses: `basis` (a --basis value) or the settings' `[pricing] day_count`
    (validated at start-up); UsageError for a basis `qortcli.timeutils.BASES` does not know."""
    if basis is None:
        from qortcli.config import get_settings

        basis = get_settings().pricing.day_count
    if basis not in BASES:
        raise UsageError(f"unknown day-count basis {basis!r}; use one of {', '.join(sorted(BASES))}")
    return basis


def currencies_to_process(db, currency: str | None) -> list[str]:
    """`[currency]` when given (checked by `check_currency`), else every currency with a complete
    options snapshot (StepError if none)."""
    if currency:
        return [check_currency(db, currency)]
    found = read.currencies(db)
    if not found:
        raise StepError(NO_SNAPSHOT)
    return found


def latest_chains(db, currency: str | None, basis: str = DEFAULT_BASIS) -> Iterator[read.Chain]:
    """The latest complete chain of each currency to process (`read.Chain`: snapshot record + chain frame);
    StepError when a currency has none."""
    for cur in currencies_to_process(db, currency):
        yield read.latest_chain(db, cur, basis)


# ------------------------------------------------------------------------------------------ staleness

def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    if hours < 1:
        return f"{delta.total_seconds() / 60:.0f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:,.1f} days"


def staleness(what: str, as_of: datetime, job: str, now: datetime | None = None) -> dict | None:
    """A note when input `what` (valid as of `as_of`, UTC) is older than the schedule of the job that
    produces it (`job`, e.g. "collect_deribit"): stale once the job's next run after `as_of` plus the
    misfire grace is past. None when fresh, or when the schedule has no such job (nothing to compare).

    Returns {"input", "as_of", "age_hours", "job", "schedule", "message"}.
    """
    from qortcli.errors import QortError
    from qortcli.schedule import load_schedule, trigger_for

    now = now or utcnow()
    as_of = as_utc(as_of)
    try:
        schedule = load_schedule()
        spec = schedule.leader_of(job)
    except (KeyError, QortError):
        return None
    grace = timedelta(seconds=schedule.misfire_grace_seconds)
    if spec.every is not None:
        due = as_of + spec.every
    else:
        due = trigger_for(spec).get_next_fire_time(None, as_of)
        if due is None:
            return None
    if now <= due + grace:
        return None
    producer = schedule.job(job)
    command = f"qortcli {producer.command}" if producer.command else f"the {job} job"
    return {"input": what, "as_of": as_of, "age_hours": round((now - as_of).total_seconds() / 3600, 2), "job": job,
            "schedule": spec.timing,
            "message": f"{what} is {_age(now - as_of)} old, older than its schedule ({job}: {spec.timing}); "
                       f"run `{command}` (or the worker) for fresh data"}
