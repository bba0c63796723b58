"""`run_collect_prices_csv` / `qortcli collect prices --from-csv`: Yahoo daily CSVs → price_data."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd
import pytest
from typer.testing import CliRunner

from qortcli.errors import StepError
from qortcli.sectors import load_sectors
from qortcli.steps.collect import run_collect_prices_csv
from qortcli.store import schema

from conftest import FIXTURES

PRICES = FIXTURES / "prices"


def _head(tmp_path, names, lines=41, rename=None):
    """Real rows: the header and the first `lines - 1` days of some recorded CSVs, in a fresh directory."""
    folder = tmp_path / "prices"
    folder.mkdir(exist_ok=True)
    for name in names:
        text = (PRICES / name).read_text().splitlines()[:lines]
        (folder / ((rename or {}).get(name, name))).write_text("\n".join(text) + "\n")
    return folder


def test_all_ten_files_import_with_sector_and_values(any_db, tmp_path):
    # The first 60 recorded days of each of the 10 files (the full 19k rows take minutes on mongomock).
    folder = _head(tmp_path, [p.name for p in PRICES.glob("*.csv")], lines=61)
    summary = run_collect_prices_csv(any_db, folder)
    by_yahoo = load_sectors().by_yahoo()
    files = sorted(folder.glob("*.csv"))
    assert len(files) == 10 and summary["errors"] == {}
    expected_total = 0
    for path in files:
        frame = pd.read_csv(path, na_values=["null"])
        frame = frame[frame["Close"].notna()]
        expected_total += len(frame)
        coin = by_yahoo[path.stem]
        docs = list(any_db[schema.PRICES].find({"symbol": coin.ticker}).sort("timestamp", 1))
        assert len(docs) == len(frame)
        assert {d["sector"] for d in docs} == {coin.sector} and {d["yfinance_symbol"] for d in docs} == {path.stem}
        first, last = frame.iloc[0], frame.iloc[-1]
        for doc, row in ((docs[0], first), (docs[-1], last)):
            assert doc["timestamp"].replace(tzinfo=timezone.utc) == datetime.fromisoformat(row["Date"]).replace(tzinfo=timezone.utc)
            assert doc["open"] == row["Open"] and doc["high"] == row["High"] and doc["low"] == row["Low"]
            assert doc["close"] == doc["price_usd"] == row["Close"] and doc["adj_close"] == row["Adj Close"]
            assert doc["volume_24h"] == row["Volume"] and doc["source"] == "yahoo_csv"
    assert summary["stored"] == expected_total == any_db[schema.PRICES].count_documents({})


def test_reimport_is_idempotent_one_document_per_symbol_per_day(any_db, tmp_path):
    folder = _head(tmp_path, ["BTC-USD.csv", "ETH-USD.csv"])
    first = run_collect_prices_csv(any_db, folder)
    second = run_collect_prices_csv(any_db, folder)
    assert first["stored"] == second["stored"] == 80
    assert any_db[schema.PRICES].count_documents({}) == 80
    days = [d["timestamp"] for d in any_db[schema.PRICES].find({"symbol": "BTC"})]
    assert len(set(days)) == 40
    assert all(d.hour == 0 and d.minute == 0 for d in days)


def test_unknown_symbol_is_reported_and_others_still_imported(embedded_db, tmp_path):
    folder = _head(tmp_path, ["BTC-USD.csv", "DOT-USD.csv"], rename={"DOT-USD.csv": "NOTACOIN-USD.csv"})
    summary = run_collect_prices_csv(embedded_db, folder)
    assert [r["symbol"] for r in summary["symbols"]] == ["BTC"]
    assert "NOTACOIN-USD" in summary["errors"] and "not in the sector taxonomy" in summary["errors"]["NOTACOIN-USD"]
    (tmp_path / "only_bad").mkdir()
    only_bad = _head(tmp_path / "only_bad", ["DOT-USD.csv"], rename={"DOT-USD.csv": "NOTACOIN-USD.csv"})
    with pytest.raises(StepError, match="no price file imported"):
        run_collect_prices_csv(embedded_db, only_bad)


def test_null_rows_are_skipped_and_counted(embedded_db, tmp_path):
    folder = _head(tmp_path, ["SOL-USD.csv"], lines=11)
    path = folder / "SOL-USD.csv"
    lines = path.read_text().splitlines()
    day = lines[5].split(",")[0]
    lines[5] = f"{day},null,null,null,null,null,null"   # how Yahoo CSVs mark a missing day
    path.write_text("\n".join(lines) + "\n")
    summary = run_collect_prices_csv(embedded_db, folder)
    assert summary["stored"] == 9 and summary["skipped"] == 1
    assert embedded_db[schema.PRICES].find_one({"_id": f"SOL|{day}"}) is None


def test_cli_from_csv(qort_env, tmp_path):
    from qortcli.cli import app

    folder = _head(tmp_path, ["ETH-USD.csv", "LINK-USD.csv"], lines=21)
    runner = CliRunner()
    result = runner.invoke(app, ["collect", "prices", "--from-csv", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["stored"] == 40 and {r["symbol"] for r in summary["symbols"]} == {"ETH", "LINK"}
    table = runner.invoke(app, ["collect", "prices", "--from-csv", str(folder)])
    assert table.exit_code == 0 and "LINK-USD" in table.stdout
    bad = runner.invoke(app, ["collect", "prices", "--from-csv", str(tmp_path / "missing")])
    assert bad.exit_code == 2 and "not found" in bad.output  # a bad path is a usage error
    usage = runner.invoke(app, ["collect", "prices", "--from-csv", str(folder), "--sector", "DeFi"])
    assert usage.exit_code == 2
