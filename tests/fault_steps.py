"""Step functions for the worker's fault tests (imported by dotted path `fault_steps.<name>` in job processes:
tests/ is put on PYTHONPATH). Each records its run like a real step."""

from __future__ import annotations

import time
from pathlib import Path

from qortcli.store.runs import recorded_run


def hang(db, marker_dir: str) -> None:
    """Start, say so (a marker file), then never finish: only a deadline or a kill ends it."""
    with recorded_run(db, "hang", {}):
        Path(marker_dir, f"hang-{time.monotonic_ns()}").touch()
        while True:
            time.sleep(0.5)


def quick(db, marker_dir: str) -> dict:
    """A step that finishes at once (to show other jobs keep running)."""
    with recorded_run(db, "quick", {}) as run:
        Path(marker_dir, f"quick-{time.monotonic_ns()}").touch()
        run.counts["n"] = 1
    return {"ok": True}
