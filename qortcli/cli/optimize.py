"""`qortcli optimize`: portfolios with riskfolio-lib across assets or sectors, quantstats metrics."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.table import Table

from qortcli.cli.app import app
from qortcli.cli.common import (CsvOption, DbOption, JsonOption, VerboseOption, emit, esc, fmt, handled, note, num,
                                open_db, pct, state)
from qortcli.quant.choices import MODELS, REBALANCE_FREQUENCIES, RISK_MEASURES


def _choices(name: str, values) -> type[Enum]:
    """A str Enum of `values` for Typer's choices (members named like the values, `-` → `_`)."""
    return Enum(name, {v.replace("-", "_"): v for v in values}, type=str)


Model = _choices("Model", MODELS)
RiskMeasure = _choices("RiskMeasure", RISK_MEASURES)
Rebalance = _choices("Rebalance", REBALANCE_FREQUENCIES)


@app.command()
def optimize(
    ctx: typer.Context,
    model: Annotated[Optional[Model], typer.Option(
        "--model", "-m", help="hrp, herc: riskfolio HCPortfolio; the others: riskfolio Portfolio. "
                              "Default from the optimize settings.", case_sensitive=False)] = None,
    risk_measure: Annotated[Optional[RiskMeasure], typer.Option(
        "--risk-measure", "-r", help="MV (variance), CVaR and CDaR (95%), MDD (max drawdown). risk-parity: not MDD.",
        case_sensitive=False)] = None,
    by_sector: Annotated[bool, typer.Option(
        "--by-sector", help="Two levels: the model across sector return series (each sector's assets weighted by "
                            "the model within the sector), then within each sector.")] = False,
    max_sector: Annotated[Optional[float], typer.Option(
        "--max-sector", help="Cap on each sector's total weight, fraction (0.4 = 40%).")] = None,
    max_asset: Annotated[Optional[float], typer.Option("--max-asset", help="Cap on each asset's weight, fraction.")] = None,
    min_asset: Annotated[Optional[float], typer.Option("--min-asset", help="Floor on each asset's weight, fraction.")] = None,
    rebalance: Annotated[Optional[Rebalance], typer.Option(
        "--rebalance", help="Walk-forward backtest: refit on the trailing --lookback days at each period start "
                            "and hold to the next; out-of-sample metrics stored beside the in-sample ones.")] = None,
    lookback: Annotated[Optional[int], typer.Option(
        "--lookback", min=2, help="Trailing fit window of the walk-forward, calendar days (default 365).")] = None,
    start: Annotated[Optional[str], typer.Option("--start", help="First day of returns, YYYY-MM-DD (UTC).")] = None,
    end: Annotated[Optional[str], typer.Option("--end", help="Last day of returns, YYYY-MM-DD (UTC).")] = None,
    asset: Annotated[Optional[List[str]], typer.Option(
        "--asset", "-a", help="Only these tickers (repeat, or comma-separated). Default: every stored symbol.")] = None,
    min_history: Annotated[Optional[int], typer.Option(
        "--min-history", min=2, help="Exclude assets with fewer daily returns than this (default 365).")] = None,
    name: Annotated[Optional[str], typer.Option(
        "--name", help="portfolio_id to store under (default: built from the model and every input, e.g. "
                       "hrp-assets, hrp-assets-btc+eth-from2022-01-01-monthly-lb180).")] = None,
    report: Annotated[Optional[Path], typer.Option(
        "--report", help="Write a quantstats HTML tearsheet (vs the equal-weight benchmark; offline).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = 0,
    csv: CsvOption = None,
) -> None:
    """Optimise a crypto portfolio from stored daily closes and store it with its risk metrics.

    Weights are fractions of the portfolio (percent in tables); metrics use the day-count basis' days a year
    as periods (365 on ACT/365). Out-of-sample walk-forward metrics (--rebalance) come first; in-sample ones are
    labelled so. The previous allocation of the same portfolio (an earlier as-of day, or the same day with
    different weights) is compared and the changes shown as rebalancing suggestions. --csv writes the weights.

    Examples:

      qortcli optimize --model hrp

      qortcli optimize --model min-risk --risk-measure CVaR --by-sector --max-sector 0.4 --rebalance monthly

      qortcli optimize --model max-sharpe --max-asset 0.25 --report hrp.html --json
    """
    from qortcli.steps.optimize import run_optimize

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        tickers = [t.strip().upper() for item in (asset or []) for t in item.split(",") if t.strip()] or None
        bad = [t for t in tickers or [] if not t.replace("-", "").replace("_", "").isalnum()]
        if bad:
            from qortcli.errors import UsageError

            raise UsageError(f"--asset {bad[0]!r} is not a ticker like BTC")
        database = open_db(st)
        summary = run_optimize(
            database, model=model.value if model else None, by_sector=by_sector,
            risk_measure=risk_measure.value if risk_measure else None, max_sector=max_sector, max_asset=max_asset,
            min_asset=min_asset, rebalance=rebalance.value if rebalance else None, start=start, end=end,
            assets=tickers, min_history_days=min_history, lookback_days=lookback, portfolio_id=name, report=report)
        for stale in summary.get("stale") or []:
            note(st, stale["message"])
        emit(st, summary, _render, _rows)


def _rows(s: dict) -> list[dict]:
    return [{"portfolio_id": s["portfolio_id"], "as_of": s["timestamp"], "asset": a, "sector": s["sectors"].get(a),
             "weight": w} for a, w in sorted(s["weights"].items(), key=lambda kv: -kv[1])]


def _bar(weight: float, biggest: float, width: int = 30) -> str:
    n = 0 if biggest <= 0 else int(round(width * weight / biggest))
    return "█" * n


METRIC_ROWS = (("total_return", "total return", pct), ("cagr", "CAGR", pct), ("volatility", "volatility (ann.)", pct),
               ("sharpe", "Sharpe", num), ("sortino", "Sortino", num), ("calmar", "Calmar", num), ("omega", "Omega", num),
               ("max_drawdown", "max drawdown", pct), ("var_95", "VaR 95% (1 day, hist.)", pct),
               ("cvar_95", "CVaR 95% (1 day, hist.)", pct))


def _render(console, s: dict) -> None:
    data = s["data"]
    console.print(f"[bold]{esc(s['portfolio_id'])}[/]  model {esc(s['model'])} ({esc(s['params']['risk_measure'])}), "
                  f"{len(s['weights'])} assets, {data['days']} daily returns {fmt(data['first'])[:10]}…"
                  f"{fmt(data['last'])[:10]}"
                  + (f", {data['dropped_days']} days dropped for gaps" if data["dropped_days"] else ""), highlight=False)
    weights = Table(title="Weights", title_justify="left")
    for col, just in (("asset", "left"), ("sector", "left"), ("weight", "right"), ("", "left")):
        weights.add_column(col, justify=just)
    biggest = max(s["weights"].values())
    for name, w in sorted(s["weights"].items(), key=lambda kv: -kv[1]):
        weights.add_row(esc(name), esc(s["sectors"].get(name, "")), pct(w), f"[cyan]{_bar(w, biggest)}[/]")
    console.print(weights)

    sectors = Table(title="Sector weights", title_justify="left")
    for col, just in (("sector", "left"), ("weight", "right"), ("", "left")):
        sectors.add_column(col, justify=just)
    top = max(s["sector_weights"].values())
    for name, w in s["sector_weights"].items():
        sectors.add_row(esc(name), pct(w), f"[magenta]{_bar(w, top)}[/]")
    console.print(sectors)

    m = s["metrics"]
    oos, ins = m.get("out_of_sample"), m["in_sample"]
    table = Table(title=f"Metrics (daily returns, {m['periods_per_year']:g} periods a year, rf 0) — "
                        + ("out-of-sample walk-forward first" if oos else "in-sample only: pass --rebalance for "
                                                                          "out-of-sample figures"),
                  title_justify="left")
    table.add_column("metric")
    columns = []
    if oos:
        columns += [("walk-forward (out-of-sample)", oos["portfolio"]), ("equal weight (out-of-sample)", oos["benchmark"])]
    columns += [("portfolio (in-sample)", ins["portfolio"]), ("equal weight (in-sample)", ins["benchmark"])]
    for title, _ in columns:
        table.add_column(title, justify="right")
    for key, label, render in METRIC_ROWS:
        table.add_row(label, *[render(values.get(key)) for _, values in columns])
    table.add_row("days", *[str(values.get("days")) for _, values in columns])
    table.caption = ins.get("note")
    console.print(table)

    assets = Table(title="Assets (in-sample)", title_justify="left")
    for col in ("asset", "CAGR", "volatility", "Sharpe", "Sortino", "max drawdown", "CVaR 95%"):
        assets.add_column(col, justify="left" if col == "asset" else "right")
    for name, values in ins["assets"].items():
        assets.add_row(esc(name), pct(values["cagr"]), pct(values["volatility"]), num(values["sharpe"]),
                       num(values["sortino"]), pct(values["max_drawdown"]), pct(values["cvar_95"]))
    console.print(assets)

    bt = s["backtest"]
    console.print(f"Backtest: {bt['kind']}, {bt['days']} days {fmt(bt['first'])[:10]}…{fmt(bt['last'])[:10]}: "
                  f"growth of 1 → {bt['final_equity']:.3f} (equal weight {bt['final_benchmark_equity']:.3f})"
                  + (f", {bt['rebalances']} rebalances" if bt["rebalances"] else ""))

    if s["excluded"]:
        excluded = Table(title="Excluded assets", title_justify="left")
        excluded.add_column("asset")
        excluded.add_column("reason")
        for row in s["excluded"]:
            excluded.add_row(esc(row["symbol"]), esc(row["reason"]))
        console.print(excluded)

    plan = s.get("rebalancing")
    if plan:
        changes = Table(title=f"Rebalancing vs the allocation as of {fmt(plan['previous_timestamp'])[:10]} — "
                              f"turnover {pct(plan['turnover'])}",
                        title_justify="left")
        for col, just in (("asset", "left"), ("previous", "right"), ("new", "right"), ("change", "right"),
                          ("suggestion", "left")):
            changes.add_column(col, justify=just)
        for row in plan["changes"]:
            colour = {"buy": "green", "sell": "red"}.get(row["action"], "white")
            changes.add_row(esc(row["asset"]), pct(row["previous"]), pct(row["new"]),
                            f"{100 * row['change']:+.2f}%", f"[{colour}]{esc(row['action'])}[/]")
        console.print(changes)
    else:
        console.print("No previous allocation of this portfolio: nothing to rebalance against.")
    if s.get("report"):
        console.print(f"Tearsheet written to {esc(s['report'])}", highlight=False)
    console.print(f"Stored as {esc(s['portfolio_id'])} as of {fmt(s['timestamp'])[:10]} (computed {fmt(s['computed_at'])} UTC, "
                  f"{s['seconds']} s).", highlight=False)
