"""The optimize step and `qortcli optimize` on the 10 recorded price histories, imported with
`qortcli collect prices --from-csv` (the CSV rows of 2020-08-20…2023-03-31, unchanged)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qortcli.cli import app
from qortcli.store import connect, schema

PRICES = Path(__file__).parent / "fixtures" / "prices"
FIRST, LAST = "2020-08-20", "2023-03-31"
T0 = datetime(2026, 1, 2, 0, 30, tzinfo=timezone.utc)
runner = CliRunner()
METRICS = ("total_return", "cagr", "volatility", "sharpe", "sortino", "calmar", "omega", "max_drawdown",
           "var_95", "cvar_95")


def csv_returns() -> pd.DataFrame:
    """Daily simple returns straight from the CSV files (independent of the store and the step)."""
    closes = {}
    for path in sorted(PRICES.glob("*-USD.csv")):
        frame = pd.read_csv(path, parse_dates=["Date"]).set_index("Date")
        closes[path.stem.split("-")[0]] = frame["Close"].loc[FIRST:LAST]
    closes = pd.DataFrame(closes)
    return (closes / closes.shift(1) - 1).iloc[1:]


def quantstats_metrics(r: pd.Series) -> dict:
    import quantstats as qs

    return {"total_return": qs.stats.comp(r), "cagr": qs.stats.cagr(r, periods=365),
            "volatility": qs.stats.volatility(r, periods=365), "sharpe": qs.stats.sharpe(r, periods=365),
            "sortino": qs.stats.sortino(r, periods=365), "calmar": qs.stats.calmar(r, periods=365),
            "omega": qs.stats.omega(r, periods=365), "max_drawdown": qs.stats.max_drawdown(r),
            "var_95": r.quantile(0.05),
            "cvar_95": qs.stats.conditional_value_at_risk(r, confidence=0.95, method="historical")}


def assert_metrics_equal(stored: dict, r: pd.Series) -> None:
    expected = quantstats_metrics(r)
    assert stored["days"] == len(r)
    for key in METRICS:
        assert stored[key] == pytest.approx(float(expected[key]), rel=1e-9, abs=1e-12), key


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory) -> Path:
    """An embedded store filled by `qortcli collect prices --from-csv` from the window's CSV rows."""
    csv_dir = tmp_path_factory.mktemp("prices")
    for path in sorted(PRICES.glob("*-USD.csv")):
        lines = path.read_text().splitlines(keepends=True)
        csv_dir.joinpath(path.name).write_text(lines[0] + "".join(l for l in lines[1:] if FIRST <= l[:10] <= LAST))
    store = tmp_path_factory.mktemp("seed") / "db"
    result = runner.invoke(app, ["--db", str(store), "--json", "collect", "prices", "--from-csv", str(csv_dir)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["stored"] == 10 * 954 and not summary["errors"]
    return store


@pytest.fixture
def store_path(seeded_store, tmp_path) -> Path:
    path = tmp_path / "db"
    shutil.copytree(seeded_store, path)
    return path


@pytest.fixture
def db(store_path):
    handle = connect(str(store_path))
    yield handle
    handle.close()


def test_hrp_document_metrics_equal_quantstats_on_the_same_returns(db):
    from qortcli.steps.optimize import run_optimize

    summary = run_optimize(db, model="hrp", rebalance="monthly", now=T0)
    docs = list(db[schema.PORTFOLIOS].find({}))
    assert len(docs) == 1
    doc = docs[0]
    assert doc["_id"] == "hrp-assets-monthly-lb365|20230331T000000Z"  # the name encodes --rebalance and its lookback
    assert doc["portfolio_id"] == summary["portfolio_id"] == "hrp-assets-monthly-lb365"
    assert doc["timestamp"] == datetime(2023, 3, 31, tzinfo=timezone.utc) and doc["computed_at"] == T0
    assert doc["model"] == "hrp" and doc["params"]["risk_measure"] == "MV" and doc["excluded"] == []
    weights = pd.Series(doc["weights"])
    assert abs(weights.sum() - 1) <= 1e-9 and (weights > 0).all() and len(weights) == 10
    assert doc["sector_weights"] == pytest.approx(
        weights.groupby(pd.Series(doc["sectors"])[weights.index].to_numpy()).sum().to_dict(), abs=1e-12)
    assert set(doc["sectors"].values()) == {"Digital Assets", "Infrastructure", "Services"}

    returns = csv_returns()
    assert doc["data"]["first"] == "2020-08-21" and doc["data"]["days"] == len(returns) == 953
    assert doc["metrics"]["headline"] == "out_of_sample" and doc["basis"] == "ACT/365"
    assert_metrics_equal(doc["metrics"]["in_sample"]["portfolio"], returns[weights.index] @ weights)
    assert_metrics_equal(doc["metrics"]["in_sample"]["benchmark"], returns.mean(axis=1))
    for asset, stored in doc["metrics"]["in_sample"]["assets"].items():
        assert_metrics_equal(stored, returns[asset])

    # walk-forward: the stored equity is the buy-and-hold of the stored monthly weights on the CSV returns
    bt = doc["backtest"]
    days = pd.DatetimeIndex([d.replace(tzinfo=None) for d in bt["dates"]])
    assert days[0] == pd.Timestamp("2021-09-01") and days[-1] == pd.Timestamp(LAST)
    rebalances = [(pd.Timestamp(r["date"].replace(tzinfo=None)), pd.Series(r["weights"])) for r in bt["rebalances"]]
    assert len(rebalances) == 19 and all(abs(w.sum() - 1) <= 1e-9 for _, w in rebalances)
    pieces, bench = [], []
    for k, (start, w) in enumerate(rebalances):
        stop = rebalances[k + 1][0] if k + 1 < len(rebalances) else pd.Timestamp(LAST) + timedelta(days=1)
        held = returns.loc[(returns.index >= start) & (returns.index < stop)]
        value = ((1 + held).cumprod() * w[held.columns]).sum(axis=1)
        pieces.append(value / value.shift(1, fill_value=1.0) - 1)
        ew = (1 + held).cumprod().mean(axis=1)
        bench.append(ew / ew.shift(1, fill_value=1.0) - 1)
    oos, oos_bench = pd.concat(pieces), pd.concat(bench)
    assert np.allclose(bt["equity"], (1 + oos).cumprod().to_numpy(), rtol=1e-9)
    assert np.allclose(bt["benchmark_equity"], (1 + oos_bench).cumprod().to_numpy(), rtol=1e-9)
    assert_metrics_equal(doc["metrics"]["out_of_sample"]["portfolio"], oos)
    assert_metrics_equal(doc["metrics"]["out_of_sample"]["benchmark"], oos_bench)

    run = db[schema.JOB_RUNS].find_one({"step": "optimize"})
    assert run["status"] == "ok" and run["counts"]["written"] == 1 and run["counts"]["assets"] == 10


@pytest.mark.slow
def test_every_model_across_assets_and_sectors(db):
    from qortcli.steps.optimize import run_optimize

    returns = csv_returns()
    seen = set()
    for i, model in enumerate(("hrp", "herc", "max-sharpe", "min-risk", "risk-parity")):
        for by_sector in (False, True):
            rm = "CVaR" if model in ("min-risk", "herc") else "MV"
            s = run_optimize(db, model=model, by_sector=by_sector, risk_measure=rm, max_asset=0.25,
                             max_sector=0.45 if (by_sector or model not in ("hrp", "herc")) else None,
                             now=T0 + timedelta(minutes=i))
            seen.add(s["portfolio_id"])
            doc = db[schema.PORTFOLIOS].find_one({"portfolio_id": s["portfolio_id"]})
            w = pd.Series(doc["weights"])
            assert abs(w.sum() - 1) <= 1e-9, (model, by_sector)
            assert (w >= 0).all() and (w <= 0.25 + 1e-12).all(), (model, by_sector)
            if doc["params"]["max_sector"] is not None:
                assert max(doc["sector_weights"].values()) <= 0.45 + 1e-12, (model, by_sector)
            assert_metrics_equal(doc["metrics"]["in_sample"]["portfolio"], returns[w.index] @ w)
    assert len(seen) == 10 and db[schema.PORTFOLIOS].count_documents({}) == 10
    assert "min-risk-cvar-sectors-maxsec0.45-maxasset0.25" in seen and "hrp-assets-maxasset0.25" in seen


def test_second_run_is_compared_with_the_previous_allocation(db):
    from qortcli.steps.optimize import run_optimize

    first = run_optimize(db, model="hrp", end="2022-06-30", now=T0)
    assert first["rebalancing"] is None
    second = run_optimize(db, model="hrp", now=T0 + timedelta(days=1))
    before, after = first["weights"], second["weights"]
    plan = second["rebalancing"]
    assert plan["previous_timestamp"] == datetime(2022, 6, 30, tzinfo=timezone.utc)
    assert plan["turnover"] == pytest.approx(0.5 * sum(abs(after[a] - before[a]) for a in after), rel=1e-12)
    changes = {row["asset"]: row for row in plan["changes"]}
    assert set(changes) == set(after)
    for asset, row in changes.items():
        assert row["change"] == pytest.approx(after[asset] - before[asset], abs=1e-15)
        assert row["action"] == ("hold" if abs(row["change"]) < 0.005 else "buy" if row["change"] > 0 else "sell")
    assert db[schema.PORTFOLIOS].count_documents({"portfolio_id": "hrp-assets"}) == 2
    # the same data again: the as-of document is replaced, and still compared with the 2022-06-30 one
    third = run_optimize(db, model="hrp", now=T0 + timedelta(days=2))
    assert db[schema.PORTFOLIOS].count_documents({"portfolio_id": "hrp-assets"}) == 2
    assert third["weights"] == pytest.approx(after, abs=1e-12)
    assert third["rebalancing"]["turnover"] == pytest.approx(plan["turnover"], abs=1e-12)
    stored = db[schema.PORTFOLIOS].find_one({"_id": "hrp-assets|20230331T000000Z"})
    assert stored["computed_at"] == T0 + timedelta(days=2)


def test_short_history_and_gaps_are_reported(db):
    from qortcli.steps.optimize import run_optimize

    cut = datetime(2022, 6, 1, tzinfo=timezone.utc)
    removed = db[schema.PRICES].delete_many({"symbol": "SOL", "timestamp": {"$lt": cut}}).deleted_count
    assert removed > 600
    holes = [datetime(2021, 3, 10, tzinfo=timezone.utc), datetime(2021, 3, 11, tzinfo=timezone.utc)]
    assert db[schema.PRICES].delete_many({"symbol": "ETH", "timestamp": {"$in": holes}}).deleted_count == 2
    s = run_optimize(db, model="hrp", now=T0)
    excluded = {e["symbol"]: e["reason"] for e in s["excluded"]}
    assert list(excluded) == ["SOL"] and "303 daily returns" in excluded["SOL"] and "minimum 365" in excluded["SOL"]
    assert "SOL" not in s["weights"] and len(s["weights"]) == 9
    assert s["data"]["gaps"]["ETH"] == 2 and s["data"]["dropped_days"] == 3 and s["data"]["days"] == 950
    stored = db[schema.PORTFOLIOS].find_one({})
    assert stored["excluded"][0]["symbol"] == "SOL" and stored["data"]["gaps"]["ETH"] == 2


def test_infeasible_sector_cap_fails_with_one_line_and_stores_nothing(store_path):
    env = {**os.environ, "QORT_DB": str(store_path)}
    proc = subprocess.run([sys.executable, "-m", "qortcli", "optimize", "--by-sector", "--max-sector", "0.1"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr and proc.stdout == ""
    assert "hrp (MV) by sector" in lines[0] and "--max-sector 0.1: 3 sectors × 0.1 = 0.3 < 1" in lines[0]
    db = connect(str(store_path))
    try:
        assert db[schema.PORTFOLIOS].count_documents({}) == 0
        run = db[schema.JOB_RUNS].find_one({"step": "optimize"})
        assert run["status"] == "failed" and "--max-sector 0.1" in run["error"]
    finally:
        db.close()


def test_cli_usage_errors_exit_2(store_path):
    base = ["--db", str(store_path), "optimize"]
    assert runner.invoke(app, base + ["--model", "risk-parity", "--risk-measure", "MDD"]).exit_code == 2
    result = runner.invoke(app, base + ["--max-sector", "0.4"])
    assert result.exit_code == 2 and "--by-sector" in result.output
    assert runner.invoke(app, base + ["--model", "kelly"]).exit_code == 2
    assert runner.invoke(app, base + ["--start", "yesterday-ish"]).exit_code == 2


def test_cli_without_prices_fails_cleanly(tmp_path):
    result = runner.invoke(app, ["--db", str(tmp_path / "empty"), "optimize"])
    assert result.exit_code == 1 and "no price_data" in result.output


@pytest.mark.slow
def test_cli_tables_json_and_offline_tearsheet(store_path, tmp_path, monkeypatch):
    import socket

    import quantstats

    def no_network(*args, **kwargs):
        raise AssertionError("network access during the tearsheet")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(quantstats.utils, "download_returns", no_network)
    base = ["--db", str(store_path), "optimize", "--model", "herc", "--by-sector", "--max-sector", "0.5"]
    table = runner.invoke(app, base + ["--end", "2022-12-31"])
    assert table.exit_code == 0, table.output
    for text in ("Weights", "Sector weights", "█", "Sharpe", "CVaR 95%", "No previous allocation"):
        assert text in table.output
    assert "in-sample only" in table.output and "portfolio (in-sample)" in table.output
    # with a walk-forward the out-of-sample figures lead and the in-sample ones are labelled (slip: the
    # in-sample metrics used to be the headline)
    wf = runner.invoke(app, base + ["--rebalance", "quarterly"], env={"COLUMNS": "200"})
    assert wf.exit_code == 0, wf.output
    header = next(line for line in wf.output.splitlines() if "metric" in line and "walk-forward" in line)
    assert header.index("walk-forward (out-of-sample)") < header.index("portfolio (in-sample)")
    report = tmp_path / "tearsheet.html"
    result = runner.invoke(app, base + ["--json", "--report", str(report)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["portfolio_id"] == "herc-sectors-maxsec0.5" and summary["report"] == str(report)
    assert abs(sum(summary["weights"].values()) - 1) <= 1e-9
    assert summary["rebalancing"]["turnover"] >= 0 and len(summary["rebalancing"]["changes"]) == 10
    html = report.read_text()
    assert "<html" in html.lower() and "herc-sectors-maxsec0.5" in html


def test_asset_selection_lists_unknown_tickers(db):
    from qortcli.steps.optimize import run_optimize

    s = run_optimize(db, model="min-risk", assets=["BTC", "ETH", "BNB", "NOPE"], by_sector=True, now=T0)
    assert set(s["weights"]) == {"BTC", "ETH", "BNB"} and abs(sum(s["weights"].values()) - 1) <= 1e-9
    assert s["excluded"] == [{"symbol": "NOPE", "reason": "no price_data documents", "returns": 0}]
    # one asset per sector: each sector's weight is its asset's weight
    assert s["sector_weights"] == pytest.approx({s["sectors"][a]: w for a, w in s["weights"].items()}, abs=1e-12)
    assert s["portfolio_id"] == "min-risk-sectors-bnb+btc+eth+nope"  # the name encodes the requested assets
