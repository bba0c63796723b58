"""`qortcli collect sample`: the bundled real sample loads with no network."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from qortcli.sectors import load_sectors
from qortcli.steps import collect as collect_step
from qortcli.store import ops, schema

from conftest import FIXTURES


def test_bundled_sample_is_the_recorded_data_with_sources():
    root = collect_step.sample_dir()
    chain = root / "deribit" / "deribit_options_snapshot_20260111T211857Z.csv"
    assert chain.read_bytes() == (FIXTURES / chain.name).read_bytes()
    prices = sorted((root / "prices").glob("*.csv"))
    assert [p.name for p in prices] == sorted(p.name for p in (FIXTURES / "prices").glob("*.csv"))
    mario = {"BTC-USD.csv": "btc.csv", "ETH-USD.csv": "eth.csv"}   # Mario-SO rows up to the chain's day
    for path in prices:
        if path.name in mario:
            lines = (FIXTURES / "prices_mario" / mario[path.name]).read_text().splitlines(keepends=True)
            upto = next(i for i, line in enumerate(lines) if line.startswith("2026-01-11,"))
            assert path.read_text() == "".join(lines[: upto + 1])
        else:
            assert path.read_bytes() == (FIXTURES / "prices" / path.name).read_bytes()
        assert path.stem in load_sectors().by_yahoo()
    sources = (root / "SOURCES.md").read_text()
    assert chain.name in sources and "royanshu07/Cryptomaniac" in sources and "516b0cb0f4d7c0f2874d04662961b01147583c5f" in sources
    assert "Mario-SO/ohlcv" in sources and "c3dd46bba7da49e3cfa8ab6438190ea3ae2a7ef7" in sources


BUNDLED = collect_step.sample_dir()


def _trimmed_sample(tmp_path, days=30):
    """The bundled chain unchanged and the first `days` rows of each bundled price file (real rows)."""
    root = BUNDLED
    (tmp_path / "deribit").mkdir()
    (tmp_path / "prices").mkdir()
    for path in (root / "deribit").glob("*.csv"):
        (tmp_path / "deribit" / path.name).write_bytes(path.read_bytes())
    for path in (root / "prices").glob("*.csv"):
        lines = path.read_text().splitlines()[: days + 1]
        (tmp_path / "prices" / path.name).write_text("\n".join(lines) + "\n")
    return tmp_path


def test_collect_sample_loads_chain_and_prices(embedded_db, tmp_path, monkeypatch):
    monkeypatch.setattr(collect_step, "sample_dir", lambda: _trimmed_sample(tmp_path))
    summary = collect_step.run_collect_sample(embedded_db)
    frame = pd.read_csv(tmp_path / "deribit" / "deribit_options_snapshot_20260111T211857Z.csv")
    for currency, part in frame.groupby("currency"):
        snap = ops.latest_snapshot(embedded_db, "options", currency)
        assert snap["counts"]["stored"] == len(part)
    assert summary["options"]["stored"] == len(frame)
    assert summary["prices"]["stored"] == 10 * 30 == embedded_db[schema.PRICES].count_documents({})
    assert summary["stored"] == len(frame) + 300


def test_cli_collect_sample_json(qort_env, tmp_path, monkeypatch):
    from qortcli.cli import app

    monkeypatch.setattr(collect_step, "sample_dir", lambda: _trimmed_sample(tmp_path, days=5))
    result = CliRunner().invoke(app, ["collect", "sample", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {s["currency"] for s in summary["options"]["snapshots"]} == {"BTC", "ETH"}
    assert summary["prices"]["stored"] == 50

    monkeypatch.setattr(collect_step, "sample_dir", lambda: tmp_path / "missing")
    missing = CliRunner().invoke(app, ["collect", "sample"])
    assert missing.exit_code == 1 and "bundled sample is missing" in missing.output
