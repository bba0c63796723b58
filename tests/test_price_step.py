"""The price step on a store and `qortcli price` end to end (collect --from-file, then price)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qortcli.cli import app
from qortcli.errors import StepError, UsageError
from qortcli.steps.collect import run_collect_file
from qortcli.steps.price import run_price
from qortcli.store import ops, schema

FIXTURES = Path(__file__).parent / "fixtures"
CHAIN = FIXTURES / "deribit_options_snapshot_20260105T041127Z.csv"
BOOK = FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json"
#: two expiries of each currency (a real subset: mongomock's unique-index checks are quadratic)
SUBSET_EXPIRIES = ("16JAN26", "27MAR26")
MODEL_KEYS = {"t_years", "model_price_coin", "model_price_usd", "iv_mark", "iv_bid", "iv_ask", "delta", "gamma",
              "vega", "theta", "rho", "delta_coin", "delta_pa", "gamma_coin", "vega_coin", "theta_coin", "priced_at"}


def subset_chain(tmp_path: Path, source: Path = CHAIN) -> tuple[Path, int]:
    """The rows of a chain CSV with an expiry in SUBSET_EXPIRIES, under the same file name; (path, rows)."""
    import pandas as pd

    chain = pd.read_csv(source, dtype=str, keep_default_na=False)
    keep = chain["instrument_name"].str.split("-").str[1].isin(SUBSET_EXPIRIES)
    out = tmp_path / source.name
    chain[keep].to_csv(out, index=False)
    return out, int(keep.sum())


def test_price_writes_model_subdocuments_that_reproduce_deribit(any_db, tmp_path):
    path, n = subset_chain(tmp_path)
    run_collect_file(any_db, path)
    summary = run_price(any_db, check=True)
    assert [s["currency"] for s in summary["snapshots"]] == ["BTC", "ETH"]
    assert summary["priced"] == any_db[schema.OPTIONS].count_documents({}) == n
    for snap in summary["snapshots"]:
        docs = ops.snapshot_documents(any_db, snap["snapshot_id"])
        assert all(MODEL_KEYS <= set(d["model"]) for d in docs)
        m = [d["model"] for d in docs]
        # t_years from the snapshot time to 08:00 UTC expiry, ACT/365
        for d in docs[:20]:
            assert d["model"]["t_years"] == pytest.approx((d["expiry"] - d["timestamp"]) / timedelta(days=365), rel=1e-9)
        delta = np.array([x["delta"] for x in m], dtype=float)
        published = np.array([d["greeks"]["delta"] for d in docs], dtype=float)
        assert np.nanmedian(np.abs(delta - published)) <= 1e-3
        usd = np.array([x["model_price_usd"] for x in m], dtype=float)
        coin = np.array([x["model_price_coin"] for x in m], dtype=float)
        np.testing.assert_allclose(usd, coin * np.array([d["index_price"] for d in docs]), rtol=1e-12)
        # iv_mark: the mark's own implied vol, next to mark_iv; NaN marks → None (JSON/BSON-safe)
        iv_mark = np.array([np.nan if x["iv_mark"] is None else x["iv_mark"] for x in m])
        mark_iv = np.array([d["implied_volatility"] for d in docs])
        solved = np.isfinite(iv_mark)
        assert solved.mean() > 0.98
        assert np.median(np.abs(iv_mark[solved] - mark_iv[solved])) < 5e-5
        zero = [x for d, x in zip(docs, m) if d["premium_crypto"] <= 0]
        assert all(x["iv_mark"] is None and x["iv_mark_reason"] == "non_positive_price" for x in zero)
        missing_bid = [x for d, x in zip(docs, m) if d["bid_crypto"] is None]
        assert all(x["iv_bid"] is None and x["iv_bid_reason"] == "missing_price" for x in missing_bid)
        check = snap["check"]
        assert check["share_within"] >= 0.9 and check["delta_median_abs_error"] <= 1e-3
        assert check["vega_median_rel_error"] <= 0.006
    runs = list(any_db[schema.JOB_RUNS].find({"step": "price"}))
    assert len(runs) == 1 and runs[0]["status"] == "ok" and runs[0]["counts"]["priced"] == n


def test_repricing_is_idempotent_and_follows_the_latest_snapshot(embedded_db, tmp_path):
    path, n = subset_chain(tmp_path)
    run_collect_file(embedded_db, path)
    first = run_price(embedded_db, currency="btc")
    again = run_price(embedded_db, currency="BTC")
    n_btc = first["priced"]
    assert 100 < n_btc < n and again["priced"] == n_btc
    assert embedded_db[schema.OPTIONS].count_documents({}) == n
    btc = first["snapshots"][0]["snapshot_id"]
    assert embedded_db[schema.OPTIONS].count_documents({"snapshot_id": btc, "model": {"$exists": True}}) == n_btc
    assert [r["model_price_coin"] for r in first["options"]] == [r["model_price_coin"] for r in again["options"]]
    (tmp_path / "later").mkdir()
    later, _ = subset_chain(tmp_path / "later", FIXTURES / "deribit_options_snapshot_20260105T092511Z.csv")
    run_collect_file(embedded_db, later)
    third = run_price(embedded_db, currency="BTC")
    assert third["snapshots"][0]["snapshot_id"] == "BTC-20260105T092511Z"


def test_book_summary_without_greeks(embedded_db):
    run_collect_file(embedded_db, BOOK)
    summary = run_price(embedded_db, check=True)
    (snap,) = summary["snapshots"]
    assert snap["priced"] == 964 and snap["expiries"] == 12
    assert snap["check"]["delta_median_abs_error"] is None and snap["check"]["vega_median_rel_error"] is None
    # this book summary's marks and mark_iv are stamped separately (each row on its own): many marks sit
    # a few hundredths of a vol point off mark_iv, but without bias
    iv_gap = np.array([r["iv_mark"] - r["mark_iv"] for r in summary["options"] if r["iv_mark"] is not None])
    assert abs(np.median(iv_gap)) < 2e-4 and np.median(np.abs(iv_gap)) < 3e-3
    # 48 rows without a bid: their bid IV is reported missing, not invented
    assert snap["iv_failures"]["iv_bid"].get("missing_price", 0) >= 48


def test_no_snapshot_is_a_step_error(embedded_db):
    with pytest.raises(StepError, match="collect"):
        run_price(embedded_db)
    run_collect_file(embedded_db, BOOK)
    with pytest.raises(UsageError, match=r"no ETH option snapshot in the store \(it has BTC\)"):
        run_price(embedded_db, currency="ETH")  # an unknown currency is a usage error (exit 2)


def test_cli_collect_then_price_json_check_and_expiry(qort_env, tmp_path):
    runner = CliRunner()
    path, _ = subset_chain(tmp_path)
    result = runner.invoke(app, ["collect", "deribit", "--from-file", str(path), "--json"])
    assert result.exit_code == 0, result.output

    result = runner.invoke(app, ["price", "--currency", "BTC", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list) and len(rows) == sum(r["instrument_name"].startswith("BTC-") for r in rows) > 100
    need = {"instrument_name", "strike", "expiry", "option_type", "forward", "mark_price", "mark_iv",
            "model_price_coin", "model_price_usd", "iv_mark", "delta", "gamma", "vega", "theta", "rho",
            "delta_coin", "delta_pa", "gamma_coin", "vega_coin"}
    assert need <= set(rows[0])
    vols = [r["iv_mark"] for r in rows if r["iv_mark"] is not None]
    assert 0.1 < np.median(vols) < 2.0                          # fractions, not percent
    one = next(r for r in rows if r["instrument_name"] == "BTC-16JAN26-82000-C")
    assert one["mark_iv"] == pytest.approx(0.5124) and one["forward"] == pytest.approx(92962.85)
    assert one["delta"] == pytest.approx(0.9258, abs=1e-3)      # Deribit's published delta in the CSV

    result = runner.invoke(app, ["price", "--currency", "BTC", "--expiry", "27mar26", "--json"])
    assert result.exit_code == 0, result.output
    picked = json.loads(result.stdout)
    assert picked and all(r["instrument_name"].startswith("BTC-27MAR26-") for r in picked)

    result = runner.invoke(app, ["price", "--expiry", "1JAN99"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "expiry 1JAN99 expired on 1999-01-01" in result.output
    assert "16JAN26, 27MAR26" in result.output
    result = runner.invoke(app, ["price", "--expiry", "1JAN30"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "no expiry 1JAN30" in result.output and "16JAN26, 27MAR26" in result.output
    result = runner.invoke(app, ["price", "--expiry", "99ZZZ26"])
    assert result.exit_code == 2 and "not a Deribit expiry code" in result.output

    result = runner.invoke(app, ["price", "--check", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [s["currency"] for s in report["snapshots"]] == ["BTC", "ETH"]
    assert all(s["check"]["share_within"] >= 0.9 for s in report["snapshots"])
    assert "options" not in report

    result = runner.invoke(app, ["price", "--check"], env={"COLUMNS": "160"})
    assert result.exit_code == 0 and "within tol." in result.output and "Worst instruments" in result.output

    result = runner.invoke(app, ["price", "--currency", "ETH", "--rows", "2"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    # ATM first: the first row of the 27MAR26 table is the strike nearest that expiry's forward
    section = result.output.split("ETH 27MAR26")[1]
    assert "ETH-27MAR26-3200-" in section.splitlines()[4]

    result = runner.invoke(app, ["price", "--basis", "ACT/360"])
    assert result.exit_code == 2 and "basis" in result.output
