"""Retention: full chains for the window, then the last chain of each UTC day; nothing else is removed, and
chains that an open suggestion's tracking still needs are kept."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from typer.testing import CliRunner

from qortcli.store import ops, read, schema
from qortcli.steps.collect import run_collect_file
from qortcli.steps.prune import run_prune

FIXTURES = Path(__file__).parent / "fixtures"
WEEK = sorted(FIXTURES.glob("deribit_options_snapshot_2026010[5-9]T*.csv"))   # 5..9 January, 4 a day


def _load(db) -> dict[str, list[read.SnapshotInfo]]:
    for path in WEEK:
        run_collect_file(db, path)
    return {cur: read.snapshots(db, cur) for cur in ("BTC", "ETH")}


def _days(infos) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for info in infos:
        out.setdefault(f"{info.timestamp:%Y-%m-%d}", []).append(info.snapshot_id)
    return out


def test_old_chains_are_thinned_to_the_last_of_each_day(embedded_db):
    before = _load(embedded_db)
    now = datetime(2026, 2, 8, 12, tzinfo=timezone.utc)          # 30-day window: 5..8 January are older
    cutoff = (now - timedelta(days=30)).replace(hour=0)          # whole UTC days: 5..8 January
    dry = run_prune(embedded_db, dry_run=True, now=now)
    assert embedded_db[schema.JOB_RUNS].count_documents({"step": "prune"}) == 0
    assert {c: len(read.snapshots(embedded_db, c)) for c in before} == {c: len(v) for c, v in before.items()}

    done = run_prune(embedded_db, now=now)
    assert done["snapshots"] == dry["snapshots"] > 0 and done["documents"] == dry["documents"]
    for cur, infos in before.items():
        after = {i.snapshot_id for i in read.snapshots(embedded_db, cur)}
        for day, ids in _days(infos).items():
            old = all(i.timestamp < cutoff for i in infos if i.snapshot_id in ids)
            if old:
                assert after & set(ids) == {ids[-1]}, day      # the day's last chain is kept
            else:
                assert set(ids) <= after, day                  # inside the window: untouched
        for info in infos:
            n = embedded_db[schema.OPTIONS].count_documents({"snapshot_id": info.snapshot_id})
            assert (n > 0) == (info.snapshot_id in after)
            record = embedded_db[schema.SNAPSHOTS].find_one({"_id": info.snapshot_id})
            assert record["status"] == ("complete" if info.snapshot_id in after else "pruned")
    (run,) = embedded_db[schema.JOB_RUNS].find({"step": "prune"})
    assert run["status"] == "ok" and run["counts"]["snapshots"] == done["snapshots"]
    assert run_prune(embedded_db, now=now)["snapshots"] == 0   # idempotent


def test_chains_an_open_suggestion_still_tracks_are_kept(embedded_db):
    before = _load(embedded_db)
    btc = before["BTC"]
    tracked_through = btc[5].timestamp            # 6 January: tracking has covered the chains up to here
    ops.upsert_many(embedded_db, schema.SUGGESTIONS, [{
        "currency": "BTC", "snapshot_id": btc[1].snapshot_id, "timestamp": btc[1].timestamp, "strategy": "x",
        "expiry": datetime(2026, 3, 27, 8, tzinfo=timezone.utc), "status": "open", "tracked_through": tracked_through}])
    run_prune(embedded_db, now=datetime(2026, 2, 8, 12, tzinfo=timezone.utc))
    kept = {i.snapshot_id for i in read.snapshots(embedded_db, "BTC")}
    assert {i.snapshot_id for i in btc if i.timestamp > tracked_through} <= kept
    assert len(kept) < len(btc)                   # older ones were thinned
    eth_days = _days(read.snapshots(embedded_db, "ETH"))         # ETH has no open suggestion: thinned fully
    assert [len(eth_days[d]) for d in ("2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08")] == [1, 1, 1, 1]


def test_cli_prune_dry_run_writes_nothing(qort_env):
    from qortcli.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["collect", "deribit", "--from-file", str(WEEK[0])]).exit_code == 0
    out = runner.invoke(app, ["prune", "--dry-run", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["dry_run"] is True
