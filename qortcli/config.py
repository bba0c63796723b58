"""Settings from the environment, an optional `.env` file and a TOML settings file.

Environment variables (all optional):
  QORT_DB          store URL: mongodb:// or mongodb+srv:// for MongoDB, else a path for the embedded store
                   (default ~/.qortfolio/db)
  QORT_DB_NAME     database name (default "qortfolio")
  QORT_SETTINGS    TOML settings file (default: the packaged qortcli/data/settings.toml)
  QORT_SECTORS     sector taxonomy JSON (default: the packaged qortcli/data/crypto_sectors.json)
  QORT_DERIBIT_URL Deribit API base URL (default https://www.deribit.com/api/v2)
  QORT_MONGO_TIMEOUT_MS  server-selection / connect timeout for MongoDB (default 2500)
"""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from qortcli.errors import ConfigError

DEFAULT_DB_PATH = Path("~/.qortfolio/db").expanduser()
DEFAULT_DB_NAME = "qortfolio"
DEFAULT_DERIBIT_URL = "https://www.deribit.com/api/v2"


def package_data(name: str) -> Path:
    """Path of a file shipped inside the package's `data/` folder."""
    return Path(str(resources.files("qortcli") / "data" / name))


def _load_dotenv() -> None:
    try:
        from dotenv import load_dotenv
    except ImportError:  # python-dotenv is a dependency, but never fail on it
        return
    load_dotenv(override=False)


@dataclass(frozen=True)
class Settings:
    """Resolved settings; `raw` holds the whole TOML tree for sections owned by other modules."""

    db_url: str
    db_name: str
    sectors_file: Path
    settings_file: Path
    deribit_url: str
    mongo_timeout_ms: int
    raw: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        """A copy of one TOML section (empty dict if absent)."""
        return copy.deepcopy(self.raw.get(name, {}))


def load_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a malformed one is a ConfigError naming the file and the problem."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"settings file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"settings file {path} is not valid TOML: {exc}") from None


@lru_cache(maxsize=None)
def _settings_cached(env_key: tuple) -> Settings:
    env = dict(env_key)
    settings_file = Path(env.get("QORT_SETTINGS") or package_data("settings.toml")).expanduser()
    try:
        timeout = int(env.get("QORT_MONGO_TIMEOUT_MS") or "2500")
    except ValueError:
        raise ConfigError("QORT_MONGO_TIMEOUT_MS must be an integer number of milliseconds") from None
    return Settings(
        db_url=env.get("QORT_DB") or str(DEFAULT_DB_PATH),
        db_name=env.get("QORT_DB_NAME") or DEFAULT_DB_NAME,
        sectors_file=Path(env.get("QORT_SECTORS") or package_data("crypto_sectors.json")).expanduser(),
        settings_file=settings_file,
        deribit_url=(env.get("QORT_DERIBIT_URL") or DEFAULT_DERIBIT_URL).rstrip("/"),
        mongo_timeout_ms=timeout,
        raw=load_toml(settings_file),
    )


def get_settings() -> Settings:
    """Current settings (re-read when the relevant environment variables change)."""
    _load_dotenv()
    keys = ("QORT_DB", "QORT_DB_NAME", "QORT_SETTINGS", "QORT_SECTORS", "QORT_DERIBIT_URL", "QORT_MONGO_TIMEOUT_MS")
    return _settings_cached(tuple((k, os.environ.get(k, "")) for k in keys))
