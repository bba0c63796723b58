"""Options chain: calls | strike | puts for one expiry of the latest chain — bid/ask in coin and USD, mark,
bid/mark/ask IV, delta, gamma, vega, theta, open interest and volume — every strike (with a range control),
sortable by any column, in-the-money sides shaded; the mark columns and the strike stay pinned while the table
scrolls. Live marks and greeks from the stream replace the snapshot's within a second of each stored update."""

import reflex as rx

from qortview.components import layout, note, notice, panel, row, selector, stack, stat
from qortview.state import LIVE_POLL_MS, ChainRow, ChainState as S

STATE = S

# (sort key, header, unit line, pinned class) of the call side, outermost first; the puts mirror them
# (sort key, header, unit line, pinned class) of the call side, outermost first; the puts mirror them. Cells with
# two lines: OI over 24 h volume, mark IV over bid · ask IV, bid · ask and mark in coin over USD.
CALL_COLUMNS = [("c_oi", "OI · vol", "contracts", ""), ("c_theta", "θ", "USD/day", ""), ("c_vega", "vega", "USD/vol pt", ""),
                ("c_gamma", "Γ", "gamma", ""), ("c_delta", "Δ", "", ""), ("c_iv", "IV mark", "bid · ask %", ""),
                ("c_ba", "bid · ask", "coin / USD", ""), ("c_mark", "mark", "coin / USD", "pin pin-cm")]
PUT_COLUMNS = [("p_mark", "mark", "coin / USD", "pin pin-pm"), ("p_ba", "bid · ask", "coin / USD", ""),
               ("p_iv", "IV mark", "bid · ask %", ""), ("p_delta", "Δ", "", ""), ("p_gamma", "Γ", "gamma", ""),
               ("p_vega", "vega", "USD/vol pt", ""), ("p_theta", "θ", "USD/day", ""), ("p_oi", "OI · vol", "contracts", "")]


def _head(key: str, label: str, unit: str, pin: str) -> rx.Component:
    arrow = rx.cond(S.sort_key == key, rx.cond(S.sort_desc, " ▼", " ▲"), "")
    shown = S.gamma_unit if unit == "gamma" else unit
    return rx.el.th(rx.el.span(label, arrow), rx.el.span(shown, class_name="u", display="block", color="#8B8398"),
                    class_name=rx.cond(S.sort_key == key, f"{pin} sorted", pin), on_click=S.sort_by(key),
                    title=f"sort by {label} {unit}".strip())


def _cell(r: ChainRow, key: str, pin: str, itm, side: str) -> rx.Component:
    symbol = r.c_symbol if side == "c" else r.p_symbol
    cls = f"{pin} " if pin else ""
    if key.endswith("_oi"):
        body = [rx.el.span(getattr(r, key)), rx.el.span(getattr(r, f"{side}_vol"), class_name="u")]
    elif key in ("c_iv", "p_iv"):
        body = [rx.el.span(getattr(r, key)), rx.el.span(getattr(r, f"{key}_ba"), class_name="u")]
    elif key in ("c_ba", "p_ba"):
        body = [rx.el.span(getattr(r, key)), rx.el.span(getattr(r, f"{key}_usd"), class_name="u")]
    elif key.endswith("_mark"):
        live = r.c_live if side == "c" else r.p_live
        body = [rx.el.span(getattr(r, key), class_name=rx.cond(live, "live", "")),
                rx.el.span(getattr(r, f"{key}_usd"), class_name="u")]
    else:
        body = [getattr(r, key)]
    return rx.el.td(*body, class_name=rx.cond(itm, cls + "itm", cls), title=symbol)


def chain_row(r: ChainRow) -> rx.Component:
    cells = [_cell(r, key, pin, r.itm_call, "c") for key, _, _, pin in CALL_COLUMNS]
    cells.append(rx.el.td(r.strike, class_name="pin pin-k"))
    cells += [_cell(r, key, pin, r.itm_put, "p") for key, _, _, pin in PUT_COLUMNS]
    return rx.el.tr(*cells, class_name=rx.cond(r.atm, "atm-row", ""))


def page() -> rx.Component:
    head = rx.el.thead(rx.el.tr(*[_head(*c) for c in CALL_COLUMNS],
                                _head("strike", "strike", "USD", "pin pin-k"),
                                *[_head(*c) for c in PUT_COLUMNS]))
    return layout(
        S, "Options chain",
        rx.cond(S.live_on, rx.moment(interval=LIVE_POLL_MS, on_change=S.live_tick, display="none")),
        rx.cond(S.empty != "", notice(S.empty),
                stack(
                    row(stat("Forward", S.forward, "the expiry's, median of its rows"), stat("Spot (index)", S.spot),
                        stat("Strikes shown", S.shown, rx.el.span("range: ", S.range_choice))),
                    note(S.info, id="chain-info"),
                    rx.cond(S.live_line != "", note(S.live_line, id="live-line")),
                    panel(
                        rx.el.div(rx.el.span("CALLS"), rx.el.span("PUTS"), class_name="qv-chain-head"),
                        rx.el.div(rx.el.table(head, rx.el.tbody(rx.foreach(S.rows, chain_row)), class_name="qv-chain",
                                              id="chain-table"),
                                  class_name="qv-scroll tall", id="chain-scroll"),
                        note(S.greeks_note),
                        note("Shaded: in the money (calls below the forward, puts above). Click a header to sort; "
                             "the mark and strike columns stay in view while the table scrolls sideways."),
                    ),
                )),
        extra=(selector(S.currencies, S.currency, S.set_currency, "currency-select"),
               selector(S.expiries, S.expiry, S.set_expiry, "expiry-select"),
               selector(S.ranges, S.range_choice, S.set_range, "range-select")),
        route="/chain",
    )
