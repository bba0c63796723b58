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


def latest_chains(db, currency: str | None, projection: dict | None = None):
    """Yield (currency, snapshot record, its options_data documents) for the latest complete snapshot of
    each currency to process; StepError when a currency has no snapshot or the snapshot no documents."""
    for cur in currencies_to_process(db, currency):
        snap = ops.latest_snapshot(db, "options", cur)
        if snap is None:
            raise StepError(f"no complete {cur} options snapshot in the store: run `qortcli collect deribit "
                            f"--currency {cur}` first")
        docs = ops.snapshot_documents(db, snap["_id"], projection)
        if not docs:
            raise StepError(f"snapshot {snap['_id']} has no options_data documents")
        yield cur, snap, docs
