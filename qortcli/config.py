"""Settings from the environment, a `.env` file and a TOML settings file validated against one typed schema.

Environment variables (all optional; a `.env` file in the working directory is read first, and variables
already set in the environment win over it):
  QORT_DB          store URL: mongodb:// or mongodb+srv:// for MongoDB, else a path for the embedded store
                   (default ~/.qortfolio/db)
  QORT_DB_NAME     database name (default "qortfolio")
  QORT_SETTINGS    TOML settings file (default: only the packaged qortcli/data/settings.toml)
  QORT_SECTORS     sector taxonomy JSON (default: the packaged qortcli/data/crypto_sectors.json)
  QORT_DERIBIT_URL Deribit API base URL (default https://www.deribit.com/api/v2)
  QORT_MONGO_TIMEOUT_MS  server-selection / connect timeout for MongoDB (default 2500)

The settings file. The packaged `qortcli/data/settings.toml` holds every default; a `QORT_SETTINGS` file
is merged over it (a partial section keeps the packaged values of the keys it does not set; the
`[schedule.jobs]` table, a list of jobs rather than settings, replaces the packaged one as a whole).
The merged tree is validated once (`get_settings()`, which the CLI calls at start-up) against the
section models below: pydantic v2, `extra="forbid"` (an unknown section or key is an error), strict
types (`iv_high = "high"` or `currencies = "BTC"` is an error, not a coercion). Every error is one
ConfigError line naming the file, the section and the key.

Reading settings: `get_settings().suggest.iv_high` (typed) or `get_settings().section("suggest")`
(the validated section as a plain dict, nested tables included).

Adding a section (e.g. `[risk]`) is one small model class in this module:

    @settings_section("risk")
    class RiskSettings(Section):
        \"\"\"[risk]: scenario grid of `qortcli risk`.\"\"\"
        spot_shocks: list[float]                  # fractions, e.g. [-0.2, -0.1, 0, 0.1, 0.2]
        vol_shocks: list[float]                   # vol points as fractions
        horizon_days: PositiveFloat

and its defaults in the packaged settings.toml (`[risk]` with every key). Field types and constraints
come from pydantic (`PositiveFloat`, `Literal[...]`, `Field(ge=0, le=1)`, validators); defaults live in
settings.toml only, so there is one home for each value.
"""

from __future__ import annotations

import copy
import difflib
import os
import tomllib
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import (BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt,
                      ValidationError, field_validator, model_validator)

from qortcli.errors import ConfigError

DEFAULT_DB_PATH = Path("~/.qortfolio/db").expanduser()
DEFAULT_DB_NAME = "qortfolio"
DEFAULT_DERIBIT_URL = "https://www.deribit.com/api/v2"


def package_data(name: str) -> Path:
    """Path of a file shipped inside the package's `data/` folder."""
    return Path(str(resources.files("qortcli") / "data" / name))


def _load_dotenv() -> None:
    """Variables of `./.env` (the working directory) into the environment; set ones are kept."""
    try:
        from dotenv import load_dotenv
    except ImportError:  # python-dotenv is a dependency, but never fail on it
        return
    path = Path.cwd() / ".env"
    if path.is_file():
        load_dotenv(path, override=False)


# ------------------------------------------------------------------------------------------ schema

class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, types are strict, values immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


#: section name → model (filled by @settings_section)
SECTIONS: dict[str, type[Section]] = {}


def settings_section(name: str):
    """Register a Section model as the schema of `[name]`."""

    def register(cls: type[Section]) -> type[Section]:
        SECTIONS[name] = cls
        return cls

    return register


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Currency = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{1,11}$")]


@settings_section("pricing")
class PricingSettings(Section):
    """[pricing]: the day count of t_years used by `price`, `surface` and `suggest`."""

    day_count: str

    @field_validator("day_count")
    @classmethod
    def _known_basis(cls, value: str) -> str:
        from qortcli.timeutils import BASES

        if value not in BASES:
            raise ValueError(f"unknown day-count basis {value!r}; use one of {', '.join(sorted(BASES))}")
        return value


@settings_section("collect")
class CollectSettings(Section):
    """[collect]: what `collect` fetches and how much it trusts its inputs."""

    currencies: list[Currency] = Field(min_length=1)
    price_history_start: Annotated[date, Field(strict=False)]
    max_file_mb: PositiveFloat                 # --from-file / --from-csv: larger files are refused
    clock_skew_seconds: NonNegativeFloat       # a snapshot dated later than now + this is refused

    @field_validator("currencies", mode="before")
    @classmethod
    def _a_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f'must be a list like ["BTC", "ETH"], not the string {value!r} '
                             f'(write ["{value}"] for one currency)')
        return value


@settings_section("deribit")
class DeribitSettings(Section):
    """[deribit]: bounds of every live request (`qortcli.sources.deribit.DeribitClient`)."""

    connect_timeout_seconds: PositiveFloat
    read_timeout_seconds: PositiveFloat        # per socket read
    request_deadline_seconds: PositiveFloat    # whole request: retries, waits and the body included
    retries: NonNegativeInt
    retry_after_max_seconds: NonNegativeFloat  # a longer Retry-After is capped to this
    max_response_mb: PositiveFloat
    max_instruments: PositiveInt               # a chain with more instruments is refused


class RankScale(Section):
    """[suggest.rank_scale]: strength = (value − threshold) / scale, per rule (fractions)."""

    iv_above_high: PositiveFloat
    iv_below_low: PositiveFloat
    iv_rich_percentile: PositiveFloat
    iv_cheap_percentile: PositiveFloat
    iv_over_rv: PositiveFloat
    iv_under_rv: PositiveFloat
    iv_rich_vs_forecast: PositiveFloat
    iv_cheap_vs_forecast: PositiveFloat
    term_inverted: PositiveFloat
    put_skew: PositiveFloat
    call_skew: PositiveFloat


@settings_section("suggest")
class SuggestSettings(Section):
    """[suggest]: every rule threshold and delta target of `qortcli suggest` (vols and deltas as fractions)."""

    expiry_min_days: NonNegativeFloat
    expiry_max_days: PositiveFloat
    iv_tenor_days: PositiveFloat
    iv_high: PositiveFloat
    iv_low: PositiveFloat
    iv_pct_high: Fraction
    iv_pct_low: Fraction
    min_history: NonNegativeInt
    iv_rv_rich: float
    iv_rv_cheap: float
    rv_window_days: PositiveInt
    rv_annualisation_days: PositiveFloat
    rv_max_age_days: NonNegativeFloat
    iv_history_days: PositiveFloat                  # the IV percentile's history (days; one point a day)
    iv_vs_forecast_tenor_days: PositiveInt          # IV vs the best forecast of `qortcli vol`: T days (7 or 30)
    iv_vs_forecast_rich: float
    iv_vs_forecast_cheap: float
    forecast_max_age_days: NonNegativeFloat
    term_front_days: PositiveFloat
    term_front_min_days: NonNegativeFloat
    term_inverted: float
    rr25_strong: NonNegativeFloat
    delta_short: Annotated[float, Field(gt=0.0, lt=1.0)]
    delta_wing: Annotated[float, Field(gt=0.0, lt=1.0)]
    delta_spread_long: Annotated[float, Field(gt=0.0, lt=1.0)]
    size: PositiveFloat
    holding_coin: NonNegativeFloat
    grid_lo: PositiveFloat
    grid_hi: PositiveFloat
    grid_points: Annotated[int, Field(ge=3)]
    settle_index_tolerance_minutes: NonNegativeFloat
    settle_max_forward_age_hours: NonNegativeFloat
    rank_scale: RankScale

    @model_validator(mode="after")
    def _ordered(self) -> "SuggestSettings":
        for lo, hi in (("expiry_min_days", "expiry_max_days"), ("iv_low", "iv_high"), ("iv_pct_low", "iv_pct_high"),
                       ("iv_rv_cheap", "iv_rv_rich"), ("iv_vs_forecast_cheap", "iv_vs_forecast_rich"),
                       ("grid_lo", "grid_hi")):
            if getattr(self, lo) >= getattr(self, hi):
                raise ValueError(f"{lo} = {getattr(self, lo)!r} must be below {hi} = {getattr(self, hi)!r}")
        return self


class JobSettings(Section):
    """One job of [schedule.jobs] (exactly one of every / cron / after: checked by qortcli.schedule)."""

    every: Optional[str | float | int] = None
    cron: Optional[str] = None
    after: Optional[str] = None
    enabled: bool = True
    args: dict[str, Any] = Field(default_factory=dict)
    step: Optional[str] = None
    command: Optional[str] = None
    description: Optional[str] = None
    timeout: Optional[str | float | int] = None     # the job's deadline ("4m", seconds; "0": none)


class StreamSettings(Section):
    """[schedule.stream]: the stream session's options when chains = "stream" (`qortcli.steps.stream.run_stream`)."""

    snapshot_every: str = "5m"
    currencies: Optional[list[str]] = None
    url: Optional[str] = None
    rest_url: Optional[str] = None
    max_writes_per_s: Optional[PositiveFloat] = None
    write_burst: Optional[PositiveInt] = None


@settings_section("schedule")
class ScheduleSettings(Section):
    """[schedule]: the worker's jobs and scheduler options (`qortcli.schedule`)."""

    misfire_grace_seconds: NonNegativeInt
    max_workers: PositiveInt
    heartbeat_seconds: NonNegativeFloat
    chains: Literal["poll", "stream"]
    job_timeout: str | float | int                   # default deadline of a job ("15m")
    stop_grace: str | float | int                    # after SIGTERM, how long running jobs may finish ("60s")
    jobs: dict[str, JobSettings]
    stream: StreamSettings = Field(default_factory=StreamSettings)


@settings_section("retention")
class RetentionSettings(Section):
    """[retention]: `qortcli prune` keeps full chains this many days, then one per currency per UTC day."""

    full_chains_days: Annotated[float, Field(ge=1)]


@settings_section("risk")
class RiskSettings(Section):
    """[risk]: the scenario grid of `qortcli risk` (spot moves as fractions, vol shifts in vol points)."""

    spot_move_min: float
    spot_move_max: float
    spot_steps: Annotated[int, Field(ge=2)]
    vol_shift_min: float
    vol_shift_max: float
    vol_steps: Annotated[int, Field(ge=2)]
    horizons_days: list[NonNegativeFloat]
    min_vol: PositiveFloat

    @model_validator(mode="after")
    def _ordered(self) -> "RiskSettings":
        for lo, hi in (("spot_move_min", "spot_move_max"), ("vol_shift_min", "vol_shift_max")):
            if getattr(self, lo) >= getattr(self, hi):
                raise ValueError(f"{lo} = {getattr(self, lo)!r} must be below {hi} = {getattr(self, hi)!r}")
        if self.spot_move_min <= -1:
            raise ValueError(f"spot_move_min = {self.spot_move_min!r} must be above -1 (a spot move of -100 %)")
        return self


@settings_section("alerts")
class AlertsSettings(Section):
    """[alerts]: rules, webhooks and the log file of `qortcli alerts` — validated key by key (rule kinds,
    bounds, durations) by `qortcli.alerts.settings.alert_settings`, which names the table, rule and key."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _rules(cls, data):
        from qortcli.alerts.settings import alert_settings

        alert_settings(dict(data or {}))   # a ConfigError propagates as it is (one line, with the key)
        return data


@settings_section("optimize")
class OptimizeSettings(Section):
    """[optimize]: defaults of `qortcli optimize`."""

    model: str
    risk_measure: str
    min_history_days: Annotated[int, Field(ge=2)]
    lookback_days: Annotated[int, Field(ge=2)]
    rebalance_threshold: Fraction

    @model_validator(mode="after")
    def _known(self) -> "OptimizeSettings":
        from qortcli.quant.choices import MODELS as models
        from qortcli.quant.choices import RISK_MEASURES as measures

        if self.model not in models:
            raise ValueError(f"model {self.model!r} is not one of {', '.join(models)}")
        if self.risk_measure not in measures:
            raise ValueError(f"risk_measure {self.risk_measure!r} is not one of {', '.join(measures)}")
        return self


# ------------------------------------------------------------------------------------------ loading

@dataclass(frozen=True)
class Settings:
    """Resolved settings: environment values plus the validated sections (`settings.suggest.iv_high`)."""

    db_url: str
    db_name: str
    sectors_file: Path
    settings_file: Path
    deribit_url: str
    mongo_timeout_ms: int
    sections: dict[str, Section] = field(default_factory=dict)
    files: tuple[Path, ...] = ()

    def section(self, name: str) -> dict[str, Any]:
        """One validated section as a plain dict (a deep copy; empty if the schema has no such section)."""
        model = self.sections.get(name)
        return copy.deepcopy(model.model_dump()) if model is not None else {}

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get("sections") or {}
        if name in sections:
            return sections[name]
        raise AttributeError(f"settings have no section or attribute {name!r}")


def load_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a missing, unreadable or malformed one is a ConfigError naming the file."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"settings file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"settings file {path} is a directory") from None
    except OSError as exc:
        raise ConfigError(f"settings file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"settings file {path} is not valid TOML: {exc}") from None


#: tables replaced as a whole by the user's file instead of merged key by key
_REPLACED_WHOLE = {("schedule", "jobs")}


def merge_settings(defaults: dict, override: dict, _path: tuple = ()) -> dict:
    """`override` over `defaults`, table by table (see the module docstring)."""
    out = copy.deepcopy(defaults)
    for key, value in override.items():
        here = (*_path, key)
        if isinstance(value, dict) and isinstance(out.get(key), dict) and here not in _REPLACED_WHOLE:
            out[key] = merge_settings(out[key], value, here)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _has(tree: dict, path: tuple) -> bool:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return False
        tree = tree[key]
    return True


def _describe_error(err: dict, section: str, model: type[Section], source: Path) -> str:
    loc = list(err.get("loc", ()))
    names = [i for i, p in enumerate(loc) if isinstance(p, str)]
    last = names[-1] if names else len(loc)
    table = [section, *(str(p) for p in loc[:last])]
    where = f"[{'.'.join(table)}]"
    key = (str(loc[last]) if last < len(loc) else "") + "".join(f"[{p}]" for p in loc[last + 1:])
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        known = list(model.model_fields) if len(table) == 1 else []
        near = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {near[0]}?)" if near else (f" (keys: {', '.join(known)})" if known else "")
        return f"{source}: {where} unknown key {key!r}{hint}"
    if kind == "missing":
        return f"{source}: {where} lacks {key!r}"
    message = err.get("msg", "invalid").removeprefix("Value error, ")
    got = err.get("input")
    shown = f" (got {got!r})" if kind != "value_error" and not isinstance(got, dict) else ""
    if not key:
        return f"{source}: {where} {message}"
    return f"{source}: {where} {key}: {message}{shown}"


def validate_tree(tree: dict, user_tree: dict, defaults_file: Path, user_file: Path | None) -> dict[str, Section]:
    """Each section of the merged `tree` through its model; ConfigError naming file, section and key."""
    unknown = [name for name in tree if name not in SECTIONS]
    if unknown:
        name = unknown[0]
        source = user_file if user_file is not None and name in user_tree else defaults_file
        near = difflib.get_close_matches(name, list(SECTIONS), n=1)
        hint = f"did you mean [{near[0]}]?" if near else f"sections: {', '.join(sorted(SECTIONS))}"
        raise ConfigError(f"{source}: unknown section [{name}] ({hint})")
    out: dict[str, Section] = {}
    for name, model in SECTIONS.items():
        value = tree.get(name, {})
        if not isinstance(value, dict):
            source = user_file if user_file is not None and name in user_tree else defaults_file
            raise ConfigError(f"{source}: {name} must be a table [{name}], got {type(value).__name__}")
        try:
            out[name] = model.model_validate(value)
        except ValidationError as exc:
            errors = exc.errors()
            first = errors[0]
            path = (name, *[str(p) for p in first.get("loc", ())])
            source = user_file if user_file is not None and _has(user_tree, path[:2] if len(path) > 1 else path) \
                else defaults_file
            more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
            raise ConfigError(_describe_error(first, name, model, source) + more) from None
    _check_schedule(out, user_tree, defaults_file, user_file)
    return out


def _check_schedule(sections: dict[str, Section], user_tree: dict, defaults_file: Path, user_file: Path | None) -> None:
    """The schedule's own rules (timings, cron lines, chains) at start-up too."""
    schedule = sections.get("schedule")
    if schedule is None:
        return
    from qortcli.schedule import load_schedule

    try:
        load_schedule(schedule.model_dump(exclude_none=True))
    except ConfigError as exc:
        source = user_file if user_file is not None and "schedule" in user_tree else defaults_file
        raise ConfigError(f"{source}: [schedule] {exc}") from None


@lru_cache(maxsize=None)
def _settings_cached(env_key: tuple, mtime_key: tuple) -> Settings:
    env = dict(env_key)
    defaults_file = package_data("settings.toml")
    user = env.get("QORT_SETTINGS")
    user_file = Path(user).expanduser() if user else None
    try:
        timeout = int(env.get("QORT_MONGO_TIMEOUT_MS") or "2500")
    except ValueError:
        raise ConfigError("QORT_MONGO_TIMEOUT_MS must be an integer number of milliseconds") from None
    if timeout <= 0:
        raise ConfigError("QORT_MONGO_TIMEOUT_MS must be a positive number of milliseconds")
    defaults = load_toml(defaults_file)
    user_tree = load_toml(user_file) if user_file is not None else {}
    tree = merge_settings(defaults, user_tree)
    sections = validate_tree(tree, user_tree, defaults_file, user_file)
    return Settings(
        db_url=env.get("QORT_DB") or str(DEFAULT_DB_PATH),
        db_name=env.get("QORT_DB_NAME") or DEFAULT_DB_NAME,
        sectors_file=Path(env.get("QORT_SECTORS") or package_data("crypto_sectors.json")).expanduser(),
        settings_file=user_file or defaults_file,
        deribit_url=(env.get("QORT_DERIBIT_URL") or DEFAULT_DERIBIT_URL).rstrip("/"),
        mongo_timeout_ms=timeout,
        sections=sections,
        files=(defaults_file,) + ((user_file,) if user_file is not None else ()),
    )


_ENV_KEYS = ("QORT_DB", "QORT_DB_NAME", "QORT_SETTINGS", "QORT_SECTORS", "QORT_DERIBIT_URL", "QORT_MONGO_TIMEOUT_MS")


def get_settings() -> Settings:
    """Current settings, validated (re-read when the environment or the settings file changes)."""
    _load_dotenv()
    env = tuple((k, os.environ.get(k, "")) for k in _ENV_KEYS)
    user = os.environ.get("QORT_SETTINGS")
    try:
        mtime = os.stat(Path(user).expanduser()).st_mtime_ns if user else 0
    except OSError:
        mtime = -1
    return _settings_cached(env, (mtime,))


__all__ = ["Settings", "Section", "SECTIONS", "settings_section", "get_settings", "load_toml", "merge_settings",
           "package_data", "DEFAULT_DB_PATH", "DEFAULT_DB_NAME", "DEFAULT_DERIBIT_URL"]
