"""Issues 14.5 and 14.6: the settings file validated once against a typed schema (file, section and key named),
partial sections merged with the packaged defaults, `[pricing] day_count` used by `price`; `.env` read
from the working directory; store locations: plain paths, mistyped URLs refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qortcli.cli import app
from qortcli.config import SECTIONS, get_settings, package_data
from qortcli.errors import BadStoreUrl, ConfigError
from qortcli.store.connect import store_location

from conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
BOOK = Path(__file__).parent / "fixtures" / "goodtrading_book_summary_BTC_option_20260313.json"
runner = CliRunner()


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    """Write a user settings file and point QORT_SETTINGS at it."""

    def write(body: str) -> Path:
        path = tmp_path / "settings.toml"
        path.write_text(body)
        monkeypatch.setenv("QORT_SETTINGS", str(path))
        return path

    return write


@pytest.mark.parametrize("body, fragment", [
    ('[suggest]\niv_high = "high"\n', "[suggest] iv_high: Input should be a valid number (got 'high')"),
    ('[collect]\ncurrencies = "BTC"\n', "[collect] currencies: must be a list like [\"BTC\", \"ETH\"], not the string 'BTC'"),
    ('[collect]\ncurrencies = ["btc"]\n', "[collect] currencies[0]: String should match pattern"),
    ("[suggest]\niv_hihg = 0.5\n", "[suggest] unknown key 'iv_hihg' (did you mean iv_high?)"),
    ("[sugest]\niv_high = 0.5\n", "unknown section [sugest] (did you mean [suggest]?)"),
    ('[pricing]\nday_count = "ACT/360"\n', "[pricing] day_count: unknown day-count basis 'ACT/360'"),
    ("[suggest]\niv_high = 0.1\n", "[suggest] iv_low = 0.3 must be below iv_high = 0.1"),
    ("[suggest.rank_scale]\nput_skew = -1\n", "[suggest.rank_scale] put_skew: Input should be greater than 0"),
    ("[suggest]\nmin_history = true\n", "[suggest] min_history: Input should be a valid integer"),
    ('[optimize]\nmodel = "kelly"\n', "[optimize] model 'kelly' is not one of hrp, herc"),
    ('[schedule.jobs]\nprice = { every = "5x" }\n', "[schedule] schedule job 'price': every = '5x'"),
    ('[schedule.jobs]\nprice = { every = "5m", colour = "red" }\n', "[schedule.jobs.price] unknown key 'colour'"),
    ("[deribit]\nrequest_deadline_seconds = 0\n", "[deribit] request_deadline_seconds: Input should be greater than 0"),
    ("[collect]\nmax_file_mb = -1\n", "[collect] max_file_mb: Input should be greater than 0"),
    ("suggest = 3\n", "suggest must be a table [suggest]"),
    ("[suggest\n", "is not valid TOML"),
])
def test_bad_settings_are_one_error_naming_file_section_and_key(settings_file, body, fragment):
    path = settings_file(body)
    with pytest.raises(ConfigError) as caught:
        get_settings()
    message = str(caught.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_partial_sections_merge_with_the_packaged_defaults(settings_file):
    packaged = tomllib.loads(package_data("settings.toml").read_text())
    settings_file('[suggest]\niv_high = 0.75\n[suggest.rank_scale]\nput_skew = 0.02\n[collect]\ncurrencies = ["ETH"]\n')
    s = get_settings()
    assert s.suggest.iv_high == 0.75 and s.suggest.rank_scale.put_skew == 0.02
    assert s.suggest.iv_low == packaged["suggest"]["iv_low"]                       # untouched keys kept
    assert s.suggest.rank_scale.call_skew == packaged["suggest"]["rank_scale"]["call_skew"]
    assert s.collect.currencies == ["ETH"] and s.collect.max_file_mb == packaged["collect"]["max_file_mb"]
    assert s.section("suggest")["iv_high"] == 0.75 and s.section("optimize") == dict(packaged["optimize"])
    # a [schedule.jobs] table is the user's list of jobs: it replaces the packaged one as a whole
    settings_file('[schedule.jobs]\ncollect_deribit = { every = "1m" }\n')
    assert list(get_settings().schedule.jobs) == ["collect_deribit"]


def test_the_packaged_file_is_valid_and_every_section_has_a_model():
    packaged = tomllib.loads(package_data("settings.toml").read_text())
    assert set(packaged) == set(SECTIONS)
    s = get_settings()
    for name in SECTIONS:
        assert s.section(name) == s.sections[name].model_dump()


def test_cli_validates_settings_before_doing_anything(settings_file, tmp_path):
    path = settings_file('[suggest]\niv_high = "high"\n')
    store = tmp_path / "never"
    result = runner.invoke(app, ["--db", str(store), "collect", "sample"])
    assert result.exit_code == 2 and f"{path}: [suggest] iv_high" in result.output
    assert not store.exists()                                         # nothing opened, nothing written
    result = runner.invoke(app, ["--db", str(store), "status", "--json"])
    assert result.exit_code == 2 and "[suggest] iv_high" in json.loads(result.stderr)["error"]


def test_price_uses_the_pricing_day_count(settings_file, qort_env):
    settings_file('[pricing]\nday_count = "ACT/365.25"\n')
    book = FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json"
    assert runner.invoke(app, ["collect", "deribit", "--from-file", str(book)]).exit_code == 0
    result = runner.invoke(app, ["price", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    from qortcli.store import connect, ops

    db = connect(str(qort_env))
    try:
        snap = ops.latest_snapshot(db, "options", "BTC")
        docs = {d["symbol"]: d for d in ops.snapshot_documents(db, snap["_id"])}
    finally:
        db.close()
    for row in rows[:50]:
        doc = docs[row["instrument_name"]]
        assert doc["model"]["basis"] == "ACT/365.25"
        assert row["t_years"] == pytest.approx((doc["expiry"] - doc["timestamp"]) / timedelta(days=365.25), rel=1e-12)
    # --basis still overrides the setting
    result = runner.invoke(app, ["price", "--basis", "ACT/365", "--json"])
    first = json.loads(result.stdout)[0]
    assert first["t_years"] == pytest.approx(
        (docs[first["instrument_name"]]["expiry"] - docs[first["instrument_name"]]["timestamp"]) / timedelta(days=365),
        rel=1e-12)


def test_dotenv_in_the_working_directory_is_read(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    store = tmp_path / "from-dotenv"
    (work / ".env").write_text(f"QORT_DB={store}\nQORT_DB_NAME=fromdotenv\n")
    env = {k: v for k, v in os.environ.items() if k not in ("QORT_DB", "QORT_DB_NAME", "QORT_SETTINGS")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "qortcli", "status", "--json"], cwd=work, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["store"] == f"embedded store at {store} (database 'fromdotenv')"
    # the environment wins over .env, and --db over both
    other = tmp_path / "from-env"
    proc = subprocess.run([sys.executable, "-m", "qortcli", "status", "--json"], cwd=work, capture_output=True,
                          text=True, timeout=120, env={**env, "QORT_DB": str(other)})
    assert str(other) in json.loads(proc.stdout)["store"]


@pytest.mark.parametrize("value, fragment", [
    ("mongodb:qort:pw@db.example", "lacks '//' after 'mongodb:'"),
    ("MONGODB://db.example:27017", "the scheme must be written in lower case (mongodb://…)"),
    ("Mongodb+srv://cluster.example", "lower case (mongodb+srv://…)"),
    ("mongdb://db.example", "(did you mean mongodb://?)"),
    ("postgres://u:pw@pg/db", "unsupported store URL"),
    ("file:///tmp/db", "unsupported store URL"),
    ("qort:pw@db.example", "looks like a URL ('qort:')"),
    ("qort@db.example:27017", "looks like user@host:port"),
    ("", "empty store location"),
])
def test_mistyped_store_urls_are_refused(value, fragment):
    with pytest.raises(BadStoreUrl) as caught:
        store_location(value)
    assert fragment in str(caught.value) and "pw@" not in str(caught.value)


def test_embedded_paths_are_plain_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loc = store_location("./a:b")
    assert loc.kind == "embedded" and loc.path == tmp_path / "a:b"
    assert store_location("~/x").path == Path("~/x").expanduser()
    assert store_location("//tmp/x").path.as_posix() == "/tmp/x"
    assert store_location("mongodb://h:27017/q") == ("mongo", "mongodb://h:27017/q", None)
    result = runner.invoke(app, ["--db", "./a:b", "migrate"])
    assert result.exit_code == 0 and (tmp_path / "a:b" / "qortfolio").is_dir()
    # `?`, `#` and `:` are characters of a directory name, never URL parts: the store is on disk there
    for name in ("s?engine=memory", "s#frag"):
        result = runner.invoke(app, ["--db", str(tmp_path / name), "collect", "deribit", "--from-file", str(BOOK)])
        assert result.exit_code == 0, result.output
        assert (tmp_path / name / "qortfolio" / "options_data.sqlite").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a:b", "s#frag", "s?engine=memory"]
