"""`qortcli suggest`: not built yet (issue #7)."""

from __future__ import annotations

import typer

from qortcli.cli.app import app
from qortcli.cli.common import not_built


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def suggest(ctx: typer.Context) -> None:
    """Suggest rule-based option strategies with concrete legs, payoffs and breakevens."""
    not_built("suggest", 7)
