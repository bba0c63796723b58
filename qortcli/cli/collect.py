"""`qortcli collect`: not built yet (issue #4)."""

from __future__ import annotations

import typer

from qortcli.cli.app import app
from qortcli.cli.common import not_built


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def collect(ctx: typer.Context) -> None:
    """Collect Deribit option chains and daily crypto prices into the store."""
    not_built("collect", 4)
