"""Issue 14 (1, 7, polish) and 13.9 at the command line: --db wins over QORT_DB and writing commands name
their store; exit codes and run records agree; --version, -v after the command, --csv, JSON errors;
tables fit 100 columns with whole instrument names; external strings never parsed as rich markup.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qortcli import __version__
from qortcli.cli import app
from qortcli.store import connect, ops, schema
from qortcli.store.schema import MIGRATION_STEPS

from conftest import FIXTURES, copied_store

BOOK = FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json"
NAME = re.compile(r"BTC-\d{1,2}[A-Z]{3}\d{2}-\d+-[CP]")
runner = CliRunner()


def small_book(path: Path, n: int = 30, rows: list | None = None) -> Path:
    book = json.loads(BOOK.read_text())
    book["result"] = rows if rows is not None else book["result"][:n]
    path.write_text(json.dumps(book))
    return path


@pytest.fixture(scope="module")
def priced(tmp_path_factory) -> Path:
    """The recorded BTC book summary (964 options) collected and priced."""
    from qortcli.steps.collect import run_collect_file
    from qortcli.steps.price import run_price

    path = tmp_path_factory.mktemp("polish") / "db"
    db = connect(str(path))
    run_collect_file(db, BOOK)
    run_price(db)
    db.close()
    return path


@pytest.fixture
def store(priced, tmp_path) -> Path:
    return copied_store(priced, tmp_path)


def _runs(path: Path, step: str) -> list[dict]:
    db = connect(str(path))
    try:
        return list(db[schema.JOB_RUNS].find({"step": step}))
    finally:
        db.close()


# ------------------------------------------------------------------------------------------ 14.1

def test_db_wins_over_qort_db_wherever_it_is_written(tmp_path, monkeypatch):
    env_store, flag_store = tmp_path / "from-env", tmp_path / "from-flag"
    monkeypatch.setenv("QORT_DB", str(env_store))
    chain = small_book(tmp_path / "chain.json")
    for args in (["--db", str(flag_store), "collect", "deribit", "--from-file", str(chain)],
                 ["collect", "deribit", "--from-file", str(chain), "--db", str(flag_store)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert f"store: embedded store at {flag_store} (database 'qortfolio')" in result.stderr
    assert not env_store.exists()
    db = connect(str(flag_store))
    try:
        assert db[schema.OPTIONS].count_documents({}) == 30
    finally:
        db.close()
    both = runner.invoke(app, ["--db", str(flag_store), "status", "--db", str(tmp_path / "third")])
    assert both.exit_code == 2 and "--db given twice" in both.output
    # without --db, QORT_DB is the store
    assert runner.invoke(app, ["collect", "deribit", "--from-file", str(chain)]).exit_code == 0
    assert env_store.is_dir()


def test_read_only_commands_print_no_store_line_and_json_carries_the_store(store):
    status = runner.invoke(app, ["--db", str(store), "status"])
    assert status.exit_code == 0 and "store:" not in status.stderr
    price = runner.invoke(app, ["--db", str(store), "price", "--check", "--json"])
    assert price.exit_code == 0 and json.loads(price.stdout)["store"].startswith(f"embedded store at {store}")


# ------------------------------------------------------------------------------------------ 14.7

def test_a_run_is_never_recorded_ok_when_the_command_fails(store, monkeypatch):
    bad = runner.invoke(app, ["--db", str(store), "price", "--expiry", "99ZZZ26"])
    assert bad.exit_code == 2 and "not a Deribit expiry code" in bad.output
    unknown = runner.invoke(app, ["--db", str(store), "price", "--expiry", "1JAN30"])
    assert unknown.exit_code == 2 and "no expiry 1JAN30" in unknown.output
    runs = _runs(store, "price")
    assert [r["status"] for r in runs if r["args"].get("expiry")] == ["failed"]   # 99ZZZ26 never started a run
    assert all(r["status"] == "ok" for r in runs if not r["args"].get("expiry"))
    # a failure after the step recorded ok (here: rendering) turns that record into a failed one
    import qortcli.cli.surface as surface_cli

    def broken(console, summary):
        raise RuntimeError("terminal went away")

    monkeypatch.setattr(surface_cli, "_render", broken)
    result = runner.invoke(app, ["--db", str(store), "surface"])
    assert result.exit_code == 1 and "RuntimeError: terminal went away" in result.output
    (run,) = _runs(store, "surface")
    assert run["status"] == "failed" and "terminal went away" in run["error"]


# ------------------------------------------------------------------------------------------ polish

def test_version_and_verbose_after_the_command(store):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"qortcli {__version__}"
    for args in (["status", "-v"], ["status", "-vv"], ["-v", "status"], ["price", "--check", "-v"]):
        assert runner.invoke(app, ["--db", str(store), *args]).exit_code == 0, args


def test_errors_under_json_are_json_on_stderr(store):
    cases = [(["price", "--currency", "XRP", "--json"], 2, "no XRP option snapshot"),
             (["--json", "status", "--runs", "-3"], 2, "--runs"),
             (["--json", "no-such-command"], 2, "No such command"),
             (["optimize", "--json", "--start", "01/02/2023"], 2, "YYYY-MM-DD")]
    for args, code, fragment in cases:
        result = runner.invoke(app, ["--db", str(store), *args])
        assert result.exit_code == code, (args, result.output)
        error = json.loads(result.stderr.strip().splitlines()[-1])
        assert error["exit_code"] == code and fragment in error["error"], (args, error)
        assert result.stdout == ""


def test_csv_on_every_table_command(store, tmp_path):
    out = tmp_path / "out.csv"
    for args, columns, n in ((["price", "--currency", "BTC"], {"instrument_name", "mark_price", "iv_mark", "delta"}, 964),
                             (["price", "--check"], {"snapshot_id", "share_within"}, 1),
                             (["status"], {"collection", "documents"}, None),
                             (["surface"], {"currency", "expiry", "atm_iv_svi", "rmse_vol_points"}, 12),
                             (["migrate"], {"number", "status"}, len(MIGRATION_STEPS)),
                             (["worker", "--list"], {"job", "timing"}, None)):
        result = runner.invoke(app, ["--db", str(store), *args, "--csv", str(out)])
        assert result.exit_code == 0, (args, result.output)
        rows = list(csv.DictReader(out.open()))
        assert columns <= set(rows[0]), (args, rows[0].keys())
        assert n is None or len(rows) == n, (args, len(rows))
    price = list(csv.DictReader(io.StringIO(runner.invoke(app, ["--db", str(store), "price", "--csv", "-"]).stdout)))
    db = connect(str(store))
    try:
        marks = {d["symbol"]: d["premium_crypto"] for d in ops.snapshot_documents(db, "BTC-20260313T190015Z")}
    finally:
        db.close()
    assert {r["instrument_name"]: float(r["mark_price"]) for r in price} == marks      # full precision, every row
    missing_dir = runner.invoke(app, ["--db", str(tmp_path / "never"), "status", "--csv", str(tmp_path / "no" / "x.csv")])
    assert missing_dir.exit_code == 2 and "does not exist" in missing_dir.output and not (tmp_path / "never").exists()


def test_tables_fit_100_columns_with_whole_instrument_names(store):
    stored = set()
    db = connect(str(store))
    try:
        stored = {d["symbol"] for d in ops.snapshot_documents(db, "BTC-20260313T190015Z")}
    finally:
        db.close()
    price = runner.invoke(app, ["--db", str(store), "price", "--rows", "6"], env={"COLUMNS": "100"})
    suggest = runner.invoke(app, ["--db", str(store), "suggest", "--as-of-snapshot", "-s", "iron_condor",
                                  "-s", "short_strangle", "--top", "0"], env={"COLUMNS": "100"})
    for result in (price, suggest):
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert max(len(line) for line in lines) <= 100
        shown = {m.group(0) for line in lines for m in NAME.finditer(line)}
        assert shown and shown <= stored                      # every name shown is a whole, real instrument
        for line in lines:  # no cell cut short: an ellipsis never follows part of a name or a number
            assert not re.search(r"[\w.]…", line), line
    legs = [ln for ln in suggest.stdout.splitlines() if NAME.search(ln)]
    assert len(legs) == 6 and all(re.search(r"\d\.\d{4,}", ln) for ln in legs)   # 4 condor + 2 strangle legs
    assert "forward 71," in price.stdout and "%" in price.stdout                   # USD separators, vols in percent


def test_external_strings_are_never_rich_markup(tmp_path, qort_env):
    book = json.loads(BOOK.read_text())
    rows = book["result"][:20]
    rows[0] = dict(rows[0], instrument_name="BTC-27MAR26-[/x]-C")
    rows[1] = dict(rows[1], instrument_name="[link=http://evil.example]BTC[/link]")
    rows[2] = dict(rows[2], mark_price="[bold red]cheap[/]")
    chain = small_book(tmp_path / "[bold red]chain[i].json", rows=rows)
    result = runner.invoke(app, ["collect", "deribit", "--from-file", str(chain)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "[/x]" in result.output and "[link=http://evil.example]" in result.output and "[bold red]" in result.output
    assert "17 documents stored, 3 rows skipped" in result.output
    (run,) = _runs(qort_env, "collect")
    assert run["status"] == "ok"
    (tmp_path / "[").mkdir()
    broken = tmp_path / "[" / "x].json"       # its path holds "[/x]"
    assert "[/x]" in str(broken)
    result = runner.invoke(app, ["collect", "deribit", "--from-file", str(broken)])
    assert result.exit_code == 2 and f"file not found: {broken}" in result.output
    broken.write_text('{"jsonrpc": "2.0", "result": [{"instrument_name": "BTC-27MA')
    result = runner.invoke(app, ["collect", "deribit", "--from-file", str(tmp_path / "[")], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "x].json" in result.output and "malformed JSON" in result.output


def test_help_keeps_bracketed_words():
    for args, word in ((["worker", "--help"], "[schedule]"), (["suggest", "--help"], "[suggest]"),
                       (["price", "--help"], "[pricing]")):
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0 and word in result.output, (args, result.output)
