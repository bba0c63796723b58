"""`qortcli worker`: run the scheduled jobs (APScheduler), one job now, or print the schedule / crontab."""

from __future__ import annotations

import typer
from rich.table import Table

from qortcli.cli.app import app
from qortcli.cli.common import EXIT_USAGE, DbOption, JsonOption, emit, fail, fmt, handled, open_db, state


@app.command()
def worker(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False,
           once: str = typer.Option(None, "--once", metavar="JOB",
                                    help="Run one job now (and the jobs chained after it), then exit."),
           list_jobs: bool = typer.Option(False, "--list", help="Print the schedule and exit."),
           crontab: bool = typer.Option(False, "--crontab",
                                        help="Print the schedule as crontab lines (flock-guarded) and exit.")) -> None:
    """Run the pipeline on the schedule of the settings' [schedule] section until SIGTERM or Ctrl-C.

    Jobs never overlap themselves, a failure is recorded in job_runs and the other jobs go on; on SIGTERM
    the running jobs finish before the worker exits. `qortcli status` shows next runs and last results.

    Example: qortcli worker --list && qortcli worker --once collect_deribit && qortcli worker
    """
    st = state(ctx, db, as_json)
    with handled(st):
        from jobs.worker import JobFailed, Worker, describe_schedule, serve
        from qortcli.schedule import load_schedule, render_crontab

        schedule = load_schedule()
        if crontab:
            typer.echo(render_crontab(schedule), nl=False)
            return
        if list_jobs:
            emit(st, {"jobs": describe_schedule(schedule)}, _render_list)
            return
        if once is not None and once not in schedule.ids:
            fail(f"unknown job {once!r}: the schedule has {', '.join(schedule.ids)}", EXIT_USAGE)
        from qortcli.placeholders import refuse_placeholders

        refuse_placeholders("the worker")
        database = open_db(st)
        try:
            if once is not None:
                try:
                    results = Worker(database, schedule).run_once(once)
                except JobFailed as exc:
                    fail(str(exc))
                emit(st, {"job": once, "results": results}, _render_once)
                return
            _worker_logging(st.verbose)
            raise typer.Exit(serve(database, schedule))
        finally:
            database.close()


def _worker_logging(verbose: int) -> None:
    """The worker logs each job start/end at INFO (records propagate to the root handler set up by the app)."""
    import logging

    logging.getLogger("qortcli.worker").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def _render_list(console, summary: dict) -> None:
    table = Table(title="Schedule (times UTC)", title_justify="left")
    for col in ("job", "runs", "next run", "step", "cron command"):
        table.add_column(col)
    for row in summary["jobs"]:
        nxt = row["next_run"] if row["next_run"] is not None else (
            "at start" if row["timing"].startswith("every") else "with its leader")
        table.add_row(row["job"], row["timing"], fmt(nxt), row["step"], f"qortcli {row['command']}" if row["command"] else "–")
    console.print(table)


def _render_once(console, summary: dict) -> None:
    for job_id, result in summary["results"].items():
        detail = ", ".join(f"{k}={v}" for k, v in result.items() if isinstance(v, (int, float, str))) \
            if isinstance(result, dict) else str(result)
        console.print(f"[green]ok[/] {job_id}: {detail[:300]}")
