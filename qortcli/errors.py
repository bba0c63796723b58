"""Errors that a step or the store raises for expected failures: each carries one clear line.

The message of every QortError passes through `qortcli.redact.redact`, so a credential inside a URL
never reaches an error line, a `job_runs` record or a log.
"""

from __future__ import annotations

from typing import Any


class QortError(Exception):
    """Base class: the message is one line meant for the user (credentials redacted)."""

    def __init__(self, *args: Any):
        from qortcli.redact import redact

        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class StoreError(QortError):
    """The store cannot be reached or used."""


class StepError(QortError):
    """A pipeline step could not complete (bad input, failed solve, missing data)."""


class ConfigError(QortError):
    """A configuration file or setting is malformed."""


class UsageError(QortError):
    """The command was called with arguments that cannot work (exit code 2)."""


class BadStoreUrl(UsageError, StoreError):
    """A `--db` / `QORT_DB` value that looks like a mistyped URL (a usage error: exit code 2)."""


class PartialFailure(StepError):
    """A step that did part of its work and then failed: `summary` is what it did (the CLI prints it,
    then the error, and exits 1)."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary
