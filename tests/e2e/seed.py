"""Seed a store with the pipeline's output on recorded real data (the January 2026 week).

`seed(db)` runs the steps the way a user would: collect the 28 whole-chain CSVs of 2026-01-05…11
(BTC and ETH, 56 snapshots) and the ten Yahoo price CSVs from `tests/fixtures/`, then price, surface,
optimize, suggest on the latest snapshots, suggest once more on the first snapshot of the week and
track those suggestions through the later snapshots. Steps that do not exist yet are skipped and
listed in the returned summary. Run as a script to build a store for `scripts/viewer`:

    python -m tests.e2e.seed /tmp/qortview-db
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WEEK_GLOB = "deribit_options_snapshot_202601*.csv"


def _step(module: str, name: str):
    try:
        return getattr(importlib.import_module(f"qortcli.steps.{module}"), name)
    except (ImportError, AttributeError):
        return None


def seed(db, week_files: list[Path] | None = None, log=print) -> dict:
    """Run the pipeline on the recorded week into `db`; returns {"seconds": {step: s}, "skipped": [...], ...}."""
    from qortcli.store import ensure_schema

    ensure_schema(db)
    files = week_files if week_files is not None else sorted(FIXTURES.glob(WEEK_GLOB))
    seconds: dict[str, float] = {}
    skipped: list[str] = []
    out: dict = {"seconds": seconds, "skipped": skipped}

    def timed(label, fn, *args, **kwargs):
        if fn is None:
            skipped.append(label)
            log(f"seed: {label} skipped (step not available)")
            return None
        clock = time.perf_counter()
        result = fn(db, *args, **kwargs)
        seconds[label] = round(time.perf_counter() - clock, 2)
        log(f"seed: {label} {seconds[label]} s")
        return result

    with tempfile.TemporaryDirectory() as tmp:  # run_collect_file takes a file or a whole directory
        for f in files:
            shutil.copy(f, Path(tmp) / f.name)
        timed("collect chains", _step("collect", "run_collect_file"), tmp)
    timed("collect prices", _step("collect", "run_collect_prices_csv"), FIXTURES / "prices")
    timed("price", _step("price", "run_price"))
    timed("surface", _step("surface", "run_surface"))
    timed("optimize", _step("optimize", "run_optimize"))
    suggest = _step("suggest", "run_suggest")
    timed("suggest", suggest, as_of_snapshot=True)  # recorded chains: expiries judged as of the snapshot
    if suggest is not None and files:
        first = files[0].name.split("_")[-1].removesuffix(".csv")
        for cur in ("BTC", "ETH"):
            try:
                timed(f"suggest {cur} {first}", suggest, snapshot_id=f"{cur}-{first}",
                      strategies=["short_strangle", "iron_condor", "long_straddle"], top=3)
            except Exception as exc:  # a rule set that cannot build these on that chain: keep seeding
                log(f"seed: suggest {cur} {first} failed: {exc}")
        timed("track", _step("suggest", "run_track"))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m tests.e2e.seed STORE_PATH_OR_URL", file=sys.stderr)
        return 2
    from qortcli.store import connect

    db = connect(argv[0])
    try:
        summary = seed(db)
    finally:
        db.close()
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
