"""What the alert rules read, gathered from the store as of a time `now` (nothing later), as typed inputs.

`market_inputs` → `qortcli.alerts.market.MarketInputs`: per-snapshot summaries of the recent window, the IV-rank
history (one point a day, then the latest summary), spot index points (summaries' index_usd and the stream's
live index), open suggestions at their latest track point. `health_inputs` → `qortcli.alerts.health.HealthInputs`:
each scheduled job's run records (`job_runs` tagged with the job id) with its due times from the schedule, the
data's ages against their cadences, the stream's `live_marks` status. Only what the configured rule kinds need
is read. Summaries are read incrementally between the worker's once-a-minute runs: past days and the recent
window are kept in memory per store for CACHE_S, then re-read (a backfill of old summaries shows within it).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pandas as pd

from qortcli.alerts.health import DataAge, FinishedRun, HealthInputs, JobHealth, StreamState
from qortcli.alerts.market import MarketInputs, TrackedSuggestion
from qortcli.alerts.settings import (AlertSettings, IvRankRule, JobMissedRule, Rr25FlipRule, SpotMoveRule,
                                     TermInversionRule)
from qortcli.store import read
from qortcli.timeutils import as_utc

MARKET_KINDS = ("iv_rank", "rr25_flip", "term_inversion", "spot_move", "suggestion_max_loss", "suggestion_target")
CACHE_S = 3600.0                # how long summaries read before are kept in memory (per store), then re-read
RECENT_OVERLAP_S = 900.0        # an incremental read goes this far back from the last summary it had


def alert_currencies(db, settings: AlertSettings) -> list[str]:
    """Currencies with snapshots in the store, and any a rule names."""
    stored = read.currencies(db)
    named = {c for rule in settings.rules for c in (rule.currencies or ())}
    return sorted(set(stored) | named)


def market_inputs(db, settings: AlertSettings, now: datetime, currencies: list[str]) -> MarketInputs:
    """What the market rules of `settings` need as of `now`: the recent window is the longest any rule looks back
    (RR25 lookback, max ages, the spot window), the rank history the longest IV-rank lookback."""
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
    everything after CACHE_S or when it asks for an earlier time or window than before (a replay)."""
    key = (db.describe(), currency)
    hit = _RECENT.get(key)
    fresh = (hit is not None and time.monotonic() - hit[0] < CACHE_S and hit[1] <= start and hit[2] <= now)
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
    frame is kept for CACHE_S per store (a backfill of old days shows within that time): the worker's
    per-minute runs then read only the latest summary for ranks."""
    key = (db.describe(), currency, day_start, lookback_days, tuple(columns))
    hit = _DAILY.get(key)
    if hit is not None and time.monotonic() - hit[0] < CACHE_S:
        return hit[1]
    daily = read.summary_series(db, currency, day_start - timedelta(days=lookback_days),
                                day_start - timedelta(milliseconds=1), "day", columns)
    for stale in [k for k, (at, _) in _DAILY.items() if time.monotonic() - at >= CACHE_S or k[2] != day_start]:
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
    """One job's latest 50 run records → JobHealth; a cron job's fire times back two cadences plus `grace_s`."""
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


def health_inputs(db, settings: AlertSettings, now: datetime, currencies: list[str]) -> HealthInputs:
    """What the health rules of `settings` need as of `now`, from the schedule (`load_schedule`: jobs, cadences,
    whether chains stream) and the store. With chains = "stream" the poll job is not watched and the stream
    session (job "stream") is, for failures."""
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
