"""Helpers shared by the step functions."""

from __future__ import annotations

from qortcli.errors import StepError
from qortcli.store import ops

NO_SNAPSHOT = ("no complete options snapshot in the store: run `qortcli collect deribit` "
               "(or `qortcli collect deribit --from-file FILE`, or `qortcli collect sample`) first")


def currencies_to_process(db, currency: str | None) -> list[str]:
    """`[currency]` when given, else every currency with a complete options snapshot (StepError if none)."""
    if currency:
        return [currency.upper()]
    found = ops.snapshot_currencies(db, "options")
    if not found:
        raise StepError(NO_SNAPSHOT)
    return found
