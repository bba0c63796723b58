#!/usr/bin/env python
"""Alerts speed: `python scripts/bench.py alerts [--repeat 10] [--suggestions 200]`.

Times one `qortcli.steps.alerts.run_alerts` — the worker's job every minute: every packaged `[alerts]` rule read
from the store, evaluated, episodes planned and written — on a year-scale embedded store: the 28 recorded January
2026 chains (tests/fixtures) imported and summarised by the real steps, their per-snapshot summaries copied into a
year of daily roll-ups (52 shifted copies of the recorded week) plus a day of 5-minute snapshot summaries
(288 per currency), `--suggestions` open suggestions tracked over the week (copies of the 20 the suggest step makes
on the first chain), and 50 run records for each of the schedule's jobs. CPU seconds of this process
(`time.process_time`), median of --repeat runs after one warm-up run; no webhook (nothing is sent).
Target: < 250 ms CPU per run (a job once a minute then costs under 0.5 % of one core).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_MS = 250.0
WEEK = sorted((ROOT / "tests" / "fixtures").glob("deribit_options_snapshot_202601*.csv"))


def build(path: Path, suggestions: int):
    """The year-scale store (see the module docstring) and the evaluation time."""
    from qortcli.quant.strategies import STRATEGIES
    from qortcli.schedule import load_schedule
    from qortcli.steps.collect import run_collect_file
    from qortcli.steps.suggest import run_suggest, run_track
    from qortcli.steps.surface import run_backfill
    from qortcli.store import connect, ensure_schema, ops, read, schema
    from qortcli.store.runs import record_event

    db = connect(str(path))
    ensure_schema(db)
    for chain in WEEK:
        run_collect_file(db, chain)
    run_backfill(db)
    first = read.snapshots(db, "BTC")[0].snapshot_id.split("-", 1)[1]
    for cur in ("BTC", "ETH"):
        run_suggest(db, snapshot_id=f"{cur}-{first}", strategies=list(STRATEGIES), top=0)
    run_track(db)
    week = {cur: list(db[schema.SUMMARIES].find({"currency": cur, "resolution": "snapshot"}).sort("timestamp", 1))
            for cur in ("BTC", "ETH")}
    days = {cur: list(db[schema.SUMMARIES].find({"currency": cur, "resolution": "day"}).sort("timestamp", 1))
            for cur in ("BTC", "ETH")}
    last = max(d["timestamp"] for d in week["BTC"])
    now = (last + timedelta(weeks=52)).replace(hour=23, minute=59)
    copies = []
    for cur in ("BTC", "ETH"):
        for k in range(1, 53):
            for d in days[cur]:
                copies.append({**d, "timestamp": d["timestamp"] + timedelta(weeks=k)})
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        for i in range(288):
            src = week[cur][-4 + i % 4]
            ts = day_start + timedelta(minutes=5 * i)
            copies.append({**src, "timestamp": ts, "snapshot_id": ops.snapshot_id_for(cur, ts)})
    ops.upsert_many(db, schema.SUMMARIES, [{k: v for k, v in c.items() if k != "_id"} for c in copies])
    made = list(read.open_suggestions(db))
    extra = []
    for n in range(max(0, suggestions - len(made))):
        doc = made[n % len(made)]
        extra.append({**{k: v for k, v in doc.items() if k != "_id"}, "snapshot_id": f"{doc['snapshot_id']}x{n}"})
    ops.upsert_many(db, schema.SUGGESTIONS, extra)
    for spec in load_schedule().jobs:
        for _ in range(50):
            record_event(db, spec.id, "ok", job=spec.id)
    return db, now, len(copies), len(made) + len(extra)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py alerts", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--suggestions", type=int, default=200)
    args = parser.parse_args(argv)
    if not WEEK:
        print("the recorded January chains (tests/fixtures/deribit_options_snapshot_202601*.csv) are missing")
        return 1
    from qortcli.alerts.settings import alert_settings
    from qortcli.steps.alerts import run_alerts

    settings = alert_settings(environ={})        # the packaged rules, no webhook
    folder = Path(tempfile.mkdtemp(prefix="bench_alerts_"))
    try:
        clock = time.perf_counter()
        db, now, summaries, suggestions = build(folder / "db", args.suggestions)
        print(f"store: 28 recorded chains + {summaries} summary copies, {suggestions} open suggestions, "
              f"built in {time.perf_counter() - clock:.1f} s; evaluating at {now:%Y-%m-%d %H:%M} UTC")
        first = run_alerts(db, now=now, settings=settings)      # warm-up: opens the episodes of that moment
        cpu, wall = [], []
        for i in range(args.repeat):
            c0, w0 = time.process_time(), time.perf_counter()
            summary = run_alerts(db, now=now + timedelta(seconds=i + 1), settings=settings)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        db.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    median_ms = 1000 * float(np.median(cpu))
    print(f"rules {summary['rules']}, conditions {summary['conditions']}, open episodes {summary['open']} "
          f"(first run opened {len(first['opened'])})")
    print(f"run_alerts: CPU median {median_ms:.0f} ms (max {1000 * max(cpu):.0f} ms), wall median "
          f"{1000 * float(np.median(wall)):.0f} ms over {args.repeat} runs")
    verdict = "PASS" if median_ms < TARGET_MS else "FAIL"
    print(f"{verdict}: target < {TARGET_MS:.0f} ms CPU per run")
    return 0 if verdict == "PASS" else 1
