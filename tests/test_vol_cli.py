"""`qortcli vol` on a real store (21 daily chains + Mario-SO prices, tests/vol_store.py): the tables are a function
of the --json view, headline figures against hand computations, 100 columns, --csv, markup escaping, errors, and
the worker's vol job."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from qortcli.cli import app
from qortcli.cli.vol import gauge, render, spark
from qortcli.schedule import CATALOG, load_schedule, render_crontab, resolve_step
from qortcli.steps.vol import run_vol
from qortcli.store import connect, read, schema

from vol_fixtures import bars, reference_rolling_rv
from vol_store import daily_summaries, vol_store

runner = CliRunner()


@pytest.fixture(scope="module")
def cli_db(tmp_path_factory):
    return vol_store(tmp_path_factory.mktemp("volcli") / "db")


@pytest.fixture
def env(cli_db, monkeypatch):
    monkeypatch.setenv("QORT_DB", str(cli_db))
    monkeypatch.delenv("QORT_DB_NAME", raising=False)
    return cli_db


@pytest.fixture(scope="module")
def shown(cli_db):
    """(text at 160 columns, text at 100 columns, the --json view) of `qortcli vol -c BTC`."""
    out = {}
    for width in ("160", "100"):
        result = runner.invoke(app, ["vol", "-c", "BTC", "--db", str(cli_db)], env={"COLUMNS": width})
        assert result.exit_code == 0, result.output
        out[width] = result.stdout   # stderr carries the dim "store:" line
    raw = runner.invoke(app, ["vol", "-c", "BTC", "--db", str(cli_db), "--json"])
    assert raw.exit_code == 0, raw.output
    return out["160"], out["100"], json.loads(raw.stdout)


def test_tables_are_a_function_of_the_json(shown):
    wide, narrow, view = shown
    for text, width in ((wide, 160), (narrow, 100)):
        buf = io.StringIO()
        render(Console(file=buf, width=width), view)
        assert buf.getvalue() == text
    assert view["step"] == "vol" and view["source"] == "marks" and [c["currency"] for c in view["currencies"]] == ["BTC"]


def test_headline_figures_are_shown_and_right(shown):
    wide, _, view = shown
    cur = view["currencies"][0]
    prices = bars("btc")
    rv = {r["window_days"]: r for r in cur["realised"] if r["estimator"] == "close_to_close"}
    for window in (7, 30, 180):
        hand = reference_rolling_rv(prices, window).iloc[-1]
        assert rv[window]["vol"] == pytest.approx(hand, rel=1e-12)
        assert f"{100 * hand:.1f}%" in wide
    iv = daily_summaries("btc")["atm_iv_30d_marks"]
    rank = next(r for r in cur["ranks"] if (r["measure"], r["lookback_days"]) == ("atm_iv_30d", 90))
    assert rank["percentile"] == pytest.approx(np.sum(iv.iloc[:-1].to_numpy() < iv.iloc[-1]) / 20)
    assert f"{rank['percentile']:.2f}" in wide and "2025-12-30..2026-01-19 (short)" in wide
    for score in cur["evaluation"]["scores"]:                  # every out-of-sample figure of the table
        for key in ("qlike", "mse"):
            assert f"{score[key]:.4g}" in wide
    for row in cur["cone"]["rows"]:
        assert f"{100 * row['median']:.1f}%" in wide
    best = {b["horizon_days"]: b for b in cur["best"]}
    assert f"best 30d forecast: {best[30]['model']} {100 * best[30]['vol']:.1f}%" in wide
    assert "IV 30d marks" in wide and "RV 30d c-c" in wide      # the sparklines


def test_100_columns_nothing_cut(shown):
    _, narrow, view = shown
    assert max(len(line) for line in narrow.splitlines()) <= 100
    assert "…" not in narrow
    for label in ("ATM IV 30d", "RR25 30d", "BF25 30d", "term slope", "Garman-Klass", "Parkinson", "GJR-GARCH-t",
                  "HAR-RV", "naive (RV persists)", "implied (ATM IV)", "7d QLIKE", "30d MSE", "min ── cone ── max"):
        assert label in narrow, label


def test_csv_holds_the_forecasts_with_their_scores(env, tmp_path):
    path = tmp_path / "vol.csv"
    result = runner.invoke(app, ["vol", "-c", "BTC", "--csv", str(path), "--json"])
    assert result.exit_code == 0, result.output
    cur = json.loads(result.stdout)["currencies"][0]
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    got = {(r["model"], int(r["horizon_days"])): r for r in rows}
    assert len(got) == len(rows) == len(cur["forecasts"])            # one row per model and horizon
    for f in cur["forecasts"]:
        row = got[(f["model"], f["horizon_days"])]
        assert (row["forecast_vol"] == "" and f["vol"] is None) or float(row["forecast_vol"]) == f["vol"]
    for s in cur["evaluation"]["scores"]:
        assert float(got[(s["model"], s["horizon_days"])]["qlike"]) == s["qlike"]
    assert {k for k, r in got.items() if r["best"] == "True"} == \
        {(b["model"], b["horizon_days"]) for b in cur["best"] if b["model"]}          # the table's ★
    bad = runner.invoke(app, ["vol", "--csv", str(tmp_path / "nowhere" / "x.csv")])
    assert bad.exit_code == 2 and "does not exist" in bad.output


def test_store_strings_are_printed_literally(shown):
    _, _, view = shown
    view = json.loads(json.dumps(view))
    view["currencies"].append({"currency": "[bold]XRP[/]", "source": "marks",
                               "reason": "n/a: no [red]XRP[/] prices in price_data"})
    buf = io.StringIO()
    render(Console(file=buf, width=120), view)
    assert "[bold]XRP[/]: n/a: no [red]XRP[/] prices in price_data" in buf.getvalue()


def test_errors_exit_codes_and_help(env):
    result = runner.invoke(app, ["vol", "--source", "mid"])
    assert result.exit_code == 2 and "unknown IV source 'mid'; use one of marks, svi" in result.output
    result = runner.invoke(app, ["vol", "--currency", "XRP"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "error: no XRP prices in price_data: run `qortcli collect prices`" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["vol", "-c", "BTC", "--as-of", "2026-01-04"], env={"COLUMNS": "100"})
    assert result.exit_code == 0 and "n/a: needs 20 points, has 6" in result.output
    assert "out-of-sample scores: n/a: no evaluation origins" in result.output
    assert "6 daily summaries 2025-12-30..2026-01-04" in result.output
    for bad in ("4 Jan", "2026-01-04T10:00+02:00"):
        result = runner.invoke(app, ["vol", "--as-of", bad])
        assert result.exit_code == 2 and "--as-of" in result.output
    help_text = runner.invoke(app, ["vol", "--help"], env={"COLUMNS": "120"}).output
    for text in ("qortcli vol --currency BTC --source svi", "--csv", "--as-of", "QLIKE"):
        assert text in help_text


def test_sparkline_and_gauge():
    assert spark([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert spark([1.0, None, 1.5], 1.0, 2.0) == "▁ ▅"
    row = {"min": 0.10, "q25": 0.20, "median": 0.30, "q75": 0.40, "max": 0.50, "current_rv": 0.50, "current_iv": 0.60}
    strip = gauge(row, width=9)          # cells at (v − 0.10)/0.40 × 8: q25 2, median 4, q75 6, RV 8
    assert strip == " ──━━┃━━─[bold magenta]◆[/]>"   # IV above the max: ◆ on the last cell (over the RV), ">"
    assert gauge({**row, "current_iv": None}, width=9) == " ──━━┃━━─● "
    assert gauge({**row, "current_iv": 0.05}, width=9) == "<[bold magenta]◆[/]─━━┃━━─● "
    assert gauge({**row, "max": None}) == ""


def test_worker_has_a_vol_job_after_the_prices(cli_db):
    from jobs.worker import Worker

    schedule = load_schedule()
    spec = schedule.job("vol")
    assert spec.after == "collect_prices" and spec.step == CATALOG["vol"][0] == "qortcli.steps.vol.run_vol"
    assert resolve_step(spec.step) is run_vol
    assert [s.id for s in schedule.followers("collect_prices")] == ["vol"]
    assert "sh -c 'qortcli collect prices && qortcli vol'" in render_crontab(schedule)
    db = connect(str(cli_db))
    try:
        Worker(db, schedule).run_one(spec, trigger="worker-once")
        run = db[schema.JOB_RUNS].find_one({"step": "vol", "job": "vol"})
        assert run["status"] == "ok" and run["trigger"] == "worker-once"
        assert run["counts"] == {"currencies": 2, "stored": 2, "not_available": 0}
        for cur in ("BTC", "ETH"):                 # the job analyses every currency with a snapshot
            assert read.latest_vol(db, cur)["run_id"] == run["_id"]
    finally:
        db.close()
