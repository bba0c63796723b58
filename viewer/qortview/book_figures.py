"""Plotly figures of the Book page (from `qortview.book.book_page`), in the viewer's theme (no Reflex here)."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from qortview.figures import ACCENT, BAD, GOOD, PANEL, SECONDARY, _layout, empty

UNITS = {"pnl_coin": ("P/L since entry", "coin", ".4f"), "pnl_usd": ("P/L since entry", "USD", ",.0f"),
         "value_change_usd": ("USD value change", "USD", ",.0f")}


def grid_heatmap(page: dict, measure: str = "pnl_coin", horizon: int = 0) -> go.Figure:
    """The scenario grid of one horizon as a heat map: spot move (x, %) × vol shift (y, vol points), colour
    the stored P/L (red losses, green gains, centred on zero); the worst cell marked."""
    grid = page.get("grid") if page.get("has_risk") else None
    if not grid or horizon >= len(grid["horizons_days"]):
        return empty("no scenario grid stored")
    title, unit, number = UNITS[measure]
    z = grid[measure][horizon]
    x = [100 * m for m in grid["spot_moves"]]
    y = [100 * v for v in grid["vol_shifts"]]
    days = grid["horizons_days"][horizon]
    fig = go.Figure(go.Heatmap(
        z=z, x=x, y=y, zmid=0, colorscale=[[0.0, BAD], [0.5, PANEL], [1.0, GOOD]],
        colorbar={"title": {"text": unit}}, customdata=[[s for s in grid["spot_usd"]] for _ in y],
        hovertemplate=(f"spot %{{x:+.0f}}% (%{{customdata:,.0f}} USD)<br>vol %{{y:+.0f}} pts<br>{title} "
                       f"%{{z:{number}}} {unit}<extra></extra>")))
    flat = [(z[j][m], j, m) for j in range(len(y)) for m in range(len(x)) if z[j][m] is not None]
    if not flat:
        return empty("the stored grid has no values")
    worst, j, m = min(flat)
    fig.add_trace(go.Scatter(x=[x[m]], y=[y[j]], mode="markers", name=f"worst {worst:{number}} {unit}",
                             marker={"symbol": "x", "size": 12, "color": ACCENT, "line": {"width": 2}},
                             hoverinfo="skip"))
    label = "now" if days == 0 else f"+{days:g} days"
    return _layout(fig, f"{title} ({unit}) · horizon {label}", 380,
                   uirevision=f"heat-{page.get('book')}-{page.get('currency')}-{measure}-{horizon}", xaxis_title="spot move (%)",
                   yaxis_title="vol shift (vol points)")


def greeks_by_expiry(page: dict) -> go.Figure:
    """Delta (coin), vega (USD per vol point) and theta (USD per day) summed per expiry (bars)."""
    rows = page.get("by_expiry") or []
    if not page.get("has_risk") or not rows:
        return empty("no greeks stored")
    codes = [r["expiry_code"] for r in rows]
    fig = make_subplots(rows=1, cols=3, subplot_titles=("delta (coin)", "vega (USD / vol pt)", "theta (USD / day)"))
    for col, (key, color) in enumerate((("delta", ACCENT), ("vega", SECONDARY), ("theta", "#60A5FA")), start=1):
        fig.add_trace(go.Bar(x=codes, y=[r.get(key) or 0.0 for r in rows], name=key, marker_color=color,
                             hovertemplate=f"%{{x}}: {key} %{{y:.4g}}<extra></extra>"), row=1, col=col)
    fig.update_annotations(font={"size": 12})
    return _layout(fig, "Greeks by expiry (USD set; SPOT = coin held)", 320,
                   uirevision=f"greeks-{page.get('book')}-{page.get('currency')}", showlegend=False,
                   margin={"l": 56, "r": 16, "t": 30, "b": 44})
