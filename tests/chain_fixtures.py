"""Recorded real chains as the store's chain frames, for tests of the quant core (no store needed).

`recorded_chain("BTC")` parses a recorded whole-chain CSV (tests/fixtures, sources in SOURCES.md) with the
real collector code, builds the `options_data` documents `collect` would store and turns them into the
chain frame of `qortcli.store.frames` — the same columns `qortcli.store.read.latest_chain` returns.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

FIXTURES = Path(__file__).parent / "fixtures"
DEFAULT_FILE = "deribit_options_snapshot_20260111T211857Z.csv"   # the bundled sample's chain


@lru_cache(maxsize=None)
def _docs(file: str) -> dict:
    from qortcli.sources.deribit import chains_from_file
    from qortcli.steps.collect import option_documents
    from qortcli.store.ops import snapshot_id_for, to_plain

    out = {}
    for chain in chains_from_file(FIXTURES / file):
        sid = snapshot_id_for(chain.currency, chain.timestamp)
        docs = [to_plain(d) for d in option_documents(chain.records, sid, chain.timestamp, chain.source)]
        out[chain.currency] = (sid, chain.timestamp, tuple(docs))
    return out


def recorded_docs(currency: str = "BTC", file: str = DEFAULT_FILE) -> tuple[str, object, list[dict]]:
    """(snapshot_id, snapshot time, options_data documents) of one currency in a recorded chain file."""
    sid, ts, docs = _docs(file)[currency.upper()]
    return sid, ts, [dict(d) for d in docs]


def recorded_chain(currency: str = "BTC", file: str = DEFAULT_FILE, basis: str = "ACT/365") -> pd.DataFrame:
    """The chain frame of one currency in a recorded chain file (unpriced: model columns NaN)."""
    from qortcli.store.frames import chain_frame

    sid, ts, docs = recorded_docs(currency, file)
    return chain_frame(docs, ts, basis, snapshot_id=sid, currency=currency.upper())
