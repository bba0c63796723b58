"""Shared CLI plumbing: options, the store handle, JSON/CSV/rich output, number formats and exit codes.

Every command follows one shape:

    st = state(ctx, db, as_json, verbose, csv)          # options merged, settings validated
    with handled(st, render):                           # errors → one line (JSON under --json) + exit code
        database = open_db(st)                          # the store; writing commands name it at the end
        summary = run_step(database, ...)
        emit(st, summary, render, rows)                 # --json / --csv FILE / rich tables

Exit codes: 0 ok, 1 a step failed, 2 a usage error (bad option value, unknown currency or expiry, bad
path, bad settings) — and a run recorded "ok" by a command that then fails is marked failed.
Everything printed goes through `qortcli.redact.redact`; every external string shown in a rich table or
line is escaped (`cell`, `fmt`, `esc`), so `[/x]` in a name or an error never breaks the output.
"""

from __future__ import annotations

import csv as csv_module
import io
import json
import logging
import math
import os
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, NamedTuple, Optional, Sequence

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from qortcli.errors import ConfigError, PartialFailure, QortError, UsageError
from qortcli.redact import redact

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

DbOption = Annotated[Optional[str], typer.Option(
    "--db", metavar="URL|DIR",
    help="Store: a mongodb:// or mongodb+srv:// URL, or a directory for the embedded store (default: "
         "QORT_DB, else ~/.qortfolio/db). --db wins over QORT_DB wherever it is written.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables "
                                                        "(errors as JSON on stderr).")]
VerboseOption = Annotated[int, typer.Option("--verbose", "-v", count=True,
                                            help="More logging; -v also shows tracebacks on errors.")]
CsvOption = Annotated[Optional[str], typer.Option(
    "--csv", metavar="FILE", help="Also write the main table as CSV to FILE ('-': CSV on stdout instead of tables).")]


class _Stream:
    """stdout/stderr as they are at write time (tests swap them), with every write redacted."""

    def __init__(self, name: str):
        self._name = name

    @property
    def _target(self):
        return getattr(sys, self._name)

    def write(self, text: str) -> int:
        return self._target.write(redact(text))

    def flush(self) -> None:
        self._target.flush()

    def __getattr__(self, attr):
        return getattr(self._target, attr)


def terminal_width() -> int | None:
    """Rich's own width on a terminal; when piped, COLUMNS (at least 40) or 160 so tables are not cut to 80."""
    if sys.stdout.isatty() and "COLUMNS" not in os.environ:
        return None
    try:
        return max(40, int(os.environ.get("COLUMNS", "160")))
    except ValueError:
        return 160


class _Console(Console):
    """A rich Console whose width follows COLUMNS at print time (CliRunner tests set it per invocation)."""

    @property
    def width(self) -> int:  # type: ignore[override]
        width = terminal_width()
        return width if width is not None else Console.width.fget(self)

    @width.setter
    def width(self, value: int) -> None:
        Console.width.fset(self, value)


console = _Console(file=_Stream("stdout"))
err_console = _Console(file=_Stream("stderr"), stderr=True)


@dataclass
class State:
    """Options resolved from the global callback and the command's own flags."""

    db_url: str | None = None
    as_json: bool = False
    verbose: int = 0
    csv_path: str | None = None
    db: Any = None                 # the open store, once `open_db` ran
    writes: bool = False           # the command writes to `db` (its store is named at the end)
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def configure_logging(verbose: int) -> None:
        level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        root = logging.getLogger()
        root.setLevel(level)
        for handler in root.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
        # urllib3 logs every retry as a WARNING; the step reports the outcome in one line, -v shows them
        logging.getLogger("urllib3").setLevel(level if verbose else logging.ERROR)


class RedactingFilter(logging.Filter):
    """Masks credentials in every log record (message and arguments) before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return True
        record.msg, record.args = redact(message), None
        return True


_CURRENT = State()


def current() -> State:
    """The state of the command being run (for `fail` outside a `handled` block)."""
    return _CURRENT


def state(ctx: typer.Context, db: str | None = None, as_json: bool = False, verbose: int = 0,
          csv: str | None = None) -> State:
    """Merge a command's own --db/--json/-v/--csv with the global ones and validate the settings once.

    An explicit --db (before or after the command name) always wins over QORT_DB; two different ones
    are a usage error.
    """
    global _CURRENT
    base = ctx.find_object(State) or State()
    merged = State(db_url=db or base.db_url, as_json=as_json or base.as_json,
                   verbose=max(verbose, base.verbose), csv_path=csv)
    _CURRENT = merged
    if verbose:
        State.configure_logging(merged.verbose)
    if db and base.db_url and db != base.db_url:
        fail(f"--db given twice with different stores ({base.db_url} and {db}): give it once", EXIT_USAGE)
    if csv is not None and csv != "-":
        target = Path(csv).expanduser()
        if target.is_dir():
            fail(f"--csv {csv}: is a directory; give a file name", EXIT_USAGE)
        if not target.parent.is_dir():
            fail(f"--csv {csv}: directory {target.parent} does not exist", EXIT_USAGE)
    if csv == "-" and merged.as_json:
        fail("--csv - and --json both write to stdout: choose one", EXIT_USAGE)
    try:
        from qortcli.config import get_settings

        get_settings()
    except QortError as exc:
        fail(str(exc), EXIT_USAGE)
    return merged


# ------------------------------------------------------------------------------------------ output

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
        if isinstance(value, float) and math.isinf(value):
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


def write_out(text: str, stream: str = "stdout") -> None:
    """Plain text (JSON, CSV) to stdout/stderr, redacted."""
    target = getattr(sys, stream)
    target.write(redact(text))
    if not text.endswith("\n"):
        target.write("\n")
    target.flush()


Rows = Callable[[Any], list[dict]]


def emit(st: State, summary: Any, render: Callable[[Console, Any], None], rows: Rows | None = None,
         columns: Sequence[str] = ()) -> None:
    """Print `summary` as JSON (--json) or through `render` as rich tables; --csv FILE also writes `rows`
    (`columns`: the header written even when there is no row, ahead of any other keys the rows have)."""
    if isinstance(summary, dict) and st.db is not None and "store" not in summary:
        summary = {**summary, "store": st.db.describe()}
    if st.csv_path is not None:
        table = rows(summary) if rows is not None else (summary if isinstance(summary, list) else [summary])
        text = csv_text(table, columns)
        if st.csv_path == "-":
            write_out(text)
            return
        Path(st.csv_path).expanduser().write_text(redact(text))
        st.notes.append(f"CSV ({len(table)} rows) written to {st.csv_path}")
    if st.as_json:
        write_out(to_json(summary))
    else:
        render(console, summary)


def csv_text(rows: Sequence[dict], columns: Sequence[str] = ()) -> str:
    """CSV of a list of flat dicts: `columns` first (a header even without rows), then the rows' other keys in
    first-seen order; None → empty; datetimes ISO 8601."""
    columns = list(columns)
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    buffer = io.StringIO()
    writer = csv_module.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row.get(c)) for c in columns])
    return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return ";".join(str(_csv_value(v)) for v in value)
    if isinstance(value, dict):
        return json.dumps(value_to_python(value), ensure_ascii=False,
                          default=lambda v: v.isoformat() if isinstance(v, (datetime, date)) else str(v))
    return value


def fail(message: str, code: int = EXIT_FAILED) -> None:
    """Print one error line (a JSON object on stderr under --json) and exit with `code`."""
    message = redact(str(message))
    if _CURRENT.as_json:
        write_out(json.dumps({"error": message, "exit_code": code}), "stderr")
    else:
        err_console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def note(st: State, message: str, style: str = "yellow") -> None:
    """A one-line warning on stderr (e.g. stale input); under --json a JSON object {"warning": ...}."""
    if st.as_json:
        write_out(json.dumps({"warning": redact(message)}), "stderr")
    else:
        err_console.print(Text(redact(message), style=style), highlight=False, soft_wrap=True)


@contextmanager
def handled(st: State, render: Callable[[Console, Any], None] | None = None, rows: Rows | None = None):
    """Turn expected errors into one line and an exit code; tracebacks only with -v.

    A PartialFailure's summary (what was done before the failure) is printed first with `render`.
    Any run recorded "ok" inside the block is marked failed when the command exits non-zero.
    On success a writing command names its store in one dim line on stderr.
    """
    from qortcli.store.runs import run_context

    with run_context("cli") as recorded:
        try:
            yield
        except typer.Exit as exc:
            if exc.exit_code:
                _mark_failed(st, recorded, f"the command exited with code {exc.exit_code}")
            raise
        except PartialFailure as exc:
            if render is not None:
                try:
                    emit(st, exc.summary, render, rows)
                except Exception:  # the summary could not be shown: the error line still is
                    if st.verbose:
                        traceback.print_exc()
                _store_line(st)
            _error(st, exc, EXIT_FAILED, recorded)
        except (UsageError, ConfigError) as exc:
            _error(st, exc, EXIT_USAGE, recorded)
        except QortError as exc:
            _error(st, exc, EXIT_FAILED, recorded)
        except KeyboardInterrupt:
            _mark_failed(st, recorded, "interrupted")
            fail("interrupted", 130)
        except Exception as exc:  # anything unexpected: still one line unless -v
            first = (str(exc).strip().splitlines() or [""])[0]
            _error(st, exc, EXIT_FAILED, recorded, f"{type(exc).__name__}: {first} (run with -v for the traceback)")
    _store_line(st)
    if not st.as_json:
        for line in st.notes:
            note(st, line, "dim")


def _error(st: State, exc: BaseException, code: int, recorded: list[str], message: str | None = None) -> None:
    if st.verbose:
        traceback.print_exc()
    text = message if message is not None else str(exc)
    _mark_failed(st, recorded, text)
    fail(text, code)


def _mark_failed(st: State, recorded: list[str], message: str) -> None:
    if st.db is None or not recorded:
        return
    try:
        from qortcli.store.runs import fail_recorded

        fail_recorded(st.db, list(recorded), message)
    except Exception:  # never hide the original error behind a bookkeeping one
        if st.verbose:
            traceback.print_exc()


def _store_line(st: State) -> None:
    if st.writes and st.db is not None and not st.as_json:
        err_console.print(Text(f"store: {redact(st.db.describe())}", style="dim"), highlight=False, soft_wrap=True)
        st.writes = False  # once


def open_db(st: State, migrate: bool = True, writes: bool | None = None, read_only: bool = False):
    """Connect to the store; with `migrate`, apply pending schema migrations first.

    `writes` (default: `migrate`) marks a writing command: its store is named at the end. `read_only` opens
    it without creating or writing anything (commands that only read).
    """
    from qortcli.store import connect, ensure_schema

    db = connect(st.db_url, read_only=read_only, auto_schema=migrate)
    st.db = db
    if migrate and not read_only:
        ensure_schema(db)
    st.writes = (migrate and not read_only) if writes is None else writes
    return db


# ------------------------------------------------------------------------------------------ formats

def esc(value: Any) -> str:
    """An external string made safe for rich markup (and redacted)."""
    return escape(redact(str(value)))


def fmt(value: Any, digits: int = 4) -> str:
    """A compact, markup-safe cell: floats to `digits` significant places, None/NaN as '–'."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–" if value != value else ("∞" if value > 0 else "−∞")
        return f"{value:.{digits}g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return esc(value)


def usd(value: Any, decimals: int = 2) -> str:
    """USD with thousands separators and 2 decimals: 71,048.70."""
    if not _finite(value):
        return "–"
    return f"{float(value):,.{decimals}f}"


def pct(value: Any, decimals: int = 2) -> str:
    """A fraction (vol, weight, share) in percent: 0.5234 → 52.34%."""
    if not _finite(value):
        return "–"
    return f"{100 * float(value):.{decimals}f}%"


def contracts(value: Any) -> str:
    """Option contracts or coin amounts (open interest, volume): thousands separators from 100 up, one decimal
    below: 12,345 · 250 · 7.5."""
    if not _finite(value):
        return "–"
    x = float(value)
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}"


def minute(value: Any) -> str:
    """A datetime to the minute (2026-01-11 21:18), '–' for anything else."""
    return f"{value:%Y-%m-%d %H:%M}" if isinstance(value, (datetime, date)) else "–"


def coin(value: Any, significant: int = 4) -> str:
    """A coin price with `significant` significant digits, fixed point: 0.012345 → 0.01235, 1.2 → 1.200."""
    if not _finite(value):
        return "–"
    x = float(value)
    if x == 0:
        return "0"
    decimals = min(10, max(0, significant - 1 - math.floor(math.log10(abs(x)))))
    return f"{x:.{decimals}f}"


def num(value: Any, significant: int = 4) -> str:
    """A plain number (greeks, ratios) to `significant` digits, trailing zeros kept so a column reads evenly
    (0.650 beside 0.688, never 0.65)."""
    if not _finite(value):
        return "–"
    text = f"{float(value):#.{significant}g}"
    return text[:-1] if text.endswith(".") else text


def _finite(value: Any) -> bool:
    try:
        return value is not None and not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------------------ tables

class Column(NamedTuple):
    """A table column: header (units in it), justification, priority (0 = always shown; higher numbers
    are dropped first when the table does not fit the terminal) and whether its text may wrap (free
    text such as notes; names, codes and numbers never wrap and are never cut)."""

    header: str
    justify: str = "right"
    priority: int = 0
    wrap: bool = False
    group: str = ""        # columns of one non-empty group are dropped together (a board's call and put twins)


#: the narrowest a wrapping column is allowed to become when a table is fitted
WRAP_MIN = 16


def fit_table(title: str | None, columns: Sequence[Column], rows: Iterable[Sequence[str]],
              width: int | None = None, caption: str | None = None, row_styles: Sequence[str | None] | None = None,
              **table_options) -> Table:
    """A rich Table no wider than `width` (default: the console's): whole columns of the lowest priority
    are dropped (named in the caption) until the rest fit; cells of non-wrapping columns stay on one
    line, whole (instrument names and strikes are never cut), wrapping columns take what is left.
    Columns sharing a `group` go together; a header may hold two lines ("bid\\ncoin").

    Cells are markup strings (escape external text with `esc`/`fmt`); `row_styles` a rich style per row.
    """
    rows = [list(r) for r in rows]
    width = width or console.width
    heads = [max(Text.from_markup(line).cell_len for line in c.header.split("\n")) for c in columns]
    natural = [max([heads[i]] + [Text.from_markup(r[i]).cell_len for r in rows]) for i, c in enumerate(columns)]
    least = [min(natural[i], max(WRAP_MIN, heads[i])) if c.wrap else natural[i] for i, c in enumerate(columns)]
    edge = 0 if table_options.get("show_edge", True) else 2
    keep = list(range(len(columns)))

    def total(indices) -> int:  # rich's default box: "│ cell │ cell │" (no outer edge: 2 fewer)
        return sum(least[i] + 3 for i in indices) + 1 - edge

    dropped: list[str] = []
    while total(keep) > width:
        candidates = [i for i in keep if columns[i].priority > 0]
        if not candidates:
            break
        worst = max(candidates, key=lambda i: (columns[i].priority, i))
        gone = [i for i in keep if columns[worst].group and columns[i].group == columns[worst].group] or [worst]
        for i in gone:
            keep.remove(i)
        name = Text.from_markup(columns[worst].header).plain.replace("\n", " ")
        if name not in dropped:
            dropped.append(name)
    # nothing left to drop and still too wide (a very narrow terminal): rich shortens cells (…) rather than the
    # table running past the terminal's edge
    squeeze = total(keep) > width
    table = Table(title=title, title_justify="left", **table_options)
    for i in keep:
        col = columns[i]
        if col.wrap:
            table.add_column(col.header, justify=col.justify, overflow="fold", min_width=None if squeeze else least[i])
        else:
            table.add_column(col.header, justify=col.justify, no_wrap=True, min_width=None if squeeze else natural[i])
    for n, r in enumerate(rows):
        table.add_row(*[r[i] for i in keep], style=row_styles[n] if row_styles else None)
    notes = [caption] if caption else []
    if dropped:
        notes.append(f"not shown at this width: {', '.join(reversed(dropped))} (wider terminal, --csv or --json)")
    if notes:
        table.caption = escape(" · ".join(notes))
        table.caption_justify = "left"
    return table


#: a column given by its cell function: header, justification, priority (0 = always shown), cell(row) -> markup
CellColumn = tuple[str, str, int, Callable[[dict], str]]


def fit_rows(title: str | None, columns: Sequence[CellColumn], rows: Sequence[dict], caption: str | None = None,
             styles: Callable[[dict], str] | None = None, width: int | None = None) -> Table:
    """`fit_table` for dict rows rendered by each column's cell function (numbers and names never wrap);
    `styles(row)` gives a row's rich style."""
    return fit_table(title, [Column(header, justify, priority) for header, justify, priority, _ in columns],
                     [[cell(r) for *_, cell in columns] for r in rows], width=width, caption=caption,
                     row_styles=[styles(r) or None for r in rows] if styles else None)
