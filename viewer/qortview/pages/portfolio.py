"""Portfolio: weights by asset and sector, metrics against equal weight, backtest equity curve."""

import reflex as rx

from qortview.components import plot, MUTED, layout, notice, panel, table
from qortview.state import PortfolioState as S


def page() -> rx.Component:
    return layout(
        S, "Portfolio",
        rx.cond(S.loaded & ~S.has_data, notice(S.empty)),
        rx.vstack(
                    rx.text(S.title, size="2", color=MUTED, id="portfolio-title"),
                    rx.grid(panel(plot(S.asset_fig)), panel(plot(S.sector_fig)), columns="2", gap="16px", width="100%"),
                    rx.grid(panel(rx.heading("Weights by asset", size="4"), table(["asset", "weight", "sector"], S.assets, 3, id="weights-table")),
                            panel(rx.heading("Weights by sector", size="4"), table(["sector", "weight"], S.sectors, 2, id="sector-table")),
                            panel(rx.cond(S.oos.length() > 0,
                                          rx.box(rx.heading("Out of sample (walk-forward)", size="4"),
                                                 table(["metric", "portfolio", "equal weight"], S.oos, 3, id="oos-table"))),
                                  rx.heading("In sample (weights fitted on the same window)", size="3", margin_top="10px"),
                                  table(["metric", "portfolio", "equal weight"], S.metrics, 3, id="metrics-table")),
                            columns="3", gap="16px", width="100%"),
                    panel(plot(S.equity_fig), width="100%"),
                    rx.cond(S.excluded.length() > 0,
                            panel(rx.heading("Excluded assets", size="3"), table(["asset", "reason"], S.excluded, 2))),
                    width="100%", spacing="4", display=rx.cond(S.loaded & ~S.has_data, "none", "flex")),
    )
