"""Reads of the stored vol analyses (`vol_forecasts`, written by `qortcli vol`; fields in `qortcli.steps.vol`).

`latest_vol(db, currency, source="marks")` → the newest document of one currency and IV source (the latest
as-of day), or None; `vol_sources(db, currency)` → the IV sources with a stored document. Both are served by
the (currency, source, as_of) index.
"""

from __future__ import annotations

from qortcli.store import schema

__all__ = ["VOL_SOURCES", "latest_vol", "vol_sources"]

VOL_SOURCES = ("marks", "svi")


def latest_vol(db, currency: str, source: str = "marks") -> dict | None:
    """The newest `vol_forecasts` document of `currency` computed from `source` IVs, or None."""
    found = list(db[schema.VOL_FORECASTS].find({"currency": currency.upper(), "source": source})
                 .sort("as_of", -1).limit(1))
    return found[0] if found else None


def vol_sources(db, currency: str) -> list[str]:
    """The IV sources ("marks", "svi") with at least one stored document for `currency`."""
    out = []
    for source in VOL_SOURCES:
        if db[schema.VOL_FORECASTS].find_one({"currency": currency.upper(), "source": source}, {"_id": 1}):
            out.append(source)
    return out
