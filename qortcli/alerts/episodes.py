"""Episodes, pure: an alert fires once per episode. Given this run's conditions and the open episodes, decide
what opens (a new alert document), what goes on (its latest reading) and what closes.

- a condition that holds with no open episode of its (rule, subject) opens one — the only moment delivered;
- one that holds with an open episode updates its `latest` reading (no new alert, however many runs);
- one that no longer holds closes the episode (`closed_at`, `close_reason`); the next time it holds opens a
  new episode (a new document, delivered again);
- a condition that could not be evaluated (`active` None: too little or too old data) leaves its episode as
  it is; so does a rule whose evaluation failed this run;
- an open episode whose subject the rule no longer yields (a settled suggestion, a job removed from the
  schedule) or whose rule left the settings closes, saying so.
Acknowledged episodes are open episodes someone has seen: they go on and close the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Sequence

from qortcli.alerts.conditions import Condition

OPEN, ACKNOWLEDGED, CLOSED = "open", "acknowledged", "closed"
OPEN_STATUSES = (OPEN, ACKNOWLEDGED)
STATUSES = (OPEN, ACKNOWLEDGED, CLOSED)


@dataclass(frozen=True)
class EpisodePlan:
    """`opened`: new alert documents (without `_id`, which the store's natural key gives); `kept` and `closed`:
    (alert `_id`, fields to set) for open episodes; `untouched`: ids of open episodes left as they are."""

    opened: tuple[dict, ...]
    kept: tuple[tuple[str, dict], ...]
    closed: tuple[tuple[str, dict], ...]
    untouched: tuple[str, ...]


def reading(condition: Condition, now: datetime) -> dict:
    """The stored form of one evaluation: title, values, thresholds, inputs, data time and evaluation time."""
    return {"title": condition.title, "values": dict(condition.values), "thresholds": dict(condition.thresholds),
            "inputs": dict(condition.inputs), "observed_at": condition.observed_at, "at": now}


def new_alert(condition: Condition, now: datetime, deliveries: Iterable[dict] = ()) -> dict:
    """The document of a new episode (`deliveries`: one pending entry per configured target)."""
    first = reading(condition, now)
    return {"rule": condition.rule, "kind": condition.kind, "category": condition.category,
            "subject": condition.subject, "severity": condition.severity, "status": OPEN, "title": condition.title,
            "opened_at": now, "last_seen_at": now, "observed_at": condition.observed_at, "evaluations": 1,
            "trigger": first, "latest": first, "closed_at": None, "close_reason": None, "acknowledged_at": None,
            "delivery": [dict(d) for d in deliveries]}


def _close(doc: dict, now: datetime, why: str, latest: dict | None = None) -> tuple[str, dict]:
    fields = {"status": CLOSED, "closed_at": now, "close_reason": why}
    if latest is not None:
        fields["latest"] = latest
    return str(doc["_id"]), fields


def plan_episodes(conditions: Sequence[Condition], open_alerts: Sequence[dict], now: datetime,
                  evaluated_rules: Iterable[str], configured_rules: Iterable[str],
                  deliveries: Iterable[dict] = ()) -> EpisodePlan:
    """What this run opens, keeps and closes (module docstring). `open_alerts`: the stored episodes with status
    open or acknowledged; `evaluated_rules`: rules whose evaluation ran this run; `configured_rules`: every rule
    in the settings; `deliveries`: the pending delivery entries a new alert starts with."""
    evaluated, configured = set(evaluated_rules), set(configured_rules)
    deliveries = list(deliveries)
    by_key: dict[tuple[str, str], Condition] = {}
    for c in conditions:
        if (c.rule, c.subject) in by_key:
            raise ValueError(f"rule {c.rule!r} yielded subject {c.subject!r} twice")
        by_key[(c.rule, c.subject)] = c
    current: dict[tuple[str, str], dict] = {}
    kept, closed, untouched = [], [], []
    for doc in sorted(open_alerts, key=lambda d: d["opened_at"], reverse=True):
        key = (doc["rule"], doc["subject"])
        if key in current:  # two open episodes of one subject (never written by this code): keep the newest
            closed.append(_close(doc, now, "superseded by a newer open episode of the same rule and subject"))
            continue
        current[key] = doc
        if doc["rule"] not in configured:
            closed.append(_close(doc, now, f"rule {doc['rule']} is no longer in the [alerts] settings"))
        elif doc["rule"] not in evaluated:
            untouched.append(str(doc["_id"]))
        elif key not in by_key:
            closed.append(_close(doc, now, f"{doc['subject']} is no longer evaluated by rule {doc['rule']}"))
        else:
            c = by_key[key]
            if c.active is None:
                untouched.append(str(doc["_id"]))
            elif c.active:
                kept.append((str(doc["_id"]), {"last_seen_at": now, "latest": reading(c, now),
                                               "evaluations": int(doc.get("evaluations") or 0) + 1}))
            else:
                closed.append(_close(doc, now, f"cleared: {c.title}", reading(c, now)))
    opened = [new_alert(c, now, deliveries) for key, c in by_key.items() if c.active and key not in current]
    return EpisodePlan(opened=tuple(opened), kept=tuple(kept), closed=tuple(closed), untouched=tuple(untouched))


def open_subjects(open_alerts: Sequence[dict], rule: str) -> frozenset[str]:
    """The subjects of `rule` with an open episode (what the hysteresis of a level rule needs)."""
    return frozenset(d["subject"] for d in open_alerts if d["rule"] == rule and d.get("status") in OPEN_STATUSES)
