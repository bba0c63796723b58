"""Live options chain: marks and greeks from `live_marks` (written by `qortcli stream`), refreshed every second.

Self-contained (its own state); the app registers it with one line: `live.register(app)` in qortview.py.
The page polls: a hidden `rx.moment(interval=1000)` fires `LiveState.tick` every second, which reads the
live_marks document (one primary-key lookup on the viewer's store thread) and rebuilds the rows only when
the document changed (`updated_at`), so a stored update shows within about a second.
"""

from __future__ import annotations

import dataclasses

import reflex as rx

from qortview import db
from qortview import fmt as f
from qortview.components import ACCENT, MUTED, PRIMARY, layout, notice, panel, selector, stat
from qortview.live import live_chain
from qortview.state import Base

POLL_MS = 1000
CALL_COLS = [("age", "c_age"), ("theta", "c_theta"), ("vega", "c_vega"), ("gamma", "c_gamma"), ("delta", "c_delta"),
             ("IV (mark)", "c_iv"), ("mark IV", "c_mark_iv"), ("USD", "c_usd"), ("coin", "c_coin")]
PUT_COLS = [("coin", "p_coin"), ("USD", "p_usd"), ("mark IV", "p_mark_iv"), ("IV (mark)", "p_iv"), ("delta", "p_delta"),
            ("gamma", "p_gamma"), ("vega", "p_vega"), ("theta", "p_theta"), ("age", "p_age")]


@dataclasses.dataclass
class LiveRow:
    strike: str = ""
    atm: bool = False
    c_symbol: str = ""
    c_age: str = ""
    c_theta: str = ""
    c_vega: str = ""
    c_gamma: str = ""
    c_delta: str = ""
    c_iv: str = ""
    c_mark_iv: str = ""
    c_usd: str = ""
    c_coin: str = ""
    p_symbol: str = ""
    p_coin: str = ""
    p_usd: str = ""
    p_mark_iv: str = ""
    p_iv: str = ""
    p_delta: str = ""
    p_gamma: str = ""
    p_vega: str = ""
    p_theta: str = ""
    p_age: str = ""


def _age(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return f.DASH
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h" if seconds < 172800 else f"{seconds / 86400:.0f} d"


def _row(r: dict) -> LiveRow:
    c, p = r["call"], r["put"]
    return LiveRow(strike=f.number(r["strike"], 0), atm=r["atm"], c_symbol=f.text(c.get("symbol")),
                   c_age=_age(c.get("age_s")), c_theta=f.number(c.get("theta"), 2), c_vega=f.number(c.get("vega"), 2),
                   c_gamma=f.small(c.get("gamma")), c_delta=f.signed(c.get("delta")), c_iv=f.pct(c.get("iv_mark"), 2),
                   c_mark_iv=f.pct(c.get("mark_iv"), 2), c_usd=f.usd(c.get("mark_usd")), c_coin=f.coin(c.get("mark_coin")),
                   p_symbol=f.text(p.get("symbol")), p_coin=f.coin(p.get("mark_coin")), p_usd=f.usd(p.get("mark_usd")),
                   p_mark_iv=f.pct(p.get("mark_iv"), 2), p_iv=f.pct(p.get("iv_mark"), 2), p_delta=f.signed(p.get("delta")),
                   p_gamma=f.small(p.get("gamma")), p_vega=f.number(p.get("vega"), 2), p_theta=f.number(p.get("theta"), 2),
                   p_age=_age(p.get("age_s")))


class LiveState(Base, rx.State):
    currencies: list[str] = ["BTC", "ETH"]
    currency: str = "BTC"
    expiries: list[str] = []
    expiry: str = ""
    rows: list[LiveRow] = []
    spot: str = ""
    forward: str = ""
    atm30: str = ""
    rr25: str = ""
    updated: str = ""
    info: str = ""
    connected: bool = False
    empty: str = ""
    _seen: str = ""

    async def _fetch(self):
        data, error, ms = await db.run(live_chain, self.currency, self.expiry or None)
        if data:
            self.connected = bool(data.get("connected"))
            self.updated = (f"written {_age(data.get('age_s'))} ago · marks {_age(data.get('marks_age_s'))} old · "
                            f"{'connected' if self.connected else 'feed down'}") if data["available"] else ""
            self.empty = "" if data["available"] else data["hint"]
            key = f"{data.get('updated_at')}|{data.get('expiry')}"
            if data["available"] and key != self._seen:   # rebuild the table only when the document changed
                self._seen = key
                self.expiries = data["expiries"]
                self.expiry = data.get("expiry") or ""
                self.spot = f.usd(data.get("index_usd"))
                self.forward = f.usd(data.get("forward_usd"))
                self.atm30 = f.pct(data.get("atm_iv_30d_marks"))
                self.rr25 = f.vol_pts(data.get("rr25_front_marks"))
                self.info = (f"expiry {data.get('expiry_date', '')} · {f.days(data.get('days'))} · forward from "
                             f"{data.get('forward_source', '')} · RR25 {f.vol_pts(data.get('rr25_marks'))} · "
                             f"{len(data['rows'])} of {data.get('strikes_total', 0)} strikes")
                self.rows = [_row(r) for r in data["rows"]]
        self._done(error, ms)

    @rx.event
    async def load(self):
        await self._fetch()

    @rx.event
    async def tick(self, _value: str = ""):
        await self._fetch()

    @rx.event
    async def set_currency(self, value: str):
        self.currency, self.expiry, self._seen = value, "", ""
        await self._fetch()

    @rx.event
    async def set_expiry(self, value: str):
        self.expiry, self._seen = value, ""
        await self._fetch()


def _table_row(r: LiveRow) -> rx.Component:
    cells = [rx.table.cell(getattr(r, key), title=r.c_symbol) for _, key in CALL_COLS]
    cells.append(rx.table.cell(rx.text(r.strike, weight="bold", color=ACCENT), text_align="center"))
    cells += [rx.table.cell(getattr(r, key), title=r.p_symbol) for _, key in PUT_COLS]
    return rx.table.row(*cells, background_color=rx.cond(r.atm, PRIMARY, "transparent"))


def page() -> rx.Component:
    head = rx.table.header(
        rx.table.row(rx.table.column_header_cell("CALLS (live marks)", col_span=len(CALL_COLS), color=ACCENT),
                     rx.table.column_header_cell("", color=ACCENT),
                     rx.table.column_header_cell("PUTS", col_span=len(PUT_COLS), color=ACCENT)),
        rx.table.row(*[rx.table.column_header_cell(h, color=MUTED) for h, _ in CALL_COLS],
                     rx.table.column_header_cell("strike", color=ACCENT),
                     *[rx.table.column_header_cell(h, color=MUTED) for h, _ in PUT_COLS]),
    )
    S = LiveState
    return layout(
        S, "Live chain",
        rx.moment(interval=POLL_MS, on_change=S.tick, display="none"),
        rx.cond(S.empty != "", notice(S.empty),
                rx.vstack(
                    rx.hstack(stat("Spot (index)", S.spot), stat("Forward", S.forward), stat("ATM IV 30d", S.atm30),
                              stat("RR25 front", S.rr25), rx.text(S.updated, size="2", color=MUTED, id="live-updated"),
                              align="center", spacing="4", wrap="wrap"),
                    rx.text(S.info, size="1", color=MUTED),
                    panel(rx.table.root(head, rx.table.body(rx.foreach(S.rows, _table_row)), size="1", variant="ghost",
                                        id="live-table", width="100%", white_space="nowrap"), overflow_x="auto", width="100%"),
                    width="100%", spacing="3")),
        extra=(selector(S.currencies, S.currency, S.set_currency, "live-currency-select"),
               selector(S.expiries, S.expiry, S.set_expiry, "live-expiry-select")),
    )


def register(app: rx.App, route: str = "/live") -> None:
    """Add the page to the app (one line in qortview.py: `live.register(app)`)."""
    app.add_page(page, route=route, title="qortfolio · live chain", on_load=LiveState.load)
