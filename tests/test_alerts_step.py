"""`run_alerts` on a real store: the 28 recorded January 2026 chains imported with `qortcli collect deribit
--from-file`, their summaries written by `qortcli surface --backfill`, Yahoo prices, suggestions tracked over
the week, job runs the steps record under the worker. A webhook receiver on 127.0.0.1 counts the POSTs.

The market rules are replayed over the week (one evaluation a minute after each snapshot) and every episode
is compared with an oracle written here: the rule's logic applied by hand to the stored inputs."""

from __future__ import annotations

import json
import shutil
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qortcli.store import connect, ops, read, schema
from qortcli.timeutils import as_utc, utcnow

from conftest import FIXTURES
from webhook_receiver import SECRET, Receiver

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "viewer"))

pytestmark = pytest.mark.slow   # imports 28 recorded chains and writes their summaries once (~15 s)

WEEK = sorted(FIXTURES.glob("deribit_options_snapshot_202601*.csv"))


@pytest.fixture(scope="module")
def base_store(tmp_path_factory):
    """The week's store, built through the CLI, then closed (each test works on a copy)."""
    from qortcli.cli import app
    from qortcli.quant.strategies import STRATEGIES
    from qortcli.steps.suggest import run_suggest, run_track

    root = tmp_path_factory.mktemp("alerts_base")
    chains = root / "chains"
    chains.mkdir()
    for path in WEEK:
        shutil.copy(path, chains / path.name)
    path = root / "db"
    runner = CliRunner()
    env = {"QORT_DB": str(path), "QORT_SETTINGS": ""}
    for args in (["collect", "deribit", "--from-file", str(chains)], ["surface", "--backfill"],
                 ["collect", "prices", "--from-csv", str(FIXTURES / "prices")]):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, (args, result.output)
    db = connect(str(path))
    first = read.snapshots(db, "BTC")[0].snapshot_id.split("-", 1)[1]
    for cur in ("BTC", "ETH"):   # every strategy on the first snapshot, tracked over the week
        run_suggest(db, snapshot_id=f"{cur}-{first}", strategies=list(STRATEGIES), top=0)
    run_track(db)
    db.close()
    return path


@pytest.fixture
def store(base_store, tmp_path):
    path = tmp_path / "db"
    shutil.copytree(base_store, path)
    db = connect(str(path))
    yield db
    db.close()


def eval_times(db) -> list:
    return [s.timestamp + timedelta(minutes=1) for s in read.snapshots(db, "BTC")]


def stored_episodes(db, rule: str, subject: str) -> list[tuple]:
    docs = [d for d in db[schema.ALERTS].find({"rule": rule}) if d["subject"] == subject]
    return sorted((as_utc(d["opened_at"]), as_utc(d["closed_at"]) if d.get("closed_at") else None) for d in docs)


def oracle_episodes(times, readings, holds) -> list[tuple]:
    """Episodes by hand: readings[i] at times[i] (None: not evaluated), holds(value, was_open) → bool."""
    episodes, opened = [], None
    for t, value in zip(times, readings):
        if value is None:
            continue
        active = holds(value, opened is not None)
        if active and opened is None:
            opened = t
        elif not active and opened is not None:
            episodes.append((opened, t))
            opened = None
    return episodes + ([(opened, None)] if opened is not None else [])


def write_settings(tmp_path: Path, name: str, jobs: str, alerts: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f"[schedule]\nmisfire_grace_seconds = 60\nheartbeat_seconds = 0\n\n[schedule.jobs]\n{jobs}\n\n"
                    f"{alerts}\n")
    return path


MARKET = [
    {"name": "term", "kind": "term_inversion", "front_days": 7, "back_days": 90, "level": 0.0, "hysteresis": 0.005},
    {"name": "term_flappy", "kind": "term_inversion", "front_days": 7, "back_days": 90, "level": 0.0, "hysteresis": 0.0},
    {"name": "rr7", "kind": "rr25_flip", "tenor_days": 7, "band": 0.001, "lookback": "12h"},
    {"name": "spot", "kind": "spot_move", "move": 0.015, "window": "400m", "hysteresis": 0.005},
    {"name": "iv_low", "kind": "iv_rank", "measure": "rank", "below": 0.2, "min_points": 5, "hysteresis": 0.05},
    {"name": "loss", "kind": "suggestion_max_loss", "fraction": 0.5, "premium_multiple": 2.0, "hysteresis": 0.1},
    {"name": "target", "kind": "suggestion_target", "fraction": 0.4, "premium_multiple": 1.0, "hysteresis": 0.1},
]


def test_market_rules_over_the_recorded_week_match_their_oracles_one_post_per_episode(store, tmp_path):
    from qortcli.steps.alerts import run_alerts

    times = eval_times(store)
    log_file = tmp_path / "alerts.jsonl"
    with Receiver() as rx:
        settings = {"log_file": str(log_file), "rules": MARKET,
                    "webhooks": [{"name": "team", "url": rx.url, "timeout": "2s", "backoff": "0.05s"}]}
        summaries = [run_alerts(store, now=t, settings=settings) for t in times]
        posts = rx.posts()
    assert not any(s["errors"] for s in summaries)
    docs = list(store[schema.ALERTS].find({}))
    # every kind fired on the real week, and each episode was POSTed exactly once
    assert {d["rule"] for d in docs} == {r["name"] for r in MARKET}
    posted = [p["json"]["alert"]["id"] for p in posts]
    assert sorted(posted) == sorted(d["_id"] for d in docs) and len(set(posted)) == len(posted)
    assert any(d["evaluations"] > 3 for d in docs)            # held over several runs, still one POST
    assert {p["path"] for p in posts} == {f"/hooks/{SECRET}/alerts"}
    assert all(d["delivery"][0]["status"] == "delivered" and d["delivery"][1]["status"] == "delivered" for d in docs)
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert sorted(e["alert"]["id"] for e in events if e["event"] == "opened") == sorted(posted)
    assert sorted(e["alert"]["id"] for e in events if e["event"] == "closed") == \
        sorted(d["_id"] for d in docs if d["status"] == "closed")

    for cur in ("BTC", "ETH"):
        snaps = read.summary_series(store, cur, resolution="snapshot")

        def upto(t):
            return snaps[snaps.index <= pd.Timestamp(t)]

        # term structure: front − back of the latest summary; open above 0, clear at or below −h
        diff = [float(upto(t)["atm_iv_7d_marks"].iloc[-1] - upto(t)["atm_iv_90d_marks"].iloc[-1]) for t in times]
        for name, h in (("term", 0.005), ("term_flappy", 0.0)):
            expected = oracle_episodes(times, diff, lambda v, was_open, h=h: v > (-h if was_open else 0.0))
            assert stored_episodes(store, name, cur) == expected, (name, cur)
        if cur == "BTC":   # the recorded week inverts BTC's term structure; hysteresis saves a flap
            assert len(stored_episodes(store, "term", cur)) < len(stored_episodes(store, "term_flappy", cur))

        # RR25 7d flips with a ±0.001 dead zone over a 12 h lookback, one subject per sign
        def rr_reading(t):
            part = upto(t)["rr25_7d_marks"]
            part = part[part.index > pd.Timestamp(t) - pd.Timedelta(hours=12)]
            signs = [int(np.sign(v)) if abs(v) > 0.001 else 0 for v in part]
            set_signs = [s for s in signs if s]
            return (set_signs[-1], -set_signs[-1] in set_signs) if set_signs else None

        readings = [rr_reading(t) for t in times]
        for sign, label in ((1, "positive"), (-1, "negative")):
            expected = oracle_episodes(times, readings,
                                       lambda r, was_open, s=sign: r[0] == s and (was_open or r[1]))
            assert stored_episodes(store, "rr7", f"{cur}/7d/{label}") == expected, (cur, label)

        # spot: the latest index against every point of the 400 minutes before it
        def spot_reading(t):
            part = upto(t)["index_usd"]
            window = part[part.index >= part.index[-1] - pd.Timedelta(minutes=400)]
            return None if len(window) < 2 else float(np.max(np.abs(window.iloc[-1] / window.iloc[:-1] - 1)))

        expected = oracle_episodes(times, [spot_reading(t) for t in times],
                                   lambda v, was_open: v > (0.010 if was_open else 0.015))
        assert stored_episodes(store, "spot", cur) == expected, cur

        # 30d ATM IV rank: the last summary of each UTC day before the evaluation's day, then the latest one
        def rank_reading(t):
            start = pd.Timestamp(t).floor("D")
            before = snaps[snaps.index < start]
            last_of_day = before.groupby(before.index.floor("D")).tail(1)
            points = pd.concat([last_of_day[last_of_day.index >= start - pd.Timedelta(days=365)],
                                upto(t).tail(1)])["atm_iv_30d_marks"]
            x = points.to_numpy(dtype=float)
            return None if x.size < 5 or x.max() == x.min() else (x[-1] - x.min()) / (x.max() - x.min())

        expected = oracle_episodes(times, [rank_reading(t) for t in times],
                                   lambda v, was_open: v < (0.25 if was_open else 0.2))
        assert stored_episodes(store, "iv_low", cur) == expected, cur

    # tracked suggestions: the P/L of the latest track point (exit, else marks) against the rule's level
    fired = {"loss": 0, "target": 0}
    for doc in read.open_suggestions(store):
        m = doc["metrics"]
        premium = abs(m["option_premium_usd"] or 0.0)

        def pnl_at(t):
            points = [p for p in doc["track"] if as_utc(p["timestamp"]) <= t]
            if not points:
                return None
            p = points[-1]
            return p["exit_pnl_usd"] if p.get("exit_pnl_usd") is not None else p.get("pnl_usd")

        pnls = [pnl_at(t) for t in times]
        for name, bound, fraction, multiple, sign in (("loss", m.get("max_loss_usd"), 0.5, 2.0, -1),
                                                      ("target", m.get("max_profit_usd"), 0.4, 1.0, 1)):
            level = (sign * fraction * abs(bound) if bound is not None and sign * bound > 0
                     else sign * multiple * premium if bound is None and premium else None)
            if level is None:
                assert stored_episodes(store, name, doc["_id"]) == []
                continue
            expected = oracle_episodes(times, pnls, lambda v, was_open, lv=level, s=sign:
                                       s * v > s * (lv - s * 0.1 * abs(lv) if was_open else lv))
            assert stored_episodes(store, name, doc["_id"]) == expected, (name, doc["_id"])
            fired[name] += len(expected)
    assert fired["loss"] > 0 and fired["target"] > 0


def test_job_failed_from_real_runs_one_post_per_episode_and_missed_jobs(store, tmp_path, monkeypatch):
    from jobs.worker import JobFailed, Worker
    from qortcli.schedule import load_schedule
    from qortcli.steps.alerts import run_alerts

    def settings_with(path: str, name: str, url: str) -> Path:
        jobs = (f'import_chain = {{ step = "qortcli.steps.collect.run_collect_file", command = "collect deribit '
                f'--from-file", every = "5m", args = {{ path = "{path}" }} }}\n'
                'backfill = { step = "qortcli.steps.surface.run_backfill", command = "surface --backfill", '
                'cron = "*/10 * * * *" }\n')
        alerts = (f'[[alerts.webhooks]]\nname = "team"\nurl = "{url}"\nbackoff = "0.05s"\n\n'
                  '[[alerts.rules]]\nname = "failed"\nkind = "job_failed"\n\n'
                  '[[alerts.rules]]\nname = "missed"\nkind = "job_missed"\n')
        return write_settings(tmp_path, name, jobs, alerts)

    def worker_with(settings: Path) -> Worker:
        monkeypatch.setenv("QORT_SETTINGS", str(settings))
        return Worker(store, load_schedule())

    with Receiver() as rx:
        missing = str(tmp_path / "no-such-chain.csv")
        failing = settings_with(missing, "failing", rx.url)
        with pytest.raises(JobFailed):
            worker_with(failing).run_once("import_chain")
        first = run_alerts(store)
        (opened,) = [a for a in first["opened"] if a["rule"] == "failed"]
        assert opened["subject"] == "import_chain" and "no-such-chain.csv" in opened["title"]
        run_alerts(store), run_alerts(store)       # still failing: the same episode, no new POST
        assert len(rx.posts()) == 1 and rx.posts()[0]["json"]["alert"]["subject"] == "import_chain"
        assert rx.posts()[0]["json"]["alert"]["trigger"]["values"]["status"] == "failed"

        worker_with(settings_with(str(WEEK[-1]), "working", rx.url)).run_once("import_chain")   # a real, ok run
        cleared = run_alerts(store)
        assert [(a["rule"], a["subject"]) for a in cleared["closed"]] == [("failed", "import_chain")]

        with pytest.raises(JobFailed):
            worker_with(settings_with(missing, "failing_again", rx.url)).run_once("import_chain")
        again = run_alerts(store)
        assert [(a["rule"], a["subject"]) for a in again["opened"]] == [("failed", "import_chain")]
        episodes = stored_episodes(store, "failed", "import_chain")
        assert len(episodes) == 2 and episodes[0][1] is not None and episodes[1][1] is None
        assert len(rx.posts()) == 2                  # two episodes, two POSTs

        # missed: 20 minutes on, the 5-minute job has not started again (grace 60 s); backfill never ran
        later = utcnow() + timedelta(minutes=20)
        missed = run_alerts(store, now=later)
        assert [(a["rule"], a["subject"]) for a in missed["opened"]] == [("missed", "import_chain")]
        assert any(n.startswith("backfill: no run recorded") for e in missed["evaluated"] for n in e["not_evaluated"])
        worker_with(settings_with(missing, "failing_3", rx.url)).run_once("backfill")
        cron_late = run_alerts(store, now=later + timedelta(minutes=5))   # the */10 fire 10+ min after its run
        assert [(a["rule"], a["subject"]) for a in cron_late["opened"]] == [("missed", "backfill")]
        assert len(rx.posts()) == 4


def test_a_failing_webhook_is_retried_recorded_and_the_worker_carries_on(store, tmp_path, monkeypatch, caplog):
    from jobs.worker import Worker
    from qortcli.schedule import WORKER_STATE, load_schedule
    from qortcli.steps.alerts import run_alerts

    with Receiver([500, 500, ("sleep", 1.5)]) as rx:
        monkeypatch.setenv("QORT_TEST_ALERTS_HOOK", rx.url)
        settings = write_settings(
            tmp_path, "stale",
            'collect_deribit = { every = "5m" }\ncollect_prices = { cron = "10 0 * * *" }\nalerts = { every = "1m" }\n'
            'price = { after = "collect_deribit" }\n',
            f'[alerts]\nlog_file = "{tmp_path / "alerts.jsonl"}"\n\n'
            '[[alerts.webhooks]]\nname = "team"\nurl_env = "QORT_TEST_ALERTS_HOOK"\ntimeout = "0.4s"\nattempts = 3\n'
            'backoff = "0.05s"\n\n[[alerts.rules]]\nname = "stale"\nkind = "stale_data"\n')
        monkeypatch.setenv("QORT_SETTINGS", str(settings))
        worker = Worker(store, load_schedule())
        summary = worker.run_once("alerts")["alerts"]        # the scheduled job, as the worker runs it
        stale = sorted(a["subject"] for a in summary["opened"])
        assert stale == ["options/BTC", "options/ETH", "prices/BTC", "prices/ETH", "summaries/BTC", "summaries/ETH"]
        assert len(rx.posts()) == 3                          # the first alert: 500, 500, a timeout
        failed = [d for d in summary["deliveries"] if d["kind"] == "webhook"]
        assert [d["status"] for d in failed] == ["failed"] and failed[0]["tries"] == 3
        doc = read.alert(store, failed[0]["alert"])
        hook_entry = next(e for e in doc["delivery"] if e["target"] == "team")
        assert hook_entry["status"] == "failed" and [a["status"] for a in hook_entry["attempts"]] == [500, 500, None]
        assert "timed out" in hook_entry["error"] and SECRET not in hook_entry["error"]
        waiting = [d for d in store[schema.ALERTS].find({}) if d["_id"] != doc["_id"]]
        assert all(next(e for e in d["delivery"] if e["target"] == "team")["status"] == "pending" for d in waiting)
        state = store[WORKER_STATE].find_one({"_id": "job:alerts"})
        assert state["last_status"] == "ok"
        (run,) = read.job_runs(store, "alerts", limit=1)
        assert run.status == "ok"
        assert store[schema.JOB_RUNS].find_one({"_id": run.run_id})["counts"]["delivery_failures"] == 1
        # the worker carries on: the next run delivers what waited (the receiver answers now), never the failed one
        nxt = worker.run_once("alerts")["alerts"]
        assert sorted(d["status"] for d in nxt["deliveries"] if d["kind"] == "webhook") == ["delivered"] * 5
        assert len(rx.posts()) == 3 + 5 and not nxt["opened"]
        worker.run_once("alerts")
        assert len(rx.posts()) == 8                          # nothing is sent twice
    assert SECRET not in caplog.text


def test_stream_silence_while_a_session_is_recorded_running(store, tmp_path):
    from qortcli.sources.deribit import chains_from_file
    from qortcli.steps.alerts import run_alerts
    from qortcli.steps.live_chain import LiveChain, live_marks_document, reprice
    from qortcli.store.runs import recorded_run

    chain = next(c for c in chains_from_file(WEEK[-1]) if c.currency == "BTC")
    view = reprice(LiveChain.from_parsed(chain).freeze(), "ACT/365")
    settings = {"rules": [{"name": "stream", "kind": "stream_disconnected", "after": "60s"}]}

    def write(at, connected):
        ops.upsert_many(store, schema.LIVE_MARKS, [live_marks_document(view, at, {
            "connected": connected, "last_message_at": t0, "messages": 100, "reconnects": 0})])

    with recorded_run(store, "stream", {"currencies": ["BTC"]}):      # a session believed alive
        t0 = utcnow()
        write(t0, True)
        quiet = run_alerts(store, now=t0 + timedelta(seconds=30), settings=settings)
        assert quiet["opened"] == [] and quiet["evaluated"][0]["subjects"] == 1
        silent = run_alerts(store, now=t0 + timedelta(seconds=90), settings=settings)
        assert [a["subject"] for a in silent["opened"]] == ["BTC"]
        assert "connected but silent" in silent["opened"][0]["title"]
        write(t0 + timedelta(seconds=100), False)                       # the session notices the drop
        assert run_alerts(store, now=t0 + timedelta(seconds=120), settings=settings)["opened"] == []
    done = run_alerts(store, now=t0 + timedelta(seconds=150), settings=settings)   # the session ended ok
    assert [a["subject"] for a in done["closed"]] == ["BTC"] and "not expected" in done["closed"][0]["latest_title"]


def test_cli_list_ack_test_run_status_and_viewer(store, tmp_path, monkeypatch):
    from qortcli.cli import app
    from qortcli.steps.alerts import run_alerts
    from qortcli.store.readonly import open_readonly

    monkeypatch.setenv("COLUMNS", "100")
    with Receiver() as rx:
        monkeypatch.setenv("QORT_TEST_ALERTS_HOOK", rx.url)
        settings = write_settings(
            tmp_path, "cli", 'collect_deribit = { every = "5m" }\nprice = { after = "collect_deribit" }\n',
            f'[alerts]\nlog_file = "{tmp_path / "alerts.jsonl"}"\n\n'
            '[[alerts.webhooks]]\nname = "team"\nurl_env = "QORT_TEST_ALERTS_HOOK"\nbackoff = "0.05s"\n\n'
            + "".join(f'[[alerts.rules]]\n{"".join(f"{k} = {json.dumps(v)}" + chr(10) for k, v in r.items())}\n'
                      for r in MARKET[:4]))
        monkeypatch.setenv("QORT_SETTINGS", str(settings))
        for t in eval_times(store)[:6]:
            run_alerts(store, now=t)
        store.close()
        monkeypatch.setenv("QORT_DB", str(tmp_path / "db"))
        runner = CliRunner()

        def cli(*args, code=0, fits=True):
            result = runner.invoke(app, list(args))
            assert result.exit_code == code, (args, result.output)
            assert SECRET not in result.output
            if fits and "--json" not in args:  # the alerts tables and lines fit 100 columns (stdout: stderr
                assert all(len(line) <= 100 for line in result.stdout.splitlines()), result.stdout  # names the store)
            return result.output

        listed = json.loads(cli("alerts", "--json"))
        every = json.loads(cli("alerts", "list", "--all", "--json"))
        assert listed["open"] and len(every["open"]) == len(listed["open"]) and every["closed"]
        table = cli("alerts")
        first = listed["open"][0]
        assert first["short_id"] in table and "Open alerts" in table
        assert "Closed alerts" in cli("alerts", "list", "--all")
        acked = json.loads(cli("alerts", "ack", first["short_id"], "--json"))
        assert acked["changed"] and acked["alert"]["status"] == "acknowledged"
        assert "already acknowledged" in cli("alerts", "ack", first["id"])
        assert "no alert 'zzzz'" in runner.invoke(app, ["alerts", "ack", "zzzz"]).output
        cli("alerts", "ack", "zzzz", code=1)
        status = cli("status", fits=False)   # (status's own tables are as wide as they need)
        assert "Alerts (" in status and first["short_id"] in status and "acknowledged" in status
        ran = json.loads(cli("alerts", "run", "--now", "2026-01-11T21:30:00Z", "--json"))
        assert ran["now"].startswith("2026-01-11T21:30:00")
        cli("alerts", "run", "--now", "yesterday", code=2)
        posts = len(rx.posts())
        tested = json.loads(cli("alerts", "test", "--json"))
        assert tested["ok"] and [t["target"] for t in tested["targets"]] == ["team", "log"]
        assert len(rx.posts()) == posts + 1 and rx.posts()[-1]["json"]["alert"]["rule"] == "test"
        assert "ok" in cli("alerts", "test")

        from qortview.alerts import open_alerts

        rows = open_alerts(open_readonly(str(tmp_path / "db")))
        json.dumps(rows)   # plain values only
        assert [r["id"] for r in rows] == [r["id"] for r in listed["open"]]
        assert {r["short_id"]: r["acknowledged"] for r in rows}[first["short_id"]] is True
    monkeypatch.setenv("QORT_TEST_ALERTS_HOOK", f"http://127.0.0.1:9/hooks/{SECRET}")
    assert "delivery failed for team" in runner.invoke(app, ["alerts", "test"]).output
    cli("alerts", "test", code=1)
    monkeypatch.setenv("QORT_SETTINGS", str(write_settings(tmp_path, "none", 'collect_deribit = { every = "5m" }', "")))
    unset = runner.invoke(app, ["alerts", "test"])
    assert unset.exit_code == 1 and "no alert target configured" in unset.output
    assert "QORT_ALERTS_WEBHOOK_URL is not set" in unset.output      # the packaged webhook, off until its variable is set
    log_only = write_settings(tmp_path, "log", 'collect_deribit = { every = "5m" }',
                              f'[alerts]\nlog_file = "{tmp_path / "only.jsonl"}"\n')
    monkeypatch.setenv("QORT_SETTINGS", str(log_only))
    tested = json.loads(cli("alerts", "test", "--json"))          # the log is a target; the unset webhook is no failure
    assert tested["ok"] and [t["target"] for t in tested["targets"]] == ["log"]
    assert tested["off"] == [{"target": "default", "reason": "QORT_ALERTS_WEBHOOK_URL is not set"}]
    assert "webhook default is off" in cli("alerts", "test")
    assert json.loads((tmp_path / "only.jsonl").read_text().splitlines()[-1])["alert"]["rule"] == "test"


def test_no_webhook_url_in_any_output_document_or_log_line(store, tmp_path, monkeypatch, caplog):
    from qortcli.cli import app
    from qortcli.steps.alerts import run_alerts

    log_file = tmp_path / "alerts.jsonl"
    with Receiver([503, 503]) as rx:
        monkeypatch.setenv("QORT_TEST_ALERTS_HOOK", rx.url)
        settings = write_settings(
            tmp_path, "secrets", 'collect_deribit = { every = "5m" }\n',
            f'[alerts]\nlog_file = "{log_file}"\n\n[[alerts.webhooks]]\nname = "team"\nurl_env = "QORT_TEST_ALERTS_HOOK"\n'
            'attempts = 2\nbackoff = "0.05s"\n\n[[alerts.rules]]\nname = "stale"\nkind = "stale_data"\n\n'
            '[[alerts.rules]]\nname = "term"\nkind = "term_inversion"\nmax_age = "3650d"\n')
        monkeypatch.setenv("QORT_SETTINGS", str(settings))
        summary = run_alerts(store)
        assert summary["opened"] and any(d["status"] != "delivered" for d in summary["deliveries"])
        run_alerts(store)
        store.close()
        monkeypatch.setenv("QORT_DB", str(tmp_path / "db"))
        runner = CliRunner()
        outputs = [runner.invoke(app, args).output for args in (
            ["alerts", "--all"], ["alerts", "list", "--all", "--json"], ["alerts", "run"], ["alerts", "run", "--json"],
            ["alerts", "test"], ["alerts", "test", "--json"], ["status"], ["status", "--json"], ["-v", "alerts", "run"])]
        assert rx.posts()
    label = json.loads(outputs[5])["targets"][0]["endpoint"]
    assert label.startswith("http://127.0.0.1:") and label.endswith(f"#{label.rsplit('#', 1)[1]}") and "/…#" in label
    db = connect(str(tmp_path / "db"))
    try:
        stored = json.dumps([*db[schema.ALERTS].find({}), *db[schema.JOB_RUNS].find({})], default=str, ensure_ascii=False)
    finally:
        db.close()
    assert label in stored                                   # the redacted form is what is kept
    for text in (*outputs, stored, log_file.read_text(), caplog.text):
        assert SECRET not in text and rx.url not in text


def test_summaries_written_between_runs_are_seen_by_the_next_run(tmp_path):
    """The worker's runs read summaries incrementally: a chain stored and summarised after one run is in the next."""
    from qortcli.steps.alerts import run_alerts
    from qortcli.steps.collect import run_collect_file
    from qortcli.steps.surface import run_backfill
    from qortcli.store import ensure_schema

    db = connect(str(tmp_path / "db"))
    ensure_schema(db)
    settings = {"rules": [MARKET[2]]}                       # rr7: BTC's 7d RR25 turns positive at 09:25 on Jan 5
    try:
        run_collect_file(db, WEEK[0])
        run_backfill(db)
        t0 = read.snapshots(db, "BTC")[0].timestamp
        assert run_alerts(db, now=t0 + timedelta(minutes=1), settings=settings)["opened"] == []
        run_collect_file(db, WEEK[1])
        run_backfill(db)
        t1 = read.snapshots(db, "BTC")[-1].timestamp
        opened = run_alerts(db, now=t1 + timedelta(minutes=1), settings=settings)["opened"]
        assert [a["subject"] for a in opened] == ["BTC/7d/positive"]
        assert opened[0]["values"]["flip_at"] == t1
    finally:
        db.close()


def test_episodes_reads_and_ack_on_both_stores(any_db):
    """The same run on the embedded engine and on the MongoDB code path: a failed run of a scheduled job (recorded
    by the step inside the worker's run context) opens one episode; ack by short id; a later ok run closes it."""
    from qortcli.errors import StepError
    from qortcli.steps.alerts import ack_alert, list_alerts, run_alerts
    from qortcli.store.runs import recorded_run, run_context

    settings = {"rules": [{"name": "failed", "kind": "job_failed", "jobs": ["price"]}]}
    with run_context("scheduler", job="price"), pytest.raises(StepError):
        with recorded_run(any_db, "price", {}):
            raise StepError("no complete BTC options snapshot in the store")
    opened = run_alerts(any_db, settings=settings)["opened"]
    assert [(a["rule"], a["subject"]) for a in opened] == [("failed", "price")]
    assert run_alerts(any_db, settings=settings)["opened"] == []
    short = opened[0]["short_id"]
    assert ack_alert(any_db, short, settings=settings)["alert"]["status"] == "acknowledged"
    assert [r["status"] for r in list_alerts(any_db)["open"]] == ["acknowledged"]
    with run_context("scheduler", job="price"), recorded_run(any_db, "price", {}):
        pass
    closed = run_alerts(any_db, settings=settings)["closed"]
    assert [c["short_id"] for c in closed] == [short] and closed[0]["status"] == "closed"
    assert closed[0]["acknowledged_at"] is not None
    view = list_alerts(any_db, include_closed=True)
    assert view["open"] == [] and [r["short_id"] for r in view["closed"]] == [short]
