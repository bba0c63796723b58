"""Webhook and log-file delivery against a receiver on 127.0.0.1 (no network): bodies Slack, Discord and ntfy
accept, retries with backoff, a timeout, final and transient errors, the run's budget, and no URL in any error."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from qortcli.alerts.delivery import append_log, message_line, post_webhook, request_body
from qortcli.alerts.settings import alert_settings

from webhook_receiver import SECRET, Receiver, closed_port_url

NOW = datetime(2026, 1, 11, 21, 19, 57, 100000, tzinfo=timezone.utc)
ALERT = {"_id": "term_inversion|BTC|20260105T041227Z", "short_id": "66b923cd", "rule": "term_inversion",
         "kind": "term_inversion", "category": "market", "subject": "BTC", "severity": "warning", "status": "open",
         "title": "BTC term structure (marks) 7d − 90d ATM IV = 44.2% − 43.8% = +0.42 vol pts > +0.00 vol pts (inverted)",
         "opened_at": NOW, "observed_at": NOW,
         "trigger": {"values": {"front_minus_back": 0.0041799513405892386, "nan": float("nan")},
                     "thresholds": {"level": 0.0}, "inputs": {"snapshot_id": "BTC-20260105T041127Z"}, "observed_at": NOW},
         "delivery": [{"target": "team", "endpoint": "http://127.0.0.1/…#x"}]}


def hook(url: str, **kw):
    cfg = {"name": "team", "url": url, "timeout": kw.pop("timeout", "2s"), "backoff": kw.pop("backoff", "0.05s"), **kw}
    return alert_settings({"webhooks": [cfg]}, environ={}).webhooks[0]


def test_json_body_has_text_content_and_the_structured_alert():
    with Receiver() as rx:
        result = post_webhook(hook(rx.url), ALERT)
        (post,) = rx.posts()
    assert result.ok and result.final and [a.status for a in result.attempts] == [200]
    assert post["headers"]["Content-Type"] == "application/json"
    body = post["json"]
    assert body["text"] == body["content"] == message_line(ALERT)
    assert body["text"].startswith("[qortfolio] WARNING term_inversion · BTC: BTC term structure") and len(body["content"]) <= 2000
    alert = body["alert"]
    assert alert["id"] == ALERT["_id"] and alert["opened_at"] == NOW.isoformat()
    assert alert["trigger"]["values"] == {"front_minus_back": 0.0041799513405892386, "nan": None}
    assert "delivery" not in alert  # no endpoint, redacted or not, travels in the body
    assert result.endpoint.startswith("http://127.0.0.1:") and SECRET not in result.endpoint


def test_text_format_for_ntfy_and_long_lines_are_cut_to_discords_limit():
    long_alert = {**ALERT, "title": "x" * 5000, "severity": "critical"}
    with Receiver() as rx:
        assert post_webhook(hook(rx.url, format="text"), long_alert).ok
        (post,) = rx.posts()
    assert post["headers"]["Content-Type"].startswith("text/plain") and post["headers"]["Priority"] == "5"
    assert post["headers"]["Title"] == "qortfolio critical: term_inversion BTC"
    assert post["body"].decode() == message_line(long_alert) and len(post["body"].decode()) == 2000
    body, headers = request_body(hook("http://127.0.0.1:1/x"), long_alert)
    assert len(json.loads(body)["content"]) == 2000


def test_500s_then_a_timeout_are_retried_with_backoff_then_recorded_as_failed():
    waits = []
    with Receiver([500, 500, ("sleep", 1.5)]) as rx:
        result = post_webhook(hook(rx.url, timeout="0.4s", attempts=3, backoff="0.25s"), ALERT, sleep=waits.append)
        assert len(rx.posts()) == 3
    assert not result.ok and result.final
    assert [a.status for a in result.attempts] == [500, 500, None]
    assert waits == [0.25, 0.5]                      # backoff, then twice the backoff
    assert "timed out" in result.attempts[-1].error and result.error.startswith("gave up after 3 tries")
    assert all(SECRET not in (a.error or "") for a in result.attempts) and SECRET not in result.error


def test_a_4xx_is_final_at_once_and_429_waits_for_retry_after():
    with Receiver([404]) as rx:
        result = post_webhook(hook(rx.url, attempts=3), ALERT, sleep=lambda s: None)
        assert len(rx.posts()) == 1
    assert not result.ok and result.final and result.error == "failed after 1 try: HTTP 404 Not Found"
    waits = []
    with Receiver([("status", 429, {"Retry-After": "0"})]) as rx:
        result = post_webhook(hook(rx.url, attempts=3, backoff="5s"), ALERT, sleep=waits.append)
        assert len(rx.posts()) == 2
    assert result.ok and [a.status for a in result.attempts] == [429, 200] and waits == [0.0]


def test_a_refused_connection_and_a_spent_budget():
    url = closed_port_url()
    result = post_webhook(hook(url, attempts=2), ALERT, sleep=lambda s: None)
    assert not result.ok and result.final and len(result.attempts) == 2
    assert "refused" in result.error.lower() and SECRET not in result.error
    clock = iter([0.0, 0.0, 10.0, 10.0, 10.0]).__next__     # the first try ends after the deadline
    spent = post_webhook(hook(url, attempts=3), ALERT, deadline=5.0, sleep=lambda s: None, clock=clock)
    assert not spent.ok and not spent.final and "budget spent after 1 tries" in spent.error
    unset = alert_settings({"webhooks": [{"name": "w", "url_env": "QORT_TEST_UNSET_HOOK"}]}, environ={}).webhooks[0]
    missing = post_webhook(unset, ALERT)
    assert not missing.ok and missing.final and missing.error == "not configured: QORT_TEST_UNSET_HOOK is not set"


def test_log_file_lines_are_json_and_a_bad_path_is_a_recorded_failure(tmp_path):
    path = tmp_path / "logs" / "alerts.jsonl"
    assert append_log(path, "opened", ALERT, NOW).ok and append_log(path, "closed", ALERT, NOW).ok
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["opened", "closed"]
    assert lines[0]["alert"]["id"] == ALERT["_id"] and lines[0]["at"] == NOW.isoformat()
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = append_log(blocker / "alerts.jsonl", "opened", ALERT, NOW)
    assert not bad.ok and bad.final and bad.error.startswith(("NotADirectoryError", "FileExistsError"))


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_every_body_is_bytes_and_names_the_alert(fmt):
    body, headers = request_body(hook("http://127.0.0.1:1/x", format=fmt), ALERT)
    assert isinstance(body, bytes) and b"term_inversion" in body and headers["User-Agent"].startswith("qortfolio")
