"""Options chain: calls and puts side by side around the forward, for one currency and expiry."""

import reflex as rx

from qortview.components import ACCENT, MUTED, PRIMARY, layout, notice, panel, selector, stat
from qortview.state import ChainRow, ChainState as S

CALL_COLS = [("OI", "c_oi"), ("vega", "c_vega"), ("gamma", "c_gamma"), ("delta", "c_delta"), ("model IV", "c_model_iv"),
             ("mark IV", "c_mark_iv"), ("bid", "c_bid"), ("ask", "c_ask"), ("USD", "c_usd"), ("coin", "c_coin")]
PUT_COLS = [("coin", "p_coin"), ("USD", "p_usd"), ("bid", "p_bid"), ("ask", "p_ask"), ("mark IV", "p_mark_iv"),
            ("model IV", "p_model_iv"), ("delta", "p_delta"), ("gamma", "p_gamma"), ("vega", "p_vega"), ("OI", "p_oi")]


def chain_row(r: ChainRow) -> rx.Component:
    cells = [rx.table.cell(getattr(r, key), title=r.c_symbol) for _, key in CALL_COLS]
    cells.append(rx.table.cell(rx.text(r.strike, weight="bold", color=ACCENT), text_align="center"))
    cells += [rx.table.cell(getattr(r, key), title=r.p_symbol) for _, key in PUT_COLS]
    return rx.table.row(*cells, background_color=rx.cond(r.atm, PRIMARY, "transparent"),
                        class_name=rx.cond(r.atm, "atm-row", ""))


def page() -> rx.Component:
    head = rx.table.header(
        rx.table.row(rx.table.column_header_cell("CALLS (premium coin/USD, bid/ask coin)", col_span=len(CALL_COLS), color=ACCENT),
                     rx.table.column_header_cell("", color=ACCENT),
                     rx.table.column_header_cell("PUTS", col_span=len(PUT_COLS), color=ACCENT)),
        rx.table.row(*[rx.table.column_header_cell(h, color=MUTED) for h, _ in CALL_COLS],
                     rx.table.column_header_cell("strike", color=ACCENT),
                     *[rx.table.column_header_cell(h, color=MUTED) for h, _ in PUT_COLS]),
    )
    return layout(
        S, "Options chain",
        rx.cond(S.empty != "", notice(S.empty),
                rx.vstack(
                    rx.hstack(stat("Forward", S.forward), stat("Spot (index)", S.spot), rx.text(S.info, size="2", color=MUTED, id="chain-info"),
                              align="center", spacing="4", wrap="wrap"),
                    rx.cond(S.priced_note != "", rx.text(S.priced_note, size="1", color=MUTED)),
                    panel(rx.table.root(head, rx.table.body(rx.foreach(S.rows, chain_row)), size="1", variant="ghost",
                                        id="chain-table", width="100%", white_space="nowrap"), overflow_x="auto", width="100%"),
                    width="100%", spacing="3")),
        extra=(selector(S.currencies, S.currency, S.set_currency, "currency-select"),
               selector(S.expiries, S.expiry, S.set_expiry, "expiry-select")),
    )
