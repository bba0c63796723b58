"""Plotly figures of the page data, in the viewer's dark royal purple theme (no Reflex here).

Every figure carries a `uirevision` (one per chart and selection): a refresh that brings new data keeps the
user's zoom, pan, legend choices and 3D camera; changing the currency or expiry starts afresh. Titles live in
the page (they wrap on a phone); the figures carry axis titles with units, no template (small payloads).
"""

from __future__ import annotations

import json
import math

import plotly.graph_objects as go
import plotly.io as pio

PRIMARY = "#4C1D95"
SECONDARY = "#7C3AED"
BACKGROUND = "#1F1B24"
PANEL = "#2A2433"
TEXT = "#E5E7EB"
ACCENT = "#A855F7"
MUTED = "#9CA3AF"
GRID = "#3B3346"
GOOD = "#34D399"
BAD = "#F87171"
WARN = "#FBBF24"
COLORWAY = [ACCENT, "#F0ABFC", "#60A5FA", WARN, GOOD, BAD, "#C4B5FD", "#F472B6", "#22D3EE", "#A3E635"]
PLOT_CONFIG = {"displaylogo": False, "responsive": True,
               "modeBarButtonsToRemove": ["lasso2d", "select2d", "toImage"]}


def _layout(fig: go.Figure, title: str = "", height: int = 360, uirevision: str | None = None, **kwargs) -> go.Figure:
    """The theme: dark panel, purple colourway, legend under the plot, no template; `uirevision` keeps the
    user's view across data refreshes (default: the title, else "chart")."""
    layout = dict(
        template=None, title=None,
        paper_bgcolor=PANEL, plot_bgcolor=PANEL, font={"color": TEXT, "size": 12, "family": "Inter, system-ui, sans-serif"},
        colorway=COLORWAY, height=height, autosize=True, margin={"l": 56, "r": 16, "t": 12, "b": 44},
        legend={"bgcolor": "rgba(0,0,0,0)", "orientation": "h", "y": -0.18, "x": 0, "font": {"size": 11}},
        hoverlabel={"bgcolor": BACKGROUND, "bordercolor": ACCENT, "font": {"color": TEXT}},
        uirevision=uirevision or title or "chart",
    )
    fig.update_layout(**{**layout, **kwargs})
    fig.update_xaxes(gridcolor=GRID, zerolinecolor="#4B4357", linecolor=GRID, automargin=True)
    fig.update_yaxes(gridcolor=GRID, zerolinecolor="#4B4357", linecolor=GRID, automargin=True)
    return fig


def plain(fig: go.Figure) -> dict:
    """The figure as the plain JSON dict a state var holds (cheap to copy and to send; no plotly objects)."""
    return json.loads(pio.to_json(fig, validate=False))


def empty(message: str = "no data", height: int = 240) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font={"color": MUTED, "size": 14}, x=0.5, y=0.5,
                       xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, height=height, uirevision="empty")


def _pct(values) -> list:
    return [None if v is None else round(100 * v, 3) for v in values]


def _log_ticks(lo: float, hi: float, candidates=(0.25, 0.5, 1, 2, 5, 7, 14, 30, 60, 90, 180, 365, 730)) -> list:
    return [c for c in candidates if lo * 0.8 <= c <= hi * 1.25] or [lo, hi]


# --------------------------------------------------------------------------------------------- volatility

def smile(vol: dict, expiry: str) -> go.Figure:
    """One expiry's smile against strike: OTM mark IVs with their bid–ask IV range (from `price`) and the SVI
    fit on the quoted range; the forward marked. `expiry` "all" overlays every expiry against ln(K/F)."""
    smiles = vol.get("smiles") or []
    if not smiles:
        return empty("no smiles")
    if expiry == "all":
        return smiles_all(vol)
    s = next((x for x in smiles if x["expiry"] == expiry), smiles[0])
    fig = go.Figure()
    iv, bid, ask = s["mark_iv"], s["iv_bid"], s["iv_ask"]
    plus = [None if a is None or m is None else round(100 * (a - m), 3) for a, m in zip(ask, iv)]
    minus = [None if b is None or m is None else round(100 * (m - b), 3) for b, m in zip(bid, iv)]
    fig.add_trace(go.Scatter(
        x=s["strike_usd"], y=_pct(iv), mode="markers", name="mark IV (OTM quotes)", marker={"size": 7, "color": ACCENT},
        error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "color": "#6D5A8A",
                 "thickness": 1.2, "width": 3},
        customdata=list(zip(s["k"], s["delta"])),
        hovertemplate="K %{x:,.0f} (k %{customdata[0]:.3f}, Δ %{customdata[1]:.2f})<br>mark IV %{y:.2f}%"
                      "<extra>bars: bid–ask IV</extra>"))
    if s["fit_k"]:
        strikes = [s["forward_usd"] * math.exp(k) for k in s["fit_k"]]
        fig.add_trace(go.Scatter(x=strikes, y=_pct(s["fit_iv"]), mode="lines", name="SVI fit (quoted range)",
                                 line={"color": "#F0ABFC", "width": 2.5},
                                 hovertemplate="K %{x:,.0f}<br>SVI %{y:.2f}%<extra></extra>"))
    fig.add_vline(x=s["forward_usd"], line={"color": MUTED, "dash": "dot", "width": 1})
    fig.add_annotation(x=s["forward_usd"], y=1, yref="paper", text=f"F {s['forward_usd']:,.0f}", showarrow=False,
                       font={"color": MUTED, "size": 11}, yanchor="bottom")
    return _layout(fig, height=380, uirevision=f"smile-{vol.get('currency')}-{s['expiry']}",
                   xaxis_title="strike (USD)", yaxis_title="implied vol (%)", margin={"l": 56, "r": 16, "t": 22, "b": 44})


def smiles_all(vol: dict) -> go.Figure:
    """Every expiry's OTM mark IVs (points) and SVI fit (lines) against log-moneyness ln(K/F)."""
    fig = go.Figure()
    smiles = vol.get("smiles") or []
    for i, s in enumerate(smiles):
        color = COLORWAY[i % len(COLORWAY)]
        label = f"{s['expiry']} ({s['days']:.0f} d)" if s["days"] >= 1 else f"{s['expiry']} ({s['days'] * 24:.0f} h)"
        fig.add_trace(go.Scatter(x=s["k"], y=_pct(s["mark_iv"]), mode="markers", name=label, legendgroup=s["expiry"],
                                 marker={"size": 5, "color": color}, customdata=s["strike_usd"],
                                 hovertemplate=f"{s['expiry']} K %{{customdata:,.0f}}<br>mark IV %{{y:.2f}}%<extra></extra>"))
        if s["fit_k"]:
            fig.add_trace(go.Scatter(x=s["fit_k"], y=_pct(s["fit_iv"]), mode="lines", showlegend=False,
                                     legendgroup=s["expiry"], line={"color": color, "width": 1.6}, hoverinfo="skip"))
    return _layout(fig, height=380, uirevision=f"smiles-{vol.get('currency')}", xaxis_title="log-moneyness ln(K/F)",
                   yaxis_title="implied vol (%)")


def term_structure(vol: dict) -> go.Figure:
    """ATM IV per listed expiry from marks and from SVI (log days axis), the constant maturities of the
    summary (marks) and the 30-day variance-swap vol of the SVI fit."""
    term = [t for t in vol.get("term") or [] if t.get("days")]
    if not term:
        return empty("no ATM term structure")
    fig = go.Figure()
    marks = [t for t in term if t.get("atm_iv_marks") is not None]
    fig.add_trace(go.Scatter(x=[t["days"] for t in marks], y=_pct(t["atm_iv_marks"] for t in marks), mode="lines+markers",
                             name="ATM IV, marks", text=[t["expiry"] for t in marks], line={"color": ACCENT, "width": 3},
                             hovertemplate="%{text}: %{y:.2f}% at %{x:.1f} d<extra>marks</extra>"))
    fit = [t for t in term if t.get("atm_iv_svi") is not None]
    if fit:
        fig.add_trace(go.Scatter(x=[t["days"] for t in fit], y=_pct(t["atm_iv_svi"] for t in fit), mode="lines",
                                 name="ATM IV, SVI", line={"color": "#F0ABFC", "width": 2, "dash": "dot"},
                                 hovertemplate="%{y:.2f}% at %{x:.1f} d<extra>SVI</extra>"))
    cm = [t for t in vol.get("tenors") or [] if t.get("atm_iv_marks") is not None]
    if cm:
        fig.add_trace(go.Scatter(x=[t["tenor_days"] for t in cm], y=_pct(t["atm_iv_marks"] for t in cm), mode="markers",
                                 name="constant maturity, marks", marker={"size": 10, "color": WARN, "symbol": "diamond"},
                                 hovertemplate="%{x:.0f}-day ATM IV %{y:.2f}%<extra>marks</extra>"))
    if vol.get("vs_vol_30d_svi") is not None:
        fig.add_trace(go.Scatter(x=[30], y=[round(100 * vol["vs_vol_30d_svi"], 3)], mode="markers",
                                 name="30-day var-swap vol, SVI (DVOL-like)",
                                 marker={"size": 11, "color": GOOD, "symbol": "star"},
                                 hovertemplate="30-day variance-swap vol %{y:.2f}%<extra>SVI</extra>"))
    days = [t["days"] for t in term]
    ticks = _log_ticks(min(days), max(days))
    return _layout(fig, height=360, uirevision=f"term-{vol.get('currency')}", xaxis_title="days to expiry (log scale)",
                   yaxis_title="ATM implied vol (%)",
                   xaxis={"type": "log", "tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]})


def skew(vol: dict) -> go.Figure:
    """RR25 and BF25 per expiry in vol points against days to expiry: marks as lines with points, SVI as open
    markers (scatter only: the page draws it with plotly's 3D bundle, which has no bar trace)."""
    term = [t for t in vol.get("term") or [] if t.get("rr25_marks") is not None or t.get("rr25_svi") is not None]
    if not term:
        return empty("no 25-delta quotes")
    x = [t["days"] for t in term]
    codes = [t["expiry"] for t in term]
    fig = go.Figure()
    for name, key, color, dash in (("RR25 marks (25Δ call − put)", "rr25_marks", SECONDARY, None),
                                   ("BF25 marks", "bf25_marks", "#60A5FA", None)):
        fig.add_trace(go.Scatter(x=x, y=_pct(t.get(key) for t in term), mode="lines+markers", name=name, text=codes,
                                 line={"color": color, "width": 2.5, "dash": dash}, marker={"size": 7},
                                 hovertemplate="%{text}: %{y:+.2f} pts<extra>" + name + "</extra>"))
    for name, key, color, symbol in (("RR25 SVI", "rr25_svi", "#F0ABFC", "diamond-open"),
                                     ("BF25 SVI", "bf25_svi", WARN, "circle-open")):
        fig.add_trace(go.Scatter(x=x, y=_pct(t.get(key) for t in term), mode="markers", name=name, text=codes,
                                 marker={"symbol": symbol, "size": 10, "color": color, "line": {"width": 2}},
                                 hovertemplate="%{text}: %{y:+.2f} pts<extra>" + name + "</extra>"))
    fig.add_hline(y=0, line={"color": "#6B6475", "width": 1})
    ticks = _log_ticks(min(x), max(x))
    return _layout(fig, height=360, uirevision=f"skew-{vol.get('currency')}", yaxis_title="vol points",
                   xaxis={"type": "log", "title": {"text": "days to expiry (log scale)"}, "tickvals": ticks,
                          "ticktext": [f"{t:g}" for t in ticks]},
                   legend={"orientation": "h", "y": -0.28, "x": 0}, margin={"l": 56, "r": 16, "t": 12, "b": 56})


def surface3d(vol: dict) -> go.Figure:
    """The SVI surface: IV (%) over standardised moneyness z = ln(K/F)/(σ_ATM√T) and days (log axis), each
    expiry cut to its quoted strikes, with the OTM mark IVs as points."""
    grid = vol.get("surface")
    if not grid:
        return empty("no SVI surface: run `qortcli surface`")
    fig = go.Figure()
    fig.add_trace(go.Surface(x=grid["z"], y=grid["days"], z=[_pct(row) for row in grid["iv"]], name="SVI surface",
                             showscale=False, colorscale=[[0, PRIMARY], [0.5, SECONDARY], [1, "#F0ABFC"]],
                             hovertemplate="z %{x:.2f} σ · %{y:.1f} d<br>SVI %{z:.2f}%<extra></extra>"))
    fig.add_trace(go.Scatter3d(x=grid["marks_z"], y=grid["marks_days"], z=_pct(grid["marks_iv"]), mode="markers",
                               name="mark IV (OTM quotes)", marker={"size": 2.4, "color": WARN},
                               hovertemplate="z %{x:.2f} σ · %{y:.1f} d<br>mark %{z:.2f}%<extra></extra>"))
    days = [d for d in grid["days"] if d and d > 0]
    ticks = _log_ticks(min(days), max(days))
    # few ticks and no spikes: the scene's labels are WebGL text, the costliest part of drawing it
    axis = {"backgroundcolor": BACKGROUND, "gridcolor": GRID, "showbackground": True, "color": TEXT, "nticks": 6,
            "showspikes": False, "title": {"font": {"size": 12}}}
    ticks = [t for t in ticks if t in (0.5, 1, 7, 30, 90, 365)] or ticks
    fig = _layout(fig, height=None, uirevision=f"surface-{vol.get('currency')}", margin={"l": 0, "r": 0, "t": 0, "b": 0},
                  legend={"orientation": "h", "y": 0.02, "x": 0.01, "bgcolor": "rgba(0,0,0,0)"})
    fig.update_layout(scene={
        "xaxis": {**axis, "title": {"text": "moneyness z (ATM σ√T)"}},
        "yaxis": {**axis, "title": {"text": "days (log)"}, "type": "log", "tickvals": ticks,
                  "ticktext": [f"{t:g}" for t in ticks]},
        "zaxis": {**axis, "title": {"text": "IV (%)"}},
        "bgcolor": PANEL, "aspectmode": "manual", "aspectratio": {"x": 1.05, "y": 1.3, "z": 0.62},
        "camera": {"eye": {"x": 1.55, "y": -1.5, "z": 0.72}, "center": {"x": 0.05, "y": 0, "z": -0.12}},
        "uirevision": f"surface-{vol.get('currency')}"})
    return fig


# --------------------------------------------------------------------------------------------- portfolio

def weights_bar(rows: list[dict], key: str, pid: str, what: str) -> go.Figure:
    if not rows:
        return empty("no weights")
    fig = go.Figure(go.Bar(x=[r[key] for r in rows], y=[round(100 * r["weight"], 3) for r in rows], marker_color=ACCENT,
                           text=[f"{100 * r['weight']:.1f}%" for r in rows], textposition="outside", cliponaxis=False,
                           hovertemplate="%{x}: %{y:.2f}%<extra></extra>"))
    return _layout(fig, height=300, uirevision=f"weights-{what}-{pid}", yaxis_title="weight (%)",
                   margin={"l": 52, "r": 12, "t": 24, "b": 44})


def _growth_ticks(lo: float, hi: float) -> list[float]:
    nice = [0.1, 0.2, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 7.5, 10, 15, 20, 30, 50, 75, 100]
    inside = [v for v in nice if lo <= v <= hi]
    if len(inside) > 7:
        inside = inside[:: math.ceil(len(inside) / 7)]
    return inside or [round(lo, 2), round(hi, 2)]


def equity(bt: dict, pid: str) -> go.Figure:
    """Growth of 1 of the portfolio and of equal weight (log axis labelled in multiples: ×0.5, ×1, ×2 …)."""
    if not bt or not bt.get("dates"):
        return empty("no backtest")
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=bt["dates"], y=bt["equity"], mode="lines", name="portfolio", line={"color": ACCENT, "width": 2},
                             hovertemplate="%{x}: ×%{y:.3f}<extra>portfolio</extra>"))
    values = [v for v in bt["equity"] if v]
    if bt.get("benchmark_equity"):
        fig.add_trace(go.Scatter(x=bt["dates"], y=bt["benchmark_equity"], mode="lines", name="equal weight",
                                 line={"color": MUTED, "width": 1.5, "dash": "dot"},
                                 hovertemplate="%{x}: ×%{y:.3f}<extra>equal weight</extra>"))
        values += [v for v in bt["benchmark_equity"] if v]
    ticks = _growth_ticks(min(values), max(values)) if values else [1]
    return _layout(fig, height=340, uirevision=f"equity-{pid}",
                   yaxis={"type": "log", "title": {"text": "growth of 1 (log scale)"}, "tickvals": ticks,
                          "ticktext": [f"×{t:g}" for t in ticks]})


# --------------------------------------------------------------------------------------------- suggestions

def _aligned(lo: float, hi: float, others: list[float]) -> list[float]:
    """A range for the second axis whose zero sits where the first axis' zero does (first axis [lo, hi])."""
    vals = [v for v in others if v is not None and math.isfinite(v)]
    if not vals or hi <= lo:
        return [lo, hi]
    scale = 0.0
    if hi > 0:
        scale = max(scale, max(vals) / hi)
    if lo < 0:
        scale = max(scale, min(vals) / lo)
    scale = 1.04 * (scale or 1.0)
    return [lo * scale, hi * scale]


def payoff(card: dict) -> go.Figure:
    """P/L at expiry against the index at expiry: USD on the left axis, coin on the right, the two zero lines
    at the same height; entry index and breakevens marked."""
    p = card.get("payoff") or {}
    s = p.get("s_usd") or []
    if not s:
        return empty("no payoff grid", 220)
    fig = go.Figure()
    usd = p.get("pnl_usd") or []
    coin = p.get("pnl_coin") or []
    fig.add_trace(go.Scatter(x=s, y=usd, mode="lines", name="P/L USD (left)", line={"color": ACCENT, "width": 2.2},
                             fill="tozeroy", fillcolor="rgba(168,85,247,0.10)",
                             hovertemplate="index %{x:,.0f}: %{y:$,.0f}<extra></extra>"))
    if coin:
        fig.add_trace(go.Scatter(x=s, y=coin, mode="lines", name="P/L coin (right)", yaxis="y2",
                                 line={"color": "#60A5FA", "width": 1.4, "dash": "dot"},
                                 hovertemplate="index %{x:,.0f}: %{y:.4f} coin<extra></extra>"))
    vals = [v for v in usd if v is not None]
    lo, hi = (min(vals), max(vals)) if vals else (-1.0, 1.0)
    pad = 0.08 * (hi - lo or 1.0)
    lo, hi = min(lo - pad, -pad), max(hi + pad, pad)
    if card.get("index_usd"):
        fig.add_vline(x=card["index_usd"], line={"color": MUTED, "dash": "dash", "width": 1})
    for b in card.get("breakevens_usd") or []:
        fig.add_vline(x=b, line={"color": WARN, "dash": "dot", "width": 1})
    fig.add_hline(y=0, line={"color": "#6B6475", "width": 1})
    return _layout(fig, height=250, uirevision=f"payoff-{card.get('id')}", xaxis_title="index at expiry (USD)",
                   yaxis={"title": {"text": "USD"}, "range": [lo, hi], "zeroline": True},
                   yaxis2={"title": {"text": "coin"}, "overlaying": "y", "side": "right", "showgrid": False,
                           "range": _aligned(lo, hi, coin), "zeroline": False},
                   margin={"l": 56, "r": 56, "t": 8, "b": 40}, legend={"orientation": "h", "y": -0.42, "x": 0})


#: the placeholder of a figure var before its data arrives (a blank panel, no "loading" text)
BLANK: dict = plain(empty("", 240))
