"""Book: the trader's positions with greeks, the account delta, greeks by expiry and the scenario grid as
heat maps (coin and USD), all from the `risk` documents `qortcli risk` stored (`qortview.book.book_page`).

Its state lives here (not in qortview/state.py) so the page is one self-contained module to register.
"""

from __future__ import annotations

import plotly.graph_objects as go
import reflex as rx

from qortview import book as data
from qortview import book_figures, db
from qortview import fmt as f
from qortview.components import MUTED, layout, notice, panel, plot, selector, stat, table
from qortview.figures import empty as empty_figure
from qortview.state import Base, Row

HORIZON_LABELS = {0.0: "now"}


def _horizon_label(days: float) -> str:
    return HORIZON_LABELS.get(float(days), f"+{days:g} d")


class BookState(Base, rx.State):
    books: list[str] = []
    book: str = ""
    currencies: list[str] = []
    currency: str = ""
    horizons: list[str] = []
    horizon: str = ""
    empty: str = ""
    info: str = ""
    value_line: str = ""
    pnl_line: str = ""
    delta_line: str = ""
    positions: list[Row] = []
    account: list[Row] = []
    expiries: list[Row] = []
    worst: list[Row] = []
    notes: list[str] = []
    heat_coin: go.Figure = empty_figure("loading")
    heat_usd: go.Figure = empty_figure("loading")
    greeks_fig: go.Figure = empty_figure("loading")

    async def _fetch(self):
        result, error, ms = await db.run(data.book_page, self.book or None, self.currency or None)
        if result:
            self.books, self.book = result["books"], result["book"]
            self.currencies, self.currency = result["currencies"], result["currency"]
            self.empty = result["empty"]
            if result["has_risk"]:
                self._show(result)
        self._done(error, ms)

    def _show(self, page: dict) -> None:
        grid = page["grid"]
        self.horizons = [_horizon_label(h) for h in grid["horizons_days"]]
        if self.horizon not in self.horizons:
            self.horizon = self.horizons[0]
        h = self.horizons.index(self.horizon)
        t, a = page["totals"], page["account"]
        self.info = (f"{page['snapshot_id']} · index {f.usd0(page['index_usd'])} · surface {page['surface_snapshot_id']} · "
                     f"book revision {page['book_revision']} · computed {page['computed_at']}")
        self.value_line = f"{f.coin(t.get('value_coin'))} coin · {f.usd0(t.get('value_usd'))}"
        self.pnl_line = f"{f.coin(t.get('pnl_coin'))} coin · {f.usd0(t.get('pnl_usd'))}"
        self.delta_line = (f"{f.number(a.get('usd_value_delta_coin_with_collateral'), 3)} coin with collateral · "
                           f"{f.number(a.get('usd_value_delta_coin'), 3)} without")
        self.positions = [Row(p["instrument"], f"{p['size']:,g} {p['size_unit']}", f.coin(p["value_coin"]),
                              f.coin(p["pnl_coin"]), f.usd0(p["pnl_usd"]), f.number(p["delta"], 3),
                              f.number(p["vega"], 2), f.number(p["theta"], 2)) for p in page["positions"]]
        self.account = [
            Row("delta of the USD value (coin)", f.number(a.get("usd_value_delta_coin"), 4),
                f.number(a.get("usd_value_delta_coin_with_collateral"), 4)),
            Row("delta of the USD value (USD)", f.usd0(a.get("usd_value_delta_usd")),
                f.usd0(a.get("usd_value_delta_usd_with_collateral"))),
            Row("delta of the coin value, F·dW/dF (coin)", f.number(a.get("coin_value_delta_coin"), 4),
                f.number(a.get("coin_value_delta_coin"), 4)),
            Row("coin held (collateral)", "", f.number(a.get("collateral_coin"), 4))]
        self.expiries = [Row(e["expiry_code"], str(e["positions"]), f.coin(e["value_coin"]), f.coin(e["pnl_coin"]),
                             f.number(e["delta"], 3), f.small(e["gamma"]), f.number(e["vega"], 2), f.number(e["theta"], 2))
                         for e in page["by_expiry"]]
        self.worst = [Row(k, f.coin(w["value"]) if k == "pnl_coin" else f.usd0(w["value"]), _horizon_label(w["horizon_days"]),
                          f.vol_pts(w["vol_shift"], 0), f.pct(w["spot_move"], 0), f.usd0(w["spot_usd"]))
                      for k, w in page["worst"].items()]
        self.notes = page["notes"]
        self.heat_coin = book_figures.grid_heatmap(page, "pnl_coin", h)
        self.heat_usd = book_figures.grid_heatmap(page, "pnl_usd", h)
        self.greeks_fig = book_figures.greeks_by_expiry(page)

    @rx.event
    async def load(self):
        await self._fetch()

    @rx.event
    async def tick(self, _value: str = ""):
        await self._fetch()

    @rx.event
    async def set_book(self, value: str):
        self.book, self.currency = value, ""
        await self._fetch()

    @rx.event
    async def set_currency(self, value: str):
        self.currency = value
        await self._fetch()

    @rx.event
    async def set_horizon(self, value: str):
        self.horizon = value
        await self._fetch()


S = BookState


def page() -> rx.Component:
    return layout(
        S, "Book",
        rx.cond(S.empty != "", notice(S.empty),
                rx.vstack(
                    rx.text(S.info, size="2", color=MUTED, id="book-info"),
                    rx.hstack(stat("Value", S.value_line, "coin value × spot index", id="book-value"),
                              stat("P/L since entry", S.pnl_line, "from marks (Black-76 at mark IV)", id="book-pnl"),
                              stat("Delta of the USD value", S.delta_line, "coin-equivalent", id="book-delta"),
                              spacing="4", wrap="wrap"),
                    panel(rx.heading("Positions", size="4"),
                          table(["instrument", "size", "value coin", "P/L coin", "P/L USD", "delta", "vega", "theta"],
                                S.positions, 8, id="book-positions"), width="100%"),
                    rx.grid(panel(rx.heading("Account delta", size="4"),
                                  table(["", "without collateral", "with collateral"], S.account, 3, id="book-account")),
                            panel(rx.heading("Worst scenarios", size="4"),
                                  table(["measure", "worst", "horizon", "vol shift", "spot move", "spot"], S.worst, 6,
                                        id="book-worst")),
                            columns="2", gap="16px", width="100%"),
                    rx.hstack(rx.text("horizon", size="2", color=MUTED),
                              selector(S.horizons, S.horizon, S.set_horizon, "book-horizon-select"), align="center"),
                    rx.grid(panel(plot(S.heat_coin, id="book-heat-coin")), panel(plot(S.heat_usd, id="book-heat-usd")),
                            columns="2", gap="16px", width="100%"),
                    panel(plot(S.greeks_fig), width="100%"),
                    panel(rx.heading("Greeks by expiry", size="4"),
                          table(["expiry", "positions", "value coin", "P/L coin", "delta", "gamma", "vega", "theta"],
                                S.expiries, 8, id="book-expiries"), width="100%"),
                    rx.foreach(S.notes, lambda n: rx.text(n, size="1", color=MUTED)),
                    width="100%", spacing="4")),
        extra=(selector(S.books, S.book, S.set_book, "book-select"),
               selector(S.currencies, S.currency, S.set_currency, "book-currency-select")),
    )
