#!/usr/bin/env python
"""Viewer speed in a real browser: `python scripts/bench.py viewer [--store28 DIR] [--store2000 DIR] [--repeat 5]`.

Serves the viewer (`scripts/viewer`, production build) on each store and drives headless Chromium over every page
(`qortview.pages.available()`), --repeat times each, every time in a fresh browser context (nothing cached in the
browser; the server is warm after the first visit): time to the page's own data (navigation to `#load-status`
data-loads > 0) and to charts (every chart box drawn), median and worst; then the refresh payload with nothing new
in the store — the websocket bytes the open page receives over three refresh periods (the server's refresh
period is set to 2 s for this). Targets (issue 20): every page < 2 s to data and < 3 s to charts on both stores,
the idle refresh payload ≈ 0 (≤ 200 bytes a refresh).

Stores: --store28 is a store holding the pipeline's output on the 28 recorded January 2026 chains (default: built
now into a temporary folder by `tests/e2e/seed.py`); --store2000 the 2,000-chain store of the store benchmark
(`python scripts/bench.py store --sizes 2000 --keep DIR` builds it from ../shared/data in ~10 min; pass DIR/store),
skipped with a note when absent. The machine's load average is printed: timings on a shared machine vary with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "viewer"))

from tests.e2e import viewer_harness as vh  # noqa: E402

DATA_TARGET_S, CHARTS_TARGET_S, IDLE_TARGET_B = 2.0, 3.0, 200
REFRESH_S = 2.0


ONLY: list[str] = []


def routes() -> list[str]:
    from qortview import pages

    return [s.route for s in pages.available() if not ONLY or s.route in ONLY]


def build_store28(folder: Path) -> Path:
    from qortcli.store import connect
    from tests.e2e.seed import seed

    path = folder / "db"
    db = connect(str(path))
    clock = time.perf_counter()
    summary = seed(db, log=lambda line: None)
    db.close()
    print(f"  built the 28-chain store in {time.perf_counter() - clock:.0f} s (skipped steps: {summary['skipped'] or 'none'})")
    return path


def bench_store(label: str, store: Path, repeat: int, viewport: tuple[int, int]) -> dict:
    from playwright.sync_api import sync_playwright

    server = vh.Server(str(store), refresh_s=REFRESH_S, log_path=Path(tempfile.gettempdir()) / f"qort-bench-viewer-{label}.log")
    try:
        started = server.wait_ready()
        print(f"\n{label}: {store} — server up in {started:.0f} s (build + serve), load average {os.getloadavg()[0]:.1f}")
        out = {}
        with sync_playwright() as p:
            browser = vh.launch(p)
            for route in routes():
                runs = []
                idle = (0, 0)
                for i in range(repeat):
                    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
                    page, timing = vh.open_timed(context, server.url, route)
                    runs.append(timing)
                    if i == repeat - 1:
                        page.wait_for_timeout(REFRESH_S * 1000)          # past the refresh clock's first firing
                        idle = vh.idle_bytes(page, 3 * REFRESH_S)
                    context.close()
                data = [t.data_s for t in runs]
                charts = [t.charts_s for t in runs]
                out[route] = {"data_median_s": statistics.median(data), "data_max_s": max(data),
                              "charts_median_s": statistics.median(charts), "charts_max_s": max(charts),
                              "open_bytes": runs[-1].frame_bytes, "idle_frames": idle[0], "idle_bytes": idle[1]}
                r = out[route]
                print(f"  {route:<13} data {r['data_median_s']:.2f} s (max {r['data_max_s']:.2f})  charts "
                      f"{r['charts_median_s']:.2f} s (max {r['charts_max_s']:.2f})  opening {r['open_bytes'] / 1e3:.1f} KB  "
                      f"idle {r['idle_frames']} frames / {r['idle_bytes']} B over 3 refreshes")
            browser.close()
        return out
    finally:
        gone = server.stop()
        print(f"  SIGTERM: server and workers gone in {gone:.1f} s" if gone is not None else "  SIGTERM: NOT gone in 5 s")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py viewer", description=__doc__.splitlines()[0])
    parser.add_argument("--store28", type=Path, help="store of the 28 recorded chains (default: built now)")
    parser.add_argument("--store2000", type=Path, help="the store benchmark's 2,000-chain store (DIR/store of its --keep)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--pages", default="", help="only these routes, comma-separated (e.g. /,/volatility)")
    args = parser.parse_args(argv)
    ONLY[:] = [r.strip() for r in args.pages.split(",") if r.strip()]
    reason = vh.missing_piece()
    if reason:
        print(f"bench viewer: cannot drive the viewer here: {reason}")
        return 2
    results = {}
    with tempfile.TemporaryDirectory(prefix="qort-bench-viewer-") as tmp:
        store28 = args.store28 or build_store28(Path(tmp))
        results["28 chains"] = bench_store("28 chains", store28, args.repeat, (args.width, args.height))
        if args.store2000 and (args.store2000 / "qortfolio").is_dir():
            results["2,000 chains"] = bench_store("2,000 chains", args.store2000, args.repeat, (args.width, args.height))
        else:
            print(f"\n2,000 chains: no store at {args.store2000 or '(--store2000 not given)'} — build it with `python scripts/bench.py store --sizes 2000 "
                  f"--keep DIR` (~10 min, needs ../shared/data) and pass --store2000 DIR/store")
    print()
    verdicts = []
    for label, pages in results.items():
        slow_data = [r for r, v in pages.items() if v["data_median_s"] >= DATA_TARGET_S]
        slow_charts = [r for r, v in pages.items() if v["charts_median_s"] >= CHARTS_TARGET_S]
        chatty = [r for r, v in pages.items() if v["idle_bytes"] > 3 * IDLE_TARGET_B]
        worst_data = max(v["data_median_s"] for v in pages.values())
        worst_charts = max(v["charts_median_s"] for v in pages.values())
        worst_idle = max(v["idle_bytes"] for v in pages.values()) / 3
        verdicts.append(f"{label}: data ≤ {worst_data:.2f} s ({'ok' if not slow_data else 'TOO SLOW: ' + ', '.join(slow_data)}), "
                        f"charts ≤ {worst_charts:.2f} s ({'ok' if not slow_charts else 'TOO SLOW: ' + ', '.join(slow_charts)}), "
                        f"idle refresh ≤ {worst_idle:.0f} B ({'ok' if not chatty else 'TOO MUCH: ' + ', '.join(chatty)})")
    print("verdict (median of %d, targets < %.0f s to data, < %.0f s to charts, idle ≤ %d B a refresh): " %
          (args.repeat, DATA_TARGET_S, CHARTS_TARGET_S, IDLE_TARGET_B) + "; ".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
