"""Market: open interest by strike (calls up, puts down), dealer gamma profile, put/call ratios, implied moves."""

from __future__ import annotations

import plotly.graph_objects as go
import reflex as rx

from qortview import db, market_figures
from qortview import fmt as f
from qortview.components import MUTED, layout, notice, panel, plot, selector, stat, table
from qortview.figures import empty
from qortview.market import market_page
from qortview.state import Base, Row

ALL_LABEL = "all expiries"


class MarketState(Base, rx.State):
    currencies: list[str] = []
    currency: str = ""
    expiries: list[str] = []
    expiry: str = ALL_LABEL
    oi_fig: go.Figure = empty("loading")
    gex_fig: go.Figure = empty("loading")
    moves: list[Row] = []
    info: str = ""
    note: str = ""
    pcr_oi: str = ""
    pcr_volume: str = ""
    max_pain: str = ""
    flip: str = ""
    gex_net: str = ""
    change: str = ""
    empty: str = ""

    async def _fetch(self):
        expiry = "" if self.expiry == ALL_LABEL else self.expiry
        data, error, ms = await db.run(market_page, self.currency or None, expiry or None)
        if data:
            self.currencies = data["currencies"]
            self.empty = data["empty"]
            if not data["empty"]:
                self.currency = data["currency"]
                self.expiries = [ALL_LABEL, *data["expiries"]]
                lv, pcr = data["levels"], data["pcr"]
                self.info = f"{data['snapshot_id']} · spot {f.usd0(data['spot_usd'])}"
                self.note = f"GEX: {data['dealer_note']}; USD per 1 % spot move, from mark IVs"
                self.pcr_oi = f.number(pcr["pcr_oi"])
                self.pcr_volume = f.number(pcr["pcr_volume"])
                self.max_pain = f"{f.usd0(lv['max_pain_coin_payoff_usd'])} / {f.usd0(lv['max_pain_usd_payoff_usd'])}"
                self.flip = f.usd0(lv["gamma_flip_usd_marks"])
                self.gex_net = f.usd0(data["gex"]["net_usd_per_pct_marks"])
                ch = data["change"]
                self.change = (f"OI 24 h: calls {f.number(ch['calls_change_coin'], 1)}, puts "
                               f"{f.number(ch['puts_change_coin'], 1)} coin ({ch['note']})"
                               if "calls_change_coin" in ch else f"OI 24 h: {ch['note']}")
                self.oi_fig = market_figures.oi_by_strike(data)
                self.gex_fig = market_figures.gex_profile(data)
                self.moves = [Row(m["expiry_code"], f.days(m["days"]), f"±{f.pct(m['implied_move_fraction_marks'], 2)}",
                                  f"±{f.usd0(m['implied_move_usd_marks'])}",
                                  f"{f.usd0(m['one_sigma_low_usd_marks'])} – {f.usd0(m['one_sigma_high_usd_marks'])}",
                                  f.pct(m["atm_iv_marks"]), f.number(m["pcr_oi"]), f.usd0(m["max_pain_coin_payoff_usd"]))
                              for m in data["moves"]]
        self._done(error, ms)

    @rx.event
    async def load(self):
        await self._fetch()

    @rx.event
    async def tick(self, _value: str = ""):
        await self._fetch()

    @rx.event
    async def set_currency(self, value: str):
        self.currency = value
        self.expiry = ALL_LABEL
        await self._fetch()

    @rx.event
    async def set_expiry(self, value: str):
        self.expiry = value
        await self._fetch()


S = MarketState


def page() -> rx.Component:
    return layout(
        S, "Market",
        rx.cond(S.empty != "", notice(S.empty),
                rx.vstack(
                    rx.hstack(stat("Put/call OI", S.pcr_oi, "contracts", id="market-pcr-oi"),
                              stat("Put/call volume", S.pcr_volume, "24 h contracts"),
                              stat("Max pain", S.max_pain, "coin / USD payoff", id="market-max-pain"),
                              stat("Gamma flip", S.flip, "net GEX changes sign"),
                              stat("Net GEX", S.gex_net, "USD per 1 %"),
                              rx.vstack(rx.text(S.info, size="2", color=MUTED), rx.text(S.note, size="1", color=MUTED),
                                        rx.text(S.change, size="1", color=MUTED), spacing="1"),
                              align="center", spacing="4", wrap="wrap"),
                    panel(plot(S.oi_fig, id="market-oi-plot"), width="100%"),
                    panel(plot(S.gex_fig, id="market-gex-plot"), width="100%"),
                    panel(table(["expiry", "days", "move (straddle)", "move USD", "1σ range (ATM IV)", "ATM IV",
                                 "P/C OI", "max pain"], S.moves, 8, id="market-moves"), width="100%"),
                    width="100%", spacing="4")),
        extra=(selector(S.currencies, S.currency, S.set_currency, "market-currency-select"),
               selector(S.expiries, S.expiry, S.set_expiry, "market-expiry-select")),
    )
