"""Fault injection (issue 13): kill -9 at several points of collect / price / migrate, two same-second collects
in separate processes (20 trials), a copy and a backup while a writer runs, corrupted and read-only store
files, a slow-drip server against the worker's deadlines, SIGTERM within the stop grace.

Every case ends with the same verdicts, checked against oracles built here (the instruments of the recorded
chain CSVs read with the csv module): nothing reported stored that is not stored, no complete snapshot with
missing documents, every run of a dead process found and said, every job ending at its deadline.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from faultkit import (BOOK, CSV_A, CSV_B, CSV_C, CSV_D, ROOT, TESTS, Frozen, csv_instruments, csv_snapshot_ids,
                      env_for, expected_for, pid_gone, qortcli, qortcli_json, snapshot_problems, wait_until)
from qortcli.store import connect, ensure_schema, schema

pytestmark = pytest.mark.faults


def _store(path: Path, *chains: Path):
    db = connect(str(path))
    ensure_schema(db)
    if chains:
        from qortcli.steps.collect import run_collect_file

        for chain in chains:
            run_collect_file(db, chain)
    return db


def _statuses(db) -> set[str]:
    return {r.get("status") for r in db[schema.SNAPSHOTS].find({"kind": "options"})}


def _runs(db, **query) -> list[dict]:
    return list(db[schema.JOB_RUNS].find(query))


# ------------------------------------------------------------------------------------ two same-second collects

def _twin(dirs: list[str], barrier, results) -> None:
    """One of two processes: for each trial store, wait for the twin, then collect the same chain file."""
    from qortcli.steps.collect import run_collect_file

    for path in dirs:
        barrier.wait(timeout=120)
        try:
            db = connect(path)
            ensure_schema(db)
            summary = run_collect_file(db, str(BOOK))
            results.put((path, os.getpid(), [(r["snapshot_id"], r["status"], r["stored"]) for r in summary["snapshots"]],
                         None))
            db.close()
        except Exception as exc:  # reported to the test, which fails on it
            results.put((path, os.getpid(), None, f"{type(exc).__name__}: {exc}"))


def _book_instruments() -> set[str]:
    import json

    return {row["instrument_name"] for row in json.loads(BOOK.read_text())["result"]}


def test_two_same_second_collects_in_separate_processes_never_lose_a_snapshot(tmp_path):
    """20 trials, each on a fresh store (schema creation races too): the two processes collect the same chain
    at the same moment. Found: spurious E11000 on the compression dictionary and "database is locked" while
    a new collection file switched to WAL (engine fixes in store/engine/collection.py and files.py)."""
    trials = 20
    dirs = [str(tmp_path / f"trial{i}") for i in range(trials)]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_twin, args=(dirs, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    reports = [results.get(timeout=300) for _ in range(2 * trials)]
    for p in procs:
        p.join(60)
    expected = {"BTC-20260313T190015Z": _book_instruments()}
    errors = [f"{path}: {error}" for path, _, _, error in reports if error]
    assert errors == []  # no E11000, no "database is locked", no other failure
    for path in dirs:
        db = connect(path, read_only=True)
        try:
            assert snapshot_problems(db, expected) == []
            complete = {r["_id"] for r in db[schema.SNAPSHOTS].find({"kind": "options", "status": "complete"})}
            assert complete == set(expected), f"{path}: snapshots left {sorted(complete)}"  # never 0 left
            assert db[schema.SNAPSHOTS].count_documents({"kind": "options", "status": "pending"}) == 0
            rows = [row for p, _, rows, _ in reports if p == path for row in rows]
            for sid in expected:
                statuses = sorted(status for s, status, _ in rows if s == sid)
                # one of the twins stored it; the other found it busy (being stored) or already stored
                assert statuses.count("stored") == 1 and len(statuses) == 2, (path, sid, statuses)
                assert set(statuses) <= {"stored", "busy", "unchanged"}
        finally:
            db.close()


# ------------------------------------------------------------------------------------ kill -9 during collect

@pytest.mark.parametrize("point, documents_left", [
    ("claim", 0),                        # the claim record written, nothing else
    ("in-write:options_data", 0),        # inside the documents' write transaction: rolled back
    ("after-upsert:options_data", 650),  # the BTC documents committed, the snapshot not completed
])
def test_collect_killed_leaves_nothing_visible_and_the_next_run_cleans_it(tmp_path, point, documents_left):
    store = tmp_path / "db"
    _store(store).close()
    frozen = Frozen(tmp_path, store, point, "collect", "deribit", "--from-file", str(CSV_A))
    assert frozen.kill9() == -signal.SIGKILL
    btc = csv_snapshot_ids(CSV_A)["BTC"]

    db = connect(str(store), read_only=True)
    try:
        assert snapshot_problems(db) == []  # nothing complete without its documents
        assert db[schema.SNAPSHOTS].find_one({"_id": btc})["status"] == "pending"  # invisible to readers
        assert db[schema.OPTIONS].count_documents({"snapshot_id": btc}) == documents_left
        (run,) = _runs(db, step="collect")
        assert run["status"] == "running" and run["pid"] == frozen.pid  # the dead process's record
    finally:
        db.close()

    code, report = qortcli_json(store, "check")
    assert code == 1
    kinds = sorted(f["kind"] for f in report["findings"])
    assert kinds == ["stale pending snapshot", "stale run"]
    assert all(c["problems"] == [] for c in report["collections"])

    # the next collect (another recorded chain) cleans what the dead one left, and says so in its run counts
    result = qortcli(store, "collect", "deribit", "--from-file", str(CSV_B))
    assert result.returncode == 0, result.stderr
    db = connect(str(store))
    try:
        (dead,) = _runs(db, _id=run["_id"])
        assert dead["status"] == "abandoned" and f"process {frozen.pid}" in dead["error"] and "gone" in dead["error"]
        (cleaner,) = [r for r in _runs(db, step="collect") if r["_id"] != run["_id"]]
        assert cleaner["counts"]["abandoned_runs"] == 1 and cleaner["counts"]["discarded_snapshots"] == 1
        assert cleaner["counts"].get("discarded_documents", 0) == documents_left
        assert db[schema.SNAPSHOTS].find_one({"_id": btc}) is None
        assert db[schema.OPTIONS].count_documents({"snapshot_id": btc}) == 0
        assert snapshot_problems(db, expected_for(CSV_B)) == []
    finally:
        db.close()
    assert qortcli(store, "check").returncode == 0
    again = qortcli_json(store, "collect", "deribit", "--from-file", str(CSV_A))[1]  # the lost chain, stored now
    assert sorted(r["status"] for r in again["snapshots"]) == ["stored", "stored"]
    db = connect(str(store), read_only=True)
    try:
        assert snapshot_problems(db, expected_for(CSV_A, CSV_B)) == []
    finally:
        db.close()


def test_collect_killed_inside_the_completing_transaction_is_a_pending_snapshot(tmp_path):
    """Killed while `complete_snapshot` writes: the record stays pending (SQLite rolls the write back), never a
    half-complete snapshot; `check --repair` discards it with its documents."""
    store = tmp_path / "db"
    _store(store).close()
    frozen = Frozen(tmp_path, store, "in-write:snapshots:2", "collect", "deribit", "--from-file", str(BOOK))
    frozen.kill9()
    db = connect(str(store), read_only=True)
    try:
        (record,) = list(db[schema.SNAPSHOTS].find({}))
        assert record["status"] == "pending" and db[schema.OPTIONS].count_documents({}) == 964
    finally:
        db.close()
    code, report = qortcli_json(store, "check", "--repair")
    assert code == 0, report
    assert {f["kind"]: f["repaired"] for f in report["findings"]} == {
        "stale run": "marked abandoned", "stale pending snapshot": "discarded with 964 documents"}
    db = connect(str(store), read_only=True)
    try:
        assert db[schema.OPTIONS].count_documents({}) == 0 and db[schema.SNAPSHOTS].count_documents({}) == 0
        (run,) = _runs(db, step="collect")
        assert run["status"] == "abandoned" and run["abandoned_by"] == "qortcli check --repair"
    finally:
        db.close()
    assert qortcli(store, "check").returncode == 0


# ------------------------------------------------------------------------------------ kill -9 during price

def _pricing(store) -> dict[str, str]:
    code, status = qortcli_json(store, "status")
    assert code == 0
    return {s["currency"]: s["pricing"] for s in status["latest_snapshots"]}


@pytest.mark.parametrize("then", ["price", "check --repair"])
def test_price_killed_half_way_is_detected_and_cleaned(tmp_path, then):
    """price writes BTC's 650 model updates in batches of 200 (QORT_FAULT_BATCH) and is killed after two: BTC
    half-priced, ETH unpriced. status says so, check finds it; the next price prices it fully, or check
    --repair removes the unconfirmed model fields."""
    store = tmp_path / "db"
    _store(store, CSV_A).close()
    frozen = Frozen(tmp_path, store, "after-upsert:options_data:2", "price", QORT_FAULT_BATCH="200")
    frozen.kill9()
    assert _pricing(store) == {"BTC": "partial", "ETH": "unpriced"}
    code, report = qortcli_json(store, "check")
    assert code == 1
    half = [f for f in report["findings"] if f["kind"] == "half-priced snapshot"]
    assert [f["subject"] for f in half] == [csv_snapshot_ids(CSV_A)["BTC"]] and "400 of 650" in half[0]["detail"]

    if then == "price":
        assert qortcli(store, "price").returncode == 0
        assert _pricing(store) == {"BTC": "priced", "ETH": "priced"}
    else:
        code, report = qortcli_json(store, "check", "--repair")
        assert code == 0
        assert _pricing(store) == {"BTC": "unpriced", "ETH": "unpriced"}
    db = connect(str(store), read_only=True)
    try:
        (dead,) = _runs(db, step="price", pid=frozen.pid)
        assert dead["status"] == "abandoned"
        if then == "price":
            (live,) = _runs(db, step="price", status="ok")
            assert live["counts"]["abandoned_runs"] == 1 and live["counts"]["priced"] == 1346
            models = [d.get("model") for d in db[schema.OPTIONS].find({"snapshot_id": csv_snapshot_ids(CSV_A)["BTC"]})]
            assert len({m["priced_at"] for m in models}) == 1  # one pricing, not two mixed
        else:
            assert db[schema.OPTIONS].count_documents({"snapshot_id": csv_snapshot_ids(CSV_A)["BTC"],
                                                       "model": {"$exists": True}}) == 0
    finally:
        db.close()
    assert qortcli(store, "check").returncode == 0


def test_price_killed_inside_a_write_keeps_nothing_of_it(tmp_path):
    store = tmp_path / "db"
    _store(store, CSV_A).close()
    Frozen(tmp_path, store, "in-write:options_data", "price").kill9()
    assert _pricing(store) == {"BTC": "unpriced", "ETH": "unpriced"}


# ------------------------------------------------------------------------------------ kill -9 during migrate

def _target_problems(target_path: Path) -> list[str]:
    db = connect(str(target_path), read_only=True)
    try:
        if db[schema.MIGRATIONS].count_documents({}) < 2:
            return []  # the copy is still creating the target's collections and indexes: nothing copied yet
        return snapshot_problems(db)
    finally:
        db.close()


@pytest.mark.parametrize("point", ["after-batch:options_data:3", "after-batch:snapshots:1"])
def test_migrate_killed_mid_copy_never_shows_a_snapshot_without_its_documents(tmp_path, point):
    source, target = tmp_path / "source", tmp_path / "target"
    _store(source, CSV_A, CSV_B).close()
    Frozen(tmp_path, source, point, "migrate", "--to", str(target), "--batch-size", "2" if "snapshots" in point
           else "300").kill9()
    assert _target_problems(target) == []
    db = connect(str(target), read_only=True)
    try:
        complete = db[schema.SNAPSHOTS].count_documents({"kind": "options", "status": "complete"})
        assert complete == (0 if "options" in point else 2)  # records are copied last, after every document
    finally:
        db.close()
    code, summary = qortcli_json(source, "migrate", "--to", str(target), "--batch-size", "300")
    assert code == 0 and summary["ok"], summary
    rows = {r["collection"]: r for r in summary["collections"]}
    assert rows[schema.OPTIONS]["resumed_from"] > 0
    db = connect(str(target), read_only=True)
    try:
        assert snapshot_problems(db, expected_for(CSV_A, CSV_B)) == []
        assert db[schema.SNAPSHOTS].count_documents({"kind": "options", "status": "complete"}) == 4
    finally:
        db.close()


# ------------------------------------------------------------------------------------ migrate while a writer writes

def test_migrate_copies_the_cut_taken_at_its_start_and_records_after_documents(tmp_path):
    """Deterministic interleaving of issue 13.3: a writer holds a pending snapshot (frozen after its documents)
    when the copy starts; the copy is paused after its first options_data batch while another collect completes
    two snapshots in the source; then it goes on. The target must hold exactly the snapshots complete at the
    start, each with its documents: not the pending one, not the two completed during the copy (before: their
    records were copied complete with none of their documents, and the pending documents were copied too)."""
    source, target = tmp_path / "source", tmp_path / "target"
    _store(source, CSV_A).close()
    pending = Frozen(tmp_path, source, "after-upsert:options_data", "collect", "deribit", "--from-file", str(BOOK))
    try:
        copy = Frozen(tmp_path, source, "after-batch:options_data:1", "migrate", "--to", str(target), "--batch-size",
                      "200", "--json")
        try:
            assert qortcli(source, "collect", "deribit", "--from-file", str(CSV_B)).returncode == 0  # during the copy
            assert copy.resume().wait(timeout=300) == 0, copy.log.read_text()[-3000:]
        finally:
            if copy.proc.poll() is None:
                copy.kill9()
    finally:
        pending.kill9()
    db = connect(str(target), read_only=True)
    try:
        assert snapshot_problems(db, expected_for(CSV_A)) == []
        records = {r["_id"]: r["status"] for r in db[schema.SNAPSHOTS].find({"kind": "options"})}
        assert records == {sid: "complete" for sid in csv_snapshot_ids(CSV_A).values()}
        assert set(db[schema.OPTIONS].distinct("snapshot_id")) == set(records)  # no pending or later documents
    finally:
        db.close()


WRITER = textwrap.dedent("""
    import sys, time
    from qortcli.store import connect, ensure_schema
    from qortcli.steps.collect import run_collect_file
    from qortcli.steps.price import run_price
    db = connect(sys.argv[1]); ensure_schema(db)
    for path in sys.argv[3:]:
        run_collect_file(db, path)
        run_price(db)
        open(sys.argv[2], "a").write(path + "\\n")
""")


def test_migrate_while_a_writer_runs_copies_a_consistent_cut_then_only_what_changed(tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    _store(source, CSV_A).close()
    progress = tmp_path / "written.txt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(source), str(progress), str(CSV_B), str(CSV_C),
                               str(CSV_D)], cwd=ROOT, env=env_for(source))
    seen_during: list[list[str]] = []
    try:
        migrate = subprocess.Popen([sys.executable, "-m", "qortcli", "migrate", "--to", str(target), "--batch-size",
                                    "150", "--json"], cwd=ROOT, env=env_for(source), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        while migrate.poll() is None:  # watch the target while the copy runs
            if (target / "qortfolio" / "snapshots.sqlite").exists():
                seen_during.append(_target_problems(target))
            time.sleep(0.1)
        out, err = migrate.communicate()
    finally:
        writer_code = writer.wait(timeout=300)
    assert writer_code == 0
    assert migrate.returncode == 0, err[-2000:]
    assert all(problems == [] for problems in seen_during), [p for p in seen_during if p][:3]
    assert _target_problems(target) == []
    db = connect(str(target), read_only=True)
    try:
        assert _statuses(db) <= {"complete"}  # nothing pending copied
        first_cut = db[schema.SNAPSHOTS].count_documents({})
    finally:
        db.close()
    assert first_cut >= 2

    # the writer is done: a second run brings the rest, writing only what differs
    code, summary = qortcli_json(source, "migrate", "--to", str(target), "--batch-size", "150")
    assert code == 0 and summary["ok"], summary
    rows = {r["collection"]: r for r in summary["collections"]}
    assert rows[schema.OPTIONS]["already_there"] > 0
    assert rows[schema.OPTIONS]["copied"] < rows[schema.OPTIONS]["source_count"]
    db = connect(str(target), read_only=True)
    try:
        assert snapshot_problems(db, expected_for(CSV_A, CSV_B, CSV_C, CSV_D)) == []
        assert db[schema.SNAPSHOTS].count_documents({"kind": "options", "status": "complete"}) == 8
    finally:
        db.close()
    code, third = qortcli_json(source, "migrate", "--to", str(target))
    assert code == 0 and sum(r["copied"] for r in third["collections"] if r["collection"] != schema.JOB_RUNS) == 0


# ------------------------------------------------------------------------------------ backup while a writer writes

def test_backup_while_a_writer_runs_is_consistent_and_restores(tmp_path):
    store = tmp_path / "db"
    _store(store, CSV_A).close()
    progress = tmp_path / "written.txt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store), str(progress), str(CSV_B), str(CSV_C),
                               str(CSV_D)], cwd=ROOT, env=env_for(store))
    backups = []
    try:
        for i in range(3):
            dest = tmp_path / f"backup{i}"
            code, report = qortcli_json(store, "backup", str(dest))
            assert code == 0 and report["check"]["ok"], report
            backups.append(dest)
    finally:
        assert writer.wait(timeout=300) == 0
    everything = expected_for(CSV_A, CSV_B, CSV_C, CSV_D)
    for dest in backups:
        assert not list(dest.rglob("*-wal"))  # self-contained files: the folder can be moved as it is
        db = connect(str(dest), read_only=True)
        try:
            assert snapshot_problems(db, everything) == []
            assert _statuses(db) <= {"complete"}
        finally:
            db.close()
    # restore (README): writers stopped, the damaged store moved aside, the backup moved in place, check
    shutil.move(str(store), str(tmp_path / "damaged"))
    shutil.move(str(backups[-1]), str(store))
    assert qortcli(store, "check").returncode == 0
    code, again = qortcli_json(store, "collect", "deribit", "--from-file", str(CSV_D))
    assert code == 0  # writable again, and re-importing what the backup lacked works


# ------------------------------------------------------------------------------------ corrupted files

def test_a_damaged_file_is_named_by_every_command_and_check_reports_it(tmp_path):
    store = tmp_path / "db"
    _store(store, CSV_A).close()
    backup = tmp_path / "backup"
    assert qortcli(store, "backup", str(backup)).returncode == 0
    path = store / "qortfolio" / "options_data.sqlite"
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(path, "r+b") as fh:  # garbage over the second page: SQLite's structure is damaged
        fh.seek(4096)
        fh.write(b"\xa5" * 4096)
    for args in (("status",), ("price",), ("surface",), ("migrate", "--to", str(tmp_path / "copy"))):
        result = qortcli(store, *args)
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert result.returncode == 1 and len(lines) == 1, (args, result.stderr[-2000:])
        assert str(path) in lines[0] and "damaged" in lines[0] and "Traceback" not in result.stderr
    code, report = qortcli_json(store, "check", "--repair")
    assert code == 1  # a damaged file cannot be repaired: it is restored from the backup
    (options,) = [c for c in report["collections"] if c["name"] == schema.OPTIONS]
    assert options["problems"] and options["file"] == str(path)
    assert all(not c["problems"] for c in report["collections"] if c["name"] != schema.OPTIONS)
    shutil.move(str(store), str(tmp_path / "damaged"))
    shutil.move(str(backup), str(store))
    assert qortcli(store, "check").returncode == 0


def test_a_garbled_document_body_is_named_not_a_decoder_traceback(tmp_path):
    """A damaged page whose SQLite structure still reads: one document's body is garbage. Before: a bare
    zlib/bson error (no file named) from every reader; now the file is named and check counts the document."""
    store = tmp_path / "db"
    _store(store, CSV_A).close()
    path = store / "qortfolio" / "options_data.sqlite"
    conn = sqlite3.connect(str(path))
    rid, doc_id = conn.execute("SELECT rid, id FROM docs ORDER BY rid LIMIT 1 OFFSET 7").fetchone()
    conn.execute("UPDATE docs SET body = ? WHERE rid = ?", (b"\x01" + bytes(range(7, 250)), rid))
    conn.commit()
    conn.close()
    result = qortcli(store, "price")
    assert result.returncode == 1 and str(path) in result.stderr and "unreadable" in result.stderr
    assert "Traceback" not in result.stderr and "zlib" not in result.stderr.split(":")[0]
    code, report = qortcli_json(store, "check")
    (options,) = [c for c in report["collections"] if c["name"] == schema.OPTIONS]
    assert code == 1 and options["problems"] == [f"1 stored document(s) unreadable, first _id {doc_id!r}"]


# ------------------------------------------------------------------------------------ read-only stores

def test_a_read_only_store_is_read_and_copied_off(tmp_path):
    """The store on a read-only mount (a private mount namespace: root cannot write either): status and
    check read it, migrate --to copies it off (the run recorded in the target), a write says read-only."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed to mount the store read-only")
    store, mount, target = tmp_path / "db", tmp_path / "ro", tmp_path / "copy"
    _store(store, CSV_A).close()
    mount.mkdir()
    q = f"{sys.executable} -m qortcli"
    script = (f"mount --bind {store} {mount} && mount -o remount,ro,bind {mount} && "
              f"{q} status --json > {tmp_path}/status.json && {q} check > {tmp_path}/check.txt && "
              f"{q} migrate --to {target} --json > {tmp_path}/migrate.json && "
              f"{{ {q} collect deribit --from-file {CSV_B} 2> {tmp_path}/collect.err; echo $? > {tmp_path}/collect.rc; }}")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True,
                          text=True, timeout=300, env=env_for(mount), cwd=ROOT)
    if proc.returncode != 0 and "mount" in proc.stderr and "permission denied" in proc.stderr.lower():
        pytest.skip(f"cannot create a read-only mount here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    status = json.loads((tmp_path / "status.json").read_text())
    assert "read-only" in status["store"] and len(status["latest_snapshots"]) == 2
    assert json.loads((tmp_path / "migrate.json").read_text())["ok"]
    assert (tmp_path / "collect.rc").read_text().strip() == "1" and "read-only" in (tmp_path / "collect.err").read_text()
    db = connect(str(target), read_only=True)
    try:
        assert snapshot_problems(db, expected_for(CSV_A)) == []
        (copy_run,) = _runs(db, step="migrate")
        assert copy_run["status"] == "ok" and "from" in copy_run["args"]  # recorded in the target
    finally:
        db.close()


# ------------------------------------------------------------------------------------ the worker's deadlines

def _worker_settings(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(body)
    return path


def test_a_stuck_fetch_is_cancelled_at_its_deadline_and_later_runs_go_on(tmp_path):
    """collect_deribit against a server that drips one byte every 0.3 s (a per-read timeout never fires): the
    worker kills the job's process at its 2 s deadline, records "timeout", discards what it left pending, and
    the next runs start (they are not skipped forever)."""
    from fault_server import SlowDripServer

    store = tmp_path / "db"
    _store(store).close()
    with SlowDripServer(interval=0.3) as server:
        settings = _worker_settings(tmp_path, f"""
[schedule]
heartbeat_seconds = 0
stop_grace = "5s"
[schedule.jobs]
collect_deribit = {{ every = "1s", timeout = "2s", args = {{ currencies = ["BTC"], base_url = "{server.url}/api/v2" }} }}
""")
        env = env_for(store, QORT_SETTINGS=settings)
        worker = subprocess.Popen([sys.executable, "-m", "jobs.worker"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        db = connect(str(store), read_only=True)
        try:
            wait_until(lambda: len(_runs(db, job="collect_deribit", status="timeout")) >= 2, "two runs cancelled")
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0, output[-3000:]
        assert server.connections >= 2
    timeouts = _runs(db, job="collect_deribit", status="timeout")
    assert all("cancelled at its 2 s deadline" in r["error"] for r in timeouts)
    assert all(pid_gone(r["pid"]) for r in timeouts)  # the job processes are gone
    assert _runs(db, status="running") == []
    state = db["worker_state"].find_one({"_id": "job:collect_deribit"})
    assert state["last_status"] in ("timeout", "interrupted") and "cancelled" in state["last_error"]
    db.close()


def test_sigterm_finishes_within_the_stop_grace_even_with_a_hung_job(tmp_path):
    """A job that never ends (no deadline of its own): SIGTERM → the worker waits its 1 s stop grace, kills the
    job's process (recorded "interrupted"), marks itself stopped and exits 0. The other job ran meanwhile."""
    store = tmp_path / "db"
    _store(store).close()
    settings = _worker_settings(tmp_path, f"""
[schedule]
heartbeat_seconds = 0
stop_grace = "1s"
[schedule.jobs]
hang = {{ step = "fault_steps.hang", every = "1h", timeout = "0", args = {{ marker_dir = "{tmp_path}" }} }}
quick = {{ step = "fault_steps.quick", every = "1h", args = {{ marker_dir = "{tmp_path}" }} }}
""")
    worker = subprocess.Popen([sys.executable, "-m", "jobs.worker"], cwd=ROOT, env=env_for(store, QORT_SETTINGS=settings),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    db = connect(str(store), read_only=True)
    try:
        wait_until(lambda: _runs(db, step="hang", status="running") and _runs(db, step="quick", status="ok"),
                   "the hung job running and the quick one done")
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=120)  # would hang here if the worker waited for the job
        assert worker.returncode == 0, output[-3000:]
        (hung,) = _runs(db, step="hang")
        assert hung["status"] == "interrupted" and "stop grace" in hung["error"] and pid_gone(hung["pid"])
        assert db["worker_state"].find_one({"_id": "worker"})["stopped_at"] is not None
    finally:
        if worker.poll() is None:
            worker.kill()
        db.close()


# ------------------------------------------------------------------------------------ what "provably dead" means

def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_discarding_a_dead_writers_claim_never_deletes_a_new_owners_documents(embedded_db):
    """The cleaner reads a dead writer's pending claim; before it deletes, a new writer takes the claim over
    and stores the chain. Before: the cleaner deleted the new documents and the new writer completed the
    snapshot with none (ops.discard_snapshot now takes the claim atomically before deleting anything)."""
    import socket

    from qortcli.sources.deribit import chains_from_file
    from qortcli.steps.collect import store_chain
    from qortcli.store import ops

    db = embedded_db
    (chain,) = chains_from_file(BOOK)
    sid = ops.snapshot_id_for("BTC", chain.timestamp)
    dead = f"{socket.gethostname()}:{_dead_pid()}:deadbeef0000"
    db[schema.SNAPSHOTS].insert_one({"_id": sid, "snapshot_id": sid, "kind": "options", "currency": "BTC",
                                     "timestamp": chain.timestamp, "status": "pending", "owner": dead,
                                     "started_at": chain.timestamp, "counts": {}})
    coll = db[schema.SNAPSHOTS]
    real_find_one = coll.find_one
    rows = []

    def find_one(*args, **kwargs):  # the cleaner's read, then the new writer gets in first
        found = real_find_one(*args, **kwargs)
        if not rows:
            rows.append(None)
            coll.find_one = real_find_one
            rows[0] = store_chain(db, chain)
        return found

    coll.find_one = find_one
    try:
        ops.discard_snapshot(db, sid, schema.OPTIONS, owner=dead)
    finally:
        coll.find_one = real_find_one
    assert rows[0]["status"] == "stored"
    assert snapshot_problems(db, {sid: _book_instruments()}) == []
    assert db[schema.SNAPSHOTS].find_one({"_id": sid})["status"] == "complete"


def test_a_run_is_dead_when_its_pid_is_gone_a_zombie_or_reused(embedded_db):
    import socket

    from qortcli.store import runs

    host = socket.gethostname()
    me = runs.process_identity()
    assert runs.process_alive(host, os.getpid(), me["proc_start"]) is True
    assert runs.process_alive(host, os.getpid(), me["proc_start"] + 1) is False  # the pid now names another process
    assert runs.process_alive(host, _dead_pid()) is False
    zombie = subprocess.Popen(["true"])
    wait_until(lambda: Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z",
               "the child to exit (unreaped)")
    assert runs.process_alive(host, zombie.pid) is False
    zombie.wait()
    assert runs.process_alive("another-host", os.getpid()) is None  # another host: only age can tell


def test_runs_and_claims_of_other_hosts_are_stale_only_after_their_steps_timeout(embedded_db):
    from datetime import timedelta

    from qortcli.store import maintenance, ops
    from qortcli.timeutils import utcnow

    db = embedded_db
    now = utcnow()
    old, young = now - timedelta(hours=2), now - timedelta(minutes=1)
    for run_id, started in (("old", old), ("young", young)):
        db[schema.JOB_RUNS].insert_one({"_id": run_id, "step": "collect", "status": "running", "started_at": started,
                                        "host": "worker-elsewhere", "pid": 7, "counts": {}, "args": {}})
    for sid, started in (("BTC-20260101T000000Z", old), ("BTC-20260101T000100Z", young)):
        db[schema.SNAPSHOTS].insert_one({"_id": sid, "snapshot_id": sid, "kind": "options", "currency": "BTC",
                                         "timestamp": started, "status": "pending", "started_at": started,
                                         "owner": "worker-elsewhere:7:abc", "counts": {}})
        db[schema.OPTIONS].insert_one({"_id": f"BTC-X|{sid}", "symbol": "BTC-X", "snapshot_id": sid})
    cleaned = maintenance.clean_leftovers(db, found_by="test", timeout_for=lambda step, job: 1200.0)
    assert [r["run_id"] for r in cleaned.abandoned_runs] == ["old"]
    assert "older than its step's 1200 s timeout" in cleaned.abandoned_runs[0]["reason"]
    assert [s["snapshot_id"] for s in cleaned.discarded_snapshots] == ["BTC-20260101T000000Z"]
    assert cleaned.counts() == {"abandoned_runs": 1, "discarded_snapshots": 1, "discarded_documents": 1}
    assert db[schema.JOB_RUNS].find_one({"_id": "young"})["status"] == "running"
    assert db[schema.SNAPSHOTS].find_one({"_id": "BTC-20260101T000100Z"})["status"] == "pending"
    assert ops.stale_snapshots(db, stale_after_s=30.0)[0]["_id"] == "BTC-20260101T000100Z"  # a shorter timeout


def test_step_timeouts_come_from_the_schedule():
    from qortcli.schedule import load_schedule, step_timeout_seconds

    schedule = load_schedule({"job_timeout": "10m", "jobs": {"collect_deribit": {"every": "5m", "timeout": "4m"},
                                                              "collect_prices": {"cron": "10 0 * * *"},
                                                              "price": {"after": "collect_deribit", "timeout": "0"}}})
    assert schedule.timeout_seconds(schedule.job("collect_deribit")) == 240
    assert schedule.timeout_seconds(schedule.job("price")) == 0  # none: the worker waits for it
    assert step_timeout_seconds("collect", "collect_deribit", schedule) == 240
    assert step_timeout_seconds("collect", None, schedule) == 600  # the longest collect job (prices: the default)
    assert step_timeout_seconds("price", None, schedule) == 600  # no deadline still becomes stale some day
    assert step_timeout_seconds("migrate", None, schedule) == 600
    from qortcli.errors import ConfigError

    with pytest.raises(ConfigError, match="timeout"):
        load_schedule({"jobs": {"price": {"every": "5m", "timeout": "soon"}}})
