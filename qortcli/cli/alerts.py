"""`qortcli alerts [list|ack|test|run]`: alerts on markets and jobs, once per episode (rules in `[alerts]`)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from qortcli.cli.app import app
from qortcli.cli.common import (Column, CsvOption, DbOption, JsonOption, VerboseOption, emit, esc, fail, fit_table,
                                handled, minute, open_db, state)

alerts_app = typer.Typer(
    help=("Alerts on markets and jobs: the \\[alerts] rules of the settings (IV rank/percentile, RR25 sign flips, "
          "term-structure inversion, spot moves, tracked suggestions at their max loss or target; failed and missed "
          "jobs, stale data, a silent stream), evaluated every minute by the worker's `alerts` job. Each alert fires "
          "once per episode: it opens when its condition becomes true, is delivered then (webhooks, a JSON-lines "
          "log file), and closes when the condition clears.\n\n"
          "Examples:\n\n"
          "  qortcli alerts                 (the open alerts)\n\n"
          "  qortcli alerts list --all      (and the latest closed ones)\n\n"
          "  qortcli alerts ack 1a2b3c4d    (acknowledge; it still closes when it clears)\n\n"
          "  qortcli alerts test            (a sample to every configured target)\n\n"
          "  qortcli alerts run --json      (evaluate now, as the worker does)\n\n"
          "--csv FILE: list and ack write one row per alert, run the alerts it opened and closed, test one row per "
          "target."),
    invoke_without_command=True, rich_markup_mode="rich")
app.add_typer(alerts_app, name="alerts")

AllOption = Annotated[bool, typer.Option("--all", "-a", help="Also the latest closed alerts.")]
LimitOption = Annotated[int, typer.Option("--limit", min=1, help="How many closed alerts with --all.")]
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _duration(seconds) -> str:
    if seconds is None:
        return "–"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _table(title: str, rows: list[dict], closed: bool = False) -> Table:
    """Alerts as a two-column table that fits 100 columns: who/when/state on the left, what on the right
    (rule · subject, then the reading: for an open alert its latest, for a closed one the opening reading and why
    it closed)."""
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 1),
                  pad_edge=False, show_lines=False)
    table.add_column("id · opened UTC · state", no_wrap=True)
    table.add_column("rule · subject: alert", overflow="fold", ratio=1)
    for r in rows:
        style = SEVERITY_STYLE.get(str(r["severity"]), "white")
        state_line = f"{r['status']} {_duration(r['duration_s'])}"
        left = (f"[bold]{escape(r['short_id'])}[/] [{style}]{escape(str(r['severity']))}[/]\n{minute(r['opened_at'])}\n"
                f"{escape(state_line)} · sent: {escape(r['delivery'])}")
        text = (r["title"] if closed else r.get("latest_title") or r["title"])
        if closed and r.get("close_reason"):
            text = f"{text}\n→ {r['close_reason']}"
        right = f"[bold]{escape(str(r['rule']))}[/] · {escape(str(r['subject']))}\n{escape(str(text))}"
        table.add_row(left, right, end_section=True)
    return table


def _render_list(console: Console, view: dict) -> None:
    rows = view["open"]
    if rows:
        console.print(_table(f"Open alerts ({len(rows)}, {view['unacknowledged']} unacknowledged)", rows))
    else:
        console.print("no open alert", highlight=False)
    if view["include_closed"]:
        if view["closed"]:
            console.print(_table(f"Closed alerts (latest {len(view['closed'])})", view["closed"], closed=True))
        else:
            console.print("no closed alert", highlight=False)
    failed = [d for r in rows for d in r["deliveries"] if d["status"] == "failed"]
    for d in failed:
        console.print(f"[red]delivery failed[/] {escape(str(d['target']))} ({escape(str(d['endpoint']))}): "
                      f"{escape(str(d['error']))}", highlight=False)


#: `--csv` of list, ack and run: one row per alert (`values`/`thresholds`: the rule's reading, as JSON objects)
ALERT_COLUMNS = ("short_id", "id", "rule", "kind", "category", "subject", "severity", "status", "opened_at",
                 "last_seen_at", "closed_at", "acknowledged_at", "duration_s", "evaluations", "delivery", "title",
                 "latest_title", "close_reason", "values", "thresholds")
TARGET_COLUMNS = ("target", "kind", "endpoint", "ok", "attempts", "seconds", "error")


def _alert_row(alert: dict, **extra) -> dict:
    return {**extra, **{k: alert.get(k) for k in ALERT_COLUMNS}}


def _list_rows(view: dict) -> list[dict]:
    """The open alerts, then (with --all) the closed ones: `status` tells them apart."""
    return [_alert_row(a) for a in (*view["open"], *(view["closed"] if view["include_closed"] else ()))]


def _run_rows(summary: dict) -> list[dict]:
    """The alerts this evaluation opened and closed (`event`)."""
    return [_alert_row(a, event=event) for event in ("opened", "closed") for a in summary.get(event) or ()]


def _target_rows(summary: dict) -> list[dict]:
    return [{"target": r["target"], "kind": r["kind"], "endpoint": r["endpoint"], "ok": r["ok"],
             "attempts": len(r["attempts"]), "seconds": sum(a["seconds"] for a in r["attempts"]), "error": r["error"]}
            for r in summary["targets"]]


def _show_list(ctx: typer.Context, include_closed: bool, limit: int, db: str | None, as_json: bool, verbose: int,
               csv: str | None) -> None:
    from qortcli.steps.alerts import list_alerts

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        database = open_db(st, migrate=False, read_only=True)
        emit(st, list_alerts(database, include_closed=include_closed, limit=limit), _render_list, _list_rows,
             ALERT_COLUMNS)


@alerts_app.callback()
def alerts_main(ctx: typer.Context, include_closed: AllOption = False, limit: LimitOption = 20,
                db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0,
                csv: CsvOption = None) -> None:
    """The open alerts (with --all, the latest closed ones too); subcommands below."""
    if ctx.invoked_subcommand is None:
        _show_list(ctx, include_closed, limit, db, as_json, verbose, csv)


@alerts_app.command("list")
def list_command(ctx: typer.Context, include_closed: AllOption = False, limit: LimitOption = 20,
                 db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0,
                 csv: CsvOption = None) -> None:
    """The open alerts, newest first: short id, when it opened, severity, rule, subject, status (open or acknowledged), how long it has been open, its delivery (delivered / pending / failed) and its latest reading.

    Example: qortcli alerts list --all --limit 50
    """
    _show_list(ctx, include_closed, limit, db, as_json, verbose, csv)


@alerts_app.command("ack")
def ack_command(ctx: typer.Context,
                alert_id: Annotated[str, typer.Argument(metavar="ID", help="The short id (alerts list) or the full id.")],
                db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0,
                csv: CsvOption = None) -> None:
    """Acknowledge an alert: it stays open (shown as acknowledged) until its condition clears.

    Example: qortcli alerts ack 1a2b3c4d
    """
    from qortcli.steps.alerts import ack_alert

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        database = open_db(st)
        emit(st, ack_alert(database, alert_id),
             lambda console, s: console.print(escape(s["message"]) + f": {escape(str(s['alert']['title']))}",
                                              highlight=False),
             lambda s: [_alert_row(s["alert"])], ALERT_COLUMNS)


def _render_test(console: Console, summary: dict) -> None:
    columns = [Column("target", "left"), Column("kind", "left", priority=3), Column("endpoint", "left", wrap=True),
               Column("result", "left"), Column("tries", priority=2), Column("seconds", priority=1),
               Column("error", "left", wrap=True)]
    cells = [[esc(r["target"]), esc(r["kind"]), esc(r["endpoint"]), "[green]ok[/]" if r["ok"] else "[red]failed[/]",
              str(len(r["attempts"])), f"{sum(a['seconds'] for a in r['attempts']):.2f}", esc(r["error"] or "")]
             for r in summary["targets"]]
    console.print(fit_table("Sample alert sent to every configured target", columns, cells, width=console.width))
    for off in summary.get("off", []):
        console.print(f"[dim]webhook {esc(off['target'])} is off: {esc(off['reason'])}[/]", highlight=False)


@alerts_app.command("test")
def test_command(ctx: typer.Context, as_json: JsonOption = False, verbose: VerboseOption = 0,
                 csv: CsvOption = None) -> None:
    """Send a sample alert to every configured target (each \\[\\[alerts.webhooks]] entry, the log file) and report each result; exit 1 if any failed or none is configured. Nothing is stored.

    Example: QORT_ALERTS_WEBHOOK_URL=https://ntfy.sh/my-topic qortcli alerts test
    """
    from qortcli.steps.alerts import test_targets

    st = state(ctx, None, as_json, verbose, csv)
    with handled(st):
        summary = test_targets()
        emit(st, summary, _render_test, _target_rows, TARGET_COLUMNS)
        if not summary["ok"]:
            failed = [r["target"] for r in summary["targets"] if not r["ok"]]
            fail(f"delivery failed for {', '.join(failed)}")


def _render_run(console: Console, s: dict) -> None:
    sent = sum(1 for d in s["deliveries"] if d["status"] == "delivered")
    failed = sum(1 for d in s["deliveries"] if d["status"] == "failed")
    if not s["enabled"]:
        console.print(escape("alerts are disabled ([alerts] enabled = false)"), highlight=False)
        return
    console.print(f"alerts at {s['now']:%Y-%m-%d %H:%M:%S} UTC: {s['rules']} rules, {s.get('conditions', 0)} "
                  f"conditions; opened {len(s['opened'])}, closed {len(s['closed'])}, open {s['open']}; "
                  f"deliveries {sent} sent, {failed} failed", highlight=False)
    if s["opened"]:
        console.print(_table("Opened", s["opened"]))
    if s["closed"]:
        console.print(_table("Closed", s["closed"], closed=True))
    for e in s["errors"]:
        console.print(f"[red]rule {escape(e['rule'])}[/]: {escape(e['error'])}", highlight=False)
    for d in s["deliveries"]:
        if d["status"] != "delivered":
            console.print(f"[yellow]delivery {escape(d['status'])}[/] {escape(str(d['short_id']))} → "
                          f"{escape(d['target'])} ({escape(d['endpoint'])}): {escape(str(d['error']))}", highlight=False)


@alerts_app.command("run")
def run_command(ctx: typer.Context,
                now: Annotated[Optional[str], typer.Option(
                    "--now", help="Evaluate as of this UTC time (ISO, e.g. 2026-01-11T21:30:00Z); default: now.")] = None,
                no_deliver: Annotated[bool, typer.Option(
                    "--no-deliver", help="Open and close episodes but send nothing (pending deliveries wait).")] = False,
                db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0,
                csv: CsvOption = None) -> None:
    """Evaluate every rule now (what the worker's `alerts` job does each minute, and the crontab line): open episodes whose condition became true, close those that cleared, deliver the new ones.

    Example: qortcli alerts run --json
    """
    from qortcli.steps.alerts import run_alerts

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        database = open_db(st)
        emit(st, run_alerts(database, now=now, deliver=not no_deliver), _render_run, _run_rows,
             ("event", *ALERT_COLUMNS))
