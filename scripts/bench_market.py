#!/usr/bin/env python
"""Market statistics speed: `python scripts/bench.py market [--repeat 30] [--no-pin]`.

Times `qortcli.quant.market.market_statistics` — OI/volume by strike, put/call ratios, max pain (strikes and grid,
both payoffs), GEX/DEX by strike, the 41-level gamma profile with the flip per expiry and for all expiries,
implied moves, summary totals — on the whole bundled sample chain (qortcli/data/sample/deribit: BTC and ETH,
2026-01-11), in CPU seconds of this process (`time.process_time`), median of --repeat runs. Target: both
currencies < 20 ms. Also shown: the 24 h OI change (`oi_changes`) against the recorded chain of the day before
(tests/fixtures), when present. Chains are built into frames once, outside the timing (that is the store's read).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qortcli.quant import market as mk  # noqa: E402
from qortcli.timeutils import BASES, DEFAULT_BASIS  # noqa: E402

TARGET_MS = 20.0
DAYS = BASES[DEFAULT_BASIS]                            # the chain frames' t_years basis (ACT/365)
SAMPLE = ROOT / "qortcli" / "data" / "sample" / "deribit" / "deribit_options_snapshot_20260111T211857Z.csv"
DAY_BEFORE = ROOT / "tests" / "fixtures" / "deribit_options_snapshot_20260110T211832Z.csv"


def frames(path: Path) -> dict:
    """{currency: chain frame} of a recorded chain file, through the collector and the store's frame adapter."""
    from qortcli.sources.deribit import chains_from_file
    from qortcli.steps.collect import option_documents
    from qortcli.store.frames import chain_frame
    from qortcli.store.ops import snapshot_id_for, to_plain

    out = {}
    for chain in chains_from_file(path):
        sid = snapshot_id_for(chain.currency, chain.timestamp)
        docs = [to_plain(d) for d in option_documents(chain.records, sid, chain.timestamp, chain.source)]
        out[chain.currency] = chain_frame(docs, chain.timestamp, snapshot_id=sid, currency=chain.currency)
    return out


def cpu_ms(fn, repeat: int) -> np.ndarray:
    fn()                                                   # warm caches outside the timing
    times = []
    for _ in range(repeat):
        clock = time.process_time()
        fn()
        times.append(time.process_time() - clock)
    return 1000.0 * np.array(times)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py market", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed runs (the median is reported)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    args = parser.parse_args(argv)
    if not SAMPLE.exists():
        print(f"bundled sample chain missing: {SAMPLE}")
        return 2
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
        print(f"pinned to CPU {cpu}")
    chains = frames(SAMPLE)
    sizes = ", ".join(f"{cur} {len(f)} options / {f['expiry'].nunique()} expiries" for cur, f in chains.items())
    print(f"chain {SAMPLE.name}: {sizes}")

    def statistics():
        return [mk.market_statistics(f, days_per_year=DAYS) for f in chains.values()]

    ms = cpu_ms(statistics, args.repeat)
    per = {cur: np.median(cpu_ms(lambda f=f: mk.market_statistics(f, days_per_year=DAYS), args.repeat))
           for cur, f in chains.items()}
    print(f"market_statistics, {' + '.join(chains)}: median {np.median(ms):.2f} ms CPU (min {ms.min():.2f}, "
          f"max {ms.max():.2f}, {args.repeat} runs); per currency " +
          ", ".join(f"{cur} {v:.2f} ms" for cur, v in per.items()))
    verdict = "PASS" if np.median(ms) < TARGET_MS else "FAIL"
    print(f"verdict: {verdict} — target < {TARGET_MS:g} ms CPU for the whole BTC+ETH chain")

    if DAY_BEFORE.exists():
        before = frames(DAY_BEFORE)
        pairs = [(chains[c], before[c]) for c in chains if c in before]
        both = cpu_ms(lambda: [(mk.market_statistics(now, days_per_year=DAYS), mk.oi_changes(now, old))
                               for now, old in pairs], args.repeat)
        print(f"with the 24 h OI change against {DAY_BEFORE.name}: median {np.median(both):.2f} ms CPU")
    else:
        print(f"({DAY_BEFORE} not found: the OI-change timing is skipped)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
