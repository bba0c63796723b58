"""Overview: each currency's latest snapshot and its summary (spot, 30-day ATM IV from marks and SVI, the
variance-swap vol, RR25, positioning), every scheduled job's last run against its schedule, recent runs and
the store's contents."""

import reflex as rx

from qortview.components import grid, layout, notice, panel, row, stack, stat, table, tone_class
from qortview.state import Card, OverviewState as S, Row

STATE = S


def currency_card(c: Card) -> rx.Component:
    return panel(
        rx.el.div(rx.el.span(c.currency, class_name="qv-title", color="#A855F7"), rx.el.span(c.source, class_name="qv-badge"),
                  class_name="qv-row", align_items="center", justify_content="space-between"),
        rx.el.p("latest snapshot ", c.snapshot_id, " · ", c.timestamp, " UTC", class_name="qv-sub"),
        row(stat("Spot (index)", c.spot, "median of the snapshot"),
            stat("ATM IV 30d (marks)", c.atm30, "constant maturity"),
            stat("ATM IV 30d (SVI)", c.atm30_svi, "from the fit"),
            stat("Var-swap vol 30d (SVI)", c.vs30, "DVOL-like")),
        row(stat("RR25 30d (marks)", c.rr25, "25Δ call − put"), stat("Put/call OI", c.pcr, "contracts"),
            stat("Max pain", c.max_pain, "coin payoff, all expiries"),
            stat("Instruments", c.instruments, rx.el.span(c.expiries, " expiries")),
            stat("Snapshots stored", c.snapshots),
            margin_top="8px"),
        rx.cond(c.summary_note != "", rx.el.p(c.summary_note, class_name="qv-warn")),
        class_name="currency-card",
    )


def _job_row(r: Row) -> rx.Component:
    return rx.el.tr(rx.el.td(r.c0), rx.el.td(r.c1), rx.el.td(rx.el.span(r.c2, class_name=tone_class(r.tone))),
                    rx.el.td(r.c3), rx.el.td(rx.cond(r.c4 != "", rx.moment(date=r.c4, from_now=True, interval=30000), "—")),
                    rx.el.td(rx.el.span(r.c5, class_name="tone-stale")), rx.el.td(r.c6, class_name="wrap"))


def _alert_row(r: Row) -> rx.Component:
    return rx.el.tr(rx.el.td(rx.el.span(r.c0, class_name=tone_class(r.tone))), rx.el.td(r.c1), rx.el.td(r.c2),
                    rx.el.td(r.c3), rx.el.td(r.c4, class_name="wrap"),
                    rx.el.td(rx.cond(r.c5 != "", rx.moment(date=r.c5, from_now=True, interval=30000), "—")),
                    rx.el.td(r.c6), rx.el.td(r.c7))


def alerts_panel() -> rx.Component:
    heads = ["severity", "id", "rule", "subject", "reading", "opened", "status", "delivery"]
    return panel(rx.el.p(S.alerts_line, class_name="qv-note", id="alerts-line"),
                 rx.cond(S.alerts.length() > 0,
                         rx.el.div(rx.el.table(rx.el.thead(rx.el.tr(*[rx.el.th(h) for h in heads])),
                                               rx.el.tbody(rx.foreach(S.alerts, _alert_row)), class_name="qv-table",
                                               id="alerts-table"), class_name="qv-scroll")),
                 title="Alerts", sub="open episodes of the [alerts] rules, newest first")


def jobs_table() -> rx.Component:
    heads = ["job", "schedule", "last status", "last run (UTC)", "age", "", "error"]
    return rx.el.div(rx.el.table(rx.el.thead(rx.el.tr(*[rx.el.th(h) for h in heads])),
                                 rx.el.tbody(rx.foreach(S.jobs, _job_row)), class_name="qv-table", id="jobs-table"),
                     class_name="qv-scroll")


def page() -> rx.Component:
    return layout(
        S, "Overview",
        stack(
            rx.cond(S.has_options, rx.el.div(rx.foreach(S.cards, currency_card), class_name="qv-cards", id="overview-cards"),
                    rx.cond(S.loaded, notice(S.empty_options), rx.el.p("loading…", class_name="qv-note"))),
            rx.cond(S.has_alerts, alerts_panel()),
            panel(jobs_table(), title="Jobs", sub="each scheduled job's last run; amber when older than its schedule"),
            grid(
                panel(table(["step", "status", "started (UTC)", "took", "trigger", "counts", "error"], S.runs, 7, toned=1,
                            wrap=(5, 6), id="runs-table"), title="Recent runs"),
                panel(table(["collection", "documents", ""], S.counts, 3, toned=2, numeric=(1,), id="counts-table"),
                      rx.el.p(S.prices_line, class_name="qv-note", id="prices-line"), title="Store contents"),
            ),
        ),
        route="/",
    )
