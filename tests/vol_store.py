"""A real store for the vol step, CLI and History page tests: 21 daily Deribit chains plus Mario-SO prices.

Built once per test session the way a user builds it (`collect deribit --from-file` on each daily chain,
`collect prices --from-csv` on the Mario-SO files under the names the importer wants, `surface --backfill`
for the summaries, then `surface` on the latest chains so their summaries also carry the SVI figures), then
copied for each test that wants its own store. Independent oracles: `daily_summaries` computes the
summaries' smile fields straight from the recorded CSVs (no store), `vol_fixtures.bars` the prices.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import pandas as pd

from conftest import FIXTURES

# The last chain of each UTC day, 2025-12-30 … 2026-01-19: 14 in deribit_daily/, 7 in the January week.
DAILY = sorted([*(FIXTURES / "deribit_daily").glob("deribit_options_snapshot_*.csv"),
                *(FIXTURES / f"deribit_options_snapshot_{stamp}.csv" for stamp in (
                    "20260105T212130Z", "20260106T212121Z", "20260107T212023Z", "20260108T212125Z",
                    "20260109T212042Z", "20260110T211832Z", "20260111T211857Z"))], key=lambda p: p.name)
MARIO = {"BTC-USD.csv": FIXTURES / "prices_mario" / "btc.csv", "ETH-USD.csv": FIXTURES / "prices_mario" / "eth.csv"}
TENORS = (7, 30, 60, 90, 180)


def price_dir(root: Path, files: dict[str, Path] = MARIO) -> Path:
    """The Mario-SO CSVs copied under the Yahoo-symbol names `collect prices --from-csv` reads."""
    folder = root / "prices"
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        shutil.copy(source, folder / name)
    return folder


def build_store(path: Path, chains=DAILY, fit_latest: bool = True) -> Path:
    """Fill an embedded store at `path` from the real files (module docstring) and close it."""
    from qortcli.steps.collect import run_collect_file, run_collect_prices_csv
    from qortcli.steps.surface import run_backfill, run_surface
    from qortcli.store import connect, ensure_schema

    db = connect(str(path))
    ensure_schema(db)
    run_collect_prices_csv(db, price_dir(path.parent / f"{path.name}-inputs"))
    for file in chains:
        run_collect_file(db, file)
    run_backfill(db)
    if fit_latest:
        run_surface(db)
    db.close()
    return path


@lru_cache(maxsize=1)
def _template() -> Path:
    root = Path(tempfile.mkdtemp(prefix="qort-vol-store-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)     # the template lives for the test session
    return build_store(root / "db")


def vol_store(target: Path) -> Path:
    """A private copy of the session's store at `target` (a directory that does not exist yet)."""
    shutil.copytree(_template(), target)
    return target


@lru_cache(maxsize=None)
def _daily_summaries(coin: str) -> pd.DataFrame:
    from chain_fixtures import recorded_chain

    from qortcli.quant import smile

    rows = []
    for path in DAILY:
        frame = recorded_chain(coin.upper(), str(path.relative_to(FIXTURES)))
        stats = smile.summary_stats(frame[frame["t_years"] > 0], None, TENORS, 365.0).fields()
        rows.append({"timestamp": frame.attrs["timestamp"],
                     **{k: v for k, v in stats.items() if k != "term_structure"}})
    return pd.DataFrame(rows).set_index("timestamp").sort_index().astype(float)


def daily_summaries(coin: str = "btc") -> pd.DataFrame:
    """The marks' smile fields of the 21 daily chains, computed from the CSVs as the summaries are
    (`smile.summary_stats` on the chain frame, no surface); index = snapshot time (UTC)."""
    return _daily_summaries(coin).copy()
