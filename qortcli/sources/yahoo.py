"""Daily crypto prices (USD) from Yahoo Finance: Yahoo-format CSV files and yfinance downloads.

No store access: functions return `PriceSeries` (one Yahoo symbol's daily bars, indexed by UTC
midnight, columns `open, high, low, close, adj_close` in USD and `volume` in USD traded that day).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from qortcli.errors import StepError

log = logging.getLogger(__name__)

BAR_COLUMNS = ("open", "high", "low", "close", "adj_close", "volume")
_CSV_NAMES = {"Date": "date", "Open": "open", "High": "high", "Low": "low", "Close": "close",
              "Adj Close": "adj_close", "Volume": "volume"}


class YahooError(StepError):
    """A Yahoo CSV or download that cannot be used; the message names the symbol or file."""


@dataclass
class PriceSeries:
    """Daily bars of one Yahoo symbol: `bars` indexed by UTC-midnight timestamps, USD columns
    `open, high, low, close, adj_close` and `volume` (USD). `skipped` counts rows dropped (no close)."""

    yahoo_symbol: str
    bars: pd.DataFrame
    source: str
    skipped: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def first_day(self) -> datetime | None:
        return None if self.bars.empty else self.bars.index[0].to_pydatetime()

    @property
    def last_day(self) -> datetime | None:
        return None if self.bars.empty else self.bars.index[-1].to_pydatetime()


def _normalise(frame: pd.DataFrame, symbol: str, source: str) -> PriceSeries:
    """Index to UTC midnight, numeric columns, one bar per day (the last), rows without close dropped."""
    frame = frame.copy()
    index = pd.to_datetime(frame.index, utc=True, errors="coerce")
    frame.index = index.normalize()
    frame = frame[~frame.index.isna()]
    for col in BAR_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce") if col in frame else float("nan")
    frame = frame[list(BAR_COLUMNS)]
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    keep = frame["close"].notna() & (frame["close"] > 0)
    skipped = int((~keep).sum())
    return PriceSeries(yahoo_symbol=symbol, bars=frame[keep], source=source, skipped=skipped)


def read_yahoo_csv(path: Path | str, symbol: str | None = None) -> PriceSeries:
    """A Yahoo Finance daily CSV (`Date,Open,High,Low,Close[,Adj Close],Volume`, rows in any order); the
    symbol defaults to the file name (`BTC-USD.csv` → BTC-USD). Without an `Adj Close` column (files saved
    by yfinance with auto-adjust, e.g. the Mario-SO archive) adj_close = close, which is exact for crypto
    (no dividends or splits) and noted in `notes`. Rows with a null/zero close are dropped and counted."""
    import io

    from qortcli.sources.files import read_regular_file

    path = Path(path)
    symbol = symbol or path.stem
    data = read_regular_file(path)  # regular files within settings [collect] max_file_mb only
    try:
        frame = pd.read_csv(io.BytesIO(data), na_values=["null", "NaN", ""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise YahooError(f"{path.name}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("Date", "Close") if c not in frame.columns]
    if missing:
        raise YahooError(f"{path.name}: not a Yahoo daily CSV, missing column(s) {', '.join(missing)}")
    frame = frame.rename(columns=_CSV_NAMES).set_index("date")
    notes = []
    if "adj_close" not in frame:
        frame["adj_close"] = frame["close"]
        notes.append(f"{path.name}: no Adj Close column; adj_close = close")
    series = _normalise(frame, symbol, "yahoo_csv")
    series.notes.extend(notes)
    return series


def list_price_csvs(directory: Path | str) -> list[Path]:
    """The `*.csv` files of a directory, sorted (a single regular file is accepted too)."""
    from qortcli.sources.files import FileRefused, check_regular_file

    directory = Path(directory)
    if not directory.exists():
        raise FileRefused(f"price directory not found: {directory}")
    if not directory.is_dir():
        check_regular_file(directory)  # a FIFO, a device or an oversized file is refused here
        return [directory]
    files = sorted(directory.glob("*.csv"))
    if not files:
        raise YahooError(f"no *.csv files in {directory}")
    return files


# --------------------------------------------------------------------------- yfinance

@dataclass
class DownloadResult:
    """One batched download: a series per symbol that returned bars, an error line per symbol that did not."""

    series: dict[str, PriceSeries] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def download_daily(symbols: Iterable[str], start: date | datetime, end: date | datetime | None = None,
                   download: Callable | None = None, session=None, timeout: float = 20.0) -> DownloadResult:
    """Daily bars for `symbols` from `start` (inclusive) to `end` (exclusive, default: tomorrow UTC) in
    ONE batched `yfinance.download` call; per-symbol problems (empty frame, delisted, rate limit) are
    returned in `errors` and do not stop the others."""
    import yfinance as yf

    symbols = list(dict.fromkeys(symbols))
    result = DownloadResult()
    if not symbols:
        return result
    download = download or yf.download
    end = end or (datetime.now(timezone.utc).date() + timedelta(days=1))
    kwargs = dict(start=_day_str(start), end=_day_str(end), interval="1d", auto_adjust=False, actions=False,
                  group_by="ticker", progress=False, threads=False, multi_level_index=True, timeout=timeout)
    if session is not None:
        kwargs["session"] = session
    import warnings

    capture = _ErrorCapture()
    yf_logger = logging.getLogger("yfinance")
    yf_logger.addHandler(capture)
    propagate = yf_logger.propagate
    # yfinance logs each failure itself; unless -v, we report them once, per symbol, in the summary.
    yf_logger.propagate = logging.getLogger().getEffectiveLevel() < logging.WARNING
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            frame = download(symbols, **kwargs)
    except Exception as exc:  # the whole batch failed (rate limit before any symbol, network down)
        message = _error_line(exc)
        for sym in symbols:
            result.errors[sym] = message
        return result
    finally:
        yf_logger.removeHandler(capture)
        yf_logger.propagate = propagate
    shared_errors = {**capture.by_symbol(symbols), **_yf_errors()}
    for sym in symbols:
        part = _ticker_frame(frame, sym, len(symbols))
        if part is None or part.dropna(how="all").empty:
            result.errors[sym] = shared_errors.get(sym) or "no data returned (empty frame; delisted or no trading in range?)"
            continue
        series = _normalise(part.rename(columns=lambda c: str(c).lower().replace(" ", "_")), sym, "yfinance")
        if series.bars.empty:
            result.errors[sym] = "no bars with a close price in range"
            continue
        result.series[sym] = series
    return result


def _day_str(value: date | datetime) -> str:
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc).date() if value.tzinfo else value.date()
    return value.isoformat()


def _ticker_frame(frame, symbol: str, n_symbols: int) -> pd.DataFrame | None:
    if frame is None or len(frame) == 0:
        return None
    if isinstance(frame.columns, pd.MultiIndex):
        for level in range(frame.columns.nlevels):
            if symbol in frame.columns.get_level_values(level):
                return frame.xs(symbol, axis=1, level=level)
        return None
    return frame if n_symbols == 1 else None


class _ErrorCapture(logging.Handler):
    """Collects yfinance's ERROR log lines: `download` reports per-ticker failures as "['SYM', ...]: reason"."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(record.getMessage())
        except Exception:  # pragma: no cover - never let logging break a download
            pass

    def by_symbol(self, symbols: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for line in self.lines:
            if not line.startswith("[") or "]: " not in line:
                continue
            names, reason = line.split("]: ", 1)
            for sym in symbols:
                if f"'{sym.upper()}'" in names:
                    found.setdefault(sym, reason.strip().splitlines()[0][:200])
        return found


def _yf_errors() -> dict[str, str]:
    """yfinance keeps per-ticker failures of the last `download` in `yfinance.shared._ERRORS`."""
    try:
        from yfinance import shared
    except ImportError:  # pragma: no cover
        return {}
    errors = getattr(shared, "_ERRORS", {}) or {}  # yfinance < 1.x kept per-ticker errors here
    return {str(k): _error_line(v) for k, v in errors.items() if v}


def _error_line(exc) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return first[:200]
