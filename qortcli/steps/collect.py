"""The collect step: option chains (Deribit live or recorded files) and daily prices (yfinance or
Yahoo CSVs) into the store.

Public entry points (each returns a JSON-able summary dict and records a `job_runs` document):
  run_collect_file(db, path)                      recorded chain file(s) → options snapshots
  run_collect_deribit(db, currencies=None, ...)   live Deribit chains → options snapshots
  run_collect_prices_csv(db, directory)           Yahoo-format daily CSVs → price_data
  run_collect_prices(db, sector=None, since=None) yfinance downloads → price_data (incremental)
  run_collect_sample(db)                          the bundled real sample (chain + prices), no network

Each options snapshot is written atomically: `begin_snapshot` (pending, invisible) → `upsert_many`
→ `complete_snapshot`; on any failure `discard_snapshot` removes what was written.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable

from qortcli.errors import ConfigError, PartialFailure, QortError, StepError, UsageError
from qortcli.sources import deribit as deribit_src
from qortcli.sources import yahoo as yahoo_src
from qortcli.sources.deribit import OptionRecord, ParsedChain
from qortcli.store import ops, read, schema
from qortcli.store.runs import recorded_run
from qortcli.timeutils import utcnow

#: progress(label, done, total): called by the steps as work advances (the CLI draws a rich bar).
Progress = Callable[[str, int, int], None]


def _noop(label: str, done: int, total: int) -> None:
    return None


# --------------------------------------------------------------------------- options

def option_documents(records: Iterable[OptionRecord], snapshot_id: str, timestamp: datetime, source: str) -> list[dict]:
    """`options_data` documents (docs/CONTRACTS.md) for records of one snapshot.

    premium_usd = premium_crypto (mark, coin) × index_price (spot USD); implied_volatility a fraction, None
    when the row's mark IV is unusable, `iv_flag` then says why (else None).
    """
    return [{
        "symbol": r.symbol, "underlying": r.underlying, "snapshot_id": snapshot_id, "timestamp": timestamp,
        "strike": r.strike_usd, "expiry": r.expiry, "option_type": r.option_type,
        "forward": r.forward_usd, "forward_index": r.forward_index, "index_price": r.index_price_usd,
        "premium_crypto": r.mark_coin, "premium_usd": r.mark_coin * r.index_price_usd,
        "bid_crypto": r.bid_coin, "ask_crypto": r.ask_coin, "mid_crypto": r.mid_coin,
        "implied_volatility": r.mark_iv, "iv_flag": r.iv_flag, "volume": r.volume, "volume_usd": r.volume_usd,
        "open_interest": r.open_interest, "interest_rate": r.interest_rate,
        "greeks": dict(r.greeks) if r.greeks is not None else None, "source": source,
    } for r in records]


def store_chain(db, chain: ParsedChain, replace: bool = False, now: datetime | None = None) -> dict:
    """Write one chain as one atomic snapshot; returns its summary row (`status` stored | unchanged | busy |
    replaced).

    A snapshot already stored is never shrunk or unpriced by a re-import: the same content is a no-op
    ("unchanged"), a different one is refused (StepError naming what differs) unless `replace`. A twin
    writer storing the same snapshot at the same moment makes this call a no-op ("busy"), never a loss.
    A chain with no usable row, or dated later than `now` + settings [collect] clock_skew_seconds, is a
    StepError (naming why); nothing is written.
    """
    from qortcli.config import get_settings

    clock = time.perf_counter()
    deribit_src.check_snapshot_time(chain, now or utcnow(), get_settings().collect.clock_skew_seconds)
    if not chain.records:
        why = ", ".join(f"{k}={v}" for k, v in chain.skipped.items()) or "no rows"
        first = f"; first: {chain.examples[0]}" if chain.examples else ""
        raise StepError(f"{chain.currency} chain ({chain.source}) has no usable option rows ({why}){first}")
    claim = ops.begin_snapshot(db, "options", chain.currency, chain.timestamp, source=chain.source)
    docs = option_documents(chain.records, str(claim), chain.timestamp, chain.source)
    flagged = chain.iv_flagged
    row = {"currency": chain.currency, "snapshot_id": str(claim), "timestamp": chain.timestamp,
           "source": chain.source, "instruments": len(docs), "expiries": chain.expiries, "stored": 0,
           "skipped": chain.skipped_total, "skipped_by_reason": dict(chain.skipped),
           "skipped_examples": list(chain.examples), "iv_flagged": sum(flagged.values()),
           "iv_flagged_by_reason": flagged}
    if claim.state == ops.BUSY:
        row.update(status="busy", note="another process is storing this snapshot right now; left to it")
        row["seconds"] = round(time.perf_counter() - clock, 3)
        return row
    if claim.state == ops.COMPLETE:
        stored = ops.snapshot_digests(db, claim)
        new = {d["symbol"]: ops.content_digest(d) for d in docs}
        if stored == new:
            row.update(status="unchanged", note="already stored with the same content")
            row["seconds"] = round(time.perf_counter() - clock, 3)
            return row
        if not replace:
            missing = len(set(stored) - set(new))
            changed = sum(1 for k in set(stored) & set(new) if stored[k] != new[k])
            added = len(set(new) - set(stored))
            raise StepError(f"snapshot {claim} is already stored with {len(stored)} instruments; this {chain.source} "
                            f"chain has {len(new)} ({missing} missing, {changed} changed, {added} new): not replaced "
                            f"(pass --replace to replace it)")
        claim = ops.begin_snapshot(db, "options", chain.currency, chain.timestamp, source=chain.source, replace=True)
        if claim.state != ops.CLAIMED:
            row.update(status="busy", note="another process is replacing this snapshot right now; left to it")
            row["seconds"] = round(time.perf_counter() - clock, 3)
            return row
    try:
        stored = ops.upsert_many(db, schema.OPTIONS, docs)
        # a dead writer's leftovers or a replaced snapshot's instruments that this chain no longer has
        ops.remove_other_documents(db, claim, [d["symbol"] for d in docs])
        counts = {"stored": stored, "instruments": len(docs), "expiries": chain.expiries,
                  "skipped": chain.skipped_total, "skipped_by_reason": dict(chain.skipped), "iv_flagged": flagged}
        ops.complete_snapshot(db, claim, counts)
    except BaseException:
        ops.discard_snapshot(db, claim, schema.OPTIONS)
        raise
    row.update(status="replaced" if replace and claim.record else "stored", stored=stored)
    row["seconds"] = round(time.perf_counter() - clock, 3)
    return row




def _totals(summary: dict, rows: list[dict]) -> dict:
    summary["snapshots"] = rows
    summary["stored"] = sum(r["stored"] for r in rows)
    summary["skipped"] = sum(r["skipped"] for r in rows)
    summary["iv_flagged"] = sum(r.get("iv_flagged", 0) for r in rows)
    return summary


def _import_one(db, file: Path, replace: bool = False) -> list[dict]:
    rows = []
    for chain in deribit_src.chains_from_file(file):
        row = store_chain(db, chain, replace=replace)
        row["file"] = file.name
        rows.append(row)
    return rows


def _snapshots_note(rows: list[dict]) -> str:
    """"2 snapshot(s)" with how many were unchanged/busy/replaced (a re-import stores nothing new)."""
    by: dict[str, int] = {}
    for r in rows:
        by[r.get("status", "stored")] = by.get(r.get("status", "stored"), 0) + 1
    extra = ", ".join(f"{n} {status}" for status, n in sorted(by.items()) if status != "stored")
    return f"{len(rows)} snapshot(s)" + (f": {extra}" if extra else "")


def _file_row(file: Path, status: str, note: str = "", rows: list[dict] | None = None) -> dict:
    rows = rows or []
    return {"file": file.name, "status": status, "snapshots": [r["snapshot_id"] for r in rows],
            "stored": sum(r["stored"] for r in rows), "skipped": sum(r["skipped"] for r in rows), "note": note}


def _import_directory(db, directory: Path, progress: Progress, replace: bool = False) -> tuple[list[dict], list[dict]]:
    """Every chain file of `directory` (not recursive): (snapshot rows, one row per directory entry).

    Files that are not chains (another JSON, a price CSV, a folder, another extension) are skipped with
    a note; a file that is a chain but cannot be read or stored is an error; the others are stored."""
    entries = sorted(directory.iterdir(), key=lambda p: p.name)
    snapshots: list[dict] = []
    files: list[dict] = []
    for i, entry in enumerate(entries):
        progress(entry.name, i, len(entries))
        if entry.is_dir() and not entry.is_symlink():
            files.append(_file_row(entry, "skipped", "a folder (folders are not searched)"))
        elif entry.suffix.lower() not in (".json", ".csv"):
            files.append(_file_row(entry, "skipped", "not a .json or .csv file"))
        else:
            try:
                rows = _import_one(db, entry, replace)
            except deribit_src.NotAChain as exc:
                files.append(_file_row(entry, "skipped", _after_name(entry, exc)))
            except (QortError, OSError) as exc:
                message = str(exc) if isinstance(exc, QortError) else f"cannot read: {exc.strerror or exc}"
                files.append(_file_row(entry, "error", _after_name(entry, message)))
            else:
                snapshots.extend(rows)
                files.append(_file_row(entry, "stored", _snapshots_note(rows), rows))
        progress(entry.name, i + 1, len(entries))
    return snapshots, files


def _after_name(file: Path, message) -> str:
    """The message without a leading "<file name>: " (the table names the file already)."""
    text = str(message)
    for prefix in (f"{file.name}: ", f"{file}: "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def run_collect_file(db, path: str | Path, progress: Progress | None = None, replace: bool = False) -> dict:
    """Import recorded option chain(s) as complete snapshots (no network). A snapshot already stored is
    left as it is when the content is the same and refused when it differs, unless `replace`.

    `path`: a `get_book_summary_by_currency` response (.json: envelope or bare result list), a
    whole-chain CSV (.csv, one snapshot per currency in it), or a directory of such files. Only regular
    files within settings [collect] max_file_mb are read. A directory imports every chain file it can
    and lists each entry in `files` (status stored / skipped / error, with a note); when any file
    failed, a PartialFailure carries that summary after the good ones were stored.
    Returns {"step", "path", "files", "snapshots": [per-snapshot rows], "stored", "skipped", "iv_flagged",
    "failed", "seconds"}.
    """
    from qortcli.sources.files import check_regular_file

    progress = progress or _noop
    path = Path(path).expanduser()
    clock = time.perf_counter()
    with recorded_run(db, "collect", {"source": "file", "path": str(path), "replace": replace}) as run:
        if path.is_dir():
            rows, files = _import_directory(db, path, progress, replace)
        else:
            check_regular_file(path)  # a missing path, a FIFO, a device or an oversized file: a usage error
            progress(path.name, 0, 1)
            try:
                rows = _import_one(db, path, replace)
            except deribit_src.NotAChain as exc:
                raise UsageError(f"{exc} (--from-file takes Deribit book summaries and whole-chain CSVs)") from None
            files = [_file_row(path, "stored", _snapshots_note(rows), rows)]
            progress(path.name, 1, 1)
        summary = _totals({"step": "collect", "kind": "options", "path": str(path), "files": files}, rows)
        failed = [f for f in files if f["status"] == "error"]
        summary["failed"] = len(failed)
        run.counts.update(snapshots=len(rows), stored=summary["stored"], skipped=summary["skipped"],
                          iv_flagged=summary["iv_flagged"], files=len(files), failed=len(failed),
                          files_skipped=sum(f["status"] == "skipped" for f in files))
        summary["seconds"] = round(time.perf_counter() - clock, 3)
        if failed:
            first = "; ".join(f"{f['file']}: {f['note']}" for f in failed[:3])
            raise PartialFailure(f"{len(failed)} of {len(files)} file(s) in {path} failed ({first}); "
                                 f"{len(rows)} snapshot(s) from the others stored", summary)
        if not rows:
            raise StepError(f"no chain file in {path}: {len(files)} entr{'y' if len(files) == 1 else 'ies'} skipped "
                            "(--from-file takes Deribit book summaries (.json) and whole-chain CSVs (.csv))")
    return summary


def run_collect_deribit(db, currencies: Iterable[str] | None = None, base_url: str | None = None,
                        client: "deribit_src.DeribitClient | None" = None, progress: Progress | None = None) -> dict:
    """Fetch each currency's live chain (instruments, book summary, spot index) and store it as one
    snapshot. A currency that fails (for any reason) leaves no visible partial snapshot and does not
    stop the next one; the step then fails naming it (a PartialFailure: the currencies that succeeded
    are stored and listed)."""
    from qortcli.config import get_settings

    progress = progress or _noop
    settings = get_settings()
    currencies = [c.upper() for c in (currencies or settings.collect.currencies)]
    client = client or deribit_src.DeribitClient(base_url=base_url)
    clock = time.perf_counter()
    with recorded_run(db, "collect", {"source": "deribit", "currencies": currencies, "url": client.display_url}) as run:
        rows: list[dict] = []
        failures: list[str] = []
        for i, currency in enumerate(currencies):
            progress(currency, i, len(currencies))
            try:
                chain = client.fetch_chain(currency)
            except StepError as exc:
                failures.append(f"{currency}: {exc}")
            except Exception as exc:  # an unexpected fault in one currency's data must not skip the next
                first = (str(exc).strip().splitlines() or [""])[0]
                failures.append(f"{currency}: unexpected {type(exc).__name__}: {first}")
            else:
                try:
                    rows.append(store_chain(db, chain))
                except StepError as exc:  # no usable row, dated in the future: that currency only
                    failures.append(f"{currency}: {exc}")
            progress(currency, i + 1, len(currencies))
        summary = _totals({"step": "collect", "kind": "options", "source": "deribit-live", "url": client.display_url,
                           "calls": dict(client.calls), "rate_limited_retries": client.rate_limited}, rows)
        summary["failures"] = failures
        run.counts.update(snapshots=len(rows), stored=summary["stored"], skipped=summary["skipped"],
                          iv_flagged=summary["iv_flagged"], failed=len(failures))
        summary["seconds"] = round(time.perf_counter() - clock, 3)
        if failures:
            done = f" ({len(rows)} other snapshot(s) stored)" if rows else ""
            message = "; ".join(failures) + done
            if rows:
                raise PartialFailure(message, summary)
            raise StepError(message)
    return summary


# --------------------------------------------------------------------------- prices

def price_documents(series: yahoo_src.PriceSeries, ticker: str, sector: str) -> list[dict]:
    """`price_data` documents (one per UTC day) for one symbol's bars; price_usd = close."""
    bars = series.bars
    days = [ts.to_pydatetime() for ts in bars.index]
    cols = {c: bars[c].to_numpy(dtype=float) for c in yahoo_src.BAR_COLUMNS}
    return [{"symbol": ticker, "yfinance_symbol": series.yahoo_symbol, "sector": sector, "timestamp": day,
             "open": cols["open"][i], "high": cols["high"][i], "low": cols["low"][i], "close": cols["close"][i],
             "adj_close": cols["adj_close"][i], "price_usd": cols["close"][i], "volume_24h": cols["volume"][i],
             "source": series.source} for i, day in enumerate(days)]


def _store_series(db, series: yahoo_src.PriceSeries, coin) -> dict:
    stored = ops.upsert_many(db, schema.PRICES, price_documents(series, coin.ticker, coin.sector))
    return {"symbol": coin.ticker, "yfinance_symbol": series.yahoo_symbol, "sector": coin.sector,
            "stored": stored, "skipped": series.skipped, "first_day": series.first_day, "last_day": series.last_day}


def run_collect_prices_csv(db, directory: str | Path, progress: Progress | None = None) -> dict:
    """Import Yahoo-format daily CSVs (file name = Yahoo symbol, e.g. BTC-USD.csv) into `price_data`.

    Sector and ticker come from the sector taxonomy by Yahoo symbol; a file whose symbol is not in the
    taxonomy is reported in `errors` and skipped. Idempotent (one document per symbol per UTC day).
    """
    from qortcli.sectors import load_sectors

    progress = progress or _noop
    directory = Path(directory).expanduser()
    clock = time.perf_counter()
    with recorded_run(db, "collect", {"source": "prices_csv", "path": str(directory)}) as run:
        by_yahoo = load_sectors().by_yahoo()
        files = yahoo_src.list_price_csvs(directory)
        rows, errors, failed = [], {}, {}
        for i, file in enumerate(files):
            progress(file.stem, i, len(files))
            coin = by_yahoo.get(file.stem)
            if coin is None:
                errors[file.stem] = f"{file.name}: Yahoo symbol {file.stem} is not in the sector taxonomy"
            else:
                try:
                    rows.append(_store_series(db, yahoo_src.read_yahoo_csv(file), coin))
                except QortError as exc:  # an unreadable or malformed file: the others are still imported
                    failed[file.stem] = errors[file.stem] = str(exc)
            progress(file.stem, i + 1, len(files))
        if not rows:
            raise StepError(f"no price file imported from {directory}: " + "; ".join(errors.values()))
        summary = {"step": "collect", "kind": "prices", "source": "yahoo_csv", "path": str(directory),
                   "symbols": rows, "errors": errors, "failed": len(failed), "stored": sum(r["stored"] for r in rows),
                   "skipped": sum(r["skipped"] for r in rows)}
        run.counts.update(symbols=len(rows), stored=summary["stored"], skipped=summary["skipped"], errors=len(errors),
                          failed=len(failed))
        summary["seconds"] = round(time.perf_counter() - clock, 3)
        if failed:
            raise PartialFailure(f"{len(failed)} price file(s) failed ({'; '.join(list(failed.values())[:3])}); "
                                 f"{len(rows)} symbol(s) imported", summary)
    return summary


def last_stored_day(db, ticker: str) -> datetime | None:
    """The latest `price_data` day stored for `ticker` (UTC midnight), or None."""
    return read.last_price_day(db, ticker)


def _parse_since(since) -> date:
    if isinstance(since, datetime):
        return since.date()
    if isinstance(since, date):
        return since
    try:
        return date.fromisoformat(str(since))
    except ValueError:
        raise UsageError(f"--since must be a date YYYY-MM-DD, got {since!r}") from None


def run_collect_prices(db, sector: str | None = None, since: str | date | None = None,
                       download: Callable | None = None, progress: Progress | None = None,
                       today: date | None = None) -> dict:
    """Daily prices of every taxonomy coin (or one sector) with yfinance: one batched `yf.download` per
    sector, starting the day after each symbol's last stored day (else `since`, else the settings'
    `collect.price_history_start`). Per-symbol failures (empty, delisted, rate limit) are reported in
    `errors` and do not stop the others; the step fails only when nothing at all could be fetched.
    `download` replaces `yfinance.download` (tests)."""
    from qortcli.config import get_settings
    from qortcli.sectors import load_sectors

    progress = progress or _noop
    taxonomy = load_sectors()
    try:
        coins = taxonomy.in_sector(sector) if sector else list(taxonomy.coins)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    default_start = _parse_since(since or get_settings().section("collect").get("price_history_start", "2020-01-01"))
    today = today or datetime.now(timezone.utc).date()
    clock = time.perf_counter()
    with recorded_run(db, "collect", {"source": "yfinance", "sector": sector, "since": str(default_start)}) as run:
        sectors: dict[str, list] = {}
        for coin in coins:
            sectors.setdefault(coin.sector, []).append(coin)
        rows, errors, up_to_date = [], {}, []
        for i, (name, members) in enumerate(sectors.items()):
            progress(name, i, len(sectors))
            starts = {}
            for coin in members:
                last = last_stored_day(db, coin.ticker)
                start = max(default_start, last.date() + timedelta(days=1)) if last else default_start
                if start > today:
                    up_to_date.append(coin.ticker)
                else:
                    starts[coin.yahoo] = start
            # One batched download per sector (per distinct start day: after the first run all the
            # sector's symbols share the same "day after the last stored one").
            batches: dict[date, list[str]] = {}
            for yahoo_symbol, start in starts.items():
                batches.setdefault(start, []).append(yahoo_symbol)
            by_yahoo = {c.yahoo: c for c in members}
            for start, batch in sorted(batches.items()):
                result = yahoo_src.download_daily(batch, start, end=today + timedelta(days=1), download=download)
                for yahoo_symbol, message in result.errors.items():
                    errors[yahoo_symbol] = message
                for yahoo_symbol, series in result.series.items():
                    cutoff = datetime.combine(start, datetime.min.time(), tzinfo=timezone.utc)
                    series.bars = series.bars[series.bars.index >= cutoff]
                    if series.bars.empty:
                        up_to_date.append(by_yahoo[yahoo_symbol].ticker)
                        continue
                    rows.append(_store_series(db, series, by_yahoo[yahoo_symbol]))
            progress(name, i + 1, len(sectors))
        summary = {"step": "collect", "kind": "prices", "source": "yfinance", "sector": sector,
                   "since": default_start, "symbols": rows, "errors": errors, "up_to_date": up_to_date,
                   "stored": sum(r["stored"] for r in rows), "skipped": sum(r["skipped"] for r in rows)}
        run.counts.update(symbols=len(rows), stored=summary["stored"], errors=len(errors), up_to_date=len(up_to_date))
        if errors and not rows and not up_to_date:
            first = next(iter(errors.items()))
            raise StepError(f"no prices fetched for any of {len(errors)} symbol(s): every one failed, so Yahoo Finance "
                            "is most likely unreachable (offline, blocked or rate-limiting) rather than every coin "
                            f"delisted; first: {first[0]}: {first[1]}")
    summary["seconds"] = round(time.perf_counter() - clock, 3)
    return summary


# --------------------------------------------------------------------------- bundled sample

def sample_dir() -> Path:
    """The bundled real sample: `qortcli/data/sample/` (see SOURCES.md there)."""
    from qortcli.config import package_data

    return package_data("sample")


def run_collect_sample(db, progress: Progress | None = None) -> dict:
    """Load the bundled real sample with no network: the BTC+ETH chain CSV(s) in `sample/deribit/`
    as options snapshots and the Yahoo CSVs in `sample/prices/` as daily prices."""
    root = sample_dir()
    chains, prices = root / "deribit", root / "prices"
    if not chains.is_dir() or not prices.is_dir():
        raise StepError(f"the bundled sample is missing from {root} (reinstall the package)")
    options = run_collect_file(db, chains, progress=progress)
    price = run_collect_prices_csv(db, prices, progress=progress)
    return {"step": "collect", "kind": "sample", "path": str(root), "options": options, "prices": price,
            "stored": options["stored"] + price["stored"], "skipped": options["skipped"] + price["skipped"]}
