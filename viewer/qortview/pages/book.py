"""Book: the trader's positions with greeks, the account delta, greeks by expiry and the scenario grid as
heat maps (coin and USD), all from the `risk` documents `qortcli risk` stored (`qortview.book.book_page`).

Its state lives here (not in qortview/state.py) so the page is one self-contained module to register.
"""

from __future__ import annotations

from typing import ClassVar

import reflex as rx

from qortview import figures, book_figures
from qortview import fmt as f
from qortview.components import grid, layout, note, notice, panel, plot, row, selector, stack, stat, table
from qortview.state import Base, Row

HORIZON_LABELS = {0.0: "now"}
WORST_NAMES = {"pnl_coin": "P/L (coin)", "pnl_usd": "P/L (USD)", "value_change_usd": "USD value change"}


def _horizon_label(days: float) -> str:
    return HORIZON_LABELS.get(float(days), f"+{days:g} d")


class BookState(Base, rx.State):
    PAGE: ClassVar[str] = "book"
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
    heat_coin: dict = figures.BLANK
    heat_usd: dict = figures.BLANK
    greeks_fig: dict = figures.BLANK
    _data: dict = {}

    def _selection(self) -> dict:
        return {k: v for k, v in (("book", self.book), ("currency", self.currency)) if v}

    def _show(self, page: dict) -> None:
        self._put(books=page["books"], book=page["book"], currencies=page["currencies"], currency=page["currency"],
                  empty=page["empty"])
        if not page["has_risk"]:
            return
        self._data = page
        grid = page["grid"]
        self.horizons = [_horizon_label(h) for h in grid["horizons_days"]]
        if self.horizon not in self.horizons:
            self.horizon = self.horizons[0]
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
                             f.number(e["delta"], 3), f.sci(e["gamma"]), f.number(e["vega"], 2), f.number(e["theta"], 2))
                         for e in page["by_expiry"]]
        self.worst = [Row(WORST_NAMES.get(k, k), f.coin(w["value"]) if k == "pnl_coin" else f.usd0(w["value"]), _horizon_label(w["horizon_days"]),
                          f.vol_pts(w["vol_shift"], 0), f.pct(w["spot_move"], 0), f.usd0(w["spot_usd"]))
                      for k, w in page["worst"].items()]
        self.notes = page["notes"]
        self.greeks_fig = figures.plain(book_figures.greeks_by_expiry(page))
        self._heat()

    def _heat(self) -> None:
        h = self.horizons.index(self.horizon) if self.horizon in self.horizons else 0
        self.heat_coin = figures.plain(book_figures.grid_heatmap(self._data, "pnl_coin", h))
        self.heat_usd = figures.plain(book_figures.grid_heatmap(self._data, "pnl_usd", h))

    def _ages(self, page: dict) -> list[tuple]:
        if not page.get("has_risk"):
            return []
        return [("risk computed", page.get("computed_at_iso"), "risk"), ("on chain", page.get("timestamp_iso"), "chain")]

    @rx.event
    async def set_book(self, value: str):
        self.book, self.currency = value, ""
        await self._refresh(force=True)

    @rx.event
    async def set_currency(self, value: str):
        self.currency = value
        await self._refresh(force=True)

    @rx.event
    def set_horizon(self, value: str):
        self.horizon = value
        if self._data:
            self._heat()


S = BookState
STATE = S


def page() -> rx.Component:
    return layout(
        S, "Book",
        rx.cond(S.empty != "", notice(S.empty),
                stack(
                    note(S.info, id="book-info"),
                    row(stat("Value", S.value_line, "coin value × spot index", id="book-value"),
                        stat("P/L since entry", S.pnl_line, "from marks (Black-76 at mark IV)", id="book-pnl"),
                        stat("Delta of the USD value", S.delta_line, "coin-equivalent", id="book-delta")),
                    panel(table(["instrument", "size", "value coin", "P/L coin", "P/L USD", "Δ (coin)", "vega (USD/vol pt)",
                                 "θ (USD/day)"], S.positions, 8, numeric=(1, 2, 3, 4, 5, 6, 7), id="book-positions"),
                          title="Positions", sub="greeks: Deribit's forward-USD set × size"),
                    grid(panel(table(["", "without collateral", "with collateral"], S.account, 3, numeric=(1, 2),
                                     id="book-account"), title="Account delta"),
                         panel(table(["measure", "worst", "horizon", "vol shift", "spot move", "spot"], S.worst, 6,
                                     numeric=(1, 3, 4, 5), id="book-worst"), title="Worst scenarios")),
                    row(rx.el.span("horizon", class_name="qv-note"),
                        selector(S.horizons, S.horizon, S.set_horizon, "book-horizon-select"), align_items="center"),
                    grid(panel(plot(S.heat_coin, S.loaded, id="book-heat-coin"), title="Scenario P/L (coin)",
                               sub="full revaluation: spot move × vol shift, vols from the SVI surface (sticky moneyness)"),
                         panel(plot(S.heat_usd, S.loaded, id="book-heat-usd"), title="Scenario P/L (USD)",
                               sub="the same grid in USD at the shocked spot")),
                    panel(plot(S.greeks_fig, S.loaded, id="book-greeks-plot"), title="Greeks by expiry",
                          sub="USD set; SPOT = coin held"),
                    panel(table(["expiry", "positions", "value coin", "P/L coin", "Δ", "Γ (per USD)", "vega", "θ"],
                                S.expiries, 8, numeric=(1, 2, 3, 4, 5, 6, 7), id="book-expiries"),
                          title="By expiry"),
                    rx.foreach(S.notes, lambda n: note(n)),
                )),
        extra=(selector(S.books, S.book, S.set_book, "book-select"),
               selector(S.currencies, S.currency, S.set_currency, "book-currency-select")),
        route="/book",
    )
