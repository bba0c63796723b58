"""Volatility: 3D surface with market points, smiles with the SVI fit, ATM term structure, RR25/BF25."""

import reflex as rx

from qortview.components import plot, MUTED, layout, notice, panel, selector, stat, table
from qortview.state import VolState as S


def page() -> rx.Component:
    return layout(
        S, "Volatility",
        rx.cond(S.empty != "", notice(S.empty),
                rx.vstack(
                    rx.hstack(stat("ATM vol 30d (marks)", S.atm30, "constant maturity, from marks", id="vol-atm30"),
                              rx.text(S.info, size="2", color=MUTED), align="center", spacing="4"),
                    rx.cond(S.surface_note != "", notice(S.surface_note)),
                    rx.cond(S.fit_line != "", rx.text(S.fit_line, size="2", color=MUTED, id="fit-line")),
                    panel(plot(S.surface_fig, id="surface-plot"), width="100%"),
                    rx.grid(panel(plot(S.smile_fig)), panel(plot(S.term_fig)), columns="2", gap="16px", width="100%"),
                    rx.grid(panel(plot(S.skew_fig)),
                            panel(table(["expiry", "days", "ATM IV (marks)", "RR25 (marks)", "RR25 (SVI)", "BF25 (marks)",
                                         "BF25 (SVI)", "25Δ call (marks)", "25Δ put (marks)", "forward"], S.term_rows, 10,
                                        id="term-table")),
                            columns="2", gap="16px", width="100%"),
                    width="100%", spacing="4")),
        extra=(selector(S.currencies, S.currency, S.set_currency, "vol-currency-select"),),
    )
