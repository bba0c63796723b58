"""`qortcli migrate`: apply schema migrations (collections, indexes) once each; `--to URL` copies the store."""

from __future__ import annotations

import typer
from rich.table import Table

from qortcli.cli.app import app
from qortcli.cli.common import (CsvOption, DbOption, JsonOption, VerboseOption, emit, err_console, esc, fail, fmt,
                                handled, open_db, state)
from qortcli.steps.migrate import DEFAULT_BATCH_SIZE, MigrationMismatch, run_migrate


@app.command()
def migrate(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0,
            csv: CsvOption = None,
            to: str = typer.Option(None, "--to", metavar="URL",
                                   help="Copy every collection of the store to this one (mongodb://, mongodb+srv:// "
                                        "or a directory), resumable, then verify counts and content hashes."),
            to_db: str = typer.Option(None, "--to-db", metavar="NAME",
                                      help="Target database name (default: the URL's /path, else the source's)."),
            dry_run: bool = typer.Option(False, "--dry-run", help="With --to: show what would be copied, write nothing."),
            batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", min=1,
                                           help="Documents per batch (one checkpoint per batch)."),
            upgrade_store: bool = typer.Option(
                False, "--upgrade-store",
                help="Upgrade an embedded store of qortfolio 0.1 (litemongo files) to the current engine in place: "
                     "copy, verify counts and content hashes, keep the old files in legacy-litemongo-<time>/.")) -> None:
    """Create collections and indexes and apply numbered schema migrations; running it twice changes nothing.

    With --to, also copy the whole store to another one (embedded → MongoDB Atlas, or any direction):
    batches upserted by _id (idempotent), resumed after an interruption, indexes created on the target,
    then per-collection counts and order-independent hashes compared on both sides (exit 1 on any mismatch).
    TLS settings come from the URL (mongodb+srv:// turns TLS on; add e.g. ?tlsCAFile=/path/ca.pem).

    --csv writes the migrations table (or, with --to, the per-collection copy table).

    Example: qortcli migrate --to "mongodb+srv://user:pass@cluster0.example.mongodb.net/qortfolio" --dry-run

    Example: qortcli migrate --upgrade-store      # a store written by qortfolio 0.1 (litemongo)
    """
    st = state(ctx, db, as_json, verbose, csv)
    if (dry_run or to_db) and not to:
        fail("--dry-run and --to-db only make sense with --to URL", 2)
    if upgrade_store:
        if to:
            fail("--upgrade-store upgrades the store in place; run --to afterwards", 2)
        with handled(st):
            from qortcli.config import get_settings
            from qortcli.store.connect import is_mongo_url
            from qortcli.store.legacy import upgrade_store as upgrade

            settings = get_settings()
            target = st.db_url or settings.db_url
            if is_mongo_url(target):
                fail("--upgrade-store applies to an embedded store directory, not MongoDB", 2)
            with _progress(enabled=not st.as_json) as progress:
                summary = upgrade(target, settings.db_name, progress=progress)
            emit(st, summary, _render_upgrade)
        return
    with handled(st):
        database = open_db(st, migrate=False, writes=to is None)  # with --to the summary names both stores
        try:
            if to is None:
                emit(st, run_migrate(database), _render, lambda s: s["migrations"])
                return
            if dry_run:
                emit(st, run_migrate(database, to, to_db_name=to_db, dry_run=True, batch_size=batch_size), _render_copy,
                     _copy_rows)
                return
            with _progress(enabled=not st.as_json) as progress:
                try:
                    summary = run_migrate(database, to, to_db_name=to_db, batch_size=batch_size, progress=progress)
                except MigrationMismatch as exc:
                    progress.stop()
                    emit(st, exc.summary, _render_copy, _copy_rows)
                    fail(str(exc))
            emit(st, summary, _render_copy, _copy_rows)
        finally:
            database.close()


class _progress:
    """A rich progress bar per collection (on stderr), fed by the step's (collection, done, total) callback."""

    def __init__(self, enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                             TimeRemainingColumn(), console=err_console, disable=not enabled, transient=False)
        self._tasks: dict[str, int] = {}

    def __enter__(self):
        self._bar.start()
        return self

    def __exit__(self, *exc):
        self._bar.stop()

    def stop(self) -> None:
        self._bar.stop()

    def __call__(self, collection: str, done: int, total: int) -> None:
        if collection not in self._tasks:
            self._tasks[collection] = self._bar.add_task(collection, total=total, completed=done)
        else:
            self._bar.update(self._tasks[collection], completed=done, total=total)


def _copy_rows(summary: dict) -> list[dict]:
    return list(summary["collections"])


def _render(console, summary: dict) -> None:
    console.print(f"[bold]Store:[/] {esc(summary['store'])}")
    table = Table(title="Schema migrations", title_justify="left")
    for col in ("#", "description", "status", "applied at"):
        table.add_column(col)
    for m in summary["migrations"]:
        colour = "green" if m["status"] == "applied now" else "dim"
        table.add_row(str(m["number"]), esc(m["description"]), f"[{colour}]{esc(m['status'])}[/]", fmt(m.get("applied_at")))
    console.print(table)


def _render_upgrade(console, summary: dict) -> None:
    table = Table(title=f"Store upgraded in place: {summary['store']}", title_justify="left")
    for col in ("collection", "documents", "content hash", "verified"):
        table.add_column(col, justify="right" if col == "documents" else "left")
    for row in summary["collections"]:
        table.add_row(row["collection"], str(row["documents"]), row["hash"][:12],
                      "[green]identical[/]" if row["match"] else f"[red]{row['detail']}[/]")
    console.print(table)
    console.print(f"the previous engine's files are kept in {summary['backup']} (delete them once satisfied)",
                  highlight=False)


def _render_copy(console, summary: dict) -> None:
    console.print(f"[bold]From:[/] {esc(summary['store'])}\n[bold]To:[/]   {esc(summary['target'])}")
    if summary["dry_run"]:
        table = Table(title=f"Dry run: nothing written (batches of {summary['batch_size']})", title_justify="left")
        for col in ("collection", "source docs", "target docs now", "already copied", "would copy", "batches"):
            table.add_column(col, justify="left" if col == "collection" else "right")
        for row in summary["collections"]:
            table.add_row(esc(row["collection"]), str(row["source_count"]), str(row["target_count_before"]),
                          str(row["resumed_from"]), str(row["would_copy"]), str(row["batches"]))
        console.print(table)
        return
    table = Table(title="Copy and verification", title_justify="left")
    for col in ("collection", "docs", "copied", "resumed at", "target", "content hash", "verified"):
        table.add_column(col, justify="right" if col in ("docs", "copied", "resumed at", "target") else "left")
    for row in summary["collections"]:
        ok = row.get("match")
        verdict = "[green]identical[/]" if ok else f"[red]{esc(row.get('detail', 'not verified'))}[/]"
        digest = row.get("source_hash", "")[:10] if ok else \
            f"{row.get('source_hash', '')[:10]} ≠ {row.get('target_hash', '')[:10]}"
        table.add_row(esc(row["collection"]), str(row["source_count"]), str(row["copied"]), str(row["resumed_from"]),
                      str(row.get("target_count", "–")), digest, verdict)
    console.print(table)
    if summary.get("ok"):
        console.print(f"[green]copied and verified[/] in {summary.get('seconds', 0):.1f} s")
