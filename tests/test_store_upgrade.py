"""A store written by qortfolio 0.1's engine (litemongo 0.2) is recognised with one clear line and upgraded in
place by `qortcli migrate --upgrade-store` without losing anything (counts and content hashes verified)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qortcli.cli import app
from qortcli.store import connect, ensure_schema, read, schema
from qortcli.steps.collect import run_collect_file
from qortcli.store.transfer import collection_digests, combined_hash

FIXTURES = Path(__file__).parent / "fixtures"
CHAIN = FIXTURES / "deribit_options_snapshot_20260111T211857Z.csv"
litemongo = pytest.importorskip("litemongo", reason="litemongo (test extra) builds the previous engine's store")


def _legacy_store(tmp_path: Path) -> tuple[Path, dict]:
    """A litemongo store holding a real imported chain (written by litemongo itself), and its hashes."""
    work = connect(str(tmp_path / "work"))
    ensure_schema(work)
    run_collect_file(work, CHAIN)
    root = tmp_path / "old"
    client = litemongo.connect(str(root), tz_aware=True)
    old = client["qortfolio"]
    hashes = {}
    for name in work.list_collection_names():
        docs = list(work[name].find({}))
        if docs:
            old[name].insert_many(docs)
        hashes[name] = (len(docs), combined_hash(collection_digests(work, name)))
    old[schema.OPTIONS].create_index([("symbol", 1), ("timestamp", 1)], unique=True, name="symbol_timestamp_unique")
    client.close()
    work.close()
    return root, hashes


def test_a_litemongo_store_is_recognised_and_upgraded_without_loss(tmp_path, monkeypatch):
    root, before = _legacy_store(tmp_path)
    monkeypatch.setenv("QORT_DB", str(root))
    runner = CliRunner()
    refused = runner.invoke(app, ["status"])
    assert refused.exit_code == 1
    assert "previous embedded engine (litemongo" in refused.output and "--upgrade-store" in refused.output
    assert len(refused.output.strip().splitlines()) == 1

    done = runner.invoke(app, ["migrate", "--upgrade-store", "--json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["ok"] and all(row["match"] for row in summary["collections"])
    assert Path(summary["backup"], "qortfolio", schema.OPTIONS).is_file()  # the old files are kept

    db = connect(str(root))
    try:
        for name, (count, digest) in before.items():
            if name == schema.MIGRATIONS:
                continue
            assert db[name].count_documents({}) == count, name
            assert combined_hash(collection_digests(db, name)) == digest, name
        chain = read.latest_chain(db, "BTC")
        assert len(chain.frame) == before[schema.OPTIONS][0] - len(read.latest_chain(db, "ETH").frame)
        assert {m["_id"] for m in db[schema.MIGRATIONS].find({})} >= {1}
    finally:
        db.close()
    again = runner.invoke(app, ["status"])
    assert again.exit_code == 0, again.output
