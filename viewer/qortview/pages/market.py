"""Market: open interest by strike (calls up, puts down), dealer gamma profile, put/call ratios, implied moves."""

from __future__ import annotations

from typing import ClassVar

import reflex as rx

from qortview import figures, market_figures
from qortview import fmt as f
from qortview.components import layout, note, notice, panel, plot, row, selector, stack, stat, table
from qortview.state import Base, Row

ALL_LABEL = "all expiries"


class MarketState(Base, rx.State):
    PAGE: ClassVar[str] = "market"
    currencies: list[str] = []
    currency: str = ""
    expiries: list[str] = []
    expiry: str = ALL_LABEL
    oi_fig: dict = figures.BLANK
    gex_fig: dict = figures.BLANK
    oi_title: str = ""
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

    def _selection(self) -> dict:
        out = {"currency": self.currency} if self.currency else {}
        if self.expiry and self.expiry != ALL_LABEL:
            out["expiry"] = self.expiry
        return out

    def _show(self, data: dict) -> None:
        self._put(currencies=data["currencies"], empty=data["empty"])
        if data["empty"]:
            return
        self._put(currency=data["currency"], expiries=[ALL_LABEL, *data["expiries"]], expiry=data["expiry"] or ALL_LABEL)
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
        self.oi_title = f"Open interest by strike · {data.get('expiry') or 'all expiries'}"
        self.oi_fig = figures.plain(market_figures.oi_by_strike(data))
        self.gex_fig = figures.plain(market_figures.gex_profile(data))
        self.moves = [Row(m["expiry_code"], f.days(m["days"]), f"±{f.pct(m['implied_move_fraction_marks'], 2)}",
                          f"±{f.usd0(m['implied_move_usd_marks'])}",
                          f"{f.usd0(m['one_sigma_low_usd_marks'])} – {f.usd0(m['one_sigma_high_usd_marks'])}",
                          f.pct(m["atm_iv_marks"]), f.number(m["pcr_oi"]), f.usd0(m["max_pain_coin_payoff_usd"]))
                      for m in data["moves"]]

    def _ages(self, data: dict) -> list[tuple]:
        return [] if data.get("empty") else [(f"{data['currency']} chain", data["timestamp"], "chain")]

    @rx.event
    async def set_currency(self, value: str):
        self.currency = value
        self.expiry = ALL_LABEL
        await self._refresh(force=True)

    @rx.event
    async def set_expiry(self, value: str):
        self.expiry = value
        await self._refresh(force=True)


S = MarketState
STATE = S


def page() -> rx.Component:
    return layout(
        S, "Market",
        rx.cond(S.empty != "", notice(S.empty),
                stack(
                    row(stat("Put/call OI", S.pcr_oi, "contracts", id="market-pcr-oi"),
                        stat("Put/call volume", S.pcr_volume, "24 h contracts"),
                        stat("Max pain", S.max_pain, "coin / USD payoff", id="market-max-pain"),
                        stat("Gamma flip", S.flip, "net GEX changes sign"),
                        stat("Net GEX", S.gex_net, "USD per 1 %")),
                    rx.el.div(note(S.info), note(S.note), note(S.change)),
                    panel(plot(S.oi_fig, S.loaded, id="market-oi-plot"), title=S.oi_title,
                          sub="contracts (1 = 1 coin): calls up, puts below zero; spot, forward, max pains and the gamma "
                              "flip marked"),
                    panel(plot(S.gex_fig, S.loaded, id="market-gex-plot"), title="Dealer gamma exposure",
                          sub="USD per 1 % spot move, repriced across spot from marks (sticky strike); bars: by strike at spot"),
                    panel(table(["expiry", "days", "move (straddle)", "move USD", "1σ range (ATM IV)", "ATM IV",
                                 "P/C OI", "max pain"], S.moves, 8, numeric=(1, 2, 3, 5, 6, 7), id="market-moves"),
                          title="Implied moves", sub="ATM straddle / forward, from marks; 1σ from the ATM IV"),
                )),
        extra=(selector(S.currencies, S.currency, S.set_currency, "market-currency-select"),
               selector(S.expiries, S.expiry, S.set_expiry, "market-expiry-select")),
        route="/market",
    )
