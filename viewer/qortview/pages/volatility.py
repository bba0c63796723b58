"""Volatility: the SVI surface in 3D (days on a log axis, each expiry cut to its quoted strikes), one smile
per expiry with a picker (marks, bid–ask IV, the fit), the ATM term structure and constant maturities from marks
and SVI, RR25/BF25 per expiry, and the fit's diagnostics."""

import reflex as rx

from qortview.components import grid, layout, note, notice, panel, plot, plot3d, row, selector, stack, stat, table
from qortview.state import VolState as S

STATE = S


def page() -> rx.Component:
    return layout(
        S, "Volatility",
        rx.cond(S.empty != "", notice(S.empty),
                stack(
                    row(stat("ATM IV 30d (marks)", S.atm30, "constant maturity, from marks", id="vol-atm30"),
                        stat("ATM IV 30d (SVI)", S.atm30_svi, "constant maturity, from the fit"),
                        stat("Var-swap vol 30d (SVI)", S.vs30, "model-free fair vol of the fit: DVOL-like"),
                        stat("Term slope 90d − 7d", S.slope, "marks / SVI")),
                    rx.cond(S.surface_note != "", notice(S.surface_note)),
                    rx.el.div(note(S.info), rx.cond(S.fit_line != "", note(S.fit_line, id="fit-line")),
                              rx.cond(S.calendar_line != "", note(S.calendar_line, id="calendar-line")),
                              note(S.summary_note)),
                    panel(plot3d(S.surface_fig, S.loaded, id="surface-plot"), title="Implied volatility surface (SVI)",
                          sub="IV (%) over moneyness in ATM standard deviations, z = ln(K/F)/(σ_ATM√T) of the fit, and days "
                              "to expiry (log axis); each expiry drawn only over its quoted strikes; points: OTM mark IVs. "
                              "Drag to rotate — the view is kept on refresh."),
                    grid(
                        panel(row(rx.el.span("expiry", class_name="qv-note"),
                                  selector(S.smile_choices, S.smile_expiry, S.set_smile, "smile-select"), align_items="center"),
                              plot(S.smile_fig, S.loaded, "gl3d", id="smile-plot"), note(S.smile_note, id="smile-note"),
                              title="Smile", sub="OTM mark IVs with their bid–ask IV range (bars, from `qortcli price`) and "
                                                 "the SVI fit over the quoted strikes"),
                        panel(plot(S.term_fig, S.loaded, "gl3d", id="term-plot"), title="ATM term structure",
                              sub="ATM IV per listed expiry from marks and SVI; diamonds: constant maturities (marks); "
                                  "star: 30-day variance-swap vol (SVI)"),
                    ),
                    grid(
                        panel(plot(S.skew_fig, S.loaded, "gl3d", id="skew-plot"), title="25-delta risk reversal and butterfly",
                              sub="vol points; RR25 = σ(25Δ call) − σ(25Δ put), BF25 = mean of the wings − ATM"),
                        panel(table(["tenor", "ATM marks", "ATM SVI", "RR25 marks", "RR25 SVI", "BF25 marks", "BF25 SVI"],
                                    S.tenor_rows, 7, numeric=(1, 2, 3, 4, 5, 6), id="tenor-table"),
                              title="Constant maturities", sub="ATM IV in %, RR25/BF25 in vol points; total variance linear in T "
                                                                "between listed expiries"),
                    ),
                    panel(table(["expiry", "days", "forward", "ATM IV marks", "ATM IV SVI", "RR25 marks", "RR25 SVI",
                                 "BF25 marks", "BF25 SVI"], S.term_rows, 9, numeric=tuple(range(1, 9)), id="term-table"),
                          title="Per expiry", sub="vols in %, RR/BF in vol points; forward in USD"),
                )),
        extra=(selector(S.currencies, S.currency, S.set_currency, "vol-currency-select"),),
        route="/volatility",
    )
