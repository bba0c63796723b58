"""`qortcli surface`: not built yet (issue #5)."""

from __future__ import annotations

import typer

from qortcli.cli.app import app
from qortcli.cli.common import not_built


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def surface(ctx: typer.Context) -> None:
    """Fit the implied-volatility surface (SVI per expiry) for each currency."""
    not_built("surface", 5)
