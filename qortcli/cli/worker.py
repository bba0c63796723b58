"""`qortcli worker`: run the scheduled jobs (APScheduler), one job now, or print the schedule / crontab."""

from __future__ import annotations

import typer
from rich.table import Table

from qortcli.cli.app import app
from qortcli.cli.common import (EXIT_USAGE, CsvOption, DbOption, JsonOption, VerboseOption, emit, esc, fail, fmt,
                                handled, open_db, state)


@app.command()
def worker(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0,
           csv: CsvOption = None,
           once: str = typer.Option(None, "--once", metavar="JOB",
                                    help="Run one job now (and the jobs chained after it), then exit."),
           list_jobs: bool = typer.Option(False, "--list", help="Print the schedule and exit."),
           crontab: bool = typer.Option(False, "--crontab",
                                        help="Print the schedule as crontab lines (flock-guarded) and exit.")) -> None:
    """Run the pipeline on the schedule of the settings' \\[schedule] section until SIGTERM or Ctrl-C.

    Jobs never overlap themselves, a failure is recorded in job_runs and the other jobs go on; on SIGTERM
    the running jobs finish before the worker exits. `qortcli status` shows next runs and last results.

    --csv writes the schedule (with --list) or the jobs run (with --once).

    Example: qortcli worker --list && qortcli worker --once collect_deribit && qortcli worker
    """
    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        from jobs.worker import JobFailed, Worker, describe_schedule, serve
        from qortcli.schedule import load_schedule, render_crontab

        schedule = load_schedule()
        if crontab:
            typer.echo(render_crontab(schedule), nl=False)
            return
        if list_jobs:
            emit(st, {"jobs": describe_schedule(schedule)}, _render_list, lambda s: s["jobs"])
            return
        if once is not None and once not in schedule.ids:
            fail(f"unknown job {once!r}: the schedule has {', '.join(schedule.ids)}", EXIT_USAGE)
        if once is None and csv is not None:
            fail("--csv applies to --list and --once; the running worker prints no table", EXIT_USAGE)
        from qortcli.placeholders import refuse_placeholders

        refuse_placeholders("the worker")
        database = open_db(st)
        try:
            if once is not None:
                try:
                    results = Worker(database, schedule).run_once(once)
                except JobFailed as exc:
                    fail(str(exc))
                emit(st, {"job": once, "results": results}, _render_once, _once_rows)
                return
            _worker_logging(st.verbose)
            raise typer.Exit(serve(database, schedule))
        finally:
            database.close()


def _worker_logging(verbose: int) -> None:
    """The worker logs each job start/end at INFO (records propagate to the root handler set up by the app)."""
    import logging

    logging.getLogger("qortcli.worker").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def _once_rows(summary: dict) -> list[dict]:
    return [{"job": job_id, **{k: v for k, v in result.items() if isinstance(v, (int, float, str))}}
            if isinstance(result, dict) else {"job": job_id, "result": str(result)}
            for job_id, result in summary["results"].items()]


def _render_list(console, summary: dict) -> None:
    table = Table(title="Schedule (times UTC)", title_justify="left")
    for col in ("job", "runs", "next run", "step", "cron command"):
        table.add_column(col)
    for row in summary["jobs"]:
        nxt = row["next_run"] if row["next_run"] is not None else (
            "at start" if row["timing"].startswith("every") else "with its leader")
        table.add_row(esc(row["job"]), esc(row["timing"]), fmt(nxt), esc(row["step"]),
                      esc(f"qortcli {row['command']}") if row["command"] else "–")
    console.print(table)


def _render_once(console, summary: dict) -> None:
    for job_id, result in summary["results"].items():
        detail = ", ".join(f"{k}={v}" for k, v in result.items() if isinstance(v, (int, float, str))) \
            if isinstance(result, dict) else str(result)
        console.print(f"[green]ok[/] {esc(job_id)}: {esc(detail[:300])}")
