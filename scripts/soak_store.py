#!/usr/bin/env python
"""Soak test of the embedded store: the worker writing while the viewer's queries and three CLI readers read.

    python scripts/soak_store.py [--minutes 10] [--every 20] [--keep DIR]

A local replay server on 127.0.0.1 serves the 28 recorded January chains (tests/fixtures, BTC and ETH) as
Deribit's `get_book_summary_by_currency`, one new chain per call (then the last one again), with
`get_instruments` and `get_index_price` built from the same rows. The worker (`qortcli worker`) collects every
`--every` seconds, prices, fits and suggests on each chain (as of its own time) and tracks every minute, on an embedded store in a temp
dir. At the same time, for `--minutes`:
  - the viewer's page loads (`qortview.queries.PAGE_LOADS`, read-only handle) run in a loop;
  - three CLI readers run in loops: `qortcli status --json`, `qortcli market --json` and a reader that checks
    every latest chain it sees against its snapshot record (a partial snapshot would show fewer documents).
At the end the worker gets SIGTERM and the store is checked: no reader error, no lost or duplicated document
(every complete snapshot holds exactly the documents its record counts), no partial snapshot ever seen, no
pending snapshot left, every worker run recorded ok. Exit 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(ROOT / "tests"))

CHECK_CHAINS = r"""
import json, sys
from qortcli.store import connect, read
db = connect(sys.argv[1], read_only=True)
out = []
for cur in read.currencies(db):
    chain = read.latest_chain(db, cur)
    expected = int(chain.snapshot.counts.get("instruments") or chain.snapshot.counts.get("stored") or -1)
    out.append({"snapshot": chain.snapshot.snapshot_id, "rows": len(chain.frame), "expected": expected})
print(json.dumps(out))
"""

VIEWER = r"""
import json, sys
sys.path.insert(0, sys.argv[2])
from qortcli.store.readonly import open_readonly
from qortview import queries
db = open_readonly(sys.argv[1])
pages = getattr(queries, "PAGE_LOADS", None) or {}
errors = {}
for name, load in pages.items():
    try:
        load(db)
    except Exception as exc:
        errors[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"pages": len(pages), "errors": errors}))
"""


def book_summaries() -> tuple[dict, dict]:
    """Per currency: the recorded chains as book-summary envelopes (oldest first) and an instruments reply."""
    import pandas as pd

    envelopes: dict[str, list] = {"BTC": [], "ETH": []}
    instruments: dict[str, dict] = {"BTC": {}, "ETH": {}}
    for path in sorted(FIXTURES.glob("deribit_options_snapshot_2026*.csv")):
        frame = pd.read_csv(path)
        stamp = int(pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601").max().timestamp() * 1000)
        for cur, part in frame.groupby("currency"):
            rows = []
            for r in part.itertuples(index=False):
                rows.append({"instrument_name": r.instrument_name, "base_currency": cur, "mark_price": r.mark_price,
                             "mark_iv": None if pd.isna(r.implied_volatility) else 100 * r.implied_volatility,
                             "underlying_price": r.underlying, "underlying_index": r.underlying_name,
                             "bid_price": None if pd.isna(r.bid_price) else r.bid_price,
                             "ask_price": None if pd.isna(r.ask_price) else r.ask_price,
                             "mid_price": None if pd.isna(r.mid_price) else r.mid_price,
                             "open_interest": r.open_interest, "volume": r.volume, "volume_usd": r.volume_usd,
                             "estimated_delivery_price": r.index_price, "interest_rate": 0.0,
                             "creation_timestamp": stamp})
                expiry = int(pd.Timestamp(r.expiry_datetime).tz_convert("UTC").timestamp() * 1000)
                instruments[cur][r.instrument_name] = {"instrument_name": r.instrument_name, "strike": float(r.strike),
                                                       "expiration_timestamp": expiry, "kind": "option",
                                                       "option_type": r.option_type}
            envelopes[cur].append({"jsonrpc": "2.0", "result": rows, "usIn": 0, "usOut": 0, "usDiff": 0,
                                   "testnet": False})
    return envelopes, {c: {"jsonrpc": "2.0", "result": list(v.values())} for c, v in instruments.items()}


def settings_file(folder: Path, every_s: int) -> Path:
    """The packaged settings with a short schedule: collect every `every_s`, price, surface and suggest (as of
    each recorded chain's own time) after it, track every minute; daily jobs off."""
    text = (ROOT / "qortcli" / "data" / "settings.toml").read_text()
    head, _, rest = text.partition("[schedule.jobs]")
    tail = rest[rest.find("\n["):] if "\n[" in rest else ""
    jobs = (f'[schedule.jobs]\ncollect_deribit = {{ every = "{every_s}s" }}\nprice = {{ after = "collect_deribit" }}\n'
            'surface = { after = "price" }\nsuggest = { after = "surface", args = { as_of_snapshot = true } }\n'
            'track = { every = "60s" }\n'
            'collect_prices = { cron = "10 0 * * *", enabled = false }\noptimize = { cron = "30 0 * * *", enabled = false }\n'
            'prune = { cron = "40 0 * * *", enabled = false }\n')
    path = folder / "settings.toml"
    path.write_text(head + jobs + tail)
    return path


class Loop(threading.Thread):
    """Runs one reader command again and again until stopped; keeps every failure."""

    def __init__(self, name: str, command: list[str], env: dict, check=None):
        super().__init__(daemon=True, name=name)
        self.command, self.env, self.check = command, env, check
        self.runs, self.failures = 0, []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            proc = subprocess.run(self.command, env=self.env, capture_output=True, text=True, timeout=300)
            self.runs += 1
            if proc.returncode != 0:
                self.failures.append(f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}")
            elif self.check:
                problem = self.check(proc.stdout)
                if problem:
                    self.failures.append(problem)
            time.sleep(0.5)


def _partial(stdout: str) -> str | None:
    try:
        seen = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return f"unreadable reader output: {stdout[-200:]}"
    bad = [s for s in seen if s["rows"] != s["expected"]]
    return f"partial snapshot seen: {bad}" if bad else None


def _viewer_errors(stdout: str) -> str | None:
    got = json.loads(stdout.strip().splitlines()[-1])
    return f"viewer page errors: {got['errors']}" if got["errors"] else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=int, default=20, help="seconds between the worker's collections")
    parser.add_argument("--keep", type=Path, help="keep the store and logs in this folder")
    args = parser.parse_args(argv)
    from replay_server import Reply, ReplayServer

    work = args.keep or Path(tempfile.mkdtemp(prefix="qort-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store"
    envelopes, instruments = book_summaries()
    index = {"BTC": envelopes["BTC"][-1]["result"][0]["estimated_delivery_price"],
             "ETH": envelopes["ETH"][-1]["result"][0]["estimated_delivery_price"]}
    print(f"soak: {len(envelopes['BTC'])} recorded chains per currency, collect every {args.every} s, "
          f"{args.minutes:g} min, store {store}")
    exe = str(Path(sys.executable).parent / "qortcli")
    with ReplayServer() as server:
        for cur in ("BTC", "ETH"):
            server.add("/api/v2/public/get_book_summary_by_currency", *[Reply.json(e) for e in envelopes[cur]],
                       query={"currency": cur})
            server.add("/api/v2/public/get_instruments", Reply.json(instruments[cur]), query={"currency": cur})
            server.add("/api/v2/public/get_index_price",
                       Reply.json({"jsonrpc": "2.0", "result": {"index_price": index[cur]}}),
                       query={"index_name": f"{cur.lower()}_usd"})
        env = {**os.environ, "QORT_DB": str(store), "QORT_SETTINGS": str(settings_file(work, args.every)),
               "QORT_DERIBIT_URL": server.url + "/api/v2", "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
        subprocess.run([exe, "migrate"], env=env, check=True, capture_output=True)
        log = open(work / "worker.log", "w")
        worker = subprocess.Popen([exe, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(max(5, args.every))   # the first chain is in
        readers = [Loop("status", [exe, "status", "--json"], env),
                   Loop("market", [exe, "market", "--json"], env),
                   Loop("chains", [sys.executable, "-c", CHECK_CHAINS, str(store)], env, _partial),
                   Loop("viewer", [sys.executable, "-c", VIEWER, str(store), str(ROOT / "viewer")], env, _viewer_errors)]
        for r in readers:
            r.start()
        deadline = time.monotonic() + 60 * args.minutes
        while time.monotonic() < deadline and worker.poll() is None:
            time.sleep(2)
        for r in readers:
            r.stop.set()
        for r in readers:
            r.join(600)
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(120)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
        requests = server.count("/api/v2/public/get_book_summary_by_currency")

    from qortcli.store import connect, read, schema

    db = connect(str(store), read_only=True)
    problems = []
    complete = 0
    for cur in read.currencies(db):
        for info in read.snapshots(db, cur):
            complete += 1
            n = db[schema.OPTIONS].count_documents({"snapshot_id": info.snapshot_id})
            expected = int(info.counts.get("instruments") or -1)
            if n != expected:
                problems.append(f"{info.snapshot_id}: {n} documents stored, its record counts {expected}")
    pending = db[schema.SNAPSHOTS].count_documents({"kind": "options", "status": "pending"})
    if pending:
        problems.append(f"{pending} pending snapshot(s) left")
    runs = {s: db[schema.JOB_RUNS].count_documents({"status": s}) for s in ("ok", "failed", "running", "abandoned")}
    if runs["failed"] or runs["running"]:
        failed = [f"{r.get('step')}: {r.get('error')}" for r in db[schema.JOB_RUNS].find({"status": "failed"}).limit(5)]
        problems.append(f"worker runs not ok: {runs} {failed}")
    for r in readers:
        problems += [f"{r.name}: {f}" for f in r.failures[:5]]
    print(f"  worker exit {worker.returncode}; {requests} book-summary requests served; {complete} complete snapshots")
    print("  readers: " + ", ".join(f"{r.name} {r.runs} runs, {len(r.failures)} failures" for r in readers))
    print(f"  runs: {runs}")
    if worker.returncode != 0:
        problems.append(f"worker exited {worker.returncode} (log: {work / 'worker.log'})")
    if problems:
        print("SOAK FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("soak OK: no error, no lost or duplicated document, no partial snapshot seen")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
