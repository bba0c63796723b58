"""Helpers shared by the step functions."""

from __future__ import annotations

from typing import Iterator

from qortcli.errors import StepError
from qortcli.store import read
from qortcli.timeutils import DEFAULT_BASIS

NO_SNAPSHOT = read.NO_SNAPSHOT


def currencies_to_process(db, currency: str | None) -> list[str]:
    """`[currency]` when given, else every currency with a complete options snapshot (StepError if none)."""
    if currency:
        return [currency.upper()]
    found = read.currencies(db)
    if not found:
        raise StepError(NO_SNAPSHOT)
    return found


def latest_chains(db, currency: str | None, basis: str = DEFAULT_BASIS) -> Iterator[read.Chain]:
    """The latest complete chain of each currency to process (`read.Chain`: snapshot record + chain frame);
    StepError when a currency has none."""
    for cur in currencies_to_process(db, currency):
        yield read.latest_chain(db, cur, basis)
