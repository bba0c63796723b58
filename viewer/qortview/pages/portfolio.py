"""Portfolio: any stored optimiser portfolio (a selector), its weights by asset and sector, out-of-sample
(walk-forward) and in-sample metrics against equal weight, the backtest's growth of 1 — each labelled in or out
of sample."""

import reflex as rx

from qortview.components import grid, layout, note, notice, panel, plot, selector, stack, table
from qortview.state import PortfolioState as S

STATE = S

METRIC_HEADERS = ["metric", "portfolio", "equal weight"]


def page() -> rx.Component:
    return layout(
        S, "Portfolio",
        rx.cond(S.empty != "", notice(S.empty),
                stack(
                    note(S.title, id="portfolio-title"),
                    rx.cond(S.params_line != "", note(S.params_line)),
                    grid(panel(plot(S.asset_fig, S.loaded, id="asset-plot"), title="Weights by asset",
                               sub="the final weights, fitted on the whole window (in sample)"),
                         panel(plot(S.sector_fig, S.loaded, id="sector-plot"), title="Weights by sector",
                               sub="the final weights summed per sector (in sample)")),
                    panel(plot(S.equity_fig, S.loaded, id="equity-plot"), title="Backtest: growth of 1 against equal weight",
                          sub=S.equity_label),
                    grid(
                        panel(rx.cond(S.has_oos,
                                      table(METRIC_HEADERS, S.oos, 3, numeric=(1, 2), id="oos-table"),
                                      note("no out-of-sample run stored for this portfolio (optimize with --rebalance "
                                           "for a walk-forward backtest)")),
                              title="Out of sample (walk-forward)",
                              sub="each rebalance's weights fitted on the data before it: the honest figures"),
                        panel(table(METRIC_HEADERS, S.metrics, 3, numeric=(1, 2), id="metrics-table"),
                              rx.cond(S.in_sample_note != "", note(S.in_sample_note)),
                              title="In sample", sub="the final weights on the window they were fitted on: optimistic by construction"),
                        cols=2),
                    grid(panel(table(["asset", "weight", "sector"], S.assets, 3, numeric=(1,), id="weights-table"),
                               title="Assets"),
                         panel(table(["sector", "weight"], S.sectors, 2, numeric=(1,), id="sector-table"), title="Sectors"),
                         panel(table(["portfolio", "model", "as of", "optimised (UTC)"], S.others, 4, id="portfolios-table"),
                               title="Stored portfolios"),
                         cols=3),
                    rx.cond(S.excluded.length() > 0,
                            panel(table(["asset", "reason"], S.excluded, 2, wrap=(1,)), title="Excluded assets")),
                )),
        extra=(selector(S.ids, S.portfolio_id, S.set_portfolio, "portfolio-select"),),
        route="/portfolio",
    )
