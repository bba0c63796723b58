"""The `[alerts]` settings → a typed `AlertSettings`, validated once with errors that name the rule and key.

    [alerts]
    enabled = true
    log_file = "~/.qortfolio/alerts.jsonl"   # JSON lines (opened / closed / acknowledged); "" = no log file
    delivery_budget = "30s"                  # time one run may spend delivering; the rest waits for the next run

    [[alerts.webhooks]]                      # any number; each is one HTTP POST per opened alert
    name = "team"
    url_env = "QORT_ALERTS_WEBHOOK_URL"      # the URL comes from the environment (or `url = "https://..."`)
    format = "json"                          # "json": {text, content, alert} (Slack, Discord, generic); "text": ntfy
    timeout = "5s"
    attempts = 3                             # tries per delivery; waits backoff, 2 x backoff, ... in between
    backoff = "1s"

    [[alerts.rules]]                         # any number; `name` is the alert's rule id, `kind` one of KINDS
    name = "btc_iv_rich"
    kind = "iv_rank"
    above = 0.9

Every rule takes `name`, `kind`, `severity` ("info" | "warning" | "critical"), `enabled` and, for market rules,
`currencies` (default: every currency with snapshots in the store). Kind-specific keys, units and defaults are
in the `*Rule` classes below and in the packaged settings.toml. Durations are "90s", "5m", "24h", "3d" (or
seconds). Vols, moves and fractions are fractions (0.05 = 5 vol points / 5 %).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from qortcli.errors import ConfigError

SEVERITIES = ("info", "warning", "critical")
SOURCES = ("marks", "svi")
TENORS_DAYS = (7, 30, 60, 90, 180)          # the constant maturities of the per-snapshot summaries
DATASETS = ("options", "summaries", "prices")
RANK_LOOKBACK_DAYS = 365                     # calendar days of IV history a rank looks back (a window, not a basis)
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


# ------------------------------------------------------------------------------------------- rules

@dataclass(frozen=True, kw_only=True)
class Rule:
    """What every rule has: its id (`name`, the alert's `rule`), severity and, for market rules, currencies."""

    name: str
    severity: str
    currencies: tuple[str, ...] | None = None     # None: every currency with snapshots in the store
    KIND: ClassVar[str] = ""
    CATEGORY: ClassVar[str] = "market"

    @property
    def kind(self) -> str:
        return self.KIND

    @property
    def category(self) -> str:
        return self.CATEGORY


@dataclass(frozen=True, kw_only=True)
class IvRankRule(Rule):
    """The constant-maturity ATM IV's rank or percentile (`quant.vol_history.rank_percentile`, fractions 0..1)
    over `lookback_days` crossing `level` (`above` or `below`); clears `hysteresis` back inside. The history has
    one point a day (each UTC day's last summary) and the latest summary as today's point."""

    KIND: ClassVar[str] = "iv_rank"
    measure: str = "percentile"       # "rank" | "percentile"
    tenor_days: int = 30
    source: str = "marks"             # "marks" | "svi": which summary column (atm_iv_30d_marks, ...)
    lookback_days: int = RANK_LOOKBACK_DAYS
    min_points: int = 20
    direction: str = "above"          # "above" | "below"
    level: float = 0.9
    hysteresis: float = 0.05          # fraction of the 0..1 scale
    max_age_s: float = 86400.0        # the latest summary must be this recent, else not evaluated


@dataclass(frozen=True, kw_only=True)
class Rr25FlipRule(Rule):
    """The 25-delta risk reversal (call − put vol, fraction) at `tenor_days` changing sign: outside ±`band` a
    point sets the sign, inside it the sign carries on (the hysteresis). One episode per new sign (subject
    `CUR/30d/positive`), opened when the flip happened within `lookback_s`, closed when the sign flips back."""

    KIND: ClassVar[str] = "rr25_flip"
    tenor_days: int = 30
    source: str = "marks"
    band: float = 0.005               # vol (fraction): half a vol point
    lookback_s: float = 86400.0
    max_age_s: float = 86400.0


@dataclass(frozen=True, kw_only=True)
class TermInversionRule(Rule):
    """Term-structure inversion: ATM IV at `front_days` minus ATM IV at `back_days` (fraction) above `level`;
    clears at or below `level − hysteresis`."""

    KIND: ClassVar[str] = "term_inversion"
    front_days: int = 7
    back_days: int = 90
    source: str = "marks"
    level: float = 0.0
    hysteresis: float = 0.005
    max_age_s: float = 86400.0


@dataclass(frozen=True, kw_only=True)
class SpotMoveRule(Rule):
    """The spot index (USD) moving by at least `move` (fraction) within `window_s`: the largest |S_last / S_t − 1|
    over the points t of the window (per-snapshot summaries, and the stream's live index when fresher); clears
    below `move − hysteresis`."""

    KIND: ClassVar[str] = "spot_move"
    move: float = 0.03
    window_s: float = 3600.0
    hysteresis: float = 0.005


@dataclass(frozen=True, kw_only=True)
class SuggestionRule(Rule):
    """A tracked (open) suggestion's P/L in USD at its latest track point reaching a level.

    max loss: P/L ≤ −fraction × |max_loss_usd|; unbounded max loss: P/L ≤ −premium_multiple × |option premium USD|.
    target:   P/L ≥ fraction × max_profit_usd;  unbounded max profit: P/L ≥ premium_multiple × |option premium USD|.
    `pnl` "exit" uses the exit P/L (closing at the quotes), falling back to the mark P/L when a quote is missing;
    "marks" the mark P/L. Clears when P/L is back inside the level by `hysteresis` × |level|."""

    KIND: ClassVar[str] = "suggestion_max_loss"
    fraction: float = 0.8
    premium_multiple: float = 2.0
    pnl: str = "exit"
    hysteresis: float = 0.1


@dataclass(frozen=True, kw_only=True)
class SuggestionTargetRule(SuggestionRule):
    KIND: ClassVar[str] = "suggestion_target"
    fraction: float = 0.5
    premium_multiple: float = 1.0


@dataclass(frozen=True, kw_only=True)
class JobFailedRule(Rule):
    """A scheduled job whose latest finished run (in `job_runs`, tagged with the job id) failed; clears at the
    next run that succeeds. `jobs`: the job ids watched (default: every job of the schedule)."""

    KIND: ClassVar[str] = "job_failed"
    CATEGORY: ClassVar[str] = "health"
    jobs: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class JobMissedRule(Rule):
    """A job with its own timing that did not start when due: its latest record is "missed" (the worker's
    misfire), or no run started since it was due (interval: last start + every; cron: the last fire time)
    more than `grace_s` ago (default: the schedule's misfire grace)."""

    KIND: ClassVar[str] = "job_missed"
    CATEGORY: ClassVar[str] = "health"
    jobs: tuple[str, ...] | None = None
    grace_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class StaleDataRule(Rule):
    """Data older than its cadence: options snapshots and summaries per currency (cadence: the collect_deribit
    interval, or the stream's snapshot_every), daily prices per symbol (cadence: the collect_prices cron; a day's
    bar is complete at its end). Stale when older than `cadence_multiple` × cadence, or than `max_age[dataset]`."""

    KIND: ClassVar[str] = "stale_data"
    CATEGORY: ClassVar[str] = "health"
    datasets: tuple[str, ...] = DATASETS
    cadence_multiple: float = 3.0
    max_age_s: Mapping[str, float] = field(default_factory=dict)
    symbols: tuple[str, ...] | None = None          # price symbols (default: the currencies)


@dataclass(frozen=True, kw_only=True)
class StreamDisconnectedRule(Rule):
    """The stream silent (no message in its `live_marks`, connected or not) for more than `after_s`, while a
    stream should run (the schedule streams, or the latest stream session is still recorded running)."""

    KIND: ClassVar[str] = "stream_disconnected"
    CATEGORY: ClassVar[str] = "health"
    after_s: float = 60.0


RULE_CLASSES: dict[str, type[Rule]] = {cls.KIND: cls for cls in (
    IvRankRule, Rr25FlipRule, TermInversionRule, SpotMoveRule, SuggestionRule, SuggestionTargetRule,
    JobFailedRule, JobMissedRule, StaleDataRule, StreamDisconnectedRule)}
KINDS = tuple(RULE_CLASSES)


# ------------------------------------------------------------------------------------------- targets

@dataclass(frozen=True)
class WebhookTarget:
    """One webhook. `url` is a secret (never in a repr, a log line or the store: see `qortcli.alerts.redact`);
    None when `url_env` names an unset variable (`missing` says so)."""

    name: str
    url: str | None = field(repr=False)
    url_env: str | None
    format: str = "json"              # "json" | "text"
    timeout_s: float = 5.0
    attempts: int = 3
    backoff_s: float = 1.0
    missing: str | None = None

    @property
    def label(self) -> str:
        from qortcli.alerts.redact import redact_url

        return redact_url(self.url) if self.url else f"(unset: {self.url_env})"


@dataclass(frozen=True)
class AlertSettings:
    enabled: bool = True
    rules: tuple[Rule, ...] = ()
    webhooks: tuple[WebhookTarget, ...] = ()
    log_file: Path | None = None
    delivery_budget_s: float = 30.0

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


# ------------------------------------------------------------------------------------------- parsing

class _Table:
    """One settings table with typed getters; every error names `where` and the key; unknown keys are errors."""

    def __init__(self, raw: Any, where: str):
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a table")
        self.raw, self.where, self.used = raw, where, set()

    def _get(self, key: str, default):
        self.used.add(key)
        return self.raw.get(key, default)

    def _bad(self, key: str, wanted: str, value) -> ConfigError:
        return ConfigError(f"{self.where}: {key} = {value!r} is not {wanted}")

    def string(self, key: str, default: str | None = None, choices: tuple[str, ...] | None = None) -> str | None:
        value = self._get(key, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._bad(key, "a string", value)
        if choices and value not in choices:
            raise self._bad(key, f"one of {', '.join(choices)}", value)
        return value

    def number(self, key: str, default: float | None, lo: float | None = None, hi: float | None = None,
               positive: bool = False) -> float | None:
        value = self._get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise self._bad(key, "a number", value)
        if (positive and value <= 0) or (lo is not None and value < lo) or (hi is not None and value > hi):
            span = "positive" if positive and lo is None and hi is None else f"in [{lo}, {hi}]"
            raise self._bad(key, span, value)
        return float(value)

    def integer(self, key: str, default: int, lo: int, hi: int | None = None, choices: tuple[int, ...] = ()) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "an integer", value)
        if choices and value not in choices:
            raise self._bad(key, f"one of {', '.join(map(str, choices))}", value)
        if value < lo or (hi is not None and value > hi):
            raise self._bad(key, f"an integer in [{lo}, {hi if hi is not None else '∞'}]", value)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false", value)
        return value

    def duration(self, key: str, default: float | None, zero_ok: bool = False) -> float | None:
        """Seconds from "90s" / "5m" / "24h" / "3d" (or a number of seconds); 0 only with `zero_ok`."""
        value = self._get(key, default)
        if value is None:
            return None
        from qortcli.schedule import parse_every

        if zero_ok and str(value).strip() in ("0", "0.0", "0s", "0m", "0h", "0d"):
            return 0.0
        try:
            return parse_every(value, key).total_seconds()
        except ConfigError:
            wanted = "a duration" if zero_ok else "a positive duration"
            raise self._bad(key, f'{wanted} like "90s", "5m", "24h", "3d"', value) from None

    def strings(self, key: str, upper: bool = False, choices: tuple[str, ...] | None = None) -> tuple[str, ...] | None:
        value = self._get(key, None)
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise self._bad(key, "a non-empty list of strings", value)
        out = tuple(v.strip().upper() if upper else v.strip() for v in value)
        bad = [v for v in out if choices and v not in choices]
        if bad:
            raise self._bad(key, f"a list of {', '.join(choices)}", value)
        return out

    def durations(self, key: str, choices: tuple[str, ...]) -> dict[str, float]:
        value = self._get(key, {})
        sub = _Table(value, f"{self.where} {key}")
        out = {name: sub.duration(name, None) for name in value if name in choices}
        sub.finish()
        return out

    def finish(self, extra_known: tuple[str, ...] = ()) -> None:
        unknown = sorted(set(self.raw) - self.used - set(extra_known))
        if unknown:
            raise ConfigError(f"{self.where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")


def _level(t: _Table) -> tuple[str, float]:
    above, below = t.number("above", None), t.number("below", None)
    if above is not None and below is not None:
        raise ConfigError(f"{t.where}: give one of above / below, not both")
    if above is None and below is None:
        raise ConfigError(f"{t.where}: needs above = LEVEL or below = LEVEL")
    return ("above", above) if above is not None else ("below", below)


def _rule(raw: Any, index: int) -> Rule:
    where = f"[[alerts.rules]] #{index + 1}"
    t = _Table(raw, where)
    name = t.string("name")
    if not name or not _NAME.match(name):
        raise ConfigError(f"{where}: name = {name!r} must be 1-64 letters, digits, _ . -")
    t.where = where = f"{where} ({name})"
    kind = t.string("kind", choices=KINDS)
    if kind is None:
        raise ConfigError(f"{where}: needs kind = one of {', '.join(KINDS)}")
    cls = RULE_CLASSES[kind]
    common: dict[str, Any] = {"name": name, "severity": t.string(
        "severity", "info" if cls.CATEGORY == "market" else "warning", SEVERITIES)}
    if cls.CATEGORY == "market":
        common["currencies"] = t.strings("currencies", upper=True)
    t.boolean("enabled", True)
    params: dict[str, Any] = {}
    if cls is IvRankRule:
        direction, level = _level(t)
        params = dict(measure=t.string("measure", "percentile", ("rank", "percentile")),
                      tenor_days=t.integer("tenor_days", 30, 1, choices=TENORS_DAYS),
                      source=t.string("source", "marks", SOURCES),
                      lookback_days=t.integer("lookback_days", RANK_LOOKBACK_DAYS, 1, 10 * RANK_LOOKBACK_DAYS),
                      min_points=t.integer("min_points", 20, 2), direction=direction,
                      level=_fraction(t, "level", level), hysteresis=t.number("hysteresis", 0.05, 0.0, 1.0),
                      max_age_s=t.duration("max_age", 86400.0))
    elif cls is Rr25FlipRule:
        params = dict(tenor_days=t.integer("tenor_days", 30, 1, choices=TENORS_DAYS),
                      source=t.string("source", "marks", SOURCES), band=t.number("band", 0.005, 0.0, 0.5),
                      lookback_s=t.duration("lookback", 86400.0), max_age_s=t.duration("max_age", 86400.0))
    elif cls is TermInversionRule:
        front, back = t.integer("front_days", 7, 1, choices=TENORS_DAYS), t.integer("back_days", 90, 1, choices=TENORS_DAYS)
        if front >= back:
            raise ConfigError(f"{where}: front_days ({front}) must be shorter than back_days ({back})")
        params = dict(front_days=front, back_days=back, source=t.string("source", "marks", SOURCES),
                      level=t.number("level", 0.0, -0.5, 0.5), hysteresis=t.number("hysteresis", 0.005, 0.0, 0.5),
                      max_age_s=t.duration("max_age", 86400.0))
    elif cls is SpotMoveRule:
        move = t.number("move", 0.03, positive=True)
        hysteresis = t.number("hysteresis", 0.005, 0.0, 1.0)
        if hysteresis >= move:
            raise ConfigError(f"{where}: hysteresis ({hysteresis}) must be smaller than move ({move})")
        params = dict(move=move, window_s=t.duration("window", 3600.0), hysteresis=hysteresis)
    elif issubclass(cls, SuggestionRule):
        params = dict(fraction=t.number("fraction", cls.fraction, positive=True),
                      premium_multiple=t.number("premium_multiple", cls.premium_multiple, positive=True),
                      pnl=t.string("pnl", "exit", ("exit", "marks")),
                      hysteresis=t.number("hysteresis", 0.1, 0.0, 0.99))
    elif cls in (JobFailedRule, JobMissedRule):
        params = {"jobs": t.strings("jobs")}
        if cls is JobMissedRule:
            params["grace_s"] = t.duration("grace", None)
    elif cls is StaleDataRule:
        params = dict(datasets=t.strings("datasets", choices=DATASETS) or DATASETS,
                      cadence_multiple=t.number("cadence_multiple", 3.0, 1.0, 1000.0),
                      max_age_s=t.durations("max_age", DATASETS), symbols=t.strings("symbols", upper=True),
                      currencies=t.strings("currencies", upper=True))
    elif cls is StreamDisconnectedRule:
        params = {"after_s": t.duration("after", 60.0), "currencies": t.strings("currencies", upper=True)}
    t.finish()
    return cls(**common, **params)


def _fraction(t: _Table, key: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{t.where}: the {key} of a rank or percentile is a fraction in [0, 1], got {value}")
    return value


def _webhook(raw: Any, index: int, environ: Mapping[str, str]) -> WebhookTarget:
    where = f"[[alerts.webhooks]] #{index + 1}"
    t = _Table(raw, where)
    name = t.string("name", f"webhook{index + 1}")
    if not _NAME.match(name or ""):
        raise ConfigError(f"{where}: name = {name!r} must be 1-64 letters, digits, _ . -")
    t.where = where = f"{where} ({name})"
    url, url_env = t.string("url"), t.string("url_env")
    if (url is None) == (url_env is None):
        raise ConfigError(f"{where}: give exactly one of url_env = \"VARIABLE\" (recommended: the URL stays out of "
                          "this file) or url = \"https://...\"")
    missing = None
    if url_env is not None:
        url = (environ.get(url_env) or "").strip() or None
        missing = None if url else f"{url_env} is not set"
    if url is not None and not re.match(r"^https?://[^/\s]+", url):
        from qortcli.alerts.redact import redact_url

        raise ConfigError(f"{where}: the webhook URL ({redact_url(url)}) must start with http:// or https://")
    target = WebhookTarget(name=name, url=url, url_env=url_env, format=t.string("format", "json", ("json", "text")),
                           timeout_s=t.duration("timeout", 5.0), attempts=t.integer("attempts", 3, 1, 10),
                           backoff_s=t.duration("backoff", 1.0, zero_ok=True), missing=missing)
    if target.timeout_s > 120:
        raise ConfigError(f"{where}: timeout must be at most 120 s")
    t.finish()
    return target


def alert_settings(section: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> AlertSettings:
    """Validate an `[alerts]` section (default: the current settings' `[alerts]`) into `AlertSettings`.

    ConfigError (one line naming the table, rule and key) for anything malformed; a webhook whose `url_env`
    is unset is kept, inactive (`missing`), so `qortcli alerts test` can say so. Rules with enabled = false
    are dropped."""
    if section is None:
        from qortcli.config import get_settings

        section = get_settings().section("alerts")
    environ = os.environ if environ is None else environ
    t = _Table(dict(section or {}), "[alerts]")
    enabled = t.boolean("enabled", True)
    log_file = t.string("log_file", "")
    budget = t.duration("delivery_budget", 30.0)
    raw_rules = t._get("rules", [])
    raw_hooks = t._get("webhooks", [])
    if not isinstance(raw_rules, list) or not isinstance(raw_hooks, list):
        raise ConfigError("[alerts]: rules and webhooks are arrays of tables ([[alerts.rules]], [[alerts.webhooks]])")
    t.finish()
    rules = []
    for i, raw in enumerate(raw_rules):
        if isinstance(raw, dict) and raw.get("enabled", True) is False:
            continue
        rules.append(_rule(raw, i))
    hooks = tuple(_webhook(raw, i, environ) for i, raw in enumerate(raw_hooks))
    for what, names in (("rule", [r.name for r in rules]), ("webhook", [h.name for h in hooks])):
        seen = {n for n in names if names.count(n) > 1}
        if seen:
            raise ConfigError(f"[alerts]: {what} names must be unique (repeated: {', '.join(sorted(seen))})")
    path = Path(os.path.expandvars(os.path.expanduser(log_file))) if log_file else None
    return AlertSettings(enabled=enabled, rules=tuple(rules), webhooks=hooks, log_file=path, delivery_budget_s=budget)
