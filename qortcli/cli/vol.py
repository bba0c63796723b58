"""`qortcli vol`: IV rank/percentile, realised vol, the vol cone, the variance premium and RV forecasts scored out of sample."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from qortcli.cli.app import app
from qortcli.cli.common import (CellColumn, CsvOption, DbOption, JsonOption, VerboseOption, emit, fit_rows, handled,
                                open_db, state)
from qortcli.errors import UsageError

SPARK = "▁▂▃▄▅▆▇█"
GAUGE_WIDTH = 15
MEASURE_LABEL = {"atm_iv_30d": "ATM IV 30d", "rr25_30d": "RR25 30d", "bf25_30d": "BF25 30d", "term_slope": "term slope"}
ESTIMATOR_LABEL = {"close_to_close": "close-close", "parkinson": "Parkinson", "garman_klass": "Garman-Klass"}
MODELS = ("har", "garch", "gjr", "naive", "implied")
MODEL_LABEL = {"har": "HAR-RV", "garch": "GARCH(1,1)-t", "gjr": "GJR-GARCH-t", "naive": "naive (RV persists)",
               "implied": "implied (ATM IV)"}


@app.command()
def vol(ctx: typer.Context,
        currency: Annotated[Optional[str], typer.Option(
            "--currency", "-c", help="Only this currency (default: every currency with an options snapshot).")] = None,
        source: Annotated[str, typer.Option(
            "--source", help="IV source of the ranks, the cone's IV, the premium and the implied forecast: marks "
                             "(Deribit's mark IVs) or svi (the fitted surfaces).")] = "marks",
        as_of: Annotated[Optional[str], typer.Option(
            "--as-of", metavar="YYYY-MM-DD[THH:MM]",
            help="Use only data up to this UTC moment (a day: its end): price days up to its day, summaries taken "
                 "at or before it; default: everything stored.")] = None,
        db: DbOption = None, as_json: JsonOption = False, verbose: VerboseOption = 0, csv: CsvOption = None) -> None:
    """Volatility intelligence from the stored history: IV rank and percentile, realised vol, the vol cone, the variance premium, and 7- and 30-day realised-vol forecasts scored out of sample.

    Inputs: the daily prices (price_data) and the per-snapshot summaries (written by `qortcli surface`; `qortcli surface --backfill` fills missing ones), one point per UTC day. Vols are annualised (365 days a year on ACT/365); realised vol is close-to-close unless named (Parkinson, Garman-Klass from OHLC); a missing price day is never bridged. Rank = (x - min)/(max - min) and percentile = share of earlier points below x over 30/90/180/365 days, each with the points and the span it covers (n/a below 20 points). Forecasts: HAR-RV (OLS), GARCH(1,1) and GJR-GARCH with Student-t errors (arch), the naive "RV persists" and implied vol itself; scored on rolling out-of-sample origins (weekly refits, two-year training window) by QLIKE and MSE on annualised variance. The result is stored in vol_forecasts (one document per currency, IV source and as-of day: re-running replaces it).

    --csv writes the forecasts with their out-of-sample scores, one row per currency, model and horizon (vols as annualised fractions, QLIKE/MSE on annualised variance, full precision); --json carries every figure.

    Examples:

      qortcli vol

      qortcli vol --currency BTC --source svi

      qortcli vol -c ETH --json

      qortcli vol --as-of 2026-06-30 --csv vol.csv
    """
    from qortcli.steps.vol import run_vol

    st = state(ctx, db, as_json, verbose, csv)
    with handled(st):
        now = parse_as_of(as_of)
        database = open_db(st)
        summary = run_vol(database, currency=currency, source=source, now=now)
        emit(st, summary.to_dict(), render, forecast_rows,
             FORECAST_COLUMNS)


def parse_as_of(text: str | None) -> datetime | None:
    """`--as-of`: a UTC day (its last millisecond) or a UTC time "YYYY-MM-DDTHH:MM[:SS]"; UsageError otherwise."""
    if text is None:
        return None
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--as-of {text!r} is not a day YYYY-MM-DD or a time YYYY-MM-DDTHH:MM (UTC)") from None
    if moment.tzinfo is not None and moment.utcoffset() != timedelta(0):
        raise UsageError(f"--as-of {text!r}: give the UTC time without another zone")
    moment = moment.replace(tzinfo=timezone.utc)
    if len(value) == 10:                                   # a day: everything of that day
        moment += timedelta(days=1, milliseconds=-1)
    return moment


# ----------------------------------------------------------------------------------------------- formatting

def _ok(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _pct(value, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f}%" if _ok(value) else "n/a"


def _pts(value, digits: int = 2) -> str:
    """A vol difference in vol points: 0.0123 → +1.23."""
    return f"{100 * value:+.{digits}f}" if _ok(value) else "n/a"


def _num(value, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if _ok(value) else "n/a"


def _frac(value) -> str:
    return f"{value:.2f}" if _ok(value) else "n/a"


def _day(text) -> str:
    return text[:10] if isinstance(text, str) else "–"


def _span(start, end) -> str:
    return f"{_day(start)}..{_day(end)}" if start else "–"


def _measure_value(measure: str, value) -> str:
    return _pct(value) if measure == "atm_iv_30d" else _pts(value)


def spark(values: list, low: float | None = None, high: float | None = None) -> str:
    """A sparkline of `values` (None = gap) on the scale low…high (default: their own range)."""
    have = [v for v in values if _ok(v)]
    if not have:
        return ""
    lo = min(have) if low is None else low
    hi = max(have) if high is None else high
    span = hi - lo
    out = []
    for v in values:
        if not _ok(v):
            out.append(" ")
            continue
        i = 0 if span <= 0 else int(round((v - lo) / span * (len(SPARK) - 1)))
        out.append(SPARK[min(max(i, 0), len(SPARK) - 1)])
    return "".join(out)


def gauge(row: dict, width: int = GAUGE_WIDTH) -> str:
    """The cone row as a strip from its min to its max: ─ outside 25–75 %, ━ inside, ┃ the median,
    ● today's RV, ◆ today's IV (◆ at an end with < or > when outside the cone)."""
    lo, hi = row.get("min"), row.get("max")
    if not (_ok(lo) and _ok(hi)) or hi <= lo:
        return ""

    def at(v) -> int:
        return min(max(int(round((v - lo) / (hi - lo) * (width - 1))), 0), width - 1)

    cells = ["─"] * width
    for i in range(at(row["q25"]), at(row["q75"]) + 1):
        cells[i] = "━"
    cells[at(row["median"])] = "┃"
    if _ok(row.get("current_rv")):
        cells[at(row["current_rv"])] = "●"
    iv = row.get("current_iv")
    left, right = " ", " "
    if _ok(iv):
        cells[at(iv)] = "[bold magenta]◆[/]"
        left, right = ("<" if iv < lo else " "), (">" if iv > hi else " ")
    return left + "".join(cells) + right


# ----------------------------------------------------------------------------------------------- tables

def render(console: Console, view: dict) -> None:
    """Rich tables of the JSON view of `run_vol` (`VolSummary.to_dict()`): nothing shown is not in it."""
    console.print(f"[dim]vol: IV source {escape(view['source'])} · {escape(view['basis'])} · vols annualised "
                  f"fractions shown in %; RR25/BF25/term slope and premia in vol points[/]", highlight=False)
    for cur in view["currencies"]:
        if cur.get("reason"):
            console.print(f"\n[bold]{escape(cur['currency'])}[/]: {escape(cur['reason'])}", highlight=False)
            continue
        _render_currency(console, cur)


def _render_currency(console: Console, cur: dict) -> None:
    name = escape(cur["currency"])
    prices, sums = cur["prices"], cur["summaries"]
    iv_note = "no IV: no summaries (run `qortcli surface --backfill`)"
    if sums["n_days"]:
        iv_note = f"no {escape(cur['source'])} IV in the summaries" + (
            " (SVI figures need fitted surfaces: `qortcli surface`)" if cur["source"] == "svi" else "")
    if cur.get("iv_as_of"):
        age = cur.get("iv_age_days")
        iv_note = f"IV as of {_day(cur['iv_as_of'])}" + (
            f" ({age} day{'s' if age != 1 else ''} before the last price day)" if age else "")
    console.print(f"\n[bold]{name}[/] as of {_day(cur['as_of'])} · daily prices {_span(prices['first'], prices['last'])} "
                  f"({prices['missing_days']} missing days)", highlight=False)
    console.print(f"  {sums['n_days']} daily summaries {_span(sums['first'], sums['last'])} · {iv_note}", highlight=False)
    console.print(_ranks(console, cur))
    console.print(_realised(console, cur))
    _notes(console, [f"{ESTIMATOR_LABEL[r['estimator']]} {r['window_days']}d: {r['reason']}"
                     for r in cur["realised"] if r["reason"]])
    console.print(_cone(console, cur))
    console.print(_premium(console, cur))
    line = sparkline(cur, max(20, min(console.width - 30, 90)))
    if line:
        console.print(line, highlight=False)
    console.print(_forecasts(console, cur))
    _notes(console, [f"{MODEL_LABEL.get(f['model'], f['model'])} {f['horizon_days']}d: {f['reason']}"
                     for f in cur["forecasts"] if f["reason"]])
    for b in cur["best"]:
        console.print(f"  best {b['horizon_days']}d forecast: " + (
            f"[bold]{escape(b['model'])}[/] {_pct(b['vol'])} (QLIKE {_num(b['score'])} on {b['n_scored']} origins; "
            f"implied {_num(b['implied_score'])})" if b["model"] else escape(b["reason"] or "n/a")), highlight=False)
    console.print(_scores(console, cur))
    _score_notes(console, cur)


def _ranks(console: Console, cur: dict) -> Table:
    rows = cur["ranks"]
    src = escape(cur["source"])
    columns: list[CellColumn] = [
        ("measure", "left", 0, lambda r: f"{MEASURE_LABEL.get(r['measure'], escape(r['measure']))}"),
        ("lookback", "right", 0, lambda r: f"{r['lookback_days']}d"),
        ("now", "right", 0, lambda r: _measure_value(r["measure"], r["value"])),
        ("rank", "right", 0, lambda r: _frac(r["rank"])),
        ("pct", "right", 0, lambda r: _frac(r["percentile"])),
        ("points", "right", 0, lambda r: str(r["n_points"])),
        ("span", "left", 2, lambda r: _span(r["span_start"], r["span_end"])
         + ("" if r["covers_lookback"] or not r["span_start"] else " (short)")),
    ]
    return fit_rows(f"{escape(cur['currency'])} rank and percentile ({src}; points = days in the window)",
                    _with_notes(columns, rows, 1), rows, width=console.width)


def _realised(console: Console, cur: dict) -> Table:
    by = {(r["estimator"], r["window_days"]): r for r in cur["realised"]}
    windows = sorted({r["window_days"] for r in cur["realised"]})
    c2c = "close_to_close"
    rows = [{"window": w, **{e: by.get((e, w)) for e in ESTIMATOR_LABEL}} for w in windows]

    def vol_cell(est):
        return lambda r: _pct(r[est]["vol"]) if r[est] else "–"

    columns: list[CellColumn] = [
        ("window", "right", 0, lambda r: f"{r['window']}d"),
        *[(label, "right", 0, vol_cell(est)) for est, label in ESTIMATOR_LABEL.items()],
        ("returns", "right", 0, lambda r: str(r[c2c]["n_returns"])),
        ("bars", "right", 4, lambda r: str(r["parkinson"]["n_returns"])),
        ("missing", "right", 3, lambda r: str(r[c2c]["n_missing_days"])),
        ("gap rets", "right", 2, lambda r: str(r[c2c]["n_gap_returns"])),
        ("bad bars", "right", 1, lambda r: str(r["parkinson"]["n_bad_bars"])),
        ("span (close-close)", "left", 5, lambda r: _span(r[c2c]["span_start"], r[c2c]["span_end"])),
    ]
    return fit_rows(f"{escape(cur['currency'])} realised vol to {_day(cur['as_of'])} (annualised)", columns,
                    rows, width=console.width)


def _with_notes(columns: list[CellColumn], rows: list[dict], priority: int) -> list[CellColumn]:
    """`columns` plus a "note" column of the rows' n/a reasons when any row has one."""
    if not any(r.get("reason") for r in rows):
        return columns
    return [*columns, ("note", "left", priority, lambda r: escape(r["reason"] or ""))]


def _notes(console: Console, lines: list[str]) -> None:
    """Reasons under a table, one dim line each."""
    for line in lines:
        console.print(f"  [dim]{escape(line)}[/]", highlight=False)


def _cone(console: Console, cur: dict) -> Table:
    cone = cur["cone"]
    columns: list[CellColumn] = [
        ("window", "right", 0, lambda r: f"{r['window_days']}d"),
        ("min", "right", 0, lambda r: _pct(r["min"])),
        ("25%", "right", 0, lambda r: _pct(r["q25"])),
        ("median", "right", 0, lambda r: _pct(r["median"])),
        ("75%", "right", 0, lambda r: _pct(r["q75"])),
        ("max", "right", 0, lambda r: _pct(r["max"])),
        ("RV now", "right", 0, lambda r: _pct(r["current_rv"])),
        ("IV now", "right", 0, lambda r: _pct(r["current_iv"]) if r["current_iv"] is not None else "–"),
        ("IV pct", "right", 2, lambda r: _frac(r["iv_percentile"]) if r["current_iv"] is not None else "–"),
        ("min ── cone ── max", "left", 1, gauge),
    ]
    title = (f"{escape(cur['currency'])} vol cone ({ESTIMATOR_LABEL.get(cone['estimator'], cone['estimator'])} RV "
             f"{_span(cone['history_start'], cone['history_end'])}): ◆ IV {escape(cur['source'])} "
             f"{_day(cur.get('iv_as_of'))} · ● RV now · ┃ median")
    return fit_rows(title, _with_notes(columns, cone["rows"], 3), cone["rows"], width=console.width)


def _premium(console: Console, cur: dict) -> Table | str:
    if not cur["premium"]["now"]:
        return f"{escape(cur['currency'])} variance premium: n/a (no {escape(cur['source'])} IV)"
    columns: list[CellColumn] = [
        ("tenor", "right", 0, lambda r: f"{r['tenor_days']}d"),
        ("day", "left", 0, lambda r: _day(r["day"])),
        ("IV", "right", 0, lambda r: _pct(r["iv"])),
        ("RV (trailing)", "right", 0, lambda r: _pct(r["rv"])),
        ("IV − RV (pts)", "right", 0, lambda r: _pts(r["premium_vol"])),
        ("IV² − RV²", "right", 0, lambda r: _num(r["premium_variance"], 3)),
    ]
    rows = cur["premium"]["now"]
    title = f"{escape(cur['currency'])} variance premium: {escape(cur['source'])} ATM IV − trailing close-close RV"
    return fit_rows(title, _with_notes(columns, rows, 1), rows, width=console.width)


def sparkline(cur: dict, width: int) -> str:
    """Two sparklines on one scale: the 30-day ATM IV and the trailing 30-day RV on the last `width` IV days
    (the last `width` days of RV when there is no IV history)."""
    rv = next((s for s in cur["rv_history"]["series"] if s["window_days"] == 30), None)
    if rv is None:
        return ""
    rv_by_day = dict(zip((d[:10] for d in cur["rv_history"]["day"]), rv["vol"]))
    iv = next((s for s in cur["iv_history"]["series"] if s["tenor_days"] == 30), None)
    if iv is not None and any(_ok(v) for v in iv["iv"]):
        days = [d[:10] for d in cur["iv_history"]["day"]][-width:]
        ivs = iv["iv"][-width:]
        rvs = [rv_by_day.get(d) for d in days]
    else:
        days = [d[:10] for d in cur["rv_history"]["day"]][-width:]
        ivs, rvs = [], rv["vol"][-width:]
    both = [v for v in (*ivs, *rvs) if _ok(v)]
    if not both:
        return ""
    lo, hi = min(both), max(both)
    last_iv = next((v for v in reversed(ivs) if _ok(v)), None)
    last_rv = next((v for v in reversed(rvs) if _ok(v)), None)
    head = f"{escape(cur['currency'])} {days[0]}..{days[-1]} (scale {_pct(lo)}–{_pct(hi)})"
    lines = [head]
    if ivs:
        lines.append(f"  IV 30d {escape(cur['source']):5} [magenta]{spark(ivs, lo, hi)}[/] {_pct(last_iv)}")
    lines.append(f"  RV 30d c-c   [cyan]{spark(rvs, lo, hi)}[/] {_pct(last_rv)}")
    return "\n".join(lines)


def _best_models(cur: dict) -> dict[int, str]:
    return {b["horizon_days"]: b["model"] for b in cur["best"] if b["model"]}


def _forecasts(console: Console, cur: dict) -> Table:
    by = {(f["model"], f["horizon_days"]): f for f in cur["forecasts"]}
    horizons = sorted({f["horizon_days"] for f in cur["forecasts"]})
    best = _best_models(cur)
    rows = [{"model": m, **{h: by.get((m, h)) for h in horizons}} for m in MODELS if any((m, h) in by for h in horizons)]

    def cell(h):
        def text(r):
            f = r[h]
            if f is None:
                return "–"
            star = " ★" if best.get(h) == r["model"] else ""
            return (_pct(f["vol"]) + star) if f["vol"] is not None else "n/a"
        return text

    first = next(iter(by.values()), None)
    columns: list[CellColumn] = [
        ("model", "left", 0, lambda r: MODEL_LABEL.get(r["model"], escape(r["model"]))),
        *[(f"{h}d RV", "right", 0, cell(h)) for h in horizons],
        ("fitted on", "right", 1, lambda r: str(max((r[h]["n_obs"] for h in horizons if r[h]), default=0) or "–")),
        ("fitted through", "left", 2, lambda r: _day(next((r[h]["fitted_through"] for h in horizons
                                                            if r[h] and r[h]["fitted_through"]), None))),
    ]
    target = f" from the close of {_day(first['origin'])}" if first else ""
    return fit_rows(f"{escape(cur['currency'])} RV forecasts{target} (★ best out of sample)",
                    columns, rows, width=console.width)


def _scores(console: Console, cur: dict) -> Table | str:
    ev = cur.get("evaluation")
    if ev is None:
        return f"{escape(cur['currency'])} out-of-sample scores: {escape(cur.get('evaluation_reason') or 'n/a')}"
    by = {(s["model"], s["horizon_days"]): s for s in ev["scores"]}
    horizons = ev["horizons"]
    best = {(b["horizon_days"], b["loss"]): b["model"] for b in ev["best"]}
    rows = [{"model": m, **{h: by.get((m, h)) for h in horizons}} for m in MODELS]

    def metric(h, key, fmt, loss=None):
        def text(r):
            s = r[h]
            if s is None or s[key] is None:
                return "n/a"
            value = fmt(s[key])
            return f"[bold]{value}[/]" if loss and best.get((h, loss)) == r["model"] else value
        return text

    columns: list[CellColumn] = [("model", "left", 0, lambda r: MODEL_LABEL.get(r["model"], escape(r["model"])))]
    for i, h in enumerate(horizons):      # RMSE columns go when too wide, the shortest horizon's first
        columns += [(f"{h}d QLIKE", "right", 0, metric(h, "qlike", _num, "qlike")),
                    (f"{h}d MSE", "right", 0, metric(h, "mse", _num, "mse")),
                    (f"{h}d RMSE", "right", len(horizons) - i, metric(h, "rmse_vol", _pct))]
    table = fit_rows(f"{escape(cur['currency'])} out-of-sample scores (same origins for every model; "
                              f"bold = lowest)", columns, rows, width=console.width)
    return table


def _score_notes(console: Console, cur: dict) -> None:
    ev = cur.get("evaluation")
    if ev is None:
        return
    n = {h: max((s["n"] for s in ev["scores"] if s["horizon_days"] == h), default=0) for h in ev["horizons"]}
    _notes(console, [f"origins {_span(ev['eval_start'], ev['eval_end'])}, scored on "
                     + ", ".join(f"{c} at {h}d" for h, c in n.items())
                     + f"; refit every {ev['refit_every_days']} d ({ev['n_refits']} refits) on "
                     f"{ev['train_days'] or 'all'} d; losses on annualised variance, RMSE in vol",
                     *sorted({f"{MODEL_LABEL.get(s['model'], s['model'])} {s['horizon_days']}d: {s['reason']}"
                              for s in ev["scores"] if s["reason"]})])


# ----------------------------------------------------------------------------------------------- CSV

#: `--csv`: one row per currency, model and horizon; forecast_* from the last price day, the scores out of sample
FORECAST_COLUMNS = ("currency", "source", "as_of", "model", "horizon_days", "origin", "target_start", "target_end",
                    "forecast_vol", "forecast_variance", "n_obs", "fitted_through", "forecast_reason", "n_scored",
                    "qlike", "mse", "rmse_vol", "mean_forecast_vol", "mean_realised_vol", "score_reason", "best")


def forecast_rows(view: dict) -> list[dict]:
    """The forecast and out-of-sample score tables of every currency as flat rows: `best` marks the model with
    the lowest QLIKE at that horizon (the ★ of the table). Currencies without a result have no row."""
    out = []
    for cur in view["currencies"]:
        if cur.get("reason"):
            continue
        forecasts = {(f["model"], f["horizon_days"]): f for f in cur["forecasts"]}
        scores = {(s["model"], s["horizon_days"]): s for s in (cur.get("evaluation") or {}).get("scores", [])}
        best = _best_models(cur)
        keys = sorted(forecasts.keys() | scores.keys(),
                      key=lambda k: (k[1], MODELS.index(k[0]) if k[0] in MODELS else len(MODELS), k[0]))
        for model, horizon in keys:
            f, s = forecasts.get((model, horizon), {}), scores.get((model, horizon), {})
            out.append({"currency": cur["currency"], "source": cur["source"], "as_of": cur["as_of"], "model": model,
                        "horizon_days": horizon, "origin": f.get("origin"), "target_start": f.get("target_start"),
                        "target_end": f.get("target_end"), "forecast_vol": f.get("vol"),
                        "forecast_variance": f.get("variance"), "n_obs": f.get("n_obs"),
                        "fitted_through": f.get("fitted_through"), "forecast_reason": f.get("reason"),
                        "n_scored": s.get("n"), "qlike": s.get("qlike"), "mse": s.get("mse"),
                        "rmse_vol": s.get("rmse_vol"), "mean_forecast_vol": s.get("mean_forecast_vol"),
                        "mean_realised_vol": s.get("mean_realised_vol"), "score_reason": s.get("reason"),
                        "best": best.get(horizon) == model})
    return out
