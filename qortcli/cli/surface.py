"""`qortcli surface`: fit and show the SVI implied-volatility surface of each currency."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from qortcli.cli.app import app
from qortcli.cli.common import (Column, CsvOption, DbOption, JsonOption, VerboseOption, emit, esc, fit_table, handled, num,
                                open_db, pct, state)
from qortcli.errors import StepError, UsageError


@app.command()
def surface(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0,
            csv: CsvOption = None,
            currency: Optional[str] = typer.Option(None, "--currency", "-c",
                                                   help="Only this currency (e.g. BTC); default: every currency."),
            plot: Optional[Path] = typer.Option(None, "--plot", metavar="FILE.html|FILE.png",
                                                help="Also write a plotly 3D surface with the market points and "
                                                     "smiles (.html; .png needs kaleido)."),
            backfill: bool = typer.Option(False, "--backfill",
                                          help="Instead of fitting the latest chain: write the per-snapshot "
                                               "summaries that stored snapshots lack (history views read them).")
            ) -> None:
    """Fit an arbitrage-checked SVI volatility surface to the latest snapshot of each currency and store it.

    Prints per expiry: T, ATM vol, 25Δ risk reversal and butterfly of the SVI fit, fit RMSE (vol points) and
    arbitrage flags, plus the 30-day constant-maturity ATM vol and variance-swap vol (DVOL-like) of the fit.
    (The same figures from the marks are in `qortcli suggest` and the viewer, labelled "marks".)

    Each fit also stores the snapshot's summary (constant-maturity ATM IV, RR25, BF25 at 7–180 days from
    the marks and from the fit, the variance-swap vol, positioning totals): the source of every history view.

    Vols in percent (fractions in --json); --csv writes one row per currency and expiry.

    Example: qortcli surface --currency BTC --plot btc_surface.html

    Example: qortcli surface --backfill      # summaries for snapshots stored before they existed
    """
    st = state(ctx, db, as_json, verbose, csv)
    if backfill:
        with handled(st):
            if plot is not None:
                raise UsageError("--backfill writes summaries only; run --plot without it")
            from qortcli.cli.collect import _progress
            from qortcli.steps.surface import run_backfill

            database = open_db(st)
            with _progress(st, "summaries") as progress:
                summary = run_backfill(database, currency=currency, progress=progress)
            emit(st, summary, _render_backfill)
        return
    with handled(st):
        if plot is not None and plot.suffix.lower() not in (".html", ".htm", ".png"):
            raise UsageError(f"--plot {plot}: the file must end in .html or .png")
        if plot is not None and not plot.expanduser().parent.is_dir():
            raise UsageError(f"--plot {plot}: directory {plot.expanduser().parent} does not exist")
        if plot is not None and plot.suffix.lower() == ".png":
            _require_png_export()
        from qortcli.steps.surface import run_surface
        from qortcli.store import read

        database = open_db(st)
        summary = run_surface(database, currency=currency)
        if plot is not None:
            docs = [read.surface_at(database, s["snapshot_id"]) for s in summary["surfaces"]]
            summary["plot"] = str(write_plot([d for d in docs if d], plot))
        emit(st, summary, _render, _rows)


def _rows(summary: dict) -> list[dict]:
    return [{"currency": surf["currency"], "snapshot_id": surf["snapshot_id"], **{k: v for k, v in row.items() if k != "flags"},
             "flags": ",".join(row["flags"])} for surf in summary["surfaces"] for row in surf["expiries_table"]]


def _render_backfill(console, summary: dict) -> None:
    console.print(f"{summary['written']:,} summaries written for {summary['candidates']:,} snapshots without one "
                  f"({', '.join(summary['currencies']) or 'no currency'}) in {summary['seconds']:.1f} s", highlight=False)
    for row in summary["failed"][:10]:
        console.print(f"[yellow]not written[/] {row['snapshot_id']}: {row['error']}", highlight=False)


SHORT = {"butterfly_arbitrage": "butterfly-arb", "calendar_arbitrage": "calendar-arb",
         "insufficient_quotes": "<5 quotes, not fitted", "poor_fit": "poor fit", "expired": "expired"}


def _render(console, summary: dict) -> None:
    for surf in summary["surfaces"]:
        columns = [Column("expiry", "left"), Column("T (y)"), Column("pts", priority=2), Column("ATM IV (SVI)"),
                   Column("RR25 (SVI)"), Column("BF25 (SVI)"), Column("RMSE (vol pts)", priority=1),
                   Column("flags", "left")]
        rows = []
        for row in surf["expiries_table"]:
            flags = row["flags"]
            shown = esc(", ".join(SHORT.get(f, f) for f in flags)) if flags else "[green]ok[/]"
            if "butterfly_arbitrage" in flags or "poor_fit" in flags:
                shown = f"[red]{shown}[/]"
            elif flags:
                shown = f"[yellow]{shown}[/]"
            rows.append([_day(row["expiry"]), f"{row['t_years']:.4f}", str(row["n_points"]), pct(row["atm_iv_svi"]),
                         pct(row["rr25_svi"]), pct(row["bf25_svi"]), num(row["rmse_vol_points"], 3), shown])
        console.print(fit_table(f"{esc(surf['currency'])} volatility surface — snapshot {esc(surf['snapshot_id'])}",
                                columns, rows))
        console.print("  ATM = vol at the forward; RR25/BF25 from the fitted SVI smile (Black-76 forward delta, "
                      "not premium-adjusted); RMSE in vol points on the fitted OTM marks; "
                      f"T on the {esc(surf.get('basis'))} basis.")
        rmse = surf.get("rmse_vol_points") or {}
        atm30, vs30 = surf.get("atm_iv_30d_svi") or {}, surf.get("vs_vol_30d_svi") or {}
        extrap = " (extrapolated)" if atm30.get("extrapolated") else ""
        console.print(
            f"  30-day constant maturity (SVI): ATM vol [bold]{pct(atm30.get('vol'))}[/], variance-swap vol "
            f"(DVOL-like) [bold]{pct(vs30.get('vol'))}[/]{extrap}")
        console.print(
            f"  fitted {surf['fitted']}/{surf['expiries']} expiries, RMSE median {num(rmse.get('median'), 3)} / max "
            f"{num(rmse.get('max'), 3)} vol pts; skipped vols: {surf['skipped_bad_vol']}; butterfly "
            f"{'[green]ok[/]' if surf['butterfly_ok'] else '[red]ARBITRAGE[/]'}; calendar "
            f"{_calendar_word(surf)}")
        for v in surf["calendar_violations"]:
            ranges = ", ".join(f"[{a:.2f}, {b:.2f}]" for a, b in v["k_ranges"])
            quoted = ", ".join(f"[{a:.2f}, {b:.2f}]" for a, b in v["quoted_k_ranges"]) or "none (extrapolation only)"
            console.print(f"    calendar: w({_day(v['expiry_after'])}) < w({_day(v['expiry_before'])}) at k ∈ {ranges}; "
                          f"within quoted strikes: {quoted}")
    if summary.get("plot"):
        console.print(f"Plot written to {esc(summary['plot'])}")


def _calendar_word(surf: dict) -> str:
    if surf["calendar_ok"]:
        return "[green]ok[/]"
    if surf.get("calendar_ok_in_quoted_range"):
        return "[green]ok within quoted strikes[/] (violations only where SVI extrapolates)"
    return "[yellow]violations within quoted strikes[/]"


def _day(value) -> str:
    return value.strftime("%Y-%m-%d") if hasattr(value, "strftime") else esc(value)


def _require_png_export() -> None:
    """Fail before fitting when plotly cannot export PNG here (it needs kaleido, which needs a browser)."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise StepError("--plot FILE.png needs the kaleido package (and a Chrome it can start offline), which "
                        "is not installed; use --plot FILE.html instead") from None


def write_plot(docs: list[dict], path: Path) -> Path:
    """Write a plotly 3D figure (surface grid, market points, fitted smiles) of `docs` to `path`."""
    import numpy as np
    import plotly.graph_objects as go

    from qortcli.quant.svi import PARAM_NAMES, svi_total_variance

    if not docs:
        raise StepError("no surface to plot")
    fig = go.Figure()
    for doc in docs:
        cur = doc["currency"]
        grid = doc.get("grid")
        if grid:
            fig.add_trace(go.Surface(x=grid["k"], y=grid["t_years"], z=np.array(grid["implied_vol"]) * 100,
                                     name=f"{cur} SVI surface", showscale=False, opacity=0.75,
                                     colorscale="Viridis"))
        for s in doc["slices"]:
            pts = np.array(s["points"], dtype=float).reshape(-1, 4)
            used = pts[:, 3] > 0
            label = _day(s["expiry"])
            fig.add_trace(go.Scatter3d(x=pts[used, 0], y=np.full(used.sum(), s["t_years"]), z=pts[used, 1] * 100,
                                       mode="markers", marker={"size": 2.5, "color": "black"},
                                       name=f"{cur} {label} marks", showlegend=False))
            if s.get("params"):
                kk = np.linspace(max(-1.0, pts[:, 0].min()), min(1.0, pts[:, 0].max()), 80)
                vol = np.sqrt(np.maximum(svi_total_variance(kk, *(s["params"][n] for n in PARAM_NAMES)), 0) / s["t_years"]) * 100
                fig.add_trace(go.Scatter3d(x=kk, y=np.full(kk.size, s["t_years"]), z=vol, mode="lines",
                                           line={"width": 4, "color": "crimson"}, name=f"{cur} {label} SVI"))
    fig.update_layout(title="SVI implied-volatility surface(s): " + ", ".join(d["snapshot_id"] for d in docs),
                      scene={"xaxis_title": "k = ln(K/F)", "yaxis_title": "T (years)", "zaxis_title": "implied vol (%)"})
    path = Path(path).expanduser()
    if path.suffix.lower() == ".png":
        try:
            fig.write_image(str(path))
        except Exception as exc:  # kaleido missing or unable to start offline
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StepError(f"cannot write PNG ({first}); use --plot FILE.html instead") from None
    else:
        fig.write_html(str(path), include_plotlyjs=True)
    return path
