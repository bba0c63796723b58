#!/usr/bin/env python
"""Pricing speed: `python scripts/bench.py pricing [--sizes 1e3,1e5,1e6] [--sample 2000] [--repeat 3] [--no-pin]`.

Options are the real January 2026 chains (tests/fixtures/deribit_options_snapshot_*.csv: forward, strike,
time to expiry, mark_iv), tiled to each size; coin prices are their Black-76 prices. For each size:

- ours: `black76.greeks` (prices + 10 greeks) and `implied_vol.implied_vol_coin`, whole arrays;
- py_vollib (per-option calls: `black` + analytical delta/gamma/vega/theta/rho, and
  `implied_volatility`), timed on a sample and reported per option;
- py_vollib_vectorized (numba), when installed, on the whole array;
- a scipy `brentq` loop on a sample (IV only).

Prints options/second (wall clock, best of --repeat; CPU seconds too, the machine is shared) and our
ratio to each. By default the process is pinned to one CPU so "one core" is literal.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qortcli.quant import black76, implied_vol  # noqa: E402
from qortcli.timeutils import BASES, DEFAULT_BASIS, SECONDS_PER_DAY  # noqa: E402

DAYS_PER_YEAR = BASES[DEFAULT_BASIS]


def load_options() -> dict[str, np.ndarray]:
    """F, K, T (ACT/365), sigma (mark_iv), call from the recorded chains, with positive time and vol."""
    import pandas as pd

    frames = []
    for path in sorted((ROOT / "tests" / "fixtures").glob("deribit_options_snapshot_*.csv")):
        chain = pd.read_csv(path, usecols=["timestamp", "expiry_datetime", "underlying", "strike",
                                           "implied_volatility", "option_type"])
        ts = pd.to_datetime(chain["timestamp"], utc=True, format="ISO8601")
        expiry = pd.to_datetime(chain["expiry_datetime"], utc=True, format="ISO8601")
        chain["t"] = (expiry - ts).dt.total_seconds() / (DAYS_PER_YEAR * SECONDS_PER_DAY)
        frames.append(chain)
    if not frames:
        raise SystemExit("no chains in tests/fixtures (deribit_options_snapshot_*.csv)")
    df = pd.concat(frames, ignore_index=True)
    df = df[(df["t"] > 0) & (df["implied_volatility"] > 0)]
    out = {"F": df["underlying"].to_numpy(float), "K": df["strike"].to_numpy(float), "T": df["t"].to_numpy(float),
           "sigma": df["implied_volatility"].to_numpy(float), "call": (df["option_type"] == "call").to_numpy()}
    price = black76.price_coin(out["F"], out["K"], out["T"], out["sigma"], out["call"])
    # keep options whose price carries the volatility (vega not negligible), as the IV benchmarks assume
    vega = black76.greeks(out["F"], out["K"], out["T"], out["sigma"], out["call"], days_per_year=DAYS_PER_YEAR)["vega_coin"]
    keep = (price > 1e-8) & (vega * 100 * out["sigma"] > 1e-6 * price)
    out = {k: v[keep] for k, v in out.items()}
    out["price"] = price[keep]
    return out


def tile(base: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    reps = -(-n // base["F"].size)
    return {k: np.ascontiguousarray(np.tile(v, reps)[:n]) for k, v in base.items()}


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall seconds, the CPU seconds of that run, and the result."""
    best, cpu, result = np.inf, np.inf, None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        w, c = time.perf_counter() - w, time.process_time() - c
        if w < best:
            best, cpu = w, c
    return best, cpu, result


def py_vollib_funcs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from py_vollib.black import black
        from py_vollib.black.greeks import analytical as an
        from py_vollib.black.implied_volatility import implied_volatility
    return black, an, implied_volatility


def bench_py_vollib(opts, sample: int, repeat: int):
    black, an, iv_fn = py_vollib_funcs()
    idx = np.arange(min(sample, opts["F"].size))
    rows = [("c" if opts["call"][i] else "p", opts["F"][i], opts["K"][i], opts["T"][i], opts["sigma"][i],
             opts["price"][i] * opts["F"][i]) for i in idx]

    def greeks_loop():
        return [(black(f_, F, K, T, 0.0, s), an.delta(f_, F, K, T, 0.0, s), an.gamma(f_, F, K, T, 0.0, s),
                 an.vega(f_, F, K, T, 0.0, s), an.theta(f_, F, K, T, 0.0, s), an.rho(f_, F, K, T, 0.0, s))
                for f_, F, K, T, s, _ in rows]

    def iv_loop():
        return np.array([iv_fn(p, F, K, 0.0, T, f_) for f_, F, K, T, _, p in rows])

    g_w, g_c, _ = timed(greeks_loop, repeat)
    i_w, i_c, ivs = timed(iv_loop, repeat)
    return len(rows) / g_w, len(rows) / i_w, ivs


def _black_coin_scalar(F: float, K: float, T: float, sigma: float, call: bool) -> float:
    """Scalar Black-76 coin price with math.erfc (what a per-option brentq loop would call)."""
    s = sigma * math.sqrt(T)
    d1 = math.log(F / K) / s + 0.5 * s
    n = lambda z: 0.5 * math.erfc(-z / math.sqrt(2.0))  # noqa: E731
    usd = F * n(d1) - K * n(d1 - s) if call else K * n(s - d1) - F * n(-d1)
    return usd / F


def bench_brentq(opts, sample: int):
    from scipy.optimize import brentq

    idx = np.arange(min(sample, opts["F"].size))
    rows = [(float(opts["F"][i]), float(opts["K"][i]), float(opts["T"][i]), bool(opts["call"][i]),
             float(opts["price"][i])) for i in idx]

    def one(F, K, T, call, price):
        return brentq(lambda s: _black_coin_scalar(F, K, T, s, call) - price, 1e-4, 10.0, xtol=1e-14, rtol=1e-14,
                      maxiter=200)

    w = time.perf_counter()
    ivs = np.array([one(*r) for r in rows])
    return len(rows) / (time.perf_counter() - w), ivs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py pricing", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e3,1e5,1e6", help="comma-separated option counts")
    parser.add_argument("--sample", type=int, default=2000, help="options for the per-option loops")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (best is reported)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    args = parser.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
        print(f"pinned to CPU {cpu}")
    print(f"numpy {np.__version__}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')} "
          f"(our kernels are elementwise ufuncs, no BLAS)")

    base = load_options()
    print(f"{base['F'].size} real options from the January 2026 chains, tiled to each size")

    pv_greeks, pv_iv, pv_ivs = bench_py_vollib(base, args.sample, args.repeat)
    bq_iv, bq_ivs = bench_brentq(base, min(args.sample, 500))
    # agreement on the sample (sanity, not timing)
    ours_sample = implied_vol.implied_vol_coin(base["price"][:pv_ivs.size], base["F"][:pv_ivs.size],
                                               base["K"][:pv_ivs.size], base["T"][:pv_ivs.size],
                                               base["call"][:pv_ivs.size]).sigma
    print(f"sample agreement: max |ours - py_vollib| = {np.nanmax(np.abs(ours_sample - pv_ivs)):.2e}, "
          f"max |ours - brentq| = {np.nanmax(np.abs(ours_sample[:bq_ivs.size] - bq_ivs)):.2e}, "
          f"max |ours - mark_iv| = {np.nanmax(np.abs(ours_sample - base['sigma'][:pv_ivs.size])):.2e}")

    pvv = None
    try:
        import py_vollib_vectorized as pvv_mod  # noqa: F401  (patches py_vollib on import: after py_vollib above)
        from py_vollib_vectorized import get_all_greeks, vectorized_black, vectorized_implied_volatility_black
        pvv = (vectorized_black, get_all_greeks, vectorized_implied_volatility_black)
    except Exception as exc:  # not installed or broken: skip it
        print(f"py_vollib_vectorized skipped ({type(exc).__name__}: {exc})")

    pvv_broken: dict[str, str] = {}
    header = f"{'options':>9} | {'what':<14} | {'ours /s':>12} {'cpu s':>7} {'/cpu s':>9} | {'py_vollib /s':>12} {'x':>7} | " \
             f"{'pvv /s':>12} {'x':>6} | {'brentq /s':>10} {'x':>7}"
    print(header)
    print("-" * len(header))
    for n in sizes:
        o = tile(base, n)
        flags = np.where(o["call"], "c", "p")
        g_w, g_c, _ = timed(lambda: black76.greeks(o["F"], o["K"], o["T"], o["sigma"], o["call"], days_per_year=DAYS_PER_YEAR), args.repeat)
        i_w, i_c, res = timed(lambda: implied_vol.implied_vol_coin(o["price"], o["F"], o["K"], o["T"], o["call"]),
                              args.repeat)
        bad = int(np.count_nonzero(res.reason != implied_vol.OK))
        pvv_g = pvv_i = None
        if pvv is not None:
            vb, gag, viv = pvv
            usd = o["price"] * o["F"]
            calls = {
                "greeks": lambda m: (vb(flags[:m], o["F"][:m], o["K"][:m], o["T"][:m], 0.0, o["sigma"][:m],
                                        return_as="numpy"),
                                     gag(flags[:m], o["F"][:m], o["K"][:m], o["T"][:m], 0.0, o["sigma"][:m],
                                         model="black", return_as="dict")),
                "iv": lambda m: viv(usd[:m], o["F"][:m], o["K"][:m], 0.0, o["T"][:m], flags[:m], return_as="numpy"),
            }
            speeds = {}
            for what, call in calls.items():
                if what in pvv_broken:
                    continue
                try:
                    call(10)                                   # numba compile outside the timing
                except Exception as exc:
                    pvv_broken[what] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
                    print(f"py_vollib_vectorized {what} fails here, skipped ({pvv_broken[what]})")
                    continue
                w, _, _ = timed(lambda: call(n), 1 if n >= 10**6 else args.repeat)
                speeds[what] = n / w
            pvv_g, pvv_i = speeds.get("greeks"), speeds.get("iv")
        ours_g, ours_i = n / g_w, n / i_w
        fmt = lambda v: f"{v:12.3g}" if v else f"{'-':>12}"  # noqa: E731
        ratio = lambda a, b: f"{a / b:7.1f}" if b else f"{'-':>7}"  # noqa: E731
        print(f"{n:>9} | {'price+greeks':<14} | {ours_g:12.3g} {g_c:7.3f} {n / max(g_c, 1e-9):9.3g} | {pv_greeks:12.3g} {ratio(ours_g, pv_greeks)} | "
              f"{fmt(pvv_g)} {ratio(ours_g, pvv_g)[1:]} | {'':>10} {'':>7}")
        print(f"{n:>9} | {'implied vol':<14} | {ours_i:12.3g} {i_c:7.3f} {n / max(i_c, 1e-9):9.3g} | {pv_iv:12.3g} {ratio(ours_i, pv_iv)} | "
              f"{fmt(pvv_i)} {ratio(ours_i, pvv_i)[1:]} | {bq_iv:10.3g} {ratio(ours_i, bq_iv)}"
              + (f"   ({bad} not solved)" if bad else ""))
    print("ours /s: wall clock, best of --repeat; /cpu s: per CPU second of that run (this process's own time on "
          "its one core: the honest figure when other processes share the core).")
    print("py_vollib and brentq: per-option Python calls timed on a sample (wall); pvv = py_vollib_vectorized "
          "(numba); x = our wall-clock rate / theirs.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
