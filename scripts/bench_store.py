#!/usr/bin/env python
"""Store benchmark: does every step stay fast as the history grows? (`python scripts/bench.py store`)

Builds one embedded store from the 214 real daily BTC+ETH chains of `../shared/data/deribit/daily/`
(2025-12-30 … 2026-07-31) and grows it to each size N (default 28, 300, 2,000 chains; one chain = one CSV =
a BTC and an ETH snapshot). Up to 214 chains are imported as recorded; beyond that the files are replayed
on a 5-minute grid (chain k gets the snapshot time t0 + 5 min × k, cycling through the files — a week of
the worker's cadence at 2,000) and the table says so. Before the first measurement the pipeline runs once
(prices of the bundled sample, price, surface, suggest) so there are suggestions to track.

At each N it prints: import seconds per chain (parse + store, both currencies, over the chains just added);
a fresh process's latest-chain read (open + `read.latest_chain`, ms; the process start-up — imports and the
settings' validation — is printed apart as imports_ms); the wall time of
`qortcli price`, `surface`, `suggest`, `suggest --track` (after one catch-up run and 12 more chains: one hour
of the worker's 5-minute cadence, the steady state) and `status`, each a fresh process as a user runs them;
each viewer page's data load in a fresh process (ms); and the chain data's MB per chain (options_data, snapshots,
summaries and surfaces, at rest: WAL folded in) over the CSVs, and the whole store's MB. Step times are printed as
wall seconds with the process's CPU seconds beside them; the growth verdicts compare CPU seconds, which other
work on a shared machine does not inflate.
Acceptance (issue 12): at N = 2,000 latest-chain read < 100 ms; price, surface, suggest, suggest --track and
status within 1.5× of N = 28; import ≤ 0.3 s per chain; store size per chain ≤ 1.5× its CSV.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAILY = ROOT.parent / "shared" / "data" / "deribit" / "daily"
GRID = timedelta(minutes=5)
STEPS = (("price", ["price"]), ("surface", ["surface"]), ("suggest", ["suggest", "--top", "3", "--as-of-snapshot"]),
         ("suggest --track", ["suggest", "--track"]), ("status", ["status"]))


def _env(store: Path) -> dict:
    return {**os.environ, "QORT_DB": str(store), "PYTHONPATH": str(ROOT), "COLUMNS": "160"}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cli(store: Path, args: list[str]) -> tuple[float, float, int, str]:
    """(wall seconds, CPU seconds of the process, exit code, last output line) of one fresh `qortcli` process."""
    exe = Path(sys.executable).parent / "qortcli"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "qortcli"]
    start, cpu = time.perf_counter(), _children_cpu()
    proc = subprocess.run([*command, *args], env=_env(store), capture_output=True, text=True, timeout=1800)
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return time.perf_counter() - start, _children_cpu() - cpu, proc.returncode, lines[-1] if lines else ""


FRESH_READ = r"""
import json, sys, time
t0 = time.perf_counter()
from qortcli.store import connect, read
import qortcli.store.engine, pymongo                  # imported lazily by connect: start-up, not the read
from qortcli.config import get_settings
get_settings()                                        # the settings are validated once per process (start-up)
t1, c1 = time.perf_counter(), time.process_time()
db = connect(sys.argv[1], read_only=True)
chain = read.latest_chain(db, "BTC")
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({"imports_ms": (t1 - t0) * 1e3, "read_ms": (t2 - t1) * 1e3, "read_cpu_ms": (c2 - c1) * 1e3,
                  "rows": len(chain.frame)}))
"""

VIEWER_LOADS = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
from qortcli.store.readonly import open_readonly
from qortview import queries
pages = getattr(queries, "PAGE_LOADS", None)
db = open_readonly(sys.argv[1])
out = {}
if pages is None:
    cur = (queries.currencies(db) or ["BTC"])[0]
    pages = {"overview": lambda db: queries.overview(db), "chain": lambda db: queries.chain(db, cur),
             "volatility": lambda db: queries.volatility(db, cur), "portfolio": lambda db: queries.portfolio(db),
             "suggestions": lambda db: queries.suggestions(db)}
for name, load in pages.items():
    t = time.perf_counter()
    try:
        load(db)
        out[name] = (time.perf_counter() - t) * 1e3
    except Exception as exc:
        out[name] = f"error: {type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def _fresh(script: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", script, *args], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: the collections a chain import fills (their files and WALs are what "store size per chain" counts; price_data
#: and the rest hold other data: the total store is printed beside it)
CHAIN_COLLECTIONS = ("options_data", "snapshots", "snapshot_summaries", "volatility_surfaces")


def _size(path: Path, collections: tuple[str, ...] | None = None) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()
               and (collections is None or p.name.split(".sqlite")[0] in collections))


class Builder:
    """Grows the store chain by chain: recorded files first, then the 5-minute replay."""

    def __init__(self, store: Path, files: list[Path]):
        from qortcli.store import connect, ensure_schema

        self.store = store
        self.db = connect(str(store))
        ensure_schema(self.db)
        self.files = files
        self.count = 0
        self.csv_bytes = 0
        self.t0 = None

    def add(self, n: int) -> list[float]:
        from qortcli.sources.deribit import chains_from_file
        from qortcli.steps.collect import store_chain

        seconds = []
        for _ in range(n):
            k = self.count
            path = self.files[k % len(self.files)]
            start = time.perf_counter()
            chains = chains_from_file(path)
            if self.t0 is None:
                self.t0 = min(c.timestamp for c in chains)
            if k >= len(self.files):   # the replay: a new snapshot time on the 5-minute grid
                when = self.t0 + GRID * k
                for chain in chains:
                    chain.timestamp = when
                    chain.records = [r for r in chain.records if r.expiry > when]
            for chain in chains:
                store_chain(self.db, chain)
            seconds.append(time.perf_counter() - start)
            self.csv_bytes += path.stat().st_size
            self.count += 1
        return seconds

    def checkpoint(self):
        """Close and reopen the store: the last connection's close folds the WAL files into the collection files
        (what the store occupies at rest)."""
        from qortcli.store import connect

        self.db.close()
        self.db = connect(str(self.store))

    def close(self):
        self.db.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py store", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="28,300,2000", help="store sizes in chains (comma-separated)")
    parser.add_argument("--keep", type=Path, help="build the store here and keep it (default: a temp dir)")
    parser.add_argument("--data", type=Path, default=DAILY, help="folder of daily whole-chain CSVs")
    args = parser.parse_args(argv)
    files = sorted(args.data.glob("deribit_options_snapshot_*.csv")) if args.data.is_dir() else []
    if not files:
        print(f"bench store: no chain CSVs in {args.data} (the shared real data, 214 daily BTC+ETH chains, is "
              "needed; pass --data DIR)")
        return 2
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    work = args.keep or Path(tempfile.mkdtemp(prefix="qort-bench-store-"))
    store = work / "store"
    if store.exists():
        shutil.rmtree(store)
    print(f"bench store: {len(files)} real daily chains from {args.data}; sizes {sizes}; store {store}")
    if sizes[-1] > len(files):
        print(f"  beyond {len(files)} chains the files are replayed on a 5-minute grid (snapshot times rewritten)")
    builder = Builder(store, files)
    rows = []
    try:
        prepared = False
        for n in sizes:
            added = builder.add(n - builder.count)
            if not prepared:   # the pipeline once, so there are prices, surfaces and suggestions
                for step in (["collect", "prices", "--from-csv", str(ROOT / "qortcli" / "data" / "sample" / "prices")],
                             ["price"], ["surface"], ["suggest", "--top", "3", "--as-of-snapshot"]):
                    _, _, rc, last = _cli(store, step)
                    if rc != 0:
                        print(f"  setup step {' '.join(step)} failed: {last}")
                prepared = True
            row = {"chains": n, "replayed": max(0, n - len(files)),
                   "import_s_per_chain": statistics.mean(added) if added else None}
            fresh = [_fresh(FRESH_READ, str(store)) for _ in range(3)]
            reads = [f["read_ms"] for f in fresh if "read_ms" in f]
            row["latest_chain_read_ms"] = min(reads) if reads else fresh[0].get("error")
            row["latest_chain_read_cpu_ms"] = min((f["read_cpu_ms"] for f in fresh if "read_cpu_ms" in f), default=None)
            row["imports_ms"] = min(f.get("imports_ms", 0) for f in fresh)
            for label, step in STEPS:
                if label == "suggest --track":
                    _cli(store, step)                       # catch up ...
                    builder.add(12)                         # ... then one hour of the worker's chains
                seconds, cpu, rc, last = _cli(store, step)
                row[label] = seconds if rc == 0 else f"exit {rc}: {last}"
                row[f"{label} cpu"] = cpu if rc == 0 else None
            row["viewer"] = _fresh(VIEWER_LOADS, str(store), str(ROOT / "viewer"))
            builder.checkpoint()
            size = _size(store, CHAIN_COLLECTIONS)
            row["store_mb_per_chain"] = size / 1e6 / builder.count
            row["size_over_csv"] = size / builder.csv_bytes
            row["store_mb_total"] = _size(store) / 1e6
            rows.append(row)
            print(f"  N={n}: " + json.dumps(row, default=str))
    finally:
        builder.close()
    print()
    header = ["chains", "import s/chain", "latest-chain read ms (CPU)"] + [f"{label} s (CPU)" for label, _ in STEPS] + \
        ["viewer pages ms (max)", "chain data MB/chain", "size/CSV", "store MB"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))

    def cell(value, spec):
        return format(value, spec) if isinstance(value, (int, float)) else str(value)

    def both(wall, cpu, spec):
        return cell(wall, spec) + (f" ({cell(cpu, spec)})" if isinstance(cpu, (int, float)) else "")

    for row in rows:
        viewer = [v for v in row["viewer"].values() if isinstance(v, (int, float))]
        label = f"{row['chains']}" + (f" ({row['replayed']} replayed)" if row["replayed"] else "")
        print("| " + " | ".join([label, cell(row["import_s_per_chain"], ".3f"),
                                 both(row["latest_chain_read_ms"], row.get("latest_chain_read_cpu_ms"), ".1f")]
                                + [both(row[l], row.get(f"{l} cpu"), ".2f") for l, _ in STEPS]
                                + [cell(max(viewer), ".0f") if viewer else "n/a", cell(row["store_mb_per_chain"], ".3f"),
                                   cell(row["size_over_csv"], ".2f"), cell(row["store_mb_total"], ".0f")]) + " |")
    if rows:
        print("\nviewer page loads (ms): " + "; ".join(
            f"N={r['chains']}: " + ", ".join(f"{k} {cell(v, '.0f')}" for k, v in r["viewer"].items()) for r in rows))
        first, last = rows[0], rows[-1]
        verdicts = []
        if isinstance(last["latest_chain_read_ms"], float):
            verdicts.append(f"latest-chain read {last['latest_chain_read_ms']:.1f} ms wall, "
                            f"{last.get('latest_chain_read_cpu_ms') or float('nan'):.1f} ms CPU "
                            f"({'ok' if last['latest_chain_read_ms'] < 100 else '≥ 100 ms'})")
        for label, _ in STEPS:   # CPU seconds of the process: what the history costs, whatever else the machine runs
            a, b = first.get(f"{label} cpu"), last.get(f"{label} cpu")
            if isinstance(a, float) and isinstance(b, float):
                verdicts.append(f"{label} {b / a:.2f}× of N={first['chains']} in CPU "
                                f"({'ok' if b <= 1.5 * a else 'TOO SLOW'}; wall {last[label]:.2f} s)")
        imports = [r["import_s_per_chain"] for r in rows if r["import_s_per_chain"]]
        verdicts.append(f"import ≤ {max(imports):.3f} s/chain ({'ok' if max(imports) <= 0.3 else 'TOO SLOW'})")
        verdicts.append(f"chain data {last['size_over_csv']:.2f}× the CSVs "
                        f"({'ok' if last['size_over_csv'] <= 1.5 else 'TOO BIG'})")
        print("verdict at N=%d: " % last["chains"] + "; ".join(verdicts))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
