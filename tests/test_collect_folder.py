"""Issues 14.4, 13.7 and 14.11: folder imports report every file, and only regular files within the size cap
are read (a symlink to /dev/zero, a FIFO, a huge sparse file are refused at once with a clear message).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from qortcli.cli import app
from qortcli.errors import PartialFailure, UsageError
from qortcli.sources.files import FileRefused, read_regular_file
from qortcli.steps.collect import run_collect_file, run_collect_prices_csv
from qortcli.store import ops, schema

from conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
CHAINS = ["deribit_options_snapshot_20260105T041127Z.csv", "deribit_options_snapshot_20260111T211857Z.csv"]
YAHOO_JSON = "gadicc_node-yahoo-finance2_chart-BTC-USD-2020-01-01-to-2020-01-03.json"
runner = CliRunner()


def _small_chain(src: Path, dst: Path, expiry: str = "27MAR26") -> int:
    """One expiry of a recorded chain CSV (real rows, fewer writes), under the same file name."""
    frame = pd.read_csv(src, dtype=str, keep_default_na=False)
    keep = frame[frame["instrument_name"].str.split("-").str[1] == expiry]
    keep.to_csv(dst / src.name, index=False)
    return len(keep)


@pytest.fixture
def fixtures_like(tmp_path) -> tuple[Path, int]:
    """A folder shaped like tests/fixtures/ (the README's `--from-file tests/fixtures/`): two chain CSVs,
    the recorded book summary, the Yahoo chart JSON, SOURCES.md and the prices/ folder."""
    folder = tmp_path / "fixtures"
    folder.mkdir()
    rows = sum(_small_chain(FIXTURES / name, folder) for name in CHAINS)
    book = json.loads((FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json").read_text())
    book["result"] = book["result"][:30]
    (folder / "goodtrading_book_summary_BTC_option_20260313.json").write_text(json.dumps(book))
    shutil.copy(FIXTURES / YAHOO_JSON, folder)
    shutil.copy(FIXTURES / "SOURCES.md", folder)
    (folder / "prices").mkdir()
    shutil.copy(FIXTURES / "prices" / "BTC-USD.csv", folder / "prices")
    return folder, rows + 30


def test_readme_folder_import_skips_what_is_not_a_chain(embedded_db, fixtures_like):
    folder, rows = fixtures_like
    summary = run_collect_file(embedded_db, folder)
    files = {f["file"]: f for f in summary["files"]}
    assert {f: files[f]["status"] for f in files} == {
        CHAINS[0]: "stored", CHAINS[1]: "stored", "goodtrading_book_summary_BTC_option_20260313.json": "stored",
        YAHOO_JSON: "skipped", "SOURCES.md": "skipped", "prices": "skipped"}
    assert "not a Deribit book summary (top-level keys: request, response)" in files[YAHOO_JSON]["note"]
    assert "folder" in files["prices"]["note"] and "not a .json or .csv" in files["SOURCES.md"]["note"]
    assert summary["failed"] == 0 and summary["stored"] == rows
    assert len(summary["snapshots"]) == 5                       # BTC+ETH twice, and the book summary's BTC
    assert embedded_db[schema.OPTIONS].count_documents({}) == rows
    (run,) = list(embedded_db[schema.JOB_RUNS].find({"step": "collect"}))
    assert run["status"] == "ok" and run["counts"]["files_skipped"] == 3


def test_a_failing_file_does_not_stop_the_others_and_the_run_fails(qort_env, fixtures_like):
    folder, rows = fixtures_like
    (folder / "truncated.json").write_text('{"jsonrpc": "2.0", "result": [{"instrument_name": "BTC-27MAR26-7')
    (folder / "zero.json").symlink_to("/dev/zero")
    os.mkfifo(folder / "pipe.csv")
    (folder / "limited.json").write_text(json.dumps({"jsonrpc": "2.0", "error": {"code": 10028,
                                                                                 "message": "too_many_requests"}}))
    result = runner.invoke(app, ["collect", "deribit", "--from-file", str(folder)], env={"COLUMNS": "160"})
    assert result.exit_code == 1, result.output
    out = result.output
    for name, status in (("truncated.json", "error"), ("zero.json", "error"), ("pipe.csv", "error"),
                         ("limited.json", "error"), (YAHOO_JSON, "skipped"), (CHAINS[0], "stored")):
        line = next(ln for ln in out.splitlines() if name in ln)
        assert status in line, line
    assert "4 of 10 file(s)" in out and "5 snapshot(s) from the others stored" in out
    from qortcli.store import connect

    db = connect(str(qort_env))
    try:
        assert db[schema.OPTIONS].count_documents({}) == rows        # the good files were stored
        (run,) = list(db[schema.JOB_RUNS].find({"step": "collect"}))
        assert run["status"] == "failed" and "4 of 10 file(s)" in run["error"]
    finally:
        db.close()
    as_json = runner.invoke(app, ["collect", "deribit", "--from-file", str(folder), "--json"])
    assert as_json.exit_code == 1
    summary = json.loads(as_json.stdout)
    assert summary["failed"] == 4 and len(summary["files"]) == 10
    notes = {f["file"]: f["note"] for f in summary["files"]}
    assert "malformed JSON" in notes["truncated.json"] and "10028 too_many_requests" in notes["limited.json"]
    assert "character device (a symlink to /dev/zero)" in notes["zero.json"] and "FIFO" in notes["pipe.csv"]
    error = json.loads(as_json.stderr.strip().splitlines()[-1])
    assert error["exit_code"] == 1 and "4 of 10" in error["error"]


def test_unreadable_is_not_reported_as_not_a_chain(embedded_db, tmp_path):
    """14.11: a chain CSV that cannot be read says why, not "not a whole-chain CSV"."""
    folder = tmp_path / "chains"
    folder.mkdir()
    _small_chain(FIXTURES / CHAINS[0], folder)
    target = folder / "gone.csv"
    target.symlink_to(tmp_path / "deleted.csv")
    with pytest.raises(PartialFailure) as caught:
        run_collect_file(embedded_db, folder)
    row = next(f for f in caught.value.summary["files"] if f["file"] == "gone.csv")
    assert row["status"] == "error" and "not found" in row["note"] and "whole-chain" not in row["note"]


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.symlink_to("/dev/zero"), "is a character device (a symlink to /dev/zero)"),
    (lambda p: p.symlink_to("/dev/urandom"), "is a character device"),
    (lambda p: os.mkfifo(p), "is a FIFO (named pipe)"),
    (lambda p: p.mkdir(), None),
])
def test_only_regular_files_are_read(tmp_path, make, fragment):
    path = tmp_path / "chain.json"
    make(path)
    if fragment is None:  # a directory given as a file is imported as a folder instead: empty → a step error
        return
    with pytest.raises(FileRefused, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        read_regular_file(path, max_bytes=1024)


def test_a_huge_sparse_file_is_refused_by_its_size_without_reading(tmp_path):
    path = tmp_path / "huge.csv"
    with open(path, "wb") as fh:
        fh.truncate(2 * 1024 ** 3)  # 2 GB apparent size, no blocks
    with pytest.raises(FileRefused, match=r"2,048\.0 MB, over the 256 MB cap \(settings \[collect\] max_file_mb\)"):
        read_regular_file(path)
    small = tmp_path / "small.json"
    small.write_bytes(b"x" * 2048)
    with pytest.raises(FileRefused, match="over the 0 MB cap"):
        read_regular_file(small, max_bytes=1024)
    assert read_regular_file(small, max_bytes=4096) == b"x" * 2048


def test_cli_refuses_devices_fifos_and_huge_files_with_exit_2(tmp_path, qort_env):
    zero = tmp_path / "zero.json"
    zero.symlink_to("/dev/zero")
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.csv"
    with open(huge, "wb") as fh:
        fh.truncate(2 * 1024 ** 3)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QORT_DB": str(qort_env)}
    for args, fragment in ((["collect", "deribit", "--from-file", str(zero)], "character device"),
                           (["collect", "deribit", "--from-file", str(fifo)], "FIFO"),
                           (["collect", "deribit", "--from-file", str(huge)], "over the 256 MB cap"),
                           (["collect", "prices", "--from-csv", str(zero)], "character device"),
                           (["collect", "prices", "--from-csv", str(fifo)], "FIFO")):
        # a subprocess with a timeout: a FIFO that blocked would hang the test otherwise
        proc = subprocess.run([sys.executable, "-m", "qortcli", *args], capture_output=True, text=True, timeout=60,
                              env=env)
        assert proc.returncode == 2, (args, proc.stderr)
        assert fragment in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_price_csv_folder_reports_a_bad_file_and_imports_the_rest(embedded_db, tmp_path):
    folder = tmp_path / "prices"
    folder.mkdir()
    lines = (FIXTURES / "prices" / "ETH-USD.csv").read_text().splitlines(keepends=True)
    (folder / "ETH-USD.csv").write_text("".join(lines[:21]))
    os.mkfifo(folder / "BTC-USD.csv")
    with pytest.raises(PartialFailure, match=r"1 price file\(s\) failed .*BTC-USD.csv is a FIFO") as caught:
        run_collect_prices_csv(embedded_db, folder)
    assert caught.value.summary["stored"] == 20 and caught.value.summary["failed"] == 1
    assert embedded_db[schema.PRICES].count_documents({"symbol": "ETH"}) == 20
    with pytest.raises(UsageError, match="price directory not found"):
        run_collect_prices_csv(embedded_db, tmp_path / "missing")


def test_a_single_non_chain_file_is_a_usage_error(embedded_db):
    with pytest.raises(UsageError, match="not a Deribit book summary"):
        run_collect_file(embedded_db, FIXTURES / YAHOO_JSON)
    with pytest.raises(UsageError, match="looks like Yahoo daily prices"):
        run_collect_file(embedded_db, FIXTURES / "prices" / "BTC-USD.csv")
    assert ops.latest_snapshot(embedded_db, "options", "BTC") is None
