"""Plotly figures of the query results, in the viewer's dark purple theme (no Reflex here)."""

from __future__ import annotations

import plotly.graph_objects as go

PRIMARY = "#4C1D95"
SECONDARY = "#7C3AED"
BACKGROUND = "#1F1B24"
PANEL = "#2A2433"
TEXT = "#E5E7EB"
ACCENT = "#A855F7"
MUTED = "#9CA3AF"
GOOD = "#34D399"
BAD = "#F87171"
COLORWAY = [ACCENT, "#F0ABFC", "#60A5FA", "#FBBF24", GOOD, BAD, "#C4B5FD", "#F472B6", "#22D3EE", "#A3E635"]


def _layout(fig: go.Figure, title: str = "", height: int = 360, **kwargs) -> go.Figure:
    layout = dict(
        title={"text": title, "font": {"size": 14, "color": TEXT}} if title else None,
        paper_bgcolor=BACKGROUND, plot_bgcolor=PANEL, font={"color": TEXT, "size": 12},
        colorway=COLORWAY, height=height, autosize=True, margin={"l": 56, "r": 20, "t": 40 if title else 16, "b": 44},
        legend={"bgcolor": "rgba(0,0,0,0)", "orientation": "h", "y": -0.2},
    )
    layout = {**layout, **kwargs}
    fig.update_layout(**layout)
    fig.update_xaxes(gridcolor="#3B3346", zerolinecolor="#4B4357")
    fig.update_yaxes(gridcolor="#3B3346", zerolinecolor="#4B4357")
    return fig


def empty(message: str = "no data", height: int = 240) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font={"color": MUTED, "size": 14}, x=0.5, y=0.5,
                       xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, height=height)


def smiles(vol: dict, max_expiries: int = 6) -> go.Figure:
    """Mark IV (points) and the SVI fit (lines) against log-moneyness ln(K/F), one colour per expiry."""
    chosen = [s for s in vol.get("smiles", []) if s["days"] >= 1.0][:max_expiries] or vol.get("smiles", [])[:max_expiries]
    if not chosen:
        return empty("no smiles")
    fig = go.Figure()
    for i, s in enumerate(chosen):
        color = COLORWAY[i % len(COLORWAY)]
        fig.add_trace(go.Scatter(x=s["k"], y=[100 * v for v in s["iv"]], mode="markers", name=f"{s['expiry']} marks",
                                 marker={"size": 6, "color": color}, legendgroup=s["expiry"],
                                 customdata=s["strike"], hovertemplate="K %{customdata:,.0f}<br>IV %{y:.1f}%<extra></extra>"))
        if s["fit_k"]:
            fig.add_trace(go.Scatter(x=s["fit_k"], y=[100 * v for v in s["fit_iv"]], mode="lines", name=f"{s['expiry']} SVI",
                                     line={"color": color, "width": 2}, legendgroup=s["expiry"]))
    return _layout(fig, "Smile per expiry: marks and SVI fit", 420, xaxis_title="log-moneyness ln(K/F)",
                   yaxis_title="implied vol (%)")


def term_structure(vol: dict) -> go.Figure:
    term = [t for t in vol.get("term", []) if t.get("atm_iv_marks") is not None]
    if not term:
        return empty("no ATM term structure")
    fig = go.Figure(go.Scatter(x=[t["days"] for t in term], y=[100 * t["atm_iv_marks"] for t in term], mode="lines+markers",
                               text=[t["expiry"] for t in term], line={"color": ACCENT, "width": 3},
                               hovertemplate="%{text}: %{y:.1f}% at %{x:.1f} d<extra></extra>", name="ATM IV (marks)"))
    fit = [t for t in term if t.get("atm_iv_svi") is not None]
    if fit:
        fig.add_trace(go.Scatter(x=[t["days"] for t in fit], y=[100 * t["atm_iv_svi"] for t in fit], mode="lines",
                                 line={"color": SECONDARY, "width": 2, "dash": "dot"}, name="ATM IV (SVI)"))
    if vol.get("atm_iv_30d_marks") is not None:
        fig.add_trace(go.Scatter(x=[30], y=[100 * vol["atm_iv_30d_marks"]], mode="markers", name="30-day ATM (marks)",
                                 marker={"size": 12, "color": "#FBBF24", "symbol": "diamond"}))
    return _layout(fig, "ATM term structure", 340, xaxis_title="days to expiry", yaxis_title="ATM implied vol (%)",
                   xaxis_type="log")


def skew(vol: dict) -> go.Figure:
    term = [t for t in vol.get("term", []) if t.get("rr25_marks") is not None]
    if not term:
        return empty("no 25-delta quotes")
    x = [t["expiry"] for t in term]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=x, y=[100 * t["rr25_marks"] for t in term], name="RR25 marks (call − put)",
                         marker_color=SECONDARY))
    fig.add_trace(go.Bar(x=x, y=[100 * (t["bf25_marks"] or 0) for t in term], name="BF25 marks", marker_color=ACCENT))
    if any(t.get("rr25_svi") is not None for t in term):
        fig.add_trace(go.Scatter(x=x, y=[None if t.get("rr25_svi") is None else 100 * t["rr25_svi"] for t in term],
                                 mode="markers", name="RR25 SVI", marker={"symbol": "diamond", "size": 9}))
    return _layout(fig, "25-delta risk reversal and butterfly", 340, barmode="group", yaxis_title="vol points")


def surface3d(vol: dict) -> go.Figure:
    """The fitted surface (IV over log-moneyness × days) with the market marks as points."""
    fig = go.Figure()
    grid = vol.get("surface")
    market = [v for s in vol.get("smiles", []) for v in s["iv"]]
    cap = 1.25 * max(market) if market else float("inf")  # hide the fit's extrapolated wings beyond the quotes
    if grid:
        z = [[(100 * v if v is not None and v <= cap else None) for v in row] for row in grid["iv"]]
        fig.add_trace(go.Surface(x=grid["k"], y=grid["days"], z=z, colorscale=[[0, PRIMARY], [0.5, SECONDARY], [1, "#F0ABFC"]],
                                 opacity=0.85, showscale=False, name="SVI surface"))
    xs, ys, zs = [], [], []
    for s in vol.get("smiles", []):
        xs += s["k"]
        ys += [s["days"]] * len(s["k"])
        zs += [100 * v for v in s["iv"]]
    if xs:
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="markers", name="marks",
                                   marker={"size": 2.5, "color": "#FBBF24"}))
    if not fig.data:
        return empty("no surface")
    fig = _layout(fig, "Implied volatility surface" + ("" if grid else " (marks only: run `qortcli surface` for the fit)"), 520)
    fig.update_layout(scene={"xaxis": {"title": "ln(K/F)", "backgroundcolor": PANEL, "gridcolor": "#3B3346"},
                             "yaxis": {"title": "days", "backgroundcolor": PANEL, "gridcolor": "#3B3346"},
                             "zaxis": {"title": "IV (%)", "backgroundcolor": PANEL, "gridcolor": "#3B3346"},
                             "bgcolor": BACKGROUND})
    return fig


def weights_bar(rows: list[dict], key: str, title: str) -> go.Figure:
    if not rows:
        return empty("no weights")
    fig = go.Figure(go.Bar(x=[r[key] for r in rows], y=[100 * r["weight"] for r in rows], marker_color=ACCENT,
                           text=[f"{100 * r['weight']:.1f}%" for r in rows], textposition="outside"))
    return _layout(fig, title, 320, yaxis_title="weight (%)")


def equity(bt: dict) -> go.Figure:
    if not bt or not bt.get("dates"):
        return empty("no backtest")
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=bt["dates"], y=bt["equity"], mode="lines", name="portfolio", line={"color": ACCENT, "width": 2}))
    if bt.get("benchmark_equity"):
        fig.add_trace(go.Scatter(x=bt["dates"], y=bt["benchmark_equity"], mode="lines", name="equal weight",
                                 line={"color": MUTED, "width": 1.5, "dash": "dot"}))
    return _layout(fig, f"Backtest equity: {bt.get('kind') or ''}", 360, yaxis_title="growth of 1", yaxis_type="log")


def payoff(card: dict) -> go.Figure:
    """P/L at expiry against the index price at expiry, in USD (left axis) and in coin (right axis)."""
    p = card.get("payoff") or {}
    if not p.get("s_usd"):
        return empty("no payoff grid", 220)
    fig = go.Figure()
    if p.get("pnl_usd"):
        fig.add_trace(go.Scatter(x=p["s_usd"], y=p["pnl_usd"], mode="lines", name="P/L USD", line={"color": ACCENT, "width": 2}))
    if p.get("pnl_coin"):
        fig.add_trace(go.Scatter(x=p["s_usd"], y=p["pnl_coin"], mode="lines", name="P/L coin", yaxis="y2",
                                 line={"color": "#60A5FA", "width": 1.5, "dash": "dot"}))
    if card.get("index_usd"):
        fig.add_vline(x=card["index_usd"], line={"color": MUTED, "dash": "dash", "width": 1})
    fig.add_hline(y=0, line={"color": "#6B6475", "width": 1})
    return _layout(fig, "", 240, xaxis_title="index at expiry (USD)", yaxis_title="USD",
                   yaxis2={"title": "coin", "overlaying": "y", "side": "right", "showgrid": False},
                   margin={"l": 56, "r": 56, "t": 10, "b": 40})
