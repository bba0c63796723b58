"""The typed result of evaluating one rule on one subject, and the level-crossing test with hysteresis."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping


@dataclass(frozen=True)
class Condition:
    """One rule on one subject at one evaluation.

    active      True: the condition holds (an episode opens or goes on); False: it does not (an open episode
                closes); None: it could not be evaluated (too little or too old data): an open episode stays
                as it is and nothing opens — `reason` says why.
    title       one line for people ("BTC 30d ATM IV percentile (marks) 0.93 > 0.90 over 365 d").
    observed_at when the data behind the reading was taken (UTC), not when it was evaluated.
    values      the reading (its units in the key names), thresholds the levels it was compared with,
                inputs what was read (columns, windows, points, snapshot ids): stored with the alert.
    """

    rule: str
    kind: str
    category: str
    subject: str
    severity: str
    active: bool | None
    title: str
    observed_at: datetime | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None

    @classmethod
    def of(cls, rule, subject: str, active: bool | None, title: str, **extra) -> "Condition":
        """A condition of `rule` (any rule of `qortcli.alerts.settings`: its name, kind, category, severity)."""
        return cls(rule=rule.name, kind=rule.kind, category=rule.category, subject=subject, severity=rule.severity,
                   active=active, title=title, **extra)


def crossed(value: float | None, level: float, direction: str, hysteresis: float, was_open: bool) -> bool | None:
    """Whether `value` is beyond `level` in `direction` ("above" | "below"), with hysteresis: a closed episode
    opens when value > level (above) / < level (below); an open one stays open until value is back by at least
    `hysteresis` (value ≤ level − hysteresis, resp. ≥ level + hysteresis). None when value is None or NaN."""
    if value is None or not math.isfinite(value):
        return None
    if direction not in ("above", "below"):
        raise ValueError(f"direction must be 'above' or 'below', got {direction!r}")
    if hysteresis < 0:
        raise ValueError(f"hysteresis must be non-negative, got {hysteresis}")
    if direction == "above":
        return value > (level - hysteresis if was_open else level)
    return value < (level + hysteresis if was_open else level)


def clear_level(level: float, direction: str, hysteresis: float) -> float:
    """The level an open episode of `crossed` clears at."""
    return level - hysteresis if direction == "above" else level + hysteresis
