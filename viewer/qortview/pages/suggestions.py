"""Suggestions: every currency's newest strategy cards (legs, debit or credit, max P/L, breakevens, POP, net
greeks, payoff at expiry in USD and coin) and the track record."""

import reflex as rx

from qortview.components import layout, note, notice, panel, plot, stack, table
from qortview.state import Leg, Suggestion, SuggestState as S

STATE = S


def leg_row(l: Leg) -> rx.Component:
    return rx.el.tr(rx.el.td(l.side), rx.el.td(l.size, class_name="num"), rx.el.td(l.instrument),
                    rx.el.td(l.price, class_name="num"), rx.el.td(l.iv, class_name="num"), rx.el.td(l.delta, class_name="num"))


def kv(label: str, value) -> rx.Component:
    return rx.el.div(rx.el.div(label, class_name="qv-kv-label"), rx.el.div(value, class_name="qv-kv-value"))


def card(c: Suggestion, i) -> rx.Component:
    return panel(
        rx.el.div(rx.el.span(c.strategy, font_size="17px", font_weight="700", color="#A855F7", text_transform="capitalize"),
                  rx.el.span(c.currency, class_name="qv-badge"), rx.el.span(c.expiry, class_name="qv-badge"),
                  rx.el.span(c.flow, class_name=rx.cond(c.flow == "debit", "qv-badge debit", "qv-badge credit")),
                  rx.el.span("score ", c.score, " · ", c.status, class_name="qv-note", margin_left="auto"),
                  class_name="qv-row", align_items="center"),
        rx.el.p(c.reasoning, class_name="qv-sub", margin_top="6px"),
        rx.el.div(rx.el.table(rx.el.thead(rx.el.tr(*[rx.el.th(h) for h in ("side", "size (coin)", "instrument",
                                                                            "price coin (crossed)", "IV", "Δ")])),
                              rx.el.tbody(rx.foreach(c.legs, leg_row)), class_name="qv-table"),
                  class_name="qv-scroll"),
        rx.el.div(kv("Net premium", c.premium), kv("in coin", c.premium_coin), kv("POP (risk-neutral)", c.pop),
                  kv("Max profit", c.max_profit), kv("Max loss", c.max_loss), kv("Breakevens (USD)", c.breakevens),
                  kv("Net Δ", c.delta), kv("Net vega (spot USD)", c.vega), kv("Net θ (spot USD)", c.theta),
                  class_name="qv-kv"),
        plot(S.payoff_figs[i], S.loaded),
        note("track: ", c.track),
        note("suggested on ", c.snapshot),
        class_name="suggestion-card",
    )


def page() -> rx.Component:
    return layout(
        S, "Suggestions",
        rx.cond(S.empty != "", notice(S.empty),
                stack(
                    panel(table(["currency", "latest suggestions", "against the latest chain"], S.groups, 3, toned=2,
                                wrap=(2,), id="groups-table"), title="By currency"),
                    rx.el.div(rx.foreach(S.cards, card), class_name="qv-cards", id="suggestion-cards"),
                    panel(note(S.track_summary, id="track-summary"),
                          table(["strategy", "currency", "expiry", "suggested (UTC)", "status", "net premium",
                                 "last mark P/L", "closing there", "settled P/L", "marks"], S.track, 10, toned=4,
                                numeric=(5, 6, 7, 8, 9), tall=True, id="track-table"),
                          title="Track record",
                          sub="P/L in USD: at the marks, and closing there (longs sold at the bid, shorts bought at the ask)"),
                )),
        route="/suggestions",
    )
