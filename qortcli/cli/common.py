"""Shared CLI plumbing: options, the store handle, JSON/rich output and exit codes."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console

from qortcli.errors import QortError, UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

DbOption = Annotated[Optional[str], typer.Option(
    "--db", envvar="QORT_DB", show_envvar=True,
    help="Store: mongodb:// or mongodb+srv:// URL, or a directory for the embedded store.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
VerboseOption = Annotated[int, typer.Option("--verbose", "-v", count=True,
                                            help="More logging; -v also shows tracebacks on errors.")]

def _width() -> int | None:
    """Rich's own width on a terminal; when piped, COLUMNS or 160 so tables are not truncated to 80."""
    if sys.stdout.isatty():
        return None
    try:
        return max(80, int(os.environ.get("COLUMNS", "160")))
    except ValueError:
        return 160


console = Console(width=_width())
err_console = Console(stderr=True, width=_width())


@dataclass
class State:
    """Options resolved from the global callback and the command's own flags."""

    db_url: str | None = None
    as_json: bool = False
    verbose: int = 0

    @staticmethod
    def configure_logging(verbose: int) -> None:
        level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        logging.getLogger().setLevel(level)
        # urllib3 logs every retry as a WARNING; the step reports the outcome in one line, -v shows them
        logging.getLogger("urllib3").setLevel(level if verbose else logging.ERROR)


def state(ctx: typer.Context, db: str | None = None, as_json: bool = False, verbose: int = 0) -> State:
    """Merge a command's own --db/--json/-v with the global ones."""
    base = ctx.find_object(State) or State()
    merged = State(db_url=db or base.db_url, as_json=as_json or base.as_json, verbose=max(verbose, base.verbose))
    if verbose:
        State.configure_logging(merged.verbose)
    return merged


def to_json(obj: Any) -> str:
    """JSON text for a summary: datetimes as ISO 8601, NaN as null."""

    def default(value):
        if isinstance(value, (datetime, date)):
            return value.isoformat()
        if hasattr(value, "tolist"):
            return value.tolist()
        if hasattr(value, "item"):
            return value.item()
        return str(value)

    def clean(value):
        if isinstance(value, float) and value != value:
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(value_to_python(obj)), default=default, indent=2, allow_nan=False)


def value_to_python(obj: Any) -> Any:
    from qortcli.store.ops import to_plain

    try:
        return to_plain(obj)
    except (ValueError, TypeError):
        return obj


def emit(st: State, summary: Any, render: Callable[[Console, Any], None]) -> None:
    """Print `summary` as JSON (--json) or through `render` as rich tables."""
    if st.as_json:
        typer.echo(to_json(summary))
    else:
        render(console, summary)


def fail(message: str, code: int = EXIT_FAILED) -> None:
    """Print one red error line and exit with `code`."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def handled(st: State):
    """Turn expected errors into one line and an exit code; tracebacks only with -v."""
    try:
        yield
    except typer.Exit:
        raise
    except UsageError as exc:
        if st.verbose:
            traceback.print_exc()
        fail(str(exc), EXIT_USAGE)
    except QortError as exc:
        if st.verbose:
            traceback.print_exc()
        fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # anything unexpected: still one line unless -v
        if st.verbose:
            traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0]
        fail(f"{type(exc).__name__}: {first} (run with -v for the traceback)", EXIT_FAILED)


def open_db(st: State, migrate: bool = True, read_only: bool = False):
    """Connect to the store; with `migrate`, apply pending schema migrations first. `read_only` opens it
    without creating or writing anything (commands that only read)."""
    from qortcli.store import connect, ensure_schema

    db = connect(st.db_url, read_only=read_only, auto_schema=migrate)
    if migrate and not read_only:
        ensure_schema(db)
    return db


def fmt(value: Any, digits: int = 4) -> str:
    """A compact cell for rich tables: floats to `digits` significant places, None as '–'."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:
            return "–"
        return f"{value:.{digits}g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)
