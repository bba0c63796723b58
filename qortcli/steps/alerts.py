"""The alerts step (`qortcli alerts run`, the worker's `alerts` job every minute): read → evaluate → open/close
episodes → deliver the new ones.

    run_alerts(db, now=None) -> summary dict

1. the `[alerts]` rules (`qortcli.alerts.settings`); the open episodes (`read.open_alerts`);
2. the inputs the configured rule kinds need, as of `now` (nothing later; `qortcli.steps.alert_inputs`):
   per-snapshot summaries and their daily roll-up, the stream's live index and status (`live_marks`), open
   suggestions at their latest track point, each scheduled job's run records and due times, data ages;
3. every rule evaluated (`qortcli.alerts.market` / `.health`); a rule that fails is reported, the others go on;
4. episodes planned (`qortcli.alerts.episodes`): new ones written with `ops.upsert_many`, going-on and closing
   ones with narrow updates (`ops.update_fields`);
5. the new episodes delivered (`qortcli.alerts.delivery`): one POST per webhook, one log line, within the
   run's delivery budget; a failure is retried with backoff and then recorded on the alert, never raised.

Stored alert (`alerts`, `_id` = `rule|subject|opened_at` to the second, `short_id` its 8-digit handle):
`rule, kind, category ("market"|"health"), subject, severity, status ("open"|"acknowledged"|"closed"), title,
opened_at, last_seen_at, observed_at, evaluations, trigger {title, values, thresholds, inputs, observed_at, at}`
(the reading that opened it), `latest` (the last one), `closed_at, close_reason, acknowledged_at, delivery
[{target, kind "webhook"|"log", endpoint (redacted), status "pending"|"delivered"|"failed"|"dropped",
attempts [{at, seconds, status, error}], error, delivered_at}]`.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from qortcli.alerts import delivery as deliver_mod
from qortcli.alerts.conditions import Condition
from qortcli.alerts.episodes import ACKNOWLEDGED, OPEN, open_subjects, plan_episodes
from qortcli.alerts.health import evaluate_health
from qortcli.alerts.market import evaluate_market
from qortcli.alerts.settings import AlertSettings, alert_settings
from qortcli.alerts.views import alert_row, short_id
from qortcli.errors import QortError, StepError, UsageError
from qortcli.store import ops, read, schema
from qortcli.steps.alert_inputs import alert_currencies, health_inputs, market_inputs
from qortcli.store.runs import recorded_run
from qortcli.timeutils import require_utc, utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS_KEPT = 10          # delivery attempts kept per target on an alert
SECTION_ROWS = 20


def _settings(settings) -> AlertSettings:
    if isinstance(settings, AlertSettings):
        return settings
    return alert_settings(settings)   # None: the current settings' [alerts]


def _now(now) -> datetime:
    if now is None:
        return utcnow()
    if isinstance(now, str):
        try:
            now = datetime.fromisoformat(now.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--now {now!r} is not an ISO time like 2026-01-11T21:30:00Z") from None
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)   # a time given without an offset is UTC
    return ops.to_plain(require_utc(now, "now"))


# ------------------------------------------------------------------------------------------- evaluation

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def evaluate(db, settings: AlertSettings, now: datetime, open_docs: list[dict]) -> tuple[list[Condition], set[str], list[dict]]:
    """Every rule's conditions; returns (conditions, rules evaluated, errors [{rule, error}])."""
    currencies = alert_currencies(db, settings)
    conditions: list[Condition] = []
    evaluated: set[str] = set()
    errors: list[dict] = []
    groups = (("market", [r for r in settings.rules if r.category == "market"], market_inputs, evaluate_market),
              ("health", [r for r in settings.rules if r.category == "health"], health_inputs, evaluate_health))
    for name, rules, gather, evaluator in groups:
        if not rules:
            continue
        try:
            inputs = gather(db, settings, now, currencies)
        except (QortError, ValueError, KeyError, TypeError) as exc:
            errors.extend({"rule": r.name, "error": f"{name} inputs: {_first_line(exc)}"} for r in rules)
            log.warning("alerts: could not read the %s inputs: %s", name, _first_line(exc))
            continue
        for rule in rules:
            try:
                found = evaluator(rule, inputs, open_subjects(open_docs, rule.name))
            except Exception as exc:  # one rule's bug or bad data never stops the others
                errors.append({"rule": rule.name, "error": _first_line(exc)})
                log.warning("alerts: rule %s failed: %s", rule.name, _first_line(exc))
                continue
            conditions.extend(found)
            evaluated.add(rule.name)
    return conditions, evaluated, errors


# ------------------------------------------------------------------------------------------- delivery

def _targets(settings: AlertSettings) -> list[dict]:
    """The pending delivery entries a new alert starts with (webhooks whose URL is set, and the log file)."""
    entries = [{"target": w.name, "kind": "webhook", "endpoint": w.label, "status": "pending", "attempts": [],
                "error": None} for w in settings.webhooks if w.url]
    if settings.log_file is not None:
        entries.append({"target": "log", "kind": "log", "endpoint": str(settings.log_file), "status": "pending",
                        "attempts": [], "error": None})
    return entries


def _deliver(db, settings: AlertSettings, alerts: list[dict], now: datetime) -> list[dict]:
    """Deliver every pending entry of `alerts` (oldest first) within the budget; returns one record per delivery.
    A target that failed in this run is not tried again in it (each try costs its retries and timeouts): its
    other entries stay pending for the next run, which starts with the oldest."""
    hooks = {w.name: w for w in settings.webhooks if w.url}
    deadline = time.monotonic() + settings.delivery_budget_s
    down: set[str] = set()
    report: list[dict] = []
    for alert in sorted(alerts, key=lambda a: a["opened_at"]):
        entries = [dict(e) for e in alert.get("delivery") or []]
        changed = False
        for entry in entries:
            if entry.get("status") != "pending" or entry["target"] in down:
                continue
            if entry["kind"] == "log":
                if settings.log_file is None:
                    continue
                result = deliver_mod.append_log(settings.log_file, "opened", alert, now)
            elif entry["target"] in hooks:
                result = deliver_mod.post_webhook(hooks[entry["target"]], alert, deadline=deadline)
            else:
                result = deliver_mod.Delivery(entry["target"], "webhook", entry.get("endpoint") or "", ok=False, final=True,
                                              error="webhook no longer configured (or its URL variable is unset)")
            attempts = [*entry.get("attempts", []), *[a.__dict__ for a in result.attempts]][-MAX_ATTEMPTS_KEPT:]
            entry.update(attempts=attempts, error=result.error, endpoint=result.endpoint or entry.get("endpoint"),
                         status="delivered" if result.ok else "failed" if result.final else "pending")
            if result.ok:
                entry["delivered_at"] = result.attempts[-1].at if result.attempts else now
            else:  # the target is down (or refuses us): its other entries wait for the next run
                down.add(entry["target"])
                log.warning("alerts: delivery of %s to %s %s: %s", alert["_id"], entry["target"],
                            "failed" if result.final else "deferred", result.error)
            changed = True
            report.append({"alert": alert["_id"], "short_id": alert.get("short_id"), "target": entry["target"],
                           "kind": entry["kind"], "endpoint": entry["endpoint"], "status": entry["status"],
                           "tries": len(result.attempts), "error": result.error})
        if changed:
            ops.update_fields(db, schema.ALERTS, [(alert["_id"], {"delivery": entries})])
            alert["delivery"] = entries
    return report


def _log_event(settings: AlertSettings, event: str, alert: dict, now: datetime) -> None:
    if settings.log_file is None:
        return
    result = deliver_mod.append_log(settings.log_file, event, alert, now)
    if not result.ok:
        log.warning("alerts: could not write the %s line of %s to the log file: %s", event, alert.get("_id"), result.error)


# ------------------------------------------------------------------------------------------- the step

def _unique_id(db, doc: dict, taken: set[str]) -> str:
    """The natural key of a new episode; if that second is taken (an episode of the same rule and subject
    closed and reopened within one second), opened_at moves on by whole seconds until it is free."""
    while True:
        alert_id = schema.natural_key(schema.ALERTS, ops.to_plain(doc))
        if alert_id not in taken and read.alert(db, alert_id) is None:
            return alert_id
        doc["opened_at"] = doc["opened_at"] + timedelta(seconds=1)
        doc["last_seen_at"] = doc["opened_at"]


def run_alerts(db, now: datetime | str | None = None, settings: AlertSettings | dict | None = None,
               deliver: bool = True) -> dict:
    """Evaluate the [alerts] rules as of `now` (default: the current time), open and close episodes, deliver the
    new ones (see the module docstring). Returns the JSON-able summary `qortcli alerts run` renders."""
    settings = _settings(settings)
    now = _now(now)
    summary: dict[str, Any] = {"step": "alerts", "now": now, "enabled": settings.enabled, "rules": len(settings.rules),
                               "targets": [d["endpoint"] for d in _targets(settings)], "evaluated": [], "errors": [],
                               "opened": [], "closed": [], "kept": 0, "open": 0, "deliveries": []}
    with recorded_run(db, "alerts", {"rules": len(settings.rules), "deliver": deliver, "now": now.isoformat()}) as run:
        if not settings.enabled:
            run.counts["enabled"] = 0
            return summary
        open_docs = read.open_alerts(db)
        conditions, evaluated, errors = evaluate(db, settings, now, open_docs)
        plan = plan_episodes(conditions, open_docs, now, evaluated, [r.name for r in settings.rules], _targets(settings))
        new_docs, taken = [], set()
        for doc in plan.opened:
            doc = dict(doc)
            doc["_id"] = _unique_id(db, doc, taken)
            doc["short_id"] = short_id(doc["_id"])
            taken.add(doc["_id"])
            new_docs.append(doc)
        if new_docs:
            ops.upsert_many(db, schema.ALERTS, new_docs)
        by_id = {str(d["_id"]): d for d in open_docs}
        closing = []
        for alert_id, fields in plan.closed:
            doc = by_id[alert_id]
            pending = [dict(e, status="dropped", error="the episode closed before this target's turn")
                       if e.get("status") == "pending" else e for e in doc.get("delivery") or []]
            if pending != (doc.get("delivery") or []):
                fields = {**fields, "delivery": pending}
            closing.append((alert_id, fields))
            by_id[alert_id] = {**doc, **fields}
        if plan.kept or closing:
            ops.update_fields(db, schema.ALERTS, [*plan.kept, *closing])
        kept_ids = {alert_id for alert_id, _ in plan.kept} | set(plan.untouched)
        if deliver:
            waiting = [by_id[i] for i in kept_ids if any(e.get("status") == "pending" for e in by_id[i].get("delivery") or [])]
            summary["deliveries"] = _deliver(db, settings, [*waiting, *new_docs], now)
            for alert_id, _ in closing:
                _log_event(settings, "closed", by_id[alert_id], now)
        by_rule: dict[str, list[Condition]] = {}
        for c in conditions:
            by_rule.setdefault(c.rule, []).append(c)
        summary.update(
            evaluated=[{"rule": r.name, "kind": r.kind, "subjects": len(by_rule.get(r.name, [])),
                        "active": sum(1 for c in by_rule.get(r.name, []) if c.active),
                        "not_evaluated": [f"{c.subject}: {c.reason}" for c in by_rule.get(r.name, []) if c.active is None]}
                       for r in settings.rules if r.name in evaluated],
            errors=errors, opened=[alert_row(d, now) for d in new_docs],
            closed=[alert_row(by_id[i], now) for i, _ in closing], kept=len(plan.kept),
            open=len(open_docs) - len(closing) + len(new_docs), conditions=len(conditions))
        delivered = sum(1 for d in summary["deliveries"] if d["status"] == "delivered")
        run.counts.update(rules=len(evaluated), conditions=len(conditions), opened=len(new_docs), closed=len(closing),
                          open=summary["open"], delivered=delivered, rule_errors=len(errors),
                          delivery_failures=sum(1 for d in summary["deliveries"] if d["status"] == "failed"))
    return summary


# ------------------------------------------------------------------------------------------- list, ack, test

def list_alerts(db, include_closed: bool = False, limit: int = 50, now: datetime | None = None) -> dict:
    """Open episodes (and, with `include_closed`, the `limit` latest closed ones) as flat rows, newest first."""
    now = _now(now)
    rows = [alert_row(d, now) for d in read.open_alerts(db)]
    closed = [alert_row(d, now) for d in read.closed_alerts(db, limit)] if include_closed else []
    return {"now": now, "open": rows, "closed": closed, "include_closed": include_closed,
            "unacknowledged": sum(1 for r in rows if r["status"] == OPEN)}


def find_alert(db, ref: str, search: int = 1000) -> dict:
    """An alert by its full id or its short id; StepError if none, UsageError if a short id is ambiguous."""
    ref = (ref or "").strip()
    if not ref:
        raise UsageError("give the alert's ID (the short id in `qortcli alerts list`, or its full id)")
    found = read.alert(db, ref)
    if found is not None:
        return found
    candidates = [*read.open_alerts(db), *read.closed_alerts(db, search)]
    matches = {str(d["_id"]): d for d in candidates if (d.get("short_id") or short_id(str(d["_id"]))) == ref.lower()}
    if len(matches) > 1:
        raise UsageError(f"short id {ref} matches {len(matches)} alerts ({', '.join(sorted(matches))}): give the full id")
    if not matches:
        raise StepError(f"no alert {ref!r} (see `qortcli alerts list --all`)")
    return next(iter(matches.values()))


def ack_alert(db, ref: str, now: datetime | None = None, settings: AlertSettings | dict | None = None) -> dict:
    """Acknowledge an alert: an open one becomes "acknowledged" (it still closes when its condition clears); a
    closed one keeps its status and gets `acknowledged_at`. Re-acknowledging changes nothing."""
    now = _now(now)
    doc = find_alert(db, ref)
    if doc.get("acknowledged_at") is not None:
        return {"action": "ack", "changed": False, "alert": alert_row(doc, now),
                "message": f"alert {doc.get('short_id')} was already acknowledged"}
    fields: dict[str, Any] = {"acknowledged_at": now}
    if doc.get("status") == OPEN:
        fields["status"] = ACKNOWLEDGED
    ops.update_fields(db, schema.ALERTS, [(doc["_id"], fields)])
    doc = {**doc, **fields}
    try:
        _log_event(_settings(settings), "acknowledged", doc, now)
    except QortError as exc:  # the ack is stored; a broken [alerts] section only loses the log line
        log.warning("alerts: acknowledged %s but could not read the settings for the log file: %s", doc["_id"], exc)
    state = "acknowledged (it closes when its condition clears)" if doc["status"] == ACKNOWLEDGED else \
        f"acknowledged ({doc['status']})"
    return {"action": "ack", "changed": True, "alert": alert_row(doc, now),
            "message": f"alert {doc.get('short_id')} {state}"}


def sample_alert(now: datetime) -> dict:
    """The alert `qortcli alerts test` sends (never stored)."""
    alert_id = f"test|sample|{now:%Y%m%dT%H%M%SZ}"
    return {"_id": alert_id, "short_id": short_id(alert_id), "rule": "test", "kind": "test", "category": "health",
            "subject": "sample", "severity": "info", "status": OPEN, "opened_at": now, "observed_at": now,
            "title": "test alert from `qortcli alerts test`: this target receives qortfolio alerts",
            "trigger": {"values": {"test": True}, "thresholds": {}, "inputs": {}, "observed_at": now}}


def test_targets(settings: AlertSettings | dict | None = None, now: datetime | None = None) -> dict:
    """Send a sample alert to every configured target (each webhook with a URL, the log file) and report each
    result; webhooks whose `url_env` is unset are listed under "off" (not sent to, not failures). StepError when
    no target is configured."""
    settings = _settings(settings)
    now = _now(now)
    if not any(w.url for w in settings.webhooks) and settings.log_file is None:
        unset = "; ".join(f"webhook {w.name}: {w.missing}" for w in settings.webhooks if w.missing)
        raise StepError("no alert target configured: add [[alerts.webhooks]] (url_env = \"VARIABLE\") or "
                        "[alerts] log_file = \"PATH\" to the settings" + (f" ({unset})" if unset else ""))
    alert = sample_alert(now)
    deadline = time.monotonic() + settings.delivery_budget_s
    results = [deliver_mod.post_webhook(w, alert, deadline=deadline).as_dict() for w in settings.webhooks if w.url]
    if settings.log_file is not None:
        results.append(deliver_mod.append_log(settings.log_file, "test", alert, now).as_dict())
    off = [{"target": w.name, "reason": w.missing or "no URL"} for w in settings.webhooks if not w.url]
    return {"action": "test", "now": now, "alert": deliver_mod.alert_view(alert), "targets": results, "off": off,
            "ok": all(r["ok"] for r in results)}


def alerts_section(db) -> dict:
    """The `qortcli status` table of open alerts (title, columns, rows); never raises."""
    columns = ["id", "opened (UTC)", "severity", "rule", "subject", "status", "delivery", "alert"]
    try:
        rows = list_alerts(db)["open"]
    except Exception as exc:  # status must show the rest of the store whatever happens here
        return {"title": "Alerts", "columns": ["error"], "rows": [[f"alerts: {_first_line(exc)}"]]}
    unacked = sum(1 for r in rows if r["status"] == OPEN)
    failed = sum(1 for r in rows if r["delivery"] == "failed")
    title = (f"Alerts ({len(rows)} open, {unacked} unacknowledged"
             + (f", {failed} with a failed delivery" if failed else "") + "; `qortcli alerts ack ID`)")
    shown = [[r["short_id"], r["opened_at"], r["severity"], r["rule"], r["subject"], r["status"], r["delivery"],
              r["latest_title"] or r["title"]] for r in rows[:SECTION_ROWS]]
    if len(rows) > SECTION_ROWS:
        shown.append(["…", None, None, None, None, None, None, f"{len(rows) - SECTION_ROWS} more: `qortcli alerts list`"])
    if not rows:
        shown = [["–", None, None, None, None, None, None, "no open alert"]]
    return {"title": title, "columns": columns, "rows": shown}

