"""Delivering alerts: an HTTP POST per webhook (retries with backoff, a timeout) and a JSON-lines log file.

No store access: `qortcli.steps.alerts` records what these return on the alert. Nothing raises: every failure
comes back as a `Delivery` with its attempts, and no URL appears in one (errors go through `redact.scrub`).

Webhook bodies (`format`):
  "json"  application/json `{"text": line, "content": line, "alert": {...}}` — Slack reads `text`, Discord
          `content` (at most 2,000 characters), anything else the structured `alert`;
  "text"  text/plain: the line as the body, with Title, Priority and Tags headers (ntfy's publishing form).
Retried: connection errors, timeouts, HTTP 408, 429 (after its Retry-After, at most 30 s) and 5xx; any other
4xx is final (the URL or the body is wrong, repeating cannot help).
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable

from qortcli.alerts.redact import scrub
from qortcli.alerts.settings import WebhookTarget

USER_AGENT = "qortfolio-alerts/1"
DISCORD_LIMIT = 2000
RETRY_AFTER_CAP_S = 30.0
PRIORITY = {"critical": "5", "warning": "4", "info": "3"}
VIEW_FIELDS = ("_id", "short_id", "rule", "kind", "category", "subject", "severity", "status", "title", "opened_at",
               "observed_at", "last_seen_at", "closed_at", "close_reason", "acknowledged_at")


@dataclass(frozen=True)
class Attempt:
    """One try: when, how long (seconds), the HTTP status (None without a reply) and the error (None if ok)."""

    at: datetime
    seconds: float
    status: int | None
    error: str | None


@dataclass(frozen=True)
class Delivery:
    """The outcome of delivering one alert to one target. `final`: no point trying again (delivered, or a
    permanent error); a failure that is not final (budget spent, transient errors) may be retried later."""

    target: str
    kind: str                     # "webhook" | "log"
    endpoint: str                 # redacted URL, or the log file path
    ok: bool
    final: bool
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)
    error: str | None = None

    def as_dict(self) -> dict:
        return {"target": self.target, "kind": self.kind, "endpoint": self.endpoint, "ok": self.ok, "final": self.final,
                "error": self.error, "attempts": [a.__dict__ for a in self.attempts]}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):          # numpy scalars
        return _plain(value.item())
    return value


def alert_view(alert: dict) -> dict:
    """The JSON-safe public form of an alert (identity, status, times and its trigger: no delivery records)."""
    view = {k: alert.get(k) for k in VIEW_FIELDS if k in alert}
    if "_id" in view:
        view["id"] = view.pop("_id")
    for key in ("trigger", "latest"):
        if alert.get(key) is not None:
            view[key] = {k: alert[key].get(k) for k in ("values", "thresholds", "inputs", "observed_at")}
    return _plain(view)


def message_line(alert: dict) -> str:
    """One line for people: `[qortfolio] WARNING job_failed · price: job price failed ... (opened ... UTC)`."""
    opened = alert.get("opened_at")
    when = f" (opened {opened:%Y-%m-%d %H:%M} UTC)" if isinstance(opened, datetime) else ""
    status = "" if alert.get("status") in (None, "open") else f" [{alert['status']}]"
    line = (f"[qortfolio] {str(alert.get('severity', 'info')).upper()} {alert.get('rule')} · {alert.get('subject')}: "
            f"{alert.get('title')}{status}{when}")
    return line if len(line) <= DISCORD_LIMIT else line[:DISCORD_LIMIT - 1] + "…"


def request_body(target: WebhookTarget, alert: dict) -> tuple[bytes, dict[str, str]]:
    """The POST body and headers for `target.format`."""
    line = message_line(alert)
    headers = {"User-Agent": USER_AGENT}
    if target.format == "text":
        title = f"qortfolio {alert.get('severity', 'info')}: {alert.get('rule')} {alert.get('subject')}"
        headers.update({"Content-Type": "text/plain; charset=utf-8",
                        "Title": title.encode("ascii", "replace").decode("ascii"),
                        "Priority": PRIORITY.get(str(alert.get("severity")), "3"),
                        "Tags": str(alert.get("severity", "info"))})
        return line.encode("utf-8"), headers
    headers["Content-Type"] = "application/json"
    body = {"text": line, "content": line, "alert": alert_view(alert)}
    return json.dumps(body, allow_nan=False, default=str).encode("utf-8"), headers


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    try:
        value = float(exc.headers.get("Retry-After", ""))
    except (TypeError, ValueError, AttributeError):
        return None
    return max(0.0, min(value, RETRY_AFTER_CAP_S))


def post_webhook(target: WebhookTarget, alert: dict, deadline: float | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] | None = None) -> Delivery:
    """POST `alert` to `target` with up to `target.attempts` tries, waiting `backoff`, 2 × `backoff`, ... between
    them (a 429's Retry-After instead); each try waits at most `target.timeout_s` for the server. `deadline`
    (a `clock()` value): no try starts, and no wait runs, past it — the delivery then ends not final."""
    from qortcli.timeutils import utcnow

    now = now or utcnow
    base = {"target": target.name, "kind": "webhook", "endpoint": target.label}
    if not target.url:
        return Delivery(**base, ok=False, final=True, error=f"not configured: {target.missing or 'no URL'}")
    body, headers = request_body(target, alert)
    attempts: list[Attempt] = []
    error, final = None, False
    for k in range(target.attempts):
        if deadline is not None and clock() >= deadline:
            return Delivery(**base, ok=False, final=False, attempts=tuple(attempts),
                            error=f"delivery budget spent after {len(attempts)} tries ({error or 'not tried'})")
        started, t0 = now(), clock()
        status, wait = None, target.backoff_s * (2 ** k)
        try:
            request = urllib.request.Request(target.url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=target.timeout_s) as reply:
                status = reply.status
                reply.read(65536)
            attempts.append(Attempt(started, round(clock() - t0, 3), status, None))
            return Delivery(**base, ok=True, final=True, attempts=tuple(attempts))
        except urllib.error.HTTPError as exc:
            status = exc.code
            error = f"HTTP {exc.code} {exc.reason}"
            final = not (exc.code in (408, 429) or exc.code >= 500)
            if exc.code == 429:
                wait = _retry_after(exc) if _retry_after(exc) is not None else wait
        except urllib.error.URLError as exc:
            error = f"{type(exc.reason).__name__}: {exc.reason}" if not isinstance(exc.reason, str) else exc.reason
        except (TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__}: timed out"
        except Exception as exc:  # a malformed URL, a body the library refuses: final, never raised
            error, final = f"{type(exc).__name__}: {exc}", True
        error = scrub(error, target.url)
        attempts.append(Attempt(started, round(clock() - t0, 3), status, error))
        if final or k == target.attempts - 1:
            break
        if deadline is not None and clock() + wait >= deadline:
            return Delivery(**base, ok=False, final=False, attempts=tuple(attempts),
                            error=f"delivery budget spent after {len(attempts)} tries ({error})")
        sleep(wait)
    return Delivery(**base, ok=False, final=True, attempts=tuple(attempts),
                    error=f"{'failed' if final else 'gave up'} after {len(attempts)} "
                          f"tr{'y' if len(attempts) == 1 else 'ies'}: {error}")


def append_log(path: Path, event: str, alert: dict, at: datetime) -> Delivery:
    """Append one JSON line `{"at", "event", "alert"}` to `path` (its folder is created); never raises."""
    t0 = time.monotonic()
    base = {"target": "log", "kind": "log", "endpoint": str(path)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"at": at.isoformat(), "event": event, "alert": alert_view(alert)}, allow_nan=False,
                          default=str)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except (OSError, TypeError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        return Delivery(**base, ok=False, final=True, error=error,
                        attempts=(Attempt(at, round(time.monotonic() - t0, 3), None, error),))
    return Delivery(**base, ok=True, final=True, attempts=(Attempt(at, round(time.monotonic() - t0, 3), None, None),))
