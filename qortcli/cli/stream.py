"""`qortcli stream`: the live Deribit websocket feed into `live_marks`, with periodic snapshots."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer
from rich.text import Text

from qortcli.cli.app import app
from qortcli.cli.common import (Column, CsvOption, DbOption, JsonOption, VerboseOption, emit, err_console, esc, fit_table,
                                fmt, handled, open_db, pct, state, usd)

HELP = ("Stream live Deribit option marks (websocket) into the store until Ctrl-C / SIGTERM or --duration.\n\n"
        "Seeds each currency's chain from REST, subscribes to markprice.options, deribit_price_index and "
        "instrument.state, reprices greeks and IVs on every update and keeps one live_marks document per currency "
        "(at most 4 writes per second each). Every --snapshot-every it stores a complete snapshot exactly as "
        "`collect deribit` does, so price, surface, suggest and the history keep working from the stream alone. "
        "Reconnects with backoff (a gap is re-seeded from REST), answers heartbeats, backs off on rate limits; "
        "on SIGTERM it writes the last live marks and a final snapshot, then exits 0.\n\n"
        "The live status line goes to stderr; the session summary is printed when the stream stops, and --csv FILE "
        "then writes it as one row per currency (its last index, ATM IV and RR25, with the session's counters).\n\n"
        "Examples:\n\n"
        "  qortcli stream                                  # BTC and ETH, a snapshot every 5 minutes\n\n"
        "  qortcli stream --currency BTC --duration 10m    # ten minutes of BTC, then exit\n\n"
        "  qortcli stream --snapshot-every 1m --json       # no status line; the summary as JSON at the end\n\n"
        "  qortcli stream --url wss://test.deribit.com/ws/api/v2 --rest-url https://test.deribit.com/api/v2")


@app.command("stream", help=HELP)
def stream(ctx: typer.Context,
           currency: Annotated[Optional[List[str]], typer.Option(
               "--currency", "-c", help="Currencies to stream: repeat or comma-separate (default from settings: BTC,ETH).")] = None,
           url: Annotated[Optional[str], typer.Option(
               "--url", help="Deribit websocket URL (default wss://www.deribit.com/ws/api/v2).")] = None,
           rest_url: Annotated[Optional[str], typer.Option(
               "--rest-url", envvar="QORT_DERIBIT_URL", help="Deribit REST base URL for the seed and the snapshot quotes.")] = None,
           snapshot_every: Annotated[str, typer.Option(
               "--snapshot-every", help="Store a complete snapshot this often: 30s, 5m, 1h.")] = "5m",
           duration: Annotated[Optional[str], typer.Option(
               "--duration", help="Stop after this long (default: run until Ctrl-C / SIGTERM): 90s, 10m, 2h.")] = None,
           db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0,
           csv: CsvOption = None) -> None:
    from qortcli.steps.stream import run_stream

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        database = open_db(st)
        try:
            if st.as_json:
                summary = run_stream(database, currency, url=url, rest_url=rest_url, snapshot_every=snapshot_every,
                                     duration=duration)
            else:
                from rich.live import Live

                with Live(Text("connecting…"), console=err_console, refresh_per_second=4, transient=True) as live:
                    summary = run_stream(database, currency, url=url, rest_url=rest_url,
                                         snapshot_every=snapshot_every, duration=duration,
                                         status=lambda s: live.update(status_line(s)))
        finally:
            database.close()
        emit(st, summary, _render, _rows, CSV_COLUMNS)


#: `--csv` (at the end of the session): per currency its last live figures, then the session's counters
SESSION_FIELDS = ("started_at", "ended_at", "stop_reason", "messages", "updates", "live_writes", "snapshots",
                  "reconnects", "malformed")
CSV_COLUMNS = ("currency", "instruments", "index_usd", "atm_iv_30d_marks", "rr25_front_marks", "marks_age_s",
               *SESSION_FIELDS, "latency_p50_ms", "latency_p99_ms", "last_snapshot_id")


def _rows(summary: dict) -> list[dict]:
    session = {k: summary.get(k) for k in SESSION_FIELDS}
    lat = summary.get("latency_ms") or {}
    last = summary["snapshot_ids"][-1] if summary.get("snapshot_ids") else None
    return [{**{k: c.get(k) for k in CSV_COLUMNS[:6]}, **session, "latency_p50_ms": lat.get("p50"),
             "latency_p99_ms": lat.get("p99"), "last_snapshot_id": last} for c in summary["live"]]


def status_line(status) -> Text:
    """One compact line: connection, per currency spot / ATM IV / RR25 / marks age, then the counters."""
    line = Text()
    line.append("● live " if status.connected else "○ down ", style="bold green" if status.connected else "bold red")
    for c in status.currencies:
        age = f"{c.marks_age_s:.1f}s" if c.marks_age_s is not None and c.marks_age_s < 3600 else "–"
        line.append(f"{c.currency} ", style="bold")
        line.append(f"{c.instruments} opt  idx {_usd(c.index_usd)}  ATM30 {pct(c.atm_iv_30d_marks, 1)}  "
                    f"RR25 {_pts(c.rr25_front_marks)}  age {age} │ ")
    line.append(f"msgs {status.messages:,}  upd {status.updates:,}  writes {status.live_writes:,}  "
                f"snaps {status.snapshots}  reconn {status.reconnects}  bad {status.malformed}  "
                f"lag p50 {_ms(status.latency_p50_ms)} p99 {_ms(status.latency_p99_ms)}", style="dim")
    return line


def _ok(x) -> bool:
    return isinstance(x, (int, float)) and x == x


def _usd(x) -> str:
    return f"${x:,.2f}" if _ok(x) else "–"


def _pts(x) -> str:
    return f"{100 * x:+.2f}pts" if _ok(x) else "–"


def _ms(x) -> str:
    return f"{x:.0f}ms" if _ok(x) else "–"


def _render(console, summary: dict) -> None:
    columns = [Column("currency", "left"), Column("instruments"), Column("index USD"), Column("ATM IV 30d"),
               Column("RR25 front")]
    cells = [[esc(c["currency"]), f"{c['instruments']:,}", usd(c["index_usd"]), pct(c["atm_iv_30d_marks"]),
              pct(c["rr25_front_marks"])] for c in summary["live"]]
    console.print(fit_table(f"Stream session ({esc(summary['stop_reason'])}) · marks", columns, cells))
    lat = summary["latency_ms"]
    console.print(f"{summary['messages']:,} messages, {summary['updates']:,} updates, {summary['live_writes']:,} "
                  f"live_marks writes (arrival→write p50 {_ms(lat['p50'])}, p99 {_ms(lat['p99'])}), "
                  f"{summary['snapshots']} snapshot(s), {summary['reconnects']} reconnect(s), "
                  f"{summary['malformed']} malformed message(s) skipped", highlight=False)
    if summary["snapshot_ids"]:
        console.print(f"snapshots: {', '.join(summary['snapshot_ids'][-6:])}", highlight=False)
    console.print(f"from {fmt(summary['started_at'])} to {fmt(summary['ended_at'])} UTC · {esc(summary['url'])}",
                  highlight=False)
