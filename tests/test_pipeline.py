"""The whole pipeline on the bundled real sample: every document written survives BSON unchanged,
and running every step a second time duplicates nothing."""

from __future__ import annotations

import pytest

from bsoncheck import CheckedDatabase
from qortcli.store import schema

STEPS = [
    ("collect", "qortcli.steps.collect", "run_collect_sample", {}),
    ("price", "qortcli.steps.price", "run_price", {}),
    ("surface", "qortcli.steps.surface", "run_surface", {}),
    ("optimize", "qortcli.steps.optimize", "run_optimize", {"model": "hrp"}),
    ("optimize-sectors", "qortcli.steps.optimize", "run_optimize", {"model": "hrp", "by_sector": True}),
    # the sample's expiries have all passed today: suggest as of the snapshot's own time (a backtest)
    ("suggest", "qortcli.steps.suggest", "run_suggest", {"top": 3, "as_of_snapshot": True}),
    ("track", "qortcli.steps.suggest", "run_track", {}),
]


def run_pipeline(db) -> None:
    import importlib

    for _name, module, function, kwargs in STEPS:
        getattr(importlib.import_module(module), function)(db, **kwargs)


@pytest.mark.slow
def test_pipeline_writes_bson_safe_documents_once(embedded_db):
    checked = CheckedDatabase(embedded_db)
    run_pipeline(checked)  # every write is checked for a faithful BSON round trip as it happens
    written = {name for name, _doc in checked.written}
    for collection in (schema.OPTIONS, schema.PRICES, schema.SURFACES, schema.PORTFOLIOS, schema.SUGGESTIONS,
                       schema.SNAPSHOTS):
        assert collection in written, f"the pipeline wrote nothing to {collection}"

    data = [c for c in schema.COLLECTIONS if c not in (schema.JOB_RUNS, schema.MIGRATIONS)]
    counts = {c: embedded_db[c].count_documents({}) for c in data}
    runs_before = embedded_db[schema.JOB_RUNS].count_documents({})
    run_pipeline(checked)
    assert {c: embedded_db[c].count_documents({}) for c in data} == counts
    # …but every run is recorded, and all of them succeeded
    assert embedded_db[schema.JOB_RUNS].count_documents({}) == 2 * runs_before
    assert embedded_db[schema.JOB_RUNS].count_documents({"status": "ok"}) == embedded_db[schema.JOB_RUNS].count_documents({})
