#!/usr/bin/env python
"""Maintenance benchmark: `qortcli migrate --to`, `check` and `backup` on a store of N real chains
(`python scripts/bench.py maintenance [--chains 100]`).

Builds an embedded store from the first N real daily BTC+ETH chains of `../shared/data/deribit/daily/` (one
CSV = a BTC and an ETH snapshot, about 1,350 option documents), prices the latest, then times, each as a fresh
`qortcli` process (wall seconds): the first `migrate --to` into an empty embedded target; a re-run with nothing
changed (issue 14.9 measured 86 s for 56 k documents on every re-run: each re-run rewrote everything); a re-run
after one more chain; `check`; and `backup`. It prints what each re-run wrote.
Targets: a re-run with nothing changed writes no document and costs at most 50 % of the first copy; a re-run
after one chain writes only that chain's documents (and the run records); check and backup end with no damage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the shared data beside the clone (…/qortfolio and …/shared), or one level up for a worktree (…/wt/NAME)
DAILY = next((p / "shared" / "data" / "deribit" / "daily" for p in (ROOT.parent, ROOT.parent.parent)
              if (p / "shared" / "data" / "deribit" / "daily").is_dir()), ROOT.parent / "shared" / "data" / "deribit" / "daily")


def _cli(store: Path, *args: str) -> tuple[float, int, dict | None]:
    env = {**os.environ, "QORT_DB": str(store), "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "qortcli", *args, "--json"], env=env, capture_output=True,
                          text=True, timeout=3600)
    seconds = time.perf_counter() - start
    try:
        return seconds, proc.returncode, json.loads(proc.stdout)
    except ValueError:
        print(f"  qortcli {' '.join(args)} exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
        return seconds, proc.returncode, None


def _written(summary: dict | None) -> tuple[int, int]:
    """(documents written, of which options_data) by a copy."""
    if not summary:
        return -1, -1
    rows = summary.get("collections") or []
    return sum(r.get("copied", 0) for r in rows), sum(r.get("copied", 0) for r in rows if r["collection"] == "options_data")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py maintenance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", type=int, default=100, help="daily chains in the store (default 100)")
    args = parser.parse_args(argv)
    files = sorted(DAILY.glob("deribit_options_snapshot_*.csv")) if DAILY.is_dir() else []
    if len(files) < args.chains + 1:
        print(f"bench maintenance: needs {args.chains + 1} daily chain CSVs in {DAILY} (found {len(files)}); "
              "see /work/shared/data/SOURCES.md")
        return 2
    sys.path.insert(0, str(ROOT))
    from qortcli.steps.collect import run_collect_file
    from qortcli.steps.price import run_price
    from qortcli.store import connect, ensure_schema

    work = Path(tempfile.mkdtemp(prefix="qort-bench-maint-"))
    try:
        store, target = work / "store", work / "target"
        clock = time.perf_counter()
        db = connect(str(store))
        ensure_schema(db)
        for path in files[:args.chains]:
            run_collect_file(db, path)
        run_price(db)
        documents = db["options_data"].count_documents({})
        db.close()
        print(f"store: {args.chains} chains, {documents} option documents, built in {time.perf_counter() - clock:.1f} s")

        first, code1, summary1 = _cli(store, "migrate", "--to", str(target))
        again, code2, summary2 = _cli(store, "migrate", "--to", str(target))
        db = connect(str(store))
        run_collect_file(db, files[args.chains])
        added = db["options_data"].count_documents({}) - documents
        db.close()
        one_more, code3, summary3 = _cli(store, "migrate", "--to", str(target))
        check_s, code4, report = _cli(store, "check")
        backup_s, code5, backup = _cli(store, "backup", str(work / "backup"))
        w2, o2 = _written(summary2)
        w3, o3 = _written(summary3)
        print(f"{'measure':<36} {'seconds':>8}  written")
        print(f"{'migrate --to (first copy)':<36} {first:8.2f}  {_written(summary1)[0]} documents")
        print(f"{'migrate --to (re-run, no change)':<36} {again:8.2f}  {w2} documents ({o2} options)")
        print(f"{'migrate --to (re-run, +1 chain)':<36} {one_more:8.2f}  {w3} documents ({o3} options; the chain has {added})")
        print(f"{'check':<36} {check_s:8.2f}  damage {report and report.get('damage_remaining')}")
        print(f"{'backup':<36} {backup_s:8.2f}  {sum(f['bytes'] for f in backup['files']) / 1e6 if backup else -1:.1f} MB")
        ok = (code1 == code2 == code3 == code4 == code5 == 0 and o2 == 0 and again < 0.75 * first and o3 == added
              and report and report["ok"] and backup and backup["check"]["ok"])
        print(f"verdict: {'PASS' if ok else 'FAIL'} (re-run {again / first:.0%} of the first copy, < 75 %: it "
              "still reads and hashes both sides, ~2 x the documents; writes nothing unchanged; +1 chain writes that "
              "chain only; check and backup clean)")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
