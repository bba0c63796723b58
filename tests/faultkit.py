"""Helpers of the fault-injection suite: run `qortcli` in a subprocess (optionally frozen at a point by
tests/fault_driver.py, then SIGKILLed), and oracles on a store written independently of the code under test
(the instruments a recorded chain CSV holds, read here with the csv module)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
FIXTURES = TESTS / "fixtures"
CSV_A = FIXTURES / "deribit_options_snapshot_20260105T041127Z.csv"   # BTC 650 + ETH 696 instruments
CSV_B = FIXTURES / "deribit_options_snapshot_20260105T092511Z.csv"
CSV_C = FIXTURES / "deribit_options_snapshot_20260105T153329Z.csv"
CSV_D = FIXTURES / "deribit_options_snapshot_20260105T212130Z.csv"
BOOK = FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json"  # 964 BTC options, 2026-03-13 19:00:15


def wait_until(predicate, what: str, limit_s: float = 90.0, poll_s: float = 0.05):
    """Poll until `predicate()` is true; the limit only guards against a hang (not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"gave up waiting for: {what}")


def env_for(db_path: Path | str, **extra) -> dict:
    env = {**os.environ, "QORT_DB": str(db_path), "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
           "COLUMNS": "200"}
    env.pop("QORT_DB_NAME", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def qortcli(db_path, *args: str, timeout: float = 180, **extra) -> subprocess.CompletedProcess:
    """`qortcli ARGS` in a subprocess on the store at `db_path`."""
    return subprocess.run([sys.executable, "-m", "qortcli", *args], cwd=ROOT, env=env_for(db_path, **extra),
                          capture_output=True, text=True, timeout=timeout)


def qortcli_json(db_path, *args: str, **extra) -> tuple[int, dict]:
    result = qortcli(db_path, *args, "--json", **extra)
    try:
        return result.returncode, json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"qortcli {' '.join(args)} printed no JSON (exit {result.returncode}):\n"
                             f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}") from None


class Frozen:
    """`qortcli ARGS` frozen at `point` (tests/fault_driver.py); `.kill9()` kills it there with SIGKILL."""

    def __init__(self, tmp_path: Path, db_path, point: str, *args: str, **extra):
        self.ready = tmp_path / f"ready-{time.monotonic_ns()}"
        self.log = tmp_path / f"frozen-{time.monotonic_ns()}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, str(TESTS / "fault_driver.py"), point, str(self.ready), "--",
                                          *args], cwd=ROOT, env=env_for(db_path, **extra), stdout=log,
                                         stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        wait_until(lambda: self.ready.exists() or self.proc.poll() is not None, f"the process to reach {point}")
        if not self.ready.exists():
            raise AssertionError(f"never reached {point} (exit {self.proc.returncode}):\n{self.log.read_text()[-3000:]}")

    def resume(self) -> subprocess.Popen:
        """Let the frozen process go on to its end."""
        self.ready.with_name(self.ready.name + ".go").touch()
        return self.proc

    def kill9(self) -> int:
        os.kill(self.pid, signal.SIGKILL)
        return self.proc.wait(timeout=60)


def csv_instruments(path: Path) -> dict[str, set[str]]:
    """{currency: instrument names} of a recorded chain CSV (the oracle of what a snapshot must hold)."""
    out: dict[str, set[str]] = defaultdict(set)
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            out[row["currency"]].add(row["instrument_name"])
    return dict(out)


def csv_snapshot_ids(path: Path) -> dict[str, str]:
    """{currency: snapshot id} of a recorded chain CSV (its first timestamp, to the second)."""
    with open(path, newline="") as fh:
        row = next(csv.DictReader(fh))
    moment = datetime.fromisoformat(row["timestamp"])
    return {cur: f"{cur}-{moment:%Y%m%dT%H%M%SZ}" for cur in csv_instruments(path)}


def snapshot_problems(db, expected: dict[str, set[str]] | None = None) -> list[str]:
    """What breaks "a complete snapshot has all its documents": per complete record, its documents must be
    exactly `counts.stored` many and (where `expected` names the snapshot) exactly the expected instruments."""
    problems = []
    for record in db["snapshots"].find({"kind": "options"}):
        if record.get("status") != "complete":
            continue
        sid = record["_id"]
        symbols = [d["symbol"] for d in db["options_data"].find({"snapshot_id": sid}, {"symbol": 1})]
        stored = (record.get("counts") or {}).get("stored")
        if stored is None or len(symbols) != int(stored) or len(set(symbols)) != len(symbols):
            problems.append(f"{sid}: complete with {len(symbols)} documents, counts.stored {stored}")
        if expected is not None and sid in expected and set(symbols) != expected[sid]:
            problems.append(f"{sid}: {len(set(symbols) ^ expected[sid])} instruments differ from the recorded chain")
    return problems


def expected_for(*paths: Path) -> dict[str, set[str]]:
    """{snapshot id: instruments} for recorded chain CSVs."""
    out = {}
    for path in paths:
        ids = csv_snapshot_ids(path)
        for cur, names in csv_instruments(path).items():
            out[ids[cur]] = names
    return out


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True
