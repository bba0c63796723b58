"""The store: MongoDB or the embedded engine behind one pymongo-style interface."""

from qortcli.store.connect import connect, is_mongo_url, redact
from qortcli.store.schema import (COLLECTIONS, JOB_RUNS, MIGRATIONS, OPTIONS, PORTFOLIOS, PRICES, SNAPSHOTS,
                                  SUGGESTIONS, SURFACES, ensure_schema, natural_key)

__all__ = ["connect", "is_mongo_url", "redact", "ensure_schema", "natural_key", "COLLECTIONS", "OPTIONS",
           "PRICES", "SURFACES", "PORTFOLIOS", "SUGGESTIONS", "JOB_RUNS", "SNAPSHOTS", "MIGRATIONS"]
