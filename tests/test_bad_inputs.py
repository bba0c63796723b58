"""The table of bad inputs tried (issues 14 and 13): input → exit code → message fragment → store unchanged.

Every row runs `qortcli` (CliRunner) against one seeded store (a recorded BTC+ETH chain of 2026-01-05,
two expiries, priced; three coins of daily prices) and checks: the exit code (2 = usage error, 1 = a
step that failed), the one-line message (plain, and as a JSON object on stderr under --json), that the
store's data is unchanged (per-collection content hashes), that no run was recorded "ok" for it, and that
no store was created at a bad --db location.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from qortcli.cli import app
from qortcli.store.transfer import collection_digests, combined_hash
from qortcli.store import connect, ensure_schema, schema

from conftest import FIXTURES

CHAIN = FIXTURES / "deribit_options_snapshot_20260105T041127Z.csv"
BOOK = FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json"
YAHOO_JSON = FIXTURES / "gadicc_node-yahoo-finance2_chart-BTC-USD-2020-01-01-to-2020-01-03.json"
BOOKKEEPING = {schema.JOB_RUNS, schema.MIGRATIONS, "worker_state"}
runner = CliRunner()

# (id, command line, exit code, message fragment[, settings file body])
CASES = [
    # --- price ------------------------------------------------------------------------------------
    ("price-unknown-currency", ["price", "--currency", "XRP"], 2, "no XRP option snapshot in the store (it has BTC, ETH)"),
    ("price-malformed-currency", ["price", "-c", "B$C"], 2, "is not a currency code"),
    ("price-bad-expiry-code", ["price", "--expiry", "99ZZZ26"], 2, "is not a Deribit expiry code"),
    ("price-impossible-date", ["price", "--expiry", "30FEB26"], 2, "is not a calendar date"),
    ("price-expired-expiry", ["price", "--expiry", "2JAN26"], 2, "expiry 2JAN26 expired on 2026-01-02"),
    ("price-unlisted-expiry", ["price", "--expiry", "1JAN30"], 2, "no expiry 1JAN30 in the priced snapshot(s)"),
    ("price-bad-basis", ["price", "--basis", "ACT/360"], 2, "unknown day-count basis 'ACT/360'"),
    ("price-negative-rows", ["price", "--rows", "-1"], 2, "--rows"),
    ("price-expiry-with-check", ["price", "--check", "--expiry", "27MAR26"], 2, "--check reports on the whole snapshot"),
    # --- surface ----------------------------------------------------------------------------------
    ("surface-unknown-currency", ["surface", "-c", "XRP"], 2, "no XRP option snapshot"),
    ("surface-plot-type", ["surface", "--plot", "{tmp}/x.pdf"], 2, "must end in .html or .png"),
    ("surface-plot-directory", ["surface", "--plot", "/nonexistent/d/x.html"], 2, "does not exist"),
    # --- suggest ----------------------------------------------------------------------------------
    ("suggest-unknown-currency", ["suggest", "-c", "XRP"], 2, "no XRP option snapshot"),
    ("suggest-negative-top", ["suggest", "--top", "-1"], 2, "--top"),
    ("suggest-unknown-strategy", ["suggest", "-s", "butterfly"], 2, "unknown strategy 'butterfly'"),
    ("suggest-unknown-snapshot", ["suggest", "--snapshot", "BTC-20990101T000000Z"], 2, "no complete snapshot with that id"),
    ("suggest-snapshot-of-another-currency", ["suggest", "-c", "ETH", "--snapshot", "BTC-20260105T041127Z"], 2,
     "is a BTC snapshot, not ETH"),
    ("suggest-unlisted-expiry", ["suggest", "-c", "BTC", "--expiry", "1JAN20"], 2, "expiry 1JAN20 is not listed"),
    ("suggest-expired-expiry", ["suggest", "-c", "BTC", "--expiry", "27MAR26"], 2, "expiry 27MAR26 expired on 2026-03-27"),
    ("suggest-track-with-expiry", ["suggest", "--track", "--expiry", "27MAR26"], 2, "--track follows stored suggestions"),
    ("suggest-snapshot-and-as-of", ["suggest", "--snapshot", "BTC-20260105T041127Z", "--as-of-snapshot"], 2,
     "drop --as-of-snapshot"),
    # --- optimize ---------------------------------------------------------------------------------
    ("optimize-unknown-model", ["optimize", "--model", "kelly"], 2, "kelly"),
    ("optimize-date-format", ["optimize", "--start", "01/02/2023"], 2, "--start must be a date YYYY-MM-DD"),
    ("optimize-end-before-start", ["optimize", "--start", "2023-01-01", "--end", "2022-01-01"], 2, "is not after --start"),
    ("optimize-unknown-asset", ["optimize", "--asset", "FOO"], 2, "unknown asset(s) FOO: price_data has BTC, ETH, LINK"),
    ("optimize-bad-ticker", ["optimize", "--asset", "B$C"], 2, "is not a ticker"),
    ("optimize-cap-out-of-range", ["optimize", "--max-asset", "1.5"], 2, "between 0 and 1"),
    ("optimize-bad-name", ["optimize", "--name", "a|b"], 2, "--name 'a|b'"),
    ("optimize-bad-rebalance", ["optimize", "--rebalance", "daily"], 2, "daily"),
    ("optimize-max-sector-without-by-sector", ["optimize", "--max-sector", "0.4"], 2, "needs --by-sector"),
    # --- collect deribit --------------------------------------------------------------------------
    ("collect-missing-file", ["collect", "deribit", "--from-file", "{tmp}/nope.json"], 2, "file not found"),
    ("collect-dev-zero", ["collect", "deribit", "--from-file", "{zero}"], 2, "is a character device (a symlink to /dev/zero)"),
    ("collect-fifo", ["collect", "deribit", "--from-file", "{fifo}"], 2, "is a FIFO (named pipe)"),
    ("collect-sparse-2gb", ["collect", "deribit", "--from-file", "{sparse}"], 2, "over the 256 MB cap"),
    ("collect-yahoo-json", ["collect", "deribit", "--from-file", str(YAHOO_JSON)], 2, "not a Deribit book summary"),
    ("collect-price-csv", ["collect", "deribit", "--from-file", str(FIXTURES / "prices" / "BTC-USD.csv")], 2,
     "looks like Yahoo daily prices"),
    ("collect-truncated-json", ["collect", "deribit", "--from-file", "{truncated}"], 1, "malformed JSON"),
    ("collect-rpc-error-file", ["collect", "deribit", "--from-file", "{rpc_error}"], 1, "Deribit error 10028 too_many_requests"),
    ("collect-future-dated-file", ["collect", "deribit", "--from-file", "{future}"], 1, "in the future"),
    ("collect-no-usable-rows", ["collect", "deribit", "--from-file", "{garbage}"], 1, "has no usable option rows"),
    ("collect-file-and-currency", ["collect", "deribit", "--from-file", str(BOOK), "--currency", "BTC"], 2,
     "--currency applies to live collection"),
    ("collect-file-and-url", ["collect", "deribit", "--from-file", str(BOOK), "--url", "http://127.0.0.1:9"], 2,
     "--url applies to live collection"),
    ("collect-bad-currency", ["collect", "deribit", "--currency", "B$C"], 2, "is not a currency code"),
    # --- collect prices ---------------------------------------------------------------------------
    ("prices-missing-dir", ["collect", "prices", "--from-csv", "{tmp}/nope"], 2, "price directory not found"),
    ("prices-dev-zero", ["collect", "prices", "--from-csv", "{zero}"], 2, "is a character device"),
    ("prices-bad-since", ["collect", "prices", "--since", "2023-13-01"], 2, "--since must be a date YYYY-MM-DD"),
    ("prices-unknown-sector", ["collect", "prices", "--sector", "Nope"], 2, "Nope"),
    ("prices-csv-with-sector", ["collect", "prices", "--from-csv", "{tmp}", "--sector", "DeFi"], 2,
     "--sector/--since apply to downloads"),
    # --- store locations (--db) -------------------------------------------------------------------
    ("db-url-without-slashes", ["--db", "mongodb:qort:pw@db.example", "status"], 2, "lacks '//'"),
    ("db-upper-case-scheme", ["--db", "MONGODB://db.example", "status"], 2, "must be written in lower case"),
    ("db-misspelt-scheme", ["--db", "mongdb://db.example", "status"], 2, "did you mean mongodb://?"),
    ("db-postgres", ["--db", "postgres://qort:pw@pg/db", "status"], 2, "unsupported store URL"),
    ("db-user-host-port", ["--db", "qort@db.example:27017", "status"], 2, "looks like user@host:port"),
    ("db-given-twice", ["--db", "{tmp}/a", "status", "--db", "{tmp}/b"], 2, "--db given twice"),
    # --- output options and the rest --------------------------------------------------------------
    ("csv-into-missing-dir", ["status", "--csv", "/nonexistent/d/x.csv"], 2, "does not exist"),
    ("csv-to-a-directory", ["status", "--csv", "{tmp}"], 2, "is a directory"),
    ("status-negative-runs", ["status", "--runs", "-3"], 2, "--runs"),
    ("unknown-command", ["frobnicate"], 2, "No such command"),
    ("worker-unknown-job", ["worker", "--once", "nope"], 2, "unknown job 'nope'"),
    ("worker-csv-while-serving", ["worker", "--csv", "{tmp}/w.csv"], 2, "--csv applies to --list and --once"),
    ("migrate-dry-run-without-to", ["migrate", "--dry-run"], 2, "only make sense with --to"),
    # --- settings (validated at start-up, naming file, section and key) ---------------------------
    ("settings-iv-high-string", ["suggest"], 2, "[suggest] iv_high: Input should be a valid number (got 'high')",
     '[suggest]\niv_high = "high"\n'),
    ("settings-currencies-string", ["collect", "deribit"], 2, "[collect] currencies: must be a list",
     '[collect]\ncurrencies = "BTC"\n'),
    ("settings-unknown-key", ["price"], 2, "[pricing] unknown key 'day_cont' (did you mean day_count?)",
     '[pricing]\nday_cont = "ACT/365"\n'),
    ("settings-bad-day-count", ["price"], 2, "[pricing] day_count: unknown day-count basis '30/360'",
     '[pricing]\nday_count = "30/360"\n'),
    ("settings-unknown-section", ["status"], 2, "unknown section [risky]", "[risky]\nx = 1\n"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The seeded store and the hostile files the table refers to."""
    from qortcli.steps.collect import run_collect_file, run_collect_prices_csv
    from qortcli.steps.price import run_price

    root = tmp_path_factory.mktemp("badinputs")
    chain = pd.read_csv(CHAIN, dtype=str, keep_default_na=False)
    chain[chain["instrument_name"].str.split("-").str[1].isin(("16JAN26", "27MAR26"))].to_csv(root / CHAIN.name,
                                                                                               index=False)
    prices = root / "prices"
    prices.mkdir()
    for sym in ("BTC", "ETH", "LINK"):
        lines = (FIXTURES / "prices" / f"{sym}-USD.csv").read_text().splitlines(keepends=True)
        (prices / f"{sym}-USD.csv").write_text(lines[0] + "".join(lines[-120:]))
    store = root / "db"
    db = connect(str(store))
    ensure_schema(db)
    run_collect_file(db, root / CHAIN.name)
    run_collect_prices_csv(db, prices)
    run_price(db)
    db.close()

    hostile = root / "hostile"
    hostile.mkdir()
    (hostile / "zero.json").symlink_to("/dev/zero")
    os.mkfifo(hostile / "pipe.json")
    with open(hostile / "sparse.json", "wb") as fh:
        fh.truncate(2 * 1024 ** 3)
    book = json.loads(BOOK.read_text())
    text = json.dumps(dict(book, result=book["result"][:20]))
    (hostile / "truncated.json").write_text(text[: len(text) // 2])
    (hostile / "rpc_error.json").write_text(json.dumps({"jsonrpc": "2.0", "error": {"code": 10028,
                                                                                     "message": "too_many_requests"}}))
    future = dict(book, result=[dict(r, creation_timestamp=4102444800000) for r in book["result"][:20]])  # 2100
    (hostile / "future.json").write_text(json.dumps(future))
    garbage = dict(book, result=[dict(r, mark_price="n/a") for r in book["result"][:20]])
    (hostile / "garbage.json").write_text(json.dumps(garbage))
    paths = {"tmp": str(root / "scratch"), "zero": str(hostile / "zero.json"), "fifo": str(hostile / "pipe.json"),
             "sparse": str(hostile / "sparse.json"), "truncated": str(hostile / "truncated.json"),
             "rpc_error": str(hostile / "rpc_error.json"), "future": str(hostile / "future.json"),
             "garbage": str(hostile / "garbage.json")}
    Path(paths["tmp"]).mkdir()
    return {"store": store, "paths": paths, "root": root}


def fingerprint(store: Path) -> tuple[dict, int]:
    """Content hash of every data collection, and how many runs were recorded ok."""
    db = connect(str(store))
    try:
        names = sorted(set(db.list_collection_names()) - BOOKKEEPING)
        hashes = {name: combined_hash(collection_digests(db, name)) for name in names}
        return hashes, db[schema.JOB_RUNS].count_documents({"status": "ok"})
    finally:
        db.close()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(world, case, tmp_path):
    name, argv, code, fragment, *settings = case
    env = {"COLUMNS": "200"}
    if settings:
        path = tmp_path / "settings.toml"
        path.write_text(settings[0])
        env["QORT_SETTINGS"] = str(path)
    args = [a.format(**world["paths"]) for a in argv]
    if "--db" not in args:
        args = ["--db", str(world["store"]), *args]
    scratch = Path(world["paths"]["tmp"])
    before_scratch = sorted(p.name for p in scratch.iterdir())
    before = fingerprint(world["store"])
    for as_json in (False, True):
        result = runner.invoke(app, args + (["--json"] if as_json else []), env=env)
        assert result.exit_code == code, (name, as_json, result.output)
        assert "Traceback" not in result.output
        if as_json:
            error = json.loads(result.stderr.strip().splitlines()[-1])
            assert error["exit_code"] == code and fragment in error["error"], (name, error)
        else:
            assert fragment in " ".join(result.output.split()), (name, result.output)
    assert fingerprint(world["store"]) == before, f"{name} changed the store"
    assert sorted(p.name for p in scratch.iterdir()) == before_scratch, f"{name} created something"
    for secret in ("pw@", ":pw"):
        assert secret not in result.output
