"""The alerts step (`qortcli alerts run`, the worker's `alerts` job every minute): read → evaluate → open/close
episodes → deliver the new ones.

    run_alerts(db, now=None) -> summary dict

1. the `[alerts]` rules (`qortcli.alerts.settings`); the open episodes (`read.open_alerts`);
2. the inputs the configured rule kinds need, as of `now` (nothing later): per-snapshot summaries and their
   daily roll-up, the stream's live index and status (`live_marks`), open suggestions at their latest track
   point, each scheduled job's run records (`job_runs` tagged with the job id) and due times, data ages;
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
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from qortcli.alerts import delivery as deliver_mod
from qortcli.alerts.conditions import Condition
from qortcli.alerts.episodes import ACKNOWLEDGED, OPEN, open_subjects, plan_episodes
from qortcli.alerts.health import DataAge, FinishedRun, HealthInputs, JobHealth, StreamState, evaluate_health
from qortcli.alerts.market import MarketInputs, TrackedSuggestion, evaluate_market
from qortcli.alerts.settings import (AlertSettings, IvRankRule, JobMissedRule, Rr25FlipRule, SpotMoveRule,
                                     TermInversionRule, alert_settings)
from qortcli.alerts.views import alert_row, short_id
from qortcli.errors import QortError, StepError, UsageError
from qortcli.store import ops, read, schema
from qortcli.store.runs import recorded_run
from qortcli.timeutils import as_utc, require_utc, utcnow

log = logging.getLogger(__name__)

MARKET_KINDS = ("iv_rank", "rr25_flip", "term_inversion", "spot_move", "suggestion_max_loss", "suggestion_target")
MAX_ATTEMPTS_KEPT = 10          # delivery attempts kept per target on an alert
DAILY_CACHE_S = 3600.0          # how long summaries read before are kept in memory (per store), then re-read
RECENT_OVERLAP_S = 900.0        # an incremental read goes this far back from the last summary it had
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
    return ops.to_plain(require_utc(now, "now"))


# ------------------------------------------------------------------------------------------- inputs

def _currencies(db, settings: AlertSettings) -> list[str]:
    stored = read.currencies(db)
    named = {c for rule in settings.rules for c in (rule.currencies or ())}
    return sorted(set(stored) | named)


def _market_inputs(db, settings: AlertSettings, now: datetime, currencies: list[str]) -> MarketInputs:
    rules = [r for r in settings.rules if r.kind in MARKET_KINDS]
    recent_s = 0.0
    for r in rules:
        if isinstance(r, Rr25FlipRule):
            recent_s = max(recent_s, r.lookback_s, r.max_age_s)
        elif isinstance(r, TermInversionRule):
            recent_s = max(recent_s, r.max_age_s)
        elif isinstance(r, SpotMoveRule):
            recent_s = max(recent_s, r.window_s)
    rank_days = max((r.lookback_days for r in rules if isinstance(r, IvRankRule)), default=0)
    recent: dict[str, pd.DataFrame] = {}
    history: dict[str, pd.DataFrame] = {}
    spot: dict[str, pd.Series] = {}
    for cur in currencies:
        if recent_s:
            recent[cur] = _recent_summaries(db, cur, now - timedelta(seconds=recent_s), now)
            points = (pd.to_numeric(recent[cur]["index_usd"], errors="coerce").astype(float)
                      if "index_usd" in recent[cur] else pd.Series([], index=recent[cur].index, dtype=float))
            live = read.live_marks(db, cur) if any(isinstance(r, SpotMoveRule) for r in rules) else None
            if live is not None and live.index_usd and live.index_at is not None and live.index_at <= now:
                points = pd.concat([points, pd.Series([float(live.index_usd)], index=pd.DatetimeIndex([live.index_at]))])
            spot[cur] = points.sort_index(kind="stable")
        if rank_days:
            columns = sorted({f"atm_iv_{r.tenor_days}d_{r.source}" for r in rules if isinstance(r, IvRankRule)})
            history[cur] = _rank_history(db, cur, now, rank_days, columns)
    suggestions: tuple[TrackedSuggestion, ...] = ()
    if any(r.kind.startswith("suggestion_") for r in rules):
        suggestions = tuple(s for s in (_tracked(d, now) for d in read.open_suggestions(db)) if s is not None)
    return MarketInputs(now=now, recent=recent, history=history, spot=spot, suggestions=suggestions)


_DAILY: dict[tuple, tuple[float, pd.DataFrame]] = {}
_RECENT: dict[tuple, tuple[float, datetime, datetime, pd.DataFrame]] = {}


def _recent_summaries(db, currency: str, start: datetime, now: datetime) -> pd.DataFrame:
    """The per-snapshot summaries of `currency` in [start, now], read incrementally: a run reads only what was
    written since the previous run's latest point (less RECENT_OVERLAP_S, for a summary written late), re-reading
    everything after DAILY_CACHE_S or when it asks for an earlier time or window than before (a replay)."""
    key = (db.describe(), currency)
    hit = _RECENT.get(key)
    fresh = (hit is not None and time.monotonic() - hit[0] < DAILY_CACHE_S and hit[1] <= start and hit[2] <= now)
    if not fresh:
        frame = read.summary_series(db, currency, start, now, "snapshot")
        _RECENT[key] = (time.monotonic(), start, now, frame)
        return frame
    fetched_at, _, _, cached = hit
    since = max(start, cached.index.max().to_pydatetime() - timedelta(seconds=RECENT_OVERLAP_S)) if len(cached) else start
    new = read.summary_series(db, currency, since, now, "snapshot")
    kept = cached[(cached.index >= pd.Timestamp(start)) & (cached.index < pd.Timestamp(since))]
    frame = pd.concat([f for f in (kept, new) if not f.empty]) if len(kept) or len(new) else new
    _RECENT[key] = (fetched_at, start, now, frame)
    return frame


def _daily_points(db, currency: str, day_start: datetime, lookback_days: int, columns: list[str]) -> pd.DataFrame:
    """The daily roll-up of the `lookback_days` before `day_start`. Past days do not change within a day, so the
    frame is kept for DAILY_CACHE_S per store (a backfill of old days shows within that time): the worker's
    per-minute runs then read only the latest summary for ranks."""
    key = (db.describe(), currency, day_start, lookback_days, tuple(columns))
    hit = _DAILY.get(key)
    if hit is not None and time.monotonic() - hit[0] < DAILY_CACHE_S:
        return hit[1]
    daily = read.summary_series(db, currency, day_start - timedelta(days=lookback_days),
                                day_start - timedelta(milliseconds=1), "day", columns)
    for stale in [k for k, (at, _) in _DAILY.items() if time.monotonic() - at >= DAILY_CACHE_S or k[2] != day_start]:
        _DAILY.pop(stale, None)
    _DAILY[key] = (time.monotonic(), daily)
    return daily


def _rank_history(db, currency: str, now: datetime, lookback_days: int, columns: list[str]) -> pd.DataFrame:
    """One point a day (the daily roll-up: each UTC day's last summary) for the days before `now`'s day, then the
    latest summary at or before `now`: ranks and percentiles weigh every day once, today included."""
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    daily = _daily_points(db, currency, day_start, lookback_days, columns)
    latest = read.latest_summary(db, currency, before=now + timedelta(milliseconds=1))
    if latest is None:
        return daily
    row = pd.DataFrame({c: [latest.get(c)] for c in (*columns, "snapshot_id")},
                       index=pd.DatetimeIndex([as_utc(latest["timestamp"])], name="timestamp"))
    return pd.concat([f for f in (daily, row) if not f.empty]).sort_index()


def _num(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


def _tracked(doc: dict, now: datetime) -> TrackedSuggestion | None:
    """An open suggestion at its latest track point at or before `now` (None if it was made after `now`)."""
    entered = as_utc(doc["timestamp"])
    if entered > now:
        return None
    points = [p for p in doc.get("track") or [] if isinstance(p.get("timestamp"), datetime) and as_utc(p["timestamp"]) <= now]
    point = points[-1] if points else None
    metrics = doc.get("metrics") or {}
    return TrackedSuggestion(
        suggestion_id=str(doc["_id"]), currency=str(doc.get("currency") or ""), strategy=str(doc.get("strategy") or ""),
        expiry_code=doc.get("expiry_code"), entered_at=entered,
        point_at=as_utc(point["timestamp"]) if point else None, point_snapshot_id=point.get("snapshot_id") if point else None,
        pnl_usd_marks=_num(point.get("pnl_usd")) if point else None,
        pnl_usd_exit=_num(point.get("exit_pnl_usd")) if point else None,
        max_loss_usd=_num(metrics.get("max_loss_usd")), max_profit_usd=_num(metrics.get("max_profit_usd")),
        option_premium_usd=_num(metrics.get("option_premium_usd")))


def _job_health(db, spec, now: datetime, grace_s: float, chained: bool | None = None) -> JobHealth:
    from qortcli.schedule import cadence, fire_times

    runs = read.job_runs(db, spec.id, before=now, limit=50)
    latest = runs[0] if runs else None
    started = next((r for r in runs if r.status in ("ok", "failed", "running", "interrupted")), None)
    finished = [r for r in runs if r.status in ("ok", "failed")]
    in_row = 0
    for r in finished:
        if r.status != "failed":
            break
        in_row += 1
    last = finished[0] if finished else None
    fires: tuple[datetime, ...] = ()
    if spec.cron is not None:
        span = cadence(spec, now) * 2 + timedelta(seconds=grace_s)
        fires = tuple(fire_times(spec, now - span, now))
    return JobHealth(
        job=spec.id, timing=spec.timing, every_s=spec.every.total_seconds() if spec.every is not None else None,
        cron_fires=fires, chained=spec.after is not None if chained is None else chained,
        latest_status=latest.status if latest else None, latest_at=latest.started_at if latest else None,
        latest_error=latest.error if latest else None, last_started_at=started.started_at if started else None,
        last_finished=FinishedRun(last.run_id, last.status, last.started_at, last.ended_at, last.error) if last else None,
        failures_in_row=in_row)


def _health_inputs(db, settings: AlertSettings, now: datetime, currencies: list[str]) -> HealthInputs:
    from qortcli.schedule import POLL_JOB, cadence, load_schedule, parse_every

    schedule = load_schedule()
    kinds = {r.kind for r in settings.rules}
    grace_s = float(schedule.misfire_grace_seconds)
    longest = max([grace_s, *[r.grace_s for r in settings.rules if isinstance(r, JobMissedRule) and r.grace_s]])
    jobs: list[JobHealth] = []
    if kinds & {"job_failed", "job_missed"}:
        specs = [s for s in schedule.jobs if not (schedule.streaming and s.id == POLL_JOB)]
        jobs = [_job_health(db, spec, now, longest) for spec in specs]
        if schedule.streaming:
            jobs.append(_job_health(db, schedule.stream_spec(), now, longest, chained=True))
    data: list[DataAge] = []
    if "stale_data" in kinds:
        if schedule.streaming:
            every = parse_every(schedule.stream_args.get("snapshot_every", "5m"), "stream").total_seconds()
            chain_cadence, chain_from = every, "[schedule.stream] snapshot_every"
        elif POLL_JOB in schedule.ids:
            step = cadence(schedule.job(POLL_JOB), now)
            chain_cadence, chain_from = step.total_seconds(), f"{POLL_JOB} {schedule.job(POLL_JOB).timing}"
        else:
            chain_cadence, chain_from = None, f"{POLL_JOB} not scheduled"
        for cur in currencies:
            snap = read.latest_snapshot(db, cur, before=now)
            if snap is not None:
                data.append(DataAge("options", f"options/{cur}", snap.timestamp, chain_cadence, chain_from))
                summary = read.latest_summary(db, cur, before=now + timedelta(milliseconds=1))
                data.append(DataAge("summaries", f"summaries/{cur}", as_utc(summary["timestamp"]) if summary else None,
                                    chain_cadence, chain_from))
        prices = schedule.job("collect_prices") if "collect_prices" in schedule.ids else None
        price_cadence = cadence(prices, now).total_seconds() if prices is not None else None
        symbols = sorted({s for r in settings.rules if r.kind == "stale_data" for s in (r.symbols or currencies)})
        for symbol in symbols:
            day = read.last_price_day(db, symbol)
            if day is not None and day > now:   # evaluating the past: the last bar before then
                bars = read.price_series(db, symbol, now - timedelta(days=30), now)
                day = bars.index[-1].to_pydatetime() if len(bars) else None
            if day is not None:
                data.append(DataAge("prices", f"prices/{symbol}", day + timedelta(days=1), price_cadence,
                                    f"collect_prices {prices.timing}" if prices else "collect_prices not scheduled"))
    streams: list[StreamState] = []
    if "stream_disconnected" in kinds:
        runs = read.step_runs(db, "stream", before=now, limit=1)
        if schedule.streaming:
            expected, why = True, 'the schedule streams ([schedule] chains = "stream")'
        elif runs and runs[0].status == "running":
            expected, why = True, f"a stream session is recorded running since {runs[0].started_at:%Y-%m-%d %H:%M} UTC"
        else:
            expected = False
            why = (f"the latest stream session ended {runs[0].status}" if runs else "no stream session recorded")
        for cur in currencies:
            live = read.live_marks(db, cur)
            if live is None or live.updated_at > now:
                continue
            last = live.stream.get("last_message_at")
            streams.append(StreamState(currency=cur, updated_at=live.updated_at, connected=bool(live.stream.get("connected")),
                                       last_message_at=as_utc(last) if isinstance(last, datetime) else None,
                                       expected=expected, expected_reason=why, reconnects=live.stream.get("reconnects")))
    return HealthInputs(now=now, jobs=tuple(jobs), data=tuple(data), streams=tuple(streams), grace_s=grace_s)


# ------------------------------------------------------------------------------------------- evaluation

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def evaluate(db, settings: AlertSettings, now: datetime, open_docs: list[dict]) -> tuple[list[Condition], set[str], list[dict]]:
    """Every rule's conditions; returns (conditions, rules evaluated, errors [{rule, error}])."""
    currencies = _currencies(db, settings)
    conditions: list[Condition] = []
    evaluated: set[str] = set()
    errors: list[dict] = []
    groups = (("market", [r for r in settings.rules if r.category == "market"], _market_inputs, evaluate_market),
              ("health", [r for r in settings.rules if r.category == "health"], _health_inputs, evaluate_health))
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
    """Send a sample alert to every configured target (each webhook, the log file) and report each result.
    StepError when no target is configured."""
    settings = _settings(settings)
    now = _now(now)
    if not settings.webhooks and settings.log_file is None:
        raise StepError("no alert target configured: add [[alerts.webhooks]] (url_env = \"VARIABLE\") or "
                        "[alerts] log_file = \"PATH\" to the settings")
    alert = sample_alert(now)
    deadline = time.monotonic() + settings.delivery_budget_s
    results = [deliver_mod.post_webhook(w, alert, deadline=deadline).as_dict() for w in settings.webhooks]
    if settings.log_file is not None:
        results.append(deliver_mod.append_log(settings.log_file, "test", alert, now).as_dict())
    return {"action": "test", "now": now, "alert": deliver_mod.alert_view(alert), "targets": results,
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

