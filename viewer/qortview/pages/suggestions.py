"""Suggestions: strategy cards (legs, premium, max P/L, breakevens, POP, payoff) and the track record."""

import reflex as rx

from qortview.components import plot, ACCENT, MUTED, layout, notice, panel, table
from qortview.state import Leg, Suggestion, SuggestState as S


def leg_row(l: Leg) -> rx.Component:
    return rx.table.row(rx.table.cell(l.side), rx.table.cell(l.quantity), rx.table.cell(l.symbol), rx.table.cell(l.price),
                        rx.table.cell(l.iv))


def kv(label: str, value) -> rx.Component:
    return rx.vstack(rx.text(label, size="1", color=MUTED), rx.text(value, size="2", weight="bold"), spacing="0")


def card(c: Suggestion, i) -> rx.Component:
    return panel(
        rx.hstack(rx.heading(c.strategy, size="5", color=ACCENT, text_transform="capitalize"),
                  rx.badge(c.currency, color_scheme="purple"), rx.badge(c.expiry, variant="outline"),
                  rx.spacer(), rx.text("score ", c.score, size="1", color=MUTED), rx.badge(c.status), align="center", width="100%"),
        rx.text(c.reasoning, size="1", color=MUTED, margin_y="6px"),
        rx.table.root(rx.table.header(rx.table.row(*[rx.table.column_header_cell(h, color=MUTED) for h in
                                                    ("side", "qty", "instrument", "price (coin)", "IV")])),
                      rx.table.body(rx.foreach(c.legs, leg_row)), size="1", variant="ghost", width="100%"),
        rx.grid(kv("Net premium", c.premium_usd), kv("Net premium (coin)", c.premium_coin), kv("POP (risk-neutral)", c.pop),
                kv("Max profit", c.max_profit), kv("Max loss", c.max_loss), kv("Breakevens", c.breakevens),
                columns="3", gap="8px", margin_y="8px"),
        plot(S.payoff_figs[i]),
        rx.text("track: ", c.track, size="1", color=MUTED),
        class_name="suggestion-card", min_width="460px", flex="1",
    )


def page() -> rx.Component:
    return layout(
        S, "Suggestions",
        rx.cond(S.loaded & ~S.has_data, notice(S.empty)),
        rx.vstack(
                    rx.flex(rx.foreach(S.cards, card), gap="16px", wrap="wrap", width="100%", id="suggestion-cards"),
                    panel(rx.heading("Track record", size="4"), rx.text(S.track_summary, size="2", color=MUTED, id="track-summary"),
                          table(["strategy", "currency", "expiry", "suggested", "status", "last mark P/L", "settled P/L", "marks"],
                                S.track, 8, toned=4, id="track-table"), width="100%"),
                    width="100%", spacing="4", display=rx.cond(S.loaded & ~S.has_data, "none", "flex")),
    )
