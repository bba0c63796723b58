#!/usr/bin/env python
"""Speed figures for qortfolio: `python scripts/bench.py pricing|surface|optimize [options]`.

Each benchmark lives in scripts/bench_<name>.py with a `main(argv)`; this file only dispatches.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in names:
        print(__doc__.strip())
        print(f"available: {', '.join(names) or 'none yet'}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    spec = importlib.util.spec_from_file_location(f"bench_{argv[0]}", HERE / f"bench_{argv[0]}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
