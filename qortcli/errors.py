"""Errors that a step or the store raises for expected failures: each carries one clear line."""


class QortError(Exception):
    """Base class: the message is one line meant for the user."""


class StoreError(QortError):
    """The store cannot be reached or used."""


class StepError(QortError):
    """A pipeline step could not complete (bad input, failed solve, missing data)."""


class ConfigError(QortError):
    """A configuration file or setting is malformed."""


class UsageError(QortError):
    """The command was called with arguments that cannot work (exit code 2)."""
