"""The CLI's own behaviour: status on an empty store, exit codes, JSON, unreachable MongoDB."""

import json
import subprocess
import sys
import time

from typer.testing import CliRunner

from qortcli.cli import app

runner = CliRunner()


def test_help_lists_every_step():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("collect", "price", "surface", "optimize", "suggest", "migrate", "status"):
        assert command in result.output


def test_status_on_an_empty_embedded_store(qort_env):
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert "options_data" in result.output and "no snapshot yet" in result.output
    result = runner.invoke(app, ["status", "--json"])
    summary = json.loads(result.output)
    assert summary["counts"]["options_data"] == 0 and set(summary["counts"]) >= {"price_data", "job_runs"}
    assert str(qort_env) in summary["store"]


def test_global_and_command_options_agree(tmp_path):
    a = runner.invoke(app, ["--db", str(tmp_path / "a"), "--json", "status"])
    b = runner.invoke(app, ["status", "--db", str(tmp_path / "a"), "--json"])
    assert a.exit_code == b.exit_code == 0
    assert json.loads(a.output)["store"] == json.loads(b.output)["store"]


def test_migrate_twice_changes_nothing(qort_env):
    first = json.loads(runner.invoke(app, ["migrate", "--json"]).output)
    second = json.loads(runner.invoke(app, ["migrate", "--json"]).output)
    from qortcli.store.schema import MIGRATION_STEPS

    assert [m["status"] for m in first["migrations"]] == ["applied now"] * len(MIGRATION_STEPS)
    assert [m["status"] for m in second["migrations"]] == ["already applied"] * len(MIGRATION_STEPS)
    assert [m["applied_at"] for m in first["migrations"]] == [m["applied_at"] for m in second["migrations"]]


def test_unreachable_mongodb_fails_fast_with_one_line():
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "qortcli", "--db", "mongodb://127.0.0.1:1", "status"],
                          capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    print(f"unreachable MongoDB reported after {elapsed:.2f} s")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0] and "127.0.0.1:1" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_bad_usage_exits_2(qort_env):
    assert runner.invoke(app, ["status", "--runs", "-3"]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2
