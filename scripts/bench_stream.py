#!/usr/bin/env python
"""Stream latency: `python scripts/bench.py stream [--updates 10000] [--paced-seconds 30] [--reprice 200]`.

The real websocket client and stream step (`qortcli.steps.stream.run_stream`) against a local websocket
server on 127.0.0.1 (tests/ws_replay_server.py), on an embedded store in a temp directory. The live chains
are seeded with the bundled whole BTC + ETH chain (tests/fixtures, 2026-01-11 21:18 UTC); each update is a
whole-chain `markprice.options` notification of one currency (alternating BTC, ETH) whose marks are taken
in turn from the 28 recorded chains of 2026-01-05…11 (the seed's instruments; the seed's mark where a
recording lacks one), stamped 10 ms apart.

1. closed loop, `--updates` updates: the server sends the next update once the previous one is in
   `live_marks`; the write cap is lifted so each update is one write. Latency = from the frame's arrival
   (the client's `recv`) to the end of the `live_marks` upsert that carries it: p50 / p99 / max against the
   target p99 < 100 ms. This is the pipeline's own cost; at Deribit's cadence the production cap (4 writes/s
   per currency, bursts of 2) never makes an update wait — which part 2 measures.
2. paced, `--paced-seconds`: Deribit's cadence, one mark and one index update per second per currency at
   random phases, with the production write cap: the same latency figures.
3. repricing cost of a whole chain per update (`steps.live_chain.reprice`: greeks, IVs, smile statistics),
   CPU milliseconds per call (`time.process_time`), and the live_marks document + upsert around it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
FIXTURES = ROOT / "tests" / "fixtures"
SEED = FIXTURES / "deribit_options_snapshot_20260111T211857Z.csv"
TARGET_P99_MS = 100.0
CURRENCIES = ("BTC", "ETH")


class RecordedRest:
    """The REST side from the recorded seed chain (no HTTP): fetch_chain and get_book_summary."""

    base_url = "recorded:" + SEED.name

    def __init__(self):
        from qortcli.sources.deribit import chains_from_file
        from ws_replay_server import book_from_chain_csv

        self.chains = {c.currency: c for c in chains_from_file(SEED)}
        self.books = {c: book_from_chain_csv(SEED, c)["result"] for c in CURRENCIES}

    def fetch_chain(self, currency):
        return self.chains[currency]

    def get_book_summary(self, currency):
        return self.books[currency]


_STAMP = "__TS__"


def update_messages(n: int, seed_ms: int):
    """`n` whole-chain markprice notifications (JSON text), alternating currencies: yields (currency, text).

    The 2 × 28 distinct mark sets are serialised once; each message only gets its own timestamp."""
    from ws_replay_server import markprice_notification

    seed = pd.read_csv(SEED)
    files = sorted(FIXTURES.glob("deribit_options_snapshot_*.csv"))
    frames = [pd.read_csv(f, usecols=["instrument_name", "mark_price", "implied_volatility", "currency"]) for f in files]
    templates = {}
    for cur in CURRENCIES:
        base = seed[seed["currency"] == cur].set_index("instrument_name")
        variants = []
        for frame in frames:
            rec = frame[frame["currency"] == cur].set_index("instrument_name").reindex(base.index)
            mark = rec["mark_price"].fillna(base["mark_price"]).to_numpy(float)
            iv = rec["implied_volatility"].fillna(base["implied_volatility"]).to_numpy(float)
            entries = [{"timestamp": _STAMP, "mark_price": float(m), "iv": float(v), "instrument_name": name}
                       for name, m, v in zip(base.index, mark, iv)]
            variants.append(json.dumps(markprice_notification(f"{cur.lower()}_usd", entries)).replace(f'"{_STAMP}"', _STAMP))
        templates[cur] = variants
    for i in range(n):
        cur = CURRENCIES[i % 2]
        yield cur, templates[cur][(i // 2) % len(files)].replace(_STAMP, str(seed_ms + 10 * (i + 1)))


def percentiles(lags_s: list[float]) -> dict:
    a = np.asarray(lags_s) * 1000.0
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max())}


def closed_loop(n: int, rest) -> tuple[dict, float]:
    from qortcli.steps.stream import run_stream
    from qortcli.store import connect, ensure_schema
    from ws_replay_server import WsReplayServer

    seed_ms = int(rest.chains["BTC"].timestamp.timestamp() * 1000)
    messages = update_messages(n, seed_ms)   # generated as they are sent
    ack: dict = {}
    finished = threading.Event()
    lags: list[float] = []

    async def script(peer):
        loop = asyncio.get_running_loop()
        ack["loop"], ack["event"] = loop, asyncio.Event()
        for _, text in messages:
            ack["event"].clear()
            await peer.send(text)
            await ack["event"].wait()
        finished.set()
        await peer.heartbeats(0.5)

    def on_write(currency, written):
        if written and "loop" in ack:
            lags.extend(written)
            ack["loop"].call_soon_threadsafe(ack["event"].set)

    with tempfile.TemporaryDirectory() as tmp, WsReplayServer([script]) as ws:
        db = connect(tmp)
        ensure_schema(db)
        clock = time.perf_counter()
        summary = run_stream(db, list(CURRENCIES), url=ws.url, rest=rest, snapshot_every="1h",
                             max_writes_per_s=float("inf"), on_write=on_write, stop_event=finished,
                             handle_signals=False)
        seconds = time.perf_counter() - clock
        db.close()
    if summary["mark_updates"] != n:
        raise SystemExit(f"only {summary['mark_updates']} of {n} updates applied")
    return percentiles(lags), seconds


def paced(seconds: float, rest) -> dict:
    from qortcli.steps.stream import run_stream
    from qortcli.store import connect, ensure_schema
    from ws_replay_server import WsReplayServer, index_notification

    seed_ms = int(rest.chains["BTC"].timestamp.timestamp() * 1000)
    count = int(seconds) * 2
    messages = list(update_messages(count, seed_ms))
    index = {c: float(np.median([r.index_price_usd for r in rest.chains[c].records])) for c in CURRENCIES}
    rng = random.Random(11)
    finished = threading.Event()
    lags: list[float] = []

    async def script(peer):
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.5
        plan = []
        for cur in CURRENCIES:  # per currency: marks once a second, the index once a second, random phases
            m_phase, i_phase = rng.random(), rng.random()
            marks = [text for c, text in messages if c == cur]
            for s in range(int(seconds)):
                plan.append((start + s + m_phase, marks[s % len(marks)]))
                price = index[cur] * (1 + 1e-4 * rng.uniform(-1, 1))
                plan.append((start + s + i_phase, json.dumps(index_notification(f"{cur.lower()}_usd", price,
                                                                                  seed_ms + 1000 * s))))
        for when, text in sorted(plan, key=lambda p: p[0]):
            await asyncio.sleep(max(0.0, when - loop.time()))
            await peer.send(text)
        await asyncio.sleep(1.0)
        finished.set()
        await peer.heartbeats(0.5)

    def on_write(currency, written):
        lags.extend(written)

    with tempfile.TemporaryDirectory() as tmp, WsReplayServer([script]) as ws:
        db = connect(tmp)
        ensure_schema(db)
        run_stream(db, list(CURRENCIES), url=ws.url, rest=rest, snapshot_every="1h", on_write=on_write,
                   stop_event=finished, handle_signals=False)
        db.close()
    return percentiles(lags)


def reprice_cost(repeat: int, rest) -> dict:
    from qortcli.steps.live_chain import LiveChain, live_marks_document, reprice
    from qortcli.store import connect, ensure_schema, ops, schema
    from qortcli.timeutils import utcnow

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = connect(tmp)
        ensure_schema(db)
        for cur in CURRENCIES:
            inputs = LiveChain.from_parsed(rest.chains[cur]).freeze()
            view = reprice(inputs)  # warm-up
            cpu, doc_ms, write_ms = [], [], []
            for _ in range(repeat):
                c0 = time.process_time()
                view = reprice(inputs)
                cpu.append((time.process_time() - c0) * 1000.0)
                w0 = time.perf_counter()
                doc = live_marks_document(view, utcnow(), {})
                w1 = time.perf_counter()
                ops.upsert_many(db, schema.LIVE_MARKS, [doc])
                w2 = time.perf_counter()
                doc_ms.append((w1 - w0) * 1000.0)
                write_ms.append((w2 - w1) * 1000.0)
            out[cur] = {"options": len(view.rows["instrument"]), "expiries": len(view.expiries),
                        "reprice_cpu_ms": statistics.median(cpu), "document_ms": statistics.median(doc_ms),
                        "upsert_ms": statistics.median(write_ms)}
        db.close()
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py stream", description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=10_000, help="closed-loop updates (whole chains)")
    parser.add_argument("--paced-seconds", type=float, default=30.0, help="seconds at Deribit's cadence (0: skip)")
    parser.add_argument("--reprice", type=int, default=200, help="timed repricings per currency")
    args = parser.parse_args(argv)
    if not SEED.exists():
        raise SystemExit(f"the recorded chains are missing from {FIXTURES}")
    import logging

    logging.basicConfig(level=logging.ERROR)
    rest = RecordedRest()
    cost = reprice_cost(max(1, args.reprice), rest)
    for cur, c in cost.items():
        print(f"reprice {cur}: {c['options']} options, {c['expiries']} expiries: {c['reprice_cpu_ms']:.2f} ms CPU "
              f"per whole chain (greeks + IVs + ATM/RR25); live_marks document {c['document_ms']:.2f} ms, "
              f"upsert {c['upsert_ms']:.2f} ms (medians)")
    lat, seconds = closed_loop(max(1, args.updates), rest)
    print(f"closed loop: {lat['n']:,} whole-chain updates (BTC+ETH alternating) in {seconds:.1f} s; arrival -> "
          f"live_marks write: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms")
    if args.paced_seconds > 0:
        pl = paced(args.paced_seconds, rest)
        print(f"paced at Deribit's cadence (1 mark + 1 index update /s per currency, write cap 4/s burst 2), "
              f"{pl['n']} updates: p50 {pl['p50']:.1f} ms, p99 {pl['p99']:.1f} ms, max {pl['max']:.1f} ms")
    verdict = "OK" if lat["p99"] < TARGET_P99_MS else "SLOWER THAN TARGET"
    print(f"{verdict}: closed-loop p99 {lat['p99']:.1f} ms vs target < {TARGET_P99_MS:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
