"""Plotly figures of the Market page (`qortview.market.market_page` data), in the viewer's theme."""

from __future__ import annotations

import plotly.graph_objects as go

from qortview.figures import ACCENT, BAD, GOOD, MUTED, _layout, empty

LEVEL_STYLE = {"spot": ("#E5E7EB", "dot"), "forward": ("#60A5FA", "dash"), "max pain (coin)": ("#FBBF24", "solid"),
               "max pain (USD)": ("#F0ABFC", "dashdot"), "gamma flip": (ACCENT, "dash")}


def _window(spot, strikes: list, wide: float = 0.45) -> list | None:
    """The x range shown: ±`wide` around spot, within the listed strikes."""
    if not spot or not strikes:
        return None
    return [max(min(strikes), spot * (1 - wide)), min(max(strikes), spot * (1 + wide))]


def _mark_levels(fig: go.Figure, levels: dict) -> None:
    marks = {"spot": levels.get("spot_usd"), "forward": levels.get("forward_usd"),
             "max pain (coin)": levels.get("max_pain_coin_payoff_usd"),
             "max pain (USD)": levels.get("max_pain_usd_payoff_usd"), "gamma flip": levels.get("gamma_flip_usd_marks")}
    for name, x in marks.items():
        if x is None:
            continue
        color, dash = LEVEL_STYLE[name]
        fig.add_vline(x=x, line={"color": color, "dash": dash, "width": 1.5})
        fig.add_trace(go.Scatter(x=[x], y=[0], mode="markers", name=f"{name} {x:,.0f}",
                                 marker={"color": color, "size": 8, "symbol": "diamond"}))


def oi_by_strike(page: dict) -> go.Figure:
    """Open interest by strike in contracts: calls up, puts down; spot, forward, max pains and flip marked."""
    oi = page.get("oi") or {}
    if not oi.get("strike_usd"):
        return empty("no open interest")
    fig = go.Figure()
    fig.add_trace(go.Bar(x=oi["strike_usd"], y=oi["calls_coin"], name="calls OI", marker_color=GOOD,
                         customdata=oi["calls_usd"], hovertemplate="K %{x:,.0f}: %{y:,.1f} calls ($%{customdata:,.0f})"
                                                                  "<extra></extra>"))
    fig.add_trace(go.Bar(x=oi["strike_usd"], y=[-v for v in oi["puts_coin"]], name="puts OI", marker_color=BAD,
                         customdata=oi["puts_usd"], hovertemplate="K %{x:,.0f}: %{y:,.1f} puts ($%{customdata:,.0f})"
                                                                 "<extra></extra>"))
    _mark_levels(fig, page.get("levels") or {})
    title = f"Open interest by strike · {page.get('expiry') or 'all expiries'} (contracts; puts below zero)"
    return _layout(fig, title, 420, uirevision=f"oi-{page.get('currency')}-{page.get('expiry')}", barmode="relative",
                   xaxis_title="strike (USD)", yaxis_title="contracts (coin)",
                   xaxis_range=_window(page.get("spot_usd"), oi["strike_usd"]))


def gex_profile(page: dict) -> go.Figure:
    """Net dealer gamma exposure (USD per 1 % move) against the spot level, with the flip and the spot marked."""
    gex = page.get("gex") or {}
    if not gex.get("spot_usd"):
        return empty("no gamma profile")
    fig = go.Figure(go.Scatter(x=gex["spot_usd"], y=gex["gex_usd_per_pct_marks"], mode="lines", name="net GEX",
                               line={"color": ACCENT, "width": 3}, fill="tozeroy",
                               hovertemplate="spot %{x:,.0f}: %{y:$,.3s} per 1 %<extra></extra>"))
    fig.add_trace(go.Bar(x=gex["strike_usd"], y=gex["net"], name="GEX by strike (at spot)", marker_color=MUTED,
                         opacity=0.6, hovertemplate="K %{x:,.0f}: %{y:$,.3s} per 1 %<extra></extra>"))
    fig.add_hline(y=0, line={"color": "#6B6475", "width": 1})
    levels = page.get("levels") or {}
    _mark_levels(fig, {"spot_usd": levels.get("spot_usd"), "gamma_flip_usd_marks": levels.get("gamma_flip_usd_marks")})
    return _layout(fig, "Dealer gamma exposure, repriced across spot (marks, sticky strike)", 380,
                   uirevision=f"gex-{page.get('currency')}-{page.get('expiry')}",
                   xaxis_title="spot (USD)", yaxis_title="USD per 1 % move",
                   xaxis_range=[min(gex["spot_usd"]), max(gex["spot_usd"])])
