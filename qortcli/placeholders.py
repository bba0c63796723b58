"""The placeholder passwords of `.env.example` (`change-me-…`) are refused when the worker or the viewer starts:
a deployment that was never given real passwords stops with one clear line instead of running with them."""

from __future__ import annotations

import os
from typing import Mapping
from urllib.parse import urlsplit

from qortcli.errors import ConfigError

PLACEHOLDER = "change-me"


def placeholder_settings(env: Mapping[str, str] | None = None) -> list[str]:
    """Names of the environment variables that still hold a placeholder password: any `*_PASSWORD` whose value
    starts with "change-me", and `QORT_DB` when its URL's password does."""
    env = os.environ if env is None else env
    found = []
    for name in sorted(env):
        value = str(env.get(name) or "").strip()
        if not value:
            continue
        if name.upper().endswith("PASSWORD") and value.lower().startswith(PLACEHOLDER):
            found.append(name)
        elif name == "QORT_DB" and "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password and password.lower().startswith(PLACEHOLDER):
                found.append("QORT_DB (the password in its URL)")
    return found


def refuse_placeholders(who: str, env: Mapping[str, str] | None = None) -> None:
    """ConfigError naming the variables when any placeholder password is still set (see `placeholder_settings`)."""
    names = placeholder_settings(env)
    if names:
        verb = "holds" if len(names) == 1 else "hold"
        raise ConfigError(f"{who} refuses to start: {', '.join(names)} still {verb} the placeholder password "
                          f"'{PLACEHOLDER}-…' of .env.example; set real passwords in .env (see .env.example)")
