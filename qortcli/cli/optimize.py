"""`qortcli optimize`: not built yet (issue #6)."""

from __future__ import annotations

import typer

from qortcli.cli.app import app
from qortcli.cli.common import not_built


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def optimize(ctx: typer.Context) -> None:
    """Optimise sector portfolios (riskfolio-lib) and compute risk metrics (quantstats)."""
    not_built("optimize", 6)
