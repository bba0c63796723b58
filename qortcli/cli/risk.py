"""`qortcli risk`: a book's value, P/L, greeks, account delta and spot × vol scenario grid on the latest chain."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Callable, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from qortcli.cli.app import app
from qortcli.cli.common import CsvOption, DbOption, JsonOption, VerboseOption, emit, handled, open_db, state
from qortcli.cli.common import num as _significant
from qortcli.errors import UsageError

DASH = "–"


# ------------------------------------------------------------------------------------------ cells

def num(value, digits: int = 4) -> str:
    """A compact number: `digits` significant figures, thousands separators above 1e4, '–' for None/NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    value = float(value)
    if value != 0 and abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return _significant(value, digits)


def coin(value) -> str:
    return DASH if value is None else f"{value:.4f}"


def usd(value) -> str:
    return DASH if value is None else f"{value:,.0f}"


def pct(value, digits: int = 1) -> str:
    return DASH if value is None else f"{100 * value:.{digits}f}%"


def signed_pct(value) -> str:
    return DASH if value is None else f"{100 * value:+.0f}%"


def vol_points(value) -> str:
    return DASH if value is None else f"{100 * value:+.0f}"


def days(value) -> str:
    return DASH if value is None else f"+{value:g} d" if value else "now"


#: characters a column adds to its widest cell in `to_rich`'s tables (left padding and separator): a table
#: is Σ (widest cell + COLUMN_GAP) characters wide
COLUMN_GAP = 2


@dataclass(frozen=True)
class Column:
    """A table column: header, how to render a row's cell, justification and priority (0 is kept longest)."""

    header: str
    cell: Callable[[dict], str]
    priority: int = 0
    justify: str = "right"


@dataclass(frozen=True)
class TableSpec:
    """A table as strings (what is printed; `--json` carries the numbers behind every cell)."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    justify: tuple[str, ...]
    caption: str = ""


def fit(title: str, columns: list[Column], rows: list[dict], width: int, caption: str = "") -> TableSpec:
    """Render `rows` with as many columns as fit in `width` (dropping the highest priority numbers first)."""
    cells = [[c.cell(r) for c in columns] for r in rows]
    widths = [max([len(c.header)] + [len(row[i]) for row in cells]) + COLUMN_GAP for i, c in enumerate(columns)]
    keep = list(range(len(columns)))
    while sum(widths[i] for i in keep) > width and len(keep) > 1:
        drop = max(keep, key=lambda i: (columns[i].priority, i))
        if columns[drop].priority == 0:
            break
        keep.remove(drop)
    return TableSpec(title=title, headers=tuple(columns[i].header for i in keep),
                     rows=tuple(tuple(row[i] for i in keep) for row in cells),
                     justify=tuple(columns[i].justify for i in keep), caption=caption)


def to_rich(spec: TableSpec) -> Table:
    table = Table(title=escape(spec.title), title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 0, 0, 1), pad_edge=False,
                  caption=escape(spec.caption) if spec.caption else None, caption_justify="left")
    for header, justify in zip(spec.headers, spec.justify):
        table.add_column(escape(header), justify=justify, no_wrap=True)
    for row in spec.rows:
        table.add_row(*(escape(c) for c in row))
    return table


# ------------------------------------------------------------------------------------------ tables

def _size(r: dict) -> str:
    unit = "USD" if r["size_unit"] == "usd" else "coin"
    return f"{r['size']:,g} {unit}"


def _entry(r: dict) -> str:
    if r.get("entry_price") is None:
        return DASH
    return coin(r["entry_price"]) if r["price_unit"] == "coin" else usd(r["entry_price"])


def _fields(spec, label: bool = True) -> list[Column]:
    """Columns from (header, field, formatter, priority) tuples; with `label` the first is left-aligned text."""
    return [Column(header, (lambda r, k=key, f=form: f(r[k])), priority, "left" if label and i == 0 else "right")
            for i, (header, key, form, priority) in enumerate(spec)]


def _g3(value) -> str:
    return num(value, 3)


def position_columns() -> list[Column]:
    return [*_fields([("instrument", "instrument", str, 0)]), Column("size", _size, 0),
            *_fields([("value coin", "value_coin", coin, 0), ("P/L coin", "pnl_coin", coin, 0),
                      ("P/L USD", "pnl_usd", usd, 0), ("delta", "delta", _g3, 1), ("vega", "vega", _g3, 2),
                      ("theta", "theta", _g3, 3), ("delta_pa", "delta_pa", _g3, 4)], label=False),
            Column("entry", _entry, 5),
            *_fields([("gamma", "gamma", _g3, 6), ("vol", "vol", pct, 7), ("model coin", "model_coin", coin, 8),
                      ("value USD", "value_usd", usd, 9)], label=False)]


def expiry_columns() -> list[Column]:
    return _fields([("expiry", "expiry_code", str, 0), ("pos", "positions", str, 0), ("value coin", "value_coin", coin, 0),
                    ("P/L coin", "pnl_coin", coin, 0), ("delta", "delta", _g3, 0), ("gamma", "gamma", _g3, 2),
                    ("vega", "vega", _g3, 1), ("theta", "theta", _g3, 1), ("delta_pa", "delta_pa", _g3, 3),
                    ("vega_coin", "vega_coin", _g3, 4), ("theta_coin", "theta_coin", _g3, 5)])


def account_rows(a: dict) -> list[dict]:
    return [{"what": "delta of the USD value, coin", "without": num(a["usd_value_delta_coin"]),
             "with": num(a["usd_value_delta_coin_with_collateral"])},
            {"what": "delta of the USD value, USD", "without": usd(a["usd_value_delta_usd"]),
             "with": usd(a["usd_value_delta_usd_with_collateral"])},
            {"what": "delta of the coin value, coin (F dW/dF)", "without": num(a["coin_value_delta_coin"]),
             "with": num(a["coin_value_delta_coin"])},
            {"what": "dW/dF, coin per USD", "without": num(a["coin_value_delta_per_usd"]),
             "with": num(a["coin_value_delta_per_usd"])}]


def grid_columns(spot_moves: list[float], width: int, cell_width: int, label_width: int = 6) -> list[int]:
    """Indices of the spot moves shown: all if they fit, else evenly spaced ones keeping both ends and 0."""
    n = len(spot_moves)
    room = max(2, (width - label_width - COLUMN_GAP) // (cell_width + COLUMN_GAP))
    if n <= room:
        return list(range(n))
    zero = [i for i, x in enumerate(spot_moves) if x == 0]
    centre = zero[0] if zero else 0
    for step in range(2, n):                       # every step-th move counted from 0, symmetric steps first
        if (centre % step or (n - 1 - centre) % step) and step < n - 1:
            continue
        picked = sorted({i for i in range(n) if (i - centre) % step == 0} | {0, n - 1})
        if len(picked) <= room:
            return picked
    return sorted({0, centre, n - 1})


def grid_format(values, usd_values: bool) -> tuple[float, Callable[[float], str], str]:
    """(scale, cell formatter, unit label) for one grid table: four significant figures on its largest cell;
    USD tables in thousands once the largest cell reaches 10,000 USD."""
    biggest = max((abs(v) for row in values for v in row if v is not None), default=0.0)
    scale, unit = (1e-3, "thousand USD") if usd_values and biggest >= 1e4 else (1.0, "USD" if usd_values else "coin")
    top = biggest * scale
    decimals = 0 if top == 0 else int(min(6, max(0, 3 - math.floor(math.log10(top)))))
    return scale, (lambda v: DASH if v is None else f"{v:.{decimals}f}"), unit


def grid_table(report: dict, measure: str, h: int, width: int) -> TableSpec:
    g = report["grid"]
    values = g[measure][h]
    scale, render, unit = grid_format(values, measure != "pnl_coin")
    cells = [[render(v * scale) for v in row] for row in values]
    cell_width = max(len(c) for row in cells for c in row)
    shown = grid_columns(g["spot_moves"], width, max(cell_width, 4), label_width=len("vol"))
    headers = ("vol",) + tuple(signed_pct(g["spot_moves"][i]) for i in shown)
    rows = tuple((vol_points(v),) + tuple(cells[j][i] for i in shown) for j, v in enumerate(g["vol_shifts"]))
    worst = report["worst"][measure]
    name = "P/L since entry" if measure.startswith("pnl") else "USD value change"
    caption = (f"spot moves {len(shown)} of {len(g['spot_moves'])} shown (all in --json)"
               if len(shown) < len(g["spot_moves"]) else "")
    return TableSpec(title=f"{name}, {unit} · horizon {days(g['horizons_days'][h])} · vol shift in vol points "
                           f"× spot move · worst {render(worst['value'] * scale)}",
                     headers=headers, rows=rows, justify=("right",) * len(headers), caption=caption)


def worst_rows(report: dict) -> list[dict]:
    """The worst cell of each measure at each horizon (P/L coin and USD, USD value change)."""
    g = report["grid"]
    out = []
    for measure, render in (("pnl_coin", coin), ("pnl_usd", usd), ("value_change_usd", usd)):
        for h, horizon in enumerate(g["horizons_days"]):
            values = g[measure][h]
            j, m = min(((j, m) for j in range(len(values)) for m in range(len(values[j]))),
                       key=lambda jm: values[jm[0]][jm[1]])
            out.append({"measure": measure, "horizon": days(horizon), "vol": vol_points(g["vol_shifts"][j]),
                        "spot": signed_pct(g["spot_moves"][m]), "spot_usd": usd(g["spot_usd"][m]),
                        "value": render(values[j][m])})
    return out


def report_tables(report: dict, width: int, horizons: list[int]) -> list[TableSpec]:
    """Every table `qortcli risk` prints for one currency's report, as strings."""
    cur = report["currency"]
    t = report["totals"]
    tables = [fit(f"{cur} positions · value and P/L since entry (coin; USD = coin × index {usd(report['index_usd'])}) · "
                  "USD greeks (delta, gamma /USD, vega /vol pt, theta /day) · delta_pa = F dV/dF (coin)",
                  position_columns(), report["positions"], width,
                  caption=f"total: value {coin(t['value_coin'])} coin = {usd(t['value_usd'])} USD · P/L "
                          f"{coin(t['pnl_coin'])} coin = {usd(t['pnl_usd'])} USD · delta {num(t['delta'])} · "
                          f"vega {num(t['vega'])} · theta {num(t['theta'])} · delta_pa {num(t['delta_pa'])}")]
    a = report["account"]
    tables.append(fit(f"{cur} account delta (collateral: {num(a['collateral_coin'])} coin held)",
                      [Column("", lambda r: r["what"], 0, "left"), Column("without collateral", lambda r: r["without"]),
                       Column("with collateral", lambda r: r["with"])], account_rows(a), width))
    tables.append(fit(f"{cur} greeks by expiry", expiry_columns(), report["by_expiry"], width))
    for h in horizons:
        for measure in ("pnl_coin", "pnl_usd"):
            tables.append(grid_table(report, measure, h, width))
    tables.append(fit(f"{cur} worst cells", [Column("measure", lambda r: r["measure"], 0, "left"),
                                             Column("horizon", lambda r: r["horizon"], 0),
                                             Column("vol shift", lambda r: r["vol"], 0),
                                             Column("spot", lambda r: r["spot"], 0),
                                             Column("spot USD", lambda r: r["spot_usd"], 0),
                                             Column("worst", lambda r: r["value"], 0)], worst_rows(report), width))
    return tables


def header_line(report: dict) -> str:
    surface = report.get("surface") or {}
    return (f"book {report['book']} (revision {report['book_revision']}) · {report['currency']} snapshot "
            f"{report['snapshot_id']} · index {usd(report['index_usd'])} USD · surface "
            f"{surface.get('snapshot_id') or 'none'} · {report['basis']}")


def _horizons(report: dict, wanted: str) -> list[int]:
    return horizon_indices(report["grid"]["horizons_days"], wanted)


def horizon_indices(hs, wanted: str) -> list[int]:
    """Indices of the grid horizons (days) `--horizon` asks for ("all" or one of them); UsageError otherwise."""
    hs = [float(h) for h in hs]
    if wanted == "all":
        return list(range(len(hs)))
    try:
        value = float(wanted)
    except ValueError:
        raise UsageError(f"--horizon {wanted!r}: give a horizon in days from the settings "
                         f"({', '.join(f'{h:g}' for h in hs)}) or 'all'") from None
    found = [i for i, h in enumerate(hs) if h == value]
    if not found:
        raise UsageError(f"--horizon {wanted}: not a grid horizon; the [risk] settings give "
                         f"{', '.join(f'{h:g}' for h in hs)} days")
    return found


def render(console, summary: dict, horizon: str = "0") -> None:
    if summary.get("skipped"):
        console.print(f"[yellow]skipped:[/] {escape(summary['skipped'])}", highlight=False)
        return
    width = min(console.width, 200)
    for report in summary["reports"]:
        console.print(f"[bold]{escape(header_line(report))}[/]", highlight=False)
        for spec in report_tables(report, width, _horizons(report, horizon)):
            console.print(to_rich(spec))
        for note in report.get("notes") or []:
            console.print(f"note: {escape(note)}", style="dim", highlight=False)
        console.print("vols in the grid: mark IV + [SVI(k', T') − SVI(k, T)] + shift (sticky moneyness, k = ln(K/F'), "
                      "forwards move with spot); legs expiring within a horizon settle on the coin payoff.",
                      style="dim", highlight=False)


@app.command()
def risk(ctx: typer.Context,
         book: Annotated[str, typer.Option("--book", "-b", help="The book to value.")] = "main",
         currency: Annotated[Optional[str], typer.Option(
             "--currency", "-c", help="Only this currency (default: every currency the book holds).")] = None,
         horizon: Annotated[str, typer.Option(
             "--horizon", help="Grid tables to print: a horizon in days of the \\[risk] settings (0 = now) or 'all'. "
                               "--json always carries every horizon.")] = "0",
         skip_missing: Annotated[bool, typer.Option(
             "--skip-missing", help="A book that does not exist or is empty is a quiet skip (exit 0), as in the worker.")] = False,
         basis: Annotated[Optional[str], typer.Option(
             "--basis", help="Day count for T: ACT/365 (Deribit's) or ACT/365.25 (default: \\[pricing] day_count).")] = None,
         db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0,
         csv: CsvOption = None) -> None:
    """Value a book on the latest chain: P/L, coin and USD greeks, the account delta and a scenario grid.

    Per position and in total: value and P/L since entry in coin and USD (coin × the spot index); Deribit's USD greeks and the coin greeks (delta_pa = F dV/dF); the account's delta of its USD value (coin held adds +1 per coin) and of its coin value; greeks by expiry. The grid fully revalues every leg on spot moves × vol shifts × horizons from the \\[risk] settings, with vols from the stored SVI surface (sticky moneyness); legs expiring within a horizon settle on the coin payoff. One `risk` document is stored per currency and run.

    --csv writes the whole scenario grid, one row per currency, horizon, vol shift and spot move (P/L since entry in coin and USD, USD value change; shifts and moves as fractions), whatever --horizon shows.

    Examples:

      qortcli risk

      qortcli risk --book hedge --currency BTC --horizon all

      qortcli risk --json
    """
    from qortcli.steps.risk import grid_from_settings, run_risk

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        grid = grid_from_settings()
        horizon_indices(grid.horizons_days, horizon)     # a bad --horizon is a usage error before anything runs
        database = open_db(st)
        summary = run_risk(database, book=book, currency=currency, basis=basis, grid=grid,
                           skip_missing=skip_missing).to_dict()
        emit(st, summary, lambda console, s: render(console, s, horizon), grid_rows, GRID_COLUMNS)


#: `--csv`: one row per grid cell (shifts and moves as fractions, the spot level in spot-USD)
GRID_COLUMNS = ("book", "currency", "snapshot_id", "horizon_days", "vol_shift", "spot_move", "spot_usd",
                "pnl_coin", "pnl_usd", "value_change_usd")


def grid_rows(summary: dict) -> list[dict]:
    """Every cell of every currency's scenario grid (all horizons) as a flat row, at full precision."""
    out = []
    for report in summary.get("reports") or []:
        g = report["grid"]
        for h, horizon in enumerate(g["horizons_days"]):
            for j, shift in enumerate(g["vol_shifts"]):
                for m, move in enumerate(g["spot_moves"]):
                    out.append({"book": report["book"], "currency": report["currency"],
                                "snapshot_id": report["snapshot_id"], "horizon_days": horizon, "vol_shift": shift,
                                "spot_move": move, "spot_usd": g["spot_usd"][m], "pnl_coin": g["pnl_coin"][h][j][m],
                                "pnl_usd": g["pnl_usd"][h][j][m], "value_change_usd": g["value_change_usd"][h][j][m]})
    return out
