"""Plotly figures of the History page (`qortview.history.history_page` data), in the viewer's theme."""

from __future__ import annotations

import plotly.graph_objects as go

from qortview.figures import ACCENT, BAD, GOOD, MUTED, SECONDARY, _layout, empty

MEASURES = {"atm_iv_30d": "ATM IV 30d", "rr25_30d": "RR25 30d", "bf25_30d": "BF25 30d", "term_slope": "term slope"}
LOOKBACK_COLORS = {30: "#C4B5FD", 90: "#A855F7", 180: "#7C3AED", 365: "#4C1D95"}
BLUE, YELLOW = "#60A5FA", "#FBBF24"


def _pct(values: list) -> list:
    return [None if v is None else 100 * v for v in values]


def iv_rv_forecast(page: dict) -> go.Figure:
    """30-day ATM IV against the trailing 30-day RV, with the best model's 30-day forecast made on each day and
    the RV that followed (out of sample), in %."""
    ivrv = page.get("iv_rv") or {}
    if not ivrv.get("day") and not ivrv.get("origin"):
        return empty("no IV history")
    src = page.get("source", "marks")
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=ivrv["day"], y=_pct(ivrv["atm_iv_30d"]), mode="lines", name=f"ATM IV 30d ({src})",
                             line={"color": ACCENT, "width": 3}, hovertemplate="%{x|%Y-%m-%d}: IV %{y:.1f}%<extra></extra>"))
    if any(v is not None for v in ivrv.get("rv_30d") or []):
        fig.add_trace(go.Scatter(x=ivrv["day"], y=_pct(ivrv["rv_30d"]), mode="lines", name="RV 30d trailing (close-close)",
                                 line={"color": BLUE, "width": 2}, hovertemplate="%{x|%Y-%m-%d}: RV %{y:.1f}%<extra></extra>"))
    if ivrv.get("origin"):
        model = ivrv.get("forecast_model") or "best model"
        fig.add_trace(go.Scatter(x=ivrv["origin"], y=_pct(ivrv["forecast_30d"]), mode="lines",
                                 name=f"30d forecast made that day ({model}, out of sample)",
                                 line={"color": YELLOW, "width": 2, "dash": "dash"}))
        fig.add_trace(go.Scatter(x=ivrv["origin"], y=_pct(ivrv["realised_next_30d"]), mode="lines",
                                 name="RV of the next 30 days (ex post)", line={"color": GOOD, "width": 1.5, "dash": "dot"}))
    return _layout(fig, "ATM IV vs realised vol and the 30-day forecast", 420, yaxis_title="annualised vol (%)",
                   hovermode="x unified")


def ranks(page: dict) -> go.Figure:
    """Percentile of today's value within each lookback, per measure (bars), rank as diamonds; n/a left out."""
    rows = page.get("ranks") or []
    if not rows:
        return empty("no ranks stored: run `qortcli vol`")
    fig = go.Figure()
    for lookback, color in LOOKBACK_COLORS.items():
        sel = [r for r in rows if r["lookback_days"] == lookback]
        if not sel:
            continue
        x = [MEASURES.get(r["measure"], r["measure"]) for r in sel]
        fig.add_trace(go.Bar(x=x, y=[None if r["percentile"] is None else 100 * r["percentile"] for r in sel],
                             name=f"percentile {lookback}d", marker_color=color,
                             customdata=[[r["n_points"], r["reason"] or ""] for r in sel],
                             hovertemplate="%{x}: %{y:.0f}% of %{customdata[0]} points %{customdata[1]}<extra></extra>"))
        fig.add_trace(go.Scatter(x=x, y=[None if r["rank"] is None else 100 * r["rank"] for r in sel], mode="markers",
                                 name=f"rank {lookback}d", marker={"symbol": "diamond", "size": 9, "color": color,
                                                                   "line": {"color": "white", "width": 1}},
                                 showlegend=lookback == 365))
    return _layout(fig, f"Rank and percentile of today's value ({page.get('source', 'marks')})", 360, barmode="group",
                   yaxis_title="% of the lookback", yaxis_range=[0, 100])


def skew_history(page: dict) -> go.Figure:
    """RR25 and BF25 at 30 (and 7) days over time, in vol points."""
    skew = page.get("skew") or {}
    if not skew.get("day"):
        return empty("no skew history")
    src = page.get("source", "marks")
    fig = go.Figure()
    for key, name, color, dash, width in (("rr25_30d", "RR25 30d", SECONDARY, "solid", 3),
                                          ("bf25_30d", "BF25 30d", YELLOW, "solid", 3),
                                          ("rr25_7d", "RR25 7d", "#C4B5FD", "dot", 1.5),
                                          ("bf25_7d", "BF25 7d", "#FDE68A", "dot", 1.5)):
        values = skew.get(key) or []
        if any(v is not None for v in values):
            fig.add_trace(go.Scatter(x=skew["day"], y=_pct(values), mode="lines", name=f"{name} ({src})",
                                     line={"color": color, "dash": dash, "width": width}))
    fig.add_hline(y=0, line={"color": "#6B6475", "width": 1})
    return _layout(fig, "25-delta risk reversal (call − put) and butterfly", 340, yaxis_title="vol points",
                   hovermode="x unified")


def cone(page: dict) -> go.Figure:
    """The vol cone (min–max and 25–75 % bands, median) of rolling RV by window, today's RV, and today's ATM
    term structure over it (constant maturities from the analysis, listed expiries from the newest summary)."""
    c = page.get("cone") or {}
    w = c.get("window_days") or []
    if not w:
        return empty("no vol cone stored: run `qortcli vol`")
    fig = go.Figure()

    def band(lo, hi, name, color):
        fig.add_trace(go.Scatter(x=w, y=_pct(c[hi]), mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=w, y=_pct(c[lo]), mode="lines", line={"width": 0}, fill="tonexty", fillcolor=color,
                                 name=name, hoverinfo="skip"))

    band("min", "max", "RV min–max", "rgba(168, 85, 247, 0.15)")
    band("q25", "q75", "RV 25–75 %", "rgba(168, 85, 247, 0.35)")
    fig.add_trace(go.Scatter(x=w, y=_pct(c["median"]), mode="lines+markers", name="RV median",
                             line={"color": ACCENT, "width": 2}))
    fig.add_trace(go.Scatter(x=w, y=_pct(c["current_rv"]), mode="markers", name="RV today",
                             marker={"color": BLUE, "size": 10, "symbol": "circle"}))
    term = page.get("term") or {}
    src = page.get("source", "marks")
    if term.get("tenor_days"):
        fig.add_trace(go.Scatter(x=term["tenor_days"], y=_pct(term["iv"]), mode="lines+markers",
                                 name=f"ATM IV constant maturity ({src}, {str(page.get('iv_as_of') or '')[:10]})",
                                 line={"color": YELLOW, "width": 3}, marker={"symbol": "diamond", "size": 10}))
    listed = term.get("listed") or {}
    top = 1.2 * max(w)
    keep = [i for i, d in enumerate(listed.get("days") or []) if 1.0 <= d <= top]
    if keep:
        fig.add_trace(go.Scatter(x=[listed["days"][i] for i in keep], y=[100 * listed["atm_iv"][i] for i in keep],
                                 mode="markers", name=f"ATM IV listed expiries ({src})", text=[listed["expiry_code"][i] for i in keep],
                                 marker={"color": BAD, "size": 7, "symbol": "x"},
                                 hovertemplate="%{text}: %{y:.1f}% at %{x:.1f} d<extra></extra>"))
    span = f"{str(c.get('history_start') or '')[:10]} … {str(c.get('history_end') or '')[:10]}"
    return _layout(fig, f"Vol cone (close-close RV, {span}) with today's term structure", 420,
                   xaxis_title="window / tenor (days)", yaxis_title="annualised vol (%)", xaxis_type="log",
                   legend={"bgcolor": "rgba(0,0,0,0)", "orientation": "h", "y": -0.25, "font": {"color": MUTED}})
