"""The surface step and `qortcli surface` end to end on a store filled by the collect step from the real
recorded chains (book summary 2026-03-13, a January 2026 BTC+ETH snapshot)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qortcli.cli import app
from qortcli.errors import StepError
from qortcli.quant import surface as sf
from qortcli.quant import svi
from qortcli.steps.collect import run_collect_file
from qortcli.steps.surface import run_surface
from qortcli.store.read import latest_surface
from qortcli.store import schema

FIXTURES = Path(__file__).parent / "fixtures"
BOOK = FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json"
JAN = FIXTURES / "deribit_options_snapshot_20260111T211857Z.csv"
runner = CliRunner()


def test_run_surface_stores_one_document_per_snapshot(embedded_db):
    any_db = embedded_db
    run_collect_file(any_db, BOOK)
    summary = run_surface(any_db)
    assert summary["stored"] == 1
    (surf,) = summary["surfaces"]
    assert surf["currency"] == "BTC" and surf["snapshot_id"] == "BTC-20260313T190015Z"
    assert surf["fitted"] == surf["expiries"] == 12 and surf["butterfly_ok"]
    assert surf["input_vol"]["implied_volatility"] == 964 and surf["skipped_bad_vol"] == 0

    docs = list(any_db[schema.SURFACES].find({}))
    assert len(docs) == 1
    doc = docs[0]
    assert doc["_id"] == doc["snapshot_id"] == "BTC-20260313T190015Z"
    assert {"currency", "snapshot_id", "timestamp", "slices", "grid", "diagnostics"} <= set(doc)
    assert doc["timestamp"].tzinfo is not None
    s = doc["slices"][0]
    assert {"expiry", "t_years", "forward", "params", "rmse_vol_points", "n_points", "points", "flags"} <= set(s)
    assert isinstance(s["expiry"], datetime) and s["expiry"].tzinfo is not None
    assert set(s["params"]) == {"a", "b", "rho", "m", "sigma"}
    assert all(len(p) == 4 for p in s["points"])
    # the stored forward is the median of the expiry's rows' forwards
    rows = list(any_db[schema.OPTIONS].find({"snapshot_id": doc["snapshot_id"], "expiry": s["expiry"]}))
    assert s["forward"] == pytest.approx(float(np.median([r["forward"] for r in rows])))
    # the grid spans k ∈ [−1, 1] and T from the first to the last expiry
    grid = doc["grid"]
    assert grid["k"][0] == -1.0 and grid["k"][-1] == 1.0
    assert grid["t_years"][0] == pytest.approx(doc["slices"][0]["t_years"])
    assert grid["t_years"][-1] == pytest.approx(doc["slices"][-1]["t_years"])
    assert np.array(grid["implied_vol"]).shape == (len(grid["t_years"]), len(grid["k"]))

    # the stored document (read back) feeds the helpers: the vol at a slice's own T is its SVI vol
    last = doc["slices"][-1]
    strikes = np.array([60_000.0, 80_000.0, 100_000.0])
    k = np.log(strikes / last["forward"])
    expect = np.sqrt(svi.svi_total_variance(k, *last["params"].values()) / last["t_years"])
    np.testing.assert_allclose(sf.implied_vol_at(doc, strikes, last["forward"], last["t_years"]), expect, rtol=1e-12)
    # ... and it agrees with the market marks near the money within the fit error
    marks = {r["strike"]: r["implied_volatility"] for r in any_db[schema.OPTIONS].find(
        {"snapshot_id": doc["snapshot_id"], "expiry": last["expiry"], "option_type": "call"})}
    assert sf.implied_vol_at(doc, 80_000.0, last["forward"], last["t_years"]) == pytest.approx(marks[80_000.0], abs=0.01)

    # the run is recorded; re-running replaces the same document
    run = any_db[schema.JOB_RUNS].find_one({"step": "surface"})
    assert run["status"] == "ok" and run["counts"]["surfaces"] == 1 and run["counts"]["fitted"] == 12
    run_surface(any_db, currency="btc")
    assert any_db[schema.SURFACES].count_documents({}) == 1


def test_model_iv_mark_is_preferred_and_bad_vols_are_counted(embedded_db):
    from qortcli.steps.price import run_price

    run_collect_file(embedded_db, BOOK)
    run_price(embedded_db)
    snap_id = "BTC-20260313T190015Z"
    # blank out the vols of a few far-dated rows: the step must skip and count them
    victims = list(embedded_db[schema.OPTIONS].find({"snapshot_id": snap_id}).sort("strike", 1).limit(5))
    for v in victims:
        embedded_db[schema.OPTIONS].update_one({"_id": v["_id"]}, {"$set": {"implied_volatility": None,
                                                                              "model.iv_mark": None}})
    summary = run_surface(embedded_db)
    (surf,) = summary["surfaces"]
    assert surf["input_vol"]["model.iv_mark"] > 900
    assert surf["input_vol"]["none"] == 5 and surf["skipped_bad_vol"] == 5
    # the price step's own inversion of the marks gives the same smiles as Deribit's mark_iv
    doc = latest_surface(embedded_db, "BTC")
    for row in doc["diagnostics"]["term_structure"]:
        assert 0.2 < row["atm_iv_svi"] < 1.0
    assert doc["diagnostics"]["rmse_vol_points"]["max"] <= 3.0


def test_every_currency_of_a_january_snapshot(embedded_db):
    run_collect_file(embedded_db, JAN)
    summary = run_surface(embedded_db)
    assert [s["currency"] for s in summary["surfaces"]] == ["BTC", "ETH"]
    for surf in summary["surfaces"]:
        assert surf["butterfly_ok"]
        assert surf["rmse_vol_points"]["max"] <= 3.0
    assert embedded_db[schema.SURFACES].count_documents({}) == 2
    eth = run_surface(embedded_db, currency="eth")
    assert [s["currency"] for s in eth["surfaces"]] == ["ETH"]


def test_no_snapshot_is_a_step_error(embedded_db):
    with pytest.raises(StepError, match="no complete"):
        run_surface(embedded_db)
    run = embedded_db[schema.JOB_RUNS].find_one({"step": "surface"})
    assert run["status"] == "failed"


def test_cli_surface_json_table_and_plot(qort_env, tmp_path):
    assert runner.invoke(app, ["collect", "deribit", "--from-file", str(BOOK)]).exit_code == 0
    result = runner.invoke(app, ["surface", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    (surf,) = summary["surfaces"]
    assert surf["currency"] == "BTC" and len(surf["expiries_table"]) == 12
    assert surf["atm_iv_30d_svi"]["vol"] > 0 and surf["vs_vol_30d_svi"]["vol"] > 0

    html = tmp_path / "surface.html"
    result = runner.invoke(app, ["surface", "--currency", "BTC", "--plot", str(html)])
    assert result.exit_code == 0, result.output
    for word in ("ATM", "RR25", "BF25", "RMSE", "30-day", "DVOL", "Plot written"):
        assert word in result.output
    text = html.read_text()
    assert "plotly" in text.lower() and "BTC-20260313T190015Z" in text

    assert runner.invoke(app, ["surface", "--plot", str(tmp_path / "x.pdf")]).exit_code == 2
    try:
        import kaleido  # noqa: F401
    except ImportError:
        result = runner.invoke(app, ["surface", "--plot", str(tmp_path / "x.png")])
        assert result.exit_code == 1
        assert ".html" in result.output


def test_cli_surface_without_data_fails_with_one_line(qort_env):
    result = runner.invoke(app, ["surface"])
    assert result.exit_code == 1
    assert "no complete" in result.output and "Traceback" not in result.output
