"""Overview: latest snapshot per currency, spot, 30-day ATM vol, job runs and store contents."""

import reflex as rx

from qortview.components import ACCENT, MUTED, layout, notice, panel, stat, table
from qortview.state import Card, OverviewState as S


def currency_card(c: Card) -> rx.Component:
    return panel(
        rx.hstack(rx.heading(c.currency, size="6", color=ACCENT), rx.spacer(), rx.badge(c.source, color_scheme="purple"),
                  align="center", width="100%"),
        rx.text("latest snapshot ", c.snapshot_id, " · ", c.timestamp, size="1", color=MUTED),
        rx.hstack(stat("Spot (index)", c.spot), stat("ATM vol 30d (marks)", c.atm30, "DVOL-like, total variance in T"),
                  stat("ATM vol 30d (SVI)", c.atm30_surface), wrap="wrap", spacing="3", margin_top="8px"),
        rx.hstack(stat("Instruments", c.instruments), stat("Expiries", c.expiries), stat("Snapshots stored", c.snapshots),
                  stat("Priced", c.priced), wrap="wrap", spacing="3", margin_top="8px"),
        class_name="currency-card", min_width="420px", flex="1",
    )


def page() -> rx.Component:
    return layout(
        S, "Overview",
        rx.cond(S.has_options, rx.flex(rx.foreach(S.cards, currency_card), gap="16px", wrap="wrap", id="overview-cards"),
                rx.cond(S.loaded, notice(S.empty_options), rx.text("loading…", color=MUTED))),
        rx.grid(
            panel(rx.heading("Last run of each step", size="4", margin_bottom="8px"),
                  table(["step", "status", "started", "error"], S.steps, 4, toned=1, id="steps-table")),
            panel(rx.heading("Store contents", size="4", margin_bottom="8px"),
                  table(["collection", "documents", ""], S.counts, 3, toned=2, id="counts-table"),
                  rx.text(S.prices_line, size="1", color=MUTED, margin_top="8px", id="prices-line")),
            columns="2", gap="16px", margin_top="16px", width="100%",
        ),
        panel(rx.heading("Recent job runs", size="4", margin_bottom="8px"),
              table(["step", "status", "started", "took", "trigger", "counts", "error"], S.runs, 7, toned=1, id="runs-table"),
              margin_top="16px"),
    )
