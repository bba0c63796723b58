"""Yahoo CSV import of files without `Adj Close` (the Mario-SO archive), through to `price_series`."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pandas as pd
import pytest

from qortcli.quant import realised as rv
from qortcli.sources.yahoo import read_yahoo_csv

from vol_fixtures import MARIO


def csv_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_file_without_adj_close_imports_with_adj_close_equal_to_close():
    rows = csv_rows(MARIO / "btc.csv")
    assert "Adj Close" not in rows[0]
    series = read_yahoo_csv(MARIO / "btc.csv", symbol="BTC-USD")
    b = series.bars
    assert len(b) == len(rows) == 4348 and series.skipped == 0
    assert b.index.is_monotonic_increasing and str(b.index.tz) == "UTC"    # the file has 3 swapped pairs
    assert (b["adj_close"] == b["close"]).all()
    assert any("no Adj Close" in n for n in series.notes)
    for row in rows[::97] + rows[-30:]:
        got = b.loc[pd.Timestamp(row["Date"], tz="UTC")]
        assert (got["open"], got["high"], got["low"], got["close"], got["volume"]) == tuple(
            float(row[k]) for k in ("Open", "High", "Low", "Close", "Volume"))


def test_imported_into_the_store_price_series_feeds_realised_vol(embedded_db, tmp_path):
    from qortcli.steps.collect import run_collect_prices_csv
    from qortcli.store.read import price_series

    folder = tmp_path / "prices"
    folder.mkdir()
    shutil.copy(MARIO / "eth.csv", folder / "ETH-USD.csv")
    summary = run_collect_prices_csv(embedded_db, folder)
    assert summary["errors"] == {} and summary["stored"] == 3200
    frame = price_series(embedded_db, "ETH")
    direct = read_yahoo_csv(MARIO / "eth.csv").bars
    assert len(frame) == 3200 and (frame.index == direct.index).all()
    assert np.array_equal(frame["adj_close"].to_numpy(), frame["close"].to_numpy())
    stored = rv.realised_vol(frame, 30, as_of=pd.Timestamp("2026-06-30", tz="UTC"))
    assert stored.vol == pytest.approx(rv.realised_vol(direct, 30, as_of=pd.Timestamp("2026-06-30", tz="UTC")).vol)
    assert stored.n_missing_days == 2 and stored.n_returns == 26        # 06-01 and 06-24 are missing
