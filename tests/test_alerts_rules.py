"""The pure parts of alerts: settings validation, the rules (market and health) on real recorded series and on
constructed edge cases, episodes, URL redaction. Expected values come from small oracles written here."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from qortcli.alerts.conditions import Condition, clear_level, crossed
from qortcli.alerts.episodes import plan_episodes
from qortcli.alerts.health import DataAge, FinishedRun, HealthInputs, JobHealth, StreamState, evaluate_health
from qortcli.alerts.market import MarketInputs, TrackedSuggestion, evaluate_market, largest_move
from qortcli.alerts.redact import redact_url, scrub, url_hash
from qortcli.alerts.settings import alert_settings
from qortcli.errors import ConfigError

T0 = datetime(2026, 1, 5, 4, 0, tzinfo=timezone.utc)


def rule(kind: str, **params):
    """One validated rule of `kind` (through the settings parser, as the step gets it)."""
    return alert_settings({"rules": [{"name": f"r_{kind}", "kind": kind, **params}]}, environ={}).rules[0]


def frame(values: dict[str, list], times: list[datetime]) -> pd.DataFrame:
    return pd.DataFrame(values, index=pd.DatetimeIndex(times, name="timestamp"))


def by_subject(conditions: list[Condition]) -> dict[str, Condition]:
    return {c.subject: c for c in conditions}


# ------------------------------------------------------------------------------------------- settings

def test_packaged_settings_validate_and_the_webhook_is_off_without_its_variable():
    settings = alert_settings(environ={})
    kinds = {r.kind for r in settings.rules}
    assert kinds == {"iv_rank", "rr25_flip", "term_inversion", "spot_move", "suggestion_max_loss", "suggestion_target",
                     "job_failed", "job_missed", "stale_data", "stream_disconnected"}
    (hook,) = settings.webhooks
    assert hook.url is None and hook.missing == "QORT_ALERTS_WEBHOOK_URL is not set"
    on = alert_settings(environ={"QORT_ALERTS_WEBHOOK_URL": "https://ntfy.sh/some-secret-topic"})
    assert on.webhooks[0].url == "https://ntfy.sh/some-secret-topic"
    assert "some-secret-topic" not in repr(on) and on.webhooks[0].label.startswith("https://ntfy.sh/…#")
    high = settings.rule("iv_percentile_high")
    assert (high.direction, high.level, high.hysteresis, high.tenor_days) == ("above", 0.9, 0.05, 30)


@pytest.mark.parametrize("section, message", [
    ({"rules": [{"name": "x", "kind": "iv_rank"}]}, "needs above = LEVEL or below = LEVEL"),
    ({"rules": [{"name": "x", "kind": "iv_rank", "above": 0.9, "below": 0.1}]}, "not both"),
    ({"rules": [{"name": "x", "kind": "iv_rank", "above": 90}]}, "fraction in [0, 1]"),
    ({"rules": [{"name": "x", "kind": "iv_rank", "above": 0.9, "tenor_days": 45}]}, "tenor_days = 45"),
    ({"rules": [{"name": "x", "kind": "nope"}]}, "kind = 'nope' is not one of"),
    ({"rules": [{"name": "x", "kind": "spot_move", "windw": "5m"}]}, "unknown key windw"),
    ({"rules": [{"name": "x", "kind": "spot_move", "window": "5 minutes"}]}, "window = '5 minutes'"),
    ({"rules": [{"name": "x", "kind": "spot_move", "move": 0.01, "hysteresis": 0.02}]}, "smaller than move"),
    ({"rules": [{"name": "x", "kind": "term_inversion", "front_days": 90, "back_days": 30}]}, "shorter than"),
    ({"rules": [{"name": "a b", "kind": "job_failed"}]}, "letters, digits"),
    ({"rules": [{"name": "x", "kind": "job_failed"}, {"name": "x", "kind": "job_missed"}]}, "repeated: x"),
    ({"rules": [{"name": "x", "kind": "stale_data", "max_age": {"options": "20m", "bars": "1d"}}]}, "unknown key bars"),
    ({"webhooks": [{"name": "w"}]}, "exactly one of url_env"),
    ({"webhooks": [{"name": "w", "url": "ftp://example.com/T0KEN"}]}, "must start with http"),
    ({"webhooks": [{"name": "w", "url_env": "X", "format": "xml"}]}, "format = 'xml'"),
    ({"delivery_budget": -1}, "delivery_budget"),
    ({"surprise": 1}, "unknown key surprise"),
])
def test_bad_settings_are_one_clear_line_naming_the_rule_and_key(section, message):
    with pytest.raises(ConfigError) as err:
        alert_settings(section, environ={})
    text = str(err.value)
    assert message in text and "\n" not in text
    assert "T0KEN" not in text  # a webhook URL is never echoed, even a wrong one


def test_disabled_rules_are_dropped_and_durations_are_seconds():
    settings = alert_settings({"rules": [{"name": "a", "kind": "spot_move", "window": "90m", "enabled": False},
                                         {"name": "b", "kind": "stream_disconnected", "after": "2m"}]}, environ={})
    assert [r.name for r in settings.rules] == ["b"] and settings.rules[0].after_s == 120.0


# ------------------------------------------------------------------------------------------- level crossing

@pytest.mark.parametrize("value, direction, was_open, expected", [
    (0.91, "above", False, True), (0.90, "above", False, False), (0.87, "above", False, False),
    (0.87, "above", True, True), (0.85, "above", True, False), (0.80, "above", True, False),
    (0.09, "below", False, True), (0.12, "below", False, False), (0.12, "below", True, True),
    (0.151, "below", True, False), (float("nan"), "above", True, None), (None, "below", False, None),
])
def test_crossing_with_hysteresis(value, direction, was_open, expected):
    level = 0.90 if direction == "above" else 0.10
    assert crossed(value, level, direction, 0.05, was_open) is expected
    assert clear_level(level, direction, 0.05) == pytest.approx(level - 0.05 if direction == "above" else level + 0.05)


# ------------------------------------------------------------------------------------------- market rules

def test_iv_rank_and_percentile_on_the_recorded_january_atm_ivs():
    from vol_fixtures import january_summaries

    week = january_summaries("btc")                  # 28 real summaries, 2026-01-05 … 01-11
    now = week.index[-1].to_pydatetime() + timedelta(minutes=1)
    inputs = MarketInputs(now=now, history={"BTC": week})
    window = week["atm_iv_30d_marks"].to_numpy()     # oracle: every point lies in the 365-day lookback
    x, history = window[-1], window[:-1]
    rank_oracle = (x - window.min()) / (window.max() - window.min())
    pct_oracle = np.count_nonzero(history < x) / history.size
    assert 0.0 < rank_oracle < 1.0
    for measure, oracle in (("rank", rank_oracle), ("percentile", pct_oracle)):
        (below,) = evaluate_market(rule("iv_rank", measure=measure, below=min(oracle + 0.05, 1.0), min_points=5),
                                   inputs)
        (above,) = evaluate_market(rule("iv_rank", measure=measure, above=max(oracle - 0.05, 0.0), min_points=5),
                                   inputs)
        (not_above,) = evaluate_market(rule("iv_rank", measure=measure, above=min(oracle + 0.01, 1.0),
                                            min_points=5, hysteresis=0.02), inputs)
        assert below.values[measure] == pytest.approx(oracle, abs=1e-12)
        assert below.active and above.active and not_above.active is False
        assert below.values["atm_iv"] == pytest.approx(x) and below.values["n_points"] == 28
        assert below.observed_at == week.index[-1].to_pydatetime()
        # hysteresis: the same reading keeps an open episode open (it clears only 0.02 below the level)
        (held,) = evaluate_market(rule("iv_rank", measure=measure, above=min(oracle + 0.01, 1.0), min_points=5,
                                       hysteresis=0.02), inputs, frozenset({"BTC"}))
        assert held.active is True
    (short,) = evaluate_market(rule("iv_rank", above=0.5, min_points=40), inputs)
    assert short.active is None and short.reason == "n/a: needs 40 points, has 28"
    late = MarketInputs(now=now + timedelta(days=2), history={"BTC": week})
    (stale,) = evaluate_market(rule("iv_rank", above=0.0, min_points=5, lookback_days=30), late)
    assert stale.active is None and "h old" in stale.reason


def test_rr25_flip_needs_a_point_beyond_the_band_and_closes_when_it_flips_back():
    times = [T0 + timedelta(hours=h) for h in range(7)]
    rr = [-0.010, 0.003, 0.008, 0.004, -0.003, -0.004, -0.009]   # band 0.005: −, (in), +, (in), (in), (in), −
    data = {"BTC": frame({"rr25_30d_marks": rr}, times)}
    r = rule("rr25_flip", band=0.005, lookback="24h")

    def at(i, open_=frozenset()):
        return by_subject(evaluate_market(r, MarketInputs(now=times[i], recent={"BTC": data["BTC"].iloc[:i + 1]}),
                                          frozenset(open_)))

    first = at(1)          # −0.010 then +0.003 inside the band: still negative, never flipped: nothing
    assert first["BTC/30d/negative"].active is False and first["BTC/30d/positive"].active is False
    flip = at(2)           # +0.008 beyond the band after a negative point: flipped positive
    assert flip["BTC/30d/positive"].active is True
    assert flip["BTC/30d/positive"].values["flip_at"] == times[2] and flip["BTC/30d/negative"].active is False
    inside = at(5, {"BTC/30d/positive"})   # −0.003, −0.004 are inside the band: still positive (no flapping)
    assert inside["BTC/30d/positive"].active is True and inside["BTC/30d/negative"].active is False
    back = at(6, {"BTC/30d/positive"})     # −0.009: flipped back: the positive episode clears, a negative one opens
    assert back["BTC/30d/positive"].active is False and back["BTC/30d/negative"].active is True
    # a flip older than the lookback, first seen now, opens nothing; an open episode goes on past the lookback
    later = T0 + timedelta(days=3)
    old = frame({"rr25_30d_marks": [-0.01, 0.01, 0.012]}, [later - timedelta(hours=30), later - timedelta(hours=23),
                                                           later - timedelta(hours=1)])
    seen = by_subject(evaluate_market(r, MarketInputs(now=later, recent={"BTC": old})))
    assert seen["BTC/30d/positive"].active is False
    held = by_subject(evaluate_market(r, MarketInputs(now=later, recent={"BTC": old}), frozenset({"BTC/30d/positive"})))
    assert held["BTC/30d/positive"].active is True
    quiet = by_subject(evaluate_market(r, MarketInputs(now=later, recent={"BTC": frame(
        {"rr25_30d_marks": [0.001, -0.002]}, [later - timedelta(hours=2), later])})))
    assert quiet["BTC/30d/positive"].active is None and "outside ±0.005" in quiet["BTC/30d/positive"].reason


def test_term_inversion_opens_above_the_level_and_clears_below_it_minus_the_hysteresis():
    r = rule("term_inversion", level=0.0, hysteresis=0.005)
    cases = [(0.45, 0.44, False, True), (0.442, 0.444, True, True), (0.440, 0.446, True, False),
             (0.442, 0.444, False, False)]
    for front, back, was_open, expected in cases:
        data = frame({"atm_iv_7d_marks": [front], "atm_iv_90d_marks": [back], "snapshot_id": ["BTC-x"]}, [T0])
        (c,) = evaluate_market(r, MarketInputs(now=T0 + timedelta(minutes=1), recent={"BTC": data}),
                               frozenset({"BTC"} if was_open else ()))
        assert c.active is expected, (front, back, was_open)
        assert c.values["front_minus_back"] == pytest.approx(front - back)
        assert c.inputs["snapshot_id"] == "BTC-x"
    nan = frame({"atm_iv_7d_marks": [np.nan], "atm_iv_90d_marks": [0.4]}, [T0])
    (c,) = evaluate_market(r, MarketInputs(now=T0, recent={"BTC": nan}))
    assert c.active is None and c.reason == "no data"


def test_spot_move_uses_the_largest_move_of_the_latest_point_within_the_window():
    times = pd.DatetimeIndex([T0 + timedelta(minutes=m) for m in (0, 20, 40, 55, 60)])
    spot = np.array([100.0, 104.0, 101.0, 99.0, 101.5])
    move, i = largest_move(times, spot, 3600)
    oracle = spot[-1] / spot[:-1] - 1                       # every earlier point is within 60 minutes
    assert i == int(np.argmax(np.abs(oracle))) and move == pytest.approx(oracle[i])
    move45, i45 = largest_move(times, spot, 45 * 60)        # only the points of minutes 20, 40, 55
    oracle45 = spot[-1] / spot[1:4] - 1
    assert i45 == 1 + int(np.argmax(np.abs(oracle45))) == 3 and move45 == pytest.approx(101.5 / 99.0 - 1)
    assert largest_move(times[:1], spot[:1], 3600) is None
    with pytest.raises(ValueError, match="positive"):
        largest_move(times, np.array([1.0, 0.0, 1.0, 1.0, 1.0]), 3600)
    r = rule("spot_move", move=0.02, window="60m", hysteresis=0.005)
    series = pd.Series(spot, index=times)
    (c,) = evaluate_market(r, MarketInputs(now=times[-1].to_pydatetime(), spot={"BTC": series}))
    assert c.active is True and c.values["move"] == pytest.approx(oracle[i])
    (held,) = evaluate_market(r, MarketInputs(now=times[-1].to_pydatetime(), spot={"BTC": series.iloc[[2, 4]]}),
                              frozenset({"BTC"}))
    assert held.values["abs_move"] == pytest.approx(101.5 / 101.0 - 1) and held.active is False  # 0.5 % < 1.5 %
    (gone,) = evaluate_market(r, MarketInputs(now=times[-1].to_pydatetime() + timedelta(hours=2), spot={"BTC": series}))
    assert gone.active is None and "no spot index point" in gone.reason


def _suggestion(**kw) -> TrackedSuggestion:
    base = dict(suggestion_id="BTC-20260105T041127Z|iron_condor|20260123", currency="BTC", strategy="iron_condor",
                expiry_code="23JAN26", entered_at=T0, point_at=T0 + timedelta(hours=6), point_snapshot_id="BTC-y",
                pnl_usd_marks=-100.0, pnl_usd_exit=-150.0, max_loss_usd=-1000.0, max_profit_usd=400.0,
                option_premium_usd=-400.0)
    return TrackedSuggestion(**{**base, **kw})


def test_suggestion_levels_bounded_unbounded_and_the_exit_pnl_fallback():
    loss = rule("suggestion_max_loss", fraction=0.5, premium_multiple=2.0, hysteresis=0.1)
    target = rule("suggestion_target", fraction=0.5, premium_multiple=1.0)

    def one(r, s, open_=False):
        (c,) = evaluate_market(r, MarketInputs(now=T0 + timedelta(days=1), suggestions=(s,)),
                               frozenset({s.suggestion_id} if open_ else ()))
        return c

    c = one(loss, _suggestion(pnl_usd_exit=-501.0))
    assert c.active and c.thresholds["level_usd"] == -500.0 and c.values["pnl_source"] == "exit"
    assert one(loss, _suggestion(pnl_usd_exit=-460.0), open_=True).active is True    # clears above −450
    assert one(loss, _suggestion(pnl_usd_exit=-440.0), open_=True).active is False
    marks = one(loss, _suggestion(pnl_usd_exit=None, pnl_usd_marks=-600.0))           # no quote: mark P/L
    assert marks.active and marks.values["pnl_source"] == "marks"
    unbounded = one(loss, _suggestion(max_loss_usd=None, pnl_usd_exit=-801.0))        # 2 × |−400| premium
    assert unbounded.active and unbounded.thresholds["level_usd"] == -800.0 and "unbounded" in unbounded.thresholds["basis"]
    assert one(target, _suggestion(pnl_usd_exit=201.0)).active is True                # 0.5 × 400 max profit
    straddle = _suggestion(max_profit_usd=None, option_premium_usd=700.0, pnl_usd_exit=701.0)
    assert one(target, straddle).thresholds["level_usd"] == 700.0 and one(target, straddle).active
    none = one(target, _suggestion(max_profit_usd=None, option_premium_usd=0.0))
    assert none.active is None and "no max profit level" in none.reason
    assert one(loss, _suggestion(point_at=None)).active is None


# ------------------------------------------------------------------------------------------- health rules

def test_job_failed_until_a_run_succeeds():
    now = T0 + timedelta(hours=1)
    failed = JobHealth("price", "after collect_deribit", chained=True, last_started_at=T0, failures_in_row=2,
                       last_finished=FinishedRun("r1", "failed", T0, T0 + timedelta(seconds=3), "StepError: no chain"))
    ok = JobHealth("surface", "after price", chained=True, last_started_at=T0,
                   last_finished=FinishedRun("r2", "ok", T0, T0 + timedelta(seconds=3), None))
    never = JobHealth("optimize", "cron 30 0 * * * (UTC)")
    out = by_subject(evaluate_health(rule("job_failed"), HealthInputs(now=now, jobs=(failed, ok, never))))
    assert out["price"].active and "2 in a row" in out["price"].title and "StepError: no chain" in out["price"].title
    assert out["surface"].active is False and out["optimize"].active is None
    only = evaluate_health(rule("job_failed", jobs=["surface"]), HealthInputs(now=now, jobs=(failed, ok)))
    assert [c.subject for c in only] == ["surface"]


def test_job_missed_interval_cron_recorded_misses_and_jobs_that_never_ran():
    from qortcli.schedule import JobSpec, fire_times

    now = datetime(2026, 1, 11, 12, 20, tzinfo=timezone.utc)
    every = JobHealth("collect_deribit", "every 5 min", every_s=300.0, last_started_at=now - timedelta(minutes=16),
                      latest_status="ok")
    fresh = JobHealth("alerts", "every 1 min", every_s=60.0, last_started_at=now - timedelta(seconds=30), latest_status="ok")
    spec = JobSpec("suggest", "x.y", cron="15 * * * *")
    fires = tuple(fire_times(spec, now - timedelta(hours=3), now))
    assert fires[-1] == now.replace(minute=15) and len(fires) == 3     # 10:15, 11:15, 12:15
    # grace 600 s: the 12:15 fire is only 5 min old, so the due time is 11:15 — started 11:15:02: on time
    on_time = JobHealth("suggest", "cron", cron_fires=fires, last_started_at=now.replace(hour=11, minute=15, second=2),
                        latest_status="ok")
    late = JobHealth("track", "cron", cron_fires=fires, last_started_at=now.replace(hour=10, minute=15), latest_status="ok")
    recorded = JobHealth("prune", "cron", cron_fires=fires, last_started_at=now - timedelta(days=1),
                         latest_status="missed", latest_error="run due at ... was more than 600 s late and was skipped")
    never = JobHealth("optimize", "cron", cron_fires=fires)
    chained = JobHealth("price", "after collect_deribit", chained=True, last_started_at=now - timedelta(days=2))
    out = by_subject(evaluate_health(rule("job_missed"), HealthInputs(
        now=now, jobs=(every, fresh, on_time, late, recorded, never, chained), grace_s=600.0)))
    assert out["collect_deribit"].active is True     # due 12:09, 11 min ago > 10 min grace
    assert out["collect_deribit"].values["due_at"] == now - timedelta(minutes=11)
    assert out["alerts"].active is False and out["suggest"].active is False
    assert out["track"].active is True and out["track"].values["due_at"] == now.replace(hour=11, minute=15)
    assert out["prune"].active is True and "late" in out["prune"].title
    assert out["optimize"].active is None and "price" not in out
    tight = by_subject(evaluate_health(rule("job_missed", grace="2m"), HealthInputs(now=now, jobs=(on_time,))))
    assert tight["suggest"].active is True            # with 2 min grace the 12:15 fire is due and nothing started


def test_stale_data_against_cadence_or_explicit_max_age():
    now = T0 + timedelta(hours=1)
    data = (DataAge("options", "options/BTC", now - timedelta(minutes=16), 300.0, "collect_deribit every 5 min"),
            DataAge("options", "options/ETH", now - timedelta(minutes=14), 300.0, "collect_deribit every 5 min"),
            DataAge("summaries", "summaries/BTC", None, 300.0, "collect_deribit every 5 min"),
            DataAge("prices", "prices/BTC", now - timedelta(days=2), None, "collect_prices not scheduled"))
    out = by_subject(evaluate_health(rule("stale_data"), HealthInputs(now=now, data=data)))
    assert out["options/BTC"].active is True and out["options/ETH"].active is False   # 15 min = 3 × 5 min
    assert out["summaries/BTC"].active is None and out["prices/BTC"].active is None
    explicit = by_subject(evaluate_health(rule("stale_data", max_age={"prices": "1d", "options": "30m"}),
                                          HealthInputs(now=now, data=data)))
    assert explicit["prices/BTC"].active is True and explicit["options/BTC"].active is False
    only = evaluate_health(rule("stale_data", datasets=["prices"], symbols=["ETH"]), HealthInputs(now=now, data=data))
    assert only == []


def test_stream_silence_only_when_a_stream_should_run():
    now = T0 + timedelta(minutes=10)
    states = (StreamState("BTC", now - timedelta(seconds=5), True, now - timedelta(seconds=5), True, "schedule"),
              StreamState("ETH", now - timedelta(minutes=3), True, now - timedelta(minutes=3), True, "schedule"),
              StreamState("SOL", now - timedelta(minutes=9), False, now - timedelta(minutes=9), False, "stopped"))
    out = by_subject(evaluate_health(rule("stream_disconnected", after="60s"), HealthInputs(now=now, streams=states)))
    assert out["BTC"].active is False
    assert out["ETH"].active is True and "connected but silent" in out["ETH"].title
    assert out["SOL"].active is False and "not expected" in out["SOL"].title


# ------------------------------------------------------------------------------------------- episodes

def _cond(subject: str, active, rule_name: str = "r") -> Condition:
    return Condition(rule=rule_name, kind="term_inversion", category="market", subject=subject, severity="info",
                     active=active, title=f"{subject} {active}", values={"v": 1.0})


def test_plan_opens_keeps_closes_and_leaves_unevaluated_episodes_alone():
    now = T0 + timedelta(hours=2)
    docs = [{"_id": f"r|{s}|x", "rule": "r", "subject": s, "status": "open", "opened_at": T0, "evaluations": 3}
            for s in ("held", "cleared", "unknown", "gone")]
    docs.append({"_id": "old|BTC|x", "rule": "old", "subject": "BTC", "status": "acknowledged", "opened_at": T0})
    docs.append({"_id": "r|held|older", "rule": "r", "subject": "held", "status": "open",
                 "opened_at": T0 - timedelta(days=1)})
    conditions = [_cond("held", True), _cond("cleared", False), _cond("unknown", None), _cond("new", True),
                  _cond("quiet", False)]
    plan = plan_episodes(conditions, docs, now, evaluated_rules={"r"}, configured_rules={"r"},
                         deliveries=[{"target": "team", "status": "pending"}])
    assert [d["subject"] for d in plan.opened] == ["new"]
    assert plan.opened[0]["delivery"] == [{"target": "team", "status": "pending"}]
    assert plan.opened[0]["trigger"]["values"] == {"v": 1.0} and plan.opened[0]["opened_at"] == now
    assert plan.kept == (("r|held|x", {"last_seen_at": now, "latest": plan.kept[0][1]["latest"], "evaluations": 4}),)
    closed = dict(plan.closed)
    assert closed["r|cleared|x"]["close_reason"] == "cleared: cleared False"
    assert "no longer evaluated" in closed["r|gone|x"]["close_reason"]
    assert "no longer in the [alerts] settings" in closed["old|BTC|x"]["close_reason"]
    assert "superseded" in closed["r|held|older"]["close_reason"]
    assert plan.untouched == ("r|unknown|x",)
    failed_rule = plan_episodes([], docs[:1], now, evaluated_rules=set(), configured_rules={"r"})
    assert failed_rule.untouched == ("r|held|x",) and not failed_rule.closed
    with pytest.raises(ValueError, match="twice"):
        plan_episodes([_cond("a", True), _cond("a", False)], [], now, {"r"}, {"r"})


# ------------------------------------------------------------------------------------------- redaction

def test_webhook_urls_are_redacted_to_scheme_host_and_hash():
    url = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX?x=1"
    label = redact_url(url)
    assert label == f"https://hooks.slack.com/…#{url_hash(url)}" and "SECRET" not in label
    assert redact_url("https://user:pw@ntfy.example.com:8443/topic") .startswith("https://ntfy.example.com:8443/…#")
    assert redact_url("http://127.0.0.1:9") == f"http://127.0.0.1:9#{url_hash('http://127.0.0.1:9')}"
    text = scrub(f"failed to reach {url} (path services/T000/B000/XXXXSECRETXXXX)", url)
    assert "SECRET" not in text and label in text
