"""`qortcli price`: not built yet (issue #3)."""

from __future__ import annotations

import typer

from qortcli.cli.app import app
from qortcli.cli.common import not_built


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def price(ctx: typer.Context) -> None:
    """Price the latest snapshot: coin-settled Black-76 prices, Greeks and implied vols."""
    not_built("price", 3)
