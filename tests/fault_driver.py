"""Run one `qortcli` command in this process and freeze it at a chosen point, so a test can SIGKILL it there.

    python tests/fault_driver.py POINT READY_FILE -- <qortcli arguments>

POINT (the N-th time it is reached, counting from 1; default 1):
  claim                       after a snapshot claim was taken (ops.begin_snapshot returned "claimed")
  after-upsert:COLL[:N]       after the N-th `ops.upsert_many` (or `ops.update_fields`, the narrow updates)
                              into collection COLL returned (committed); with QORT_FAULT_BATCH, after its
                              N-th committed batch
  in-write:COLL[:N]           inside the N-th write transaction on COLL of the embedded engine, after its
                              changes and before its COMMIT (a kill there must leave nothing of it)
  after-batch:COLL[:N]        after `migrate --to` wrote its N-th batch into COLL of the target
  none                        run to the end (no freeze)
At the point the driver writes READY_FILE (its content: the point) and waits: the test kills it there, or
creates READY_FILE.go to let it go on (once).
`QORT_FAULT_BATCH=n` makes `ops.upsert_many` write batches of n documents (a big chain in small commits).
Nothing here is imported by the application: it wraps functions from the outside.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path


def _parse(point: str) -> tuple[str, str, int]:
    kind, _, rest = point.partition(":")
    coll, _, nth = rest.partition(":")
    return kind, coll, int(nth or 1)


def install(point: str, ready: Path) -> None:
    kind, coll, nth = _parse(point)
    seen = {"n": 0}

    def freeze() -> None:
        seen["n"] += 1
        if seen["n"] < nth:
            return
        ready.write_text(point)
        go = ready.with_name(ready.name + ".go")
        while not go.exists():  # the test SIGKILLs us here, or lets us go on (Frozen.resume)
            time.sleep(0.02)
        go.unlink()
        seen["n"] = -10**9  # freeze once

    from qortcli.store import ops

    batch = int(os.environ.get("QORT_FAULT_BATCH") or 0)
    real_upsert = ops.upsert_many

    @functools.wraps(real_upsert)
    def upsert_many(db, collection, docs, batch_size=2000):
        if not batch:
            written = real_upsert(db, collection, docs, batch_size=batch_size)
            if kind == "after-upsert" and collection == coll:
                freeze()
            return written
        docs, written = list(docs), 0
        for start in range(0, len(docs), batch):  # one commit per `batch` documents; the point counts commits
            written += real_upsert(db, collection, docs[start:start + batch], batch_size=batch)
            if kind == "after-upsert" and collection == coll:
                freeze()
        return written

    ops.upsert_many = upsert_many
    real_update = ops.update_fields

    @functools.wraps(real_update)
    def update_fields(db, collection, updates, batch_size=2000):
        """The narrow-update write path (the price step's model fields): committed batches count as above."""
        updates = list(updates)
        size = batch or batch_size
        matched = 0
        for start in range(0, len(updates), size):
            matched += real_update(db, collection, updates[start:start + size], batch_size=size)
            if kind == "after-upsert" and collection == coll:
                freeze()
        return matched

    ops.update_fields = update_fields
    if kind == "claim":
        real_begin = ops.begin_snapshot

        @functools.wraps(real_begin)
        def begin_snapshot(*args, **kwargs):
            claim = real_begin(*args, **kwargs)
            if claim.state == ops.CLAIMED:
                freeze()
            return claim

        ops.begin_snapshot = begin_snapshot
    if kind == "in-write":
        from qortcli.store.engine.collection import EmbeddedCollection

        real_write = EmbeddedCollection._write

        def _write(self, fn, exists=True):
            if self.name != coll:
                return real_write(self, fn, exists)

            def frozen(state):
                out = fn(state)
                freeze()  # the transaction is open: nothing of it is committed
                return out

            return real_write(self, frozen, exists)

        EmbeddedCollection._write = _write
    if kind == "after-batch":
        import qortcli.store.transfer as migrate

        real_batch = migrate._write_batch

        def _write_batch(target, collection, docs):
            real_batch(target, collection, docs)
            if collection == coll and docs:
                freeze()

        migrate._write_batch = _write_batch


def main(argv: list[str]) -> int:
    point, ready = argv[0], Path(argv[1])
    args = argv[3:] if len(argv) > 2 and argv[2] == "--" else argv[2:]
    if point != "none":
        install(point, ready)
    from qortcli.cli import app

    try:
        app(args, prog_name="qortcli")
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
