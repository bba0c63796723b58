"""History: ATM IV vs realised vol and the 30-day forecast over time, IV rank/percentile, RR25/BF25 history and the
vol cone with today's term structure over it, from the summaries and the stored `qortcli vol` analysis
(`qortview.history.history_page`).

Its state lives here (not in qortview/state.py) so the page is one self-contained module to register.
"""

from __future__ import annotations

from typing import ClassVar

import plotly.graph_objects as go
import reflex as rx

from qortview import history_figures
from qortview import fmt as f
from qortview.components import MUTED, layout, notice, panel, plot, selector, stat, table
from qortview.figures import empty as empty_figure
from qortview.history import SOURCES, history_page
from qortview.state import Base, Row

MEASURES = history_figures.MEASURES
MODELS = {"har": "HAR-RV", "garch": "GARCH(1,1)-t", "gjr": "GJR-GARCH-t", "naive": "naive (RV persists)",
          "implied": "implied (ATM IV)"}


def _value(measure: str, value) -> str:
    return f.pct(value) if measure == "atm_iv_30d" else f.vol_pts(value)


def _span(start, end) -> str:
    return f"{str(start)[:10]} … {str(end)[:10]}" if start else f.DASH


class HistoryState(Base, rx.State):
    currencies: list[str] = []
    currency: str = ""
    sources: list[str] = list(SOURCES)
    source: str = "marks"
    empty: str = ""
    vol_note: str = ""
    info: str = ""
    iv_now: str = ""
    iv_pct: str = ""
    rv_now: str = ""
    forecast: str = ""
    ranks: list[Row] = []
    scores: list[Row] = []
    ivrv_fig: go.Figure = empty_figure("loading")
    ranks_fig: go.Figure = empty_figure("loading")
    skew_fig: go.Figure = empty_figure("loading")
    cone_fig: go.Figure = empty_figure("loading")

    PAGE: ClassVar[str] = "history"

    def _selection(self) -> dict:
        chosen = {"source": self.source}
        if self.currency:
            chosen["currency"] = self.currency
        return chosen

    def _show(self, page: dict) -> None:
        self.currencies, self.empty = page["currencies"], page["empty"]   # (equal values are not resent: Base)
        if not page["currency"]:
            return
        self.currency = page["currency"]
        self.vol_note = page["vol_note"]
        self.info = (f"vol analysis as of {str(page['as_of'])[:10]} (IV {str(page['iv_as_of'])[:10]}), computed "
                     f"{str(page['computed_at'])[:16]} UTC · IV source {page['source']}" if page["as_of"] else "")
        ivs = [v for v in page["iv_rv"]["atm_iv_30d"] if v is not None]
        rvs = [v for v in page["iv_rv"]["rv_30d"] if v is not None]
        self.iv_now = f.pct(ivs[-1]) if ivs else f.DASH
        self.rv_now = f.pct(rvs[-1]) if rvs else f.DASH
        year = next((r for r in page["ranks"] if r["measure"] == "atm_iv_30d" and r["lookback_days"] == 365), None)
        self.iv_pct = (f"{f.number(year['percentile'])} / {f.number(year['rank'])}" if year and year["percentile"]
                       is not None else (year["reason"] if year else f.DASH))
        best = next((b for b in page["best"] if b["horizon_days"] == 30), None)
        self.forecast = (f"{f.pct(best['vol'])} ({MODELS.get(best['model'], best['model'])})" if best and best["model"]
                         else (best["reason"] if best else f.DASH))
        self.ranks = [Row(MEASURES.get(r["measure"], r["measure"]), f"{r['lookback_days']} d", _value(r["measure"], r["value"]),
                          f.number(r["rank"]), f.number(r["percentile"]), f.integer(r["n_points"]),
                          _span(r["span_start"], r["span_end"]) + ("" if r["covers_lookback"] else " (short)"),
                          r["reason"] or "") for r in page["ranks"]]
        by = {(s["model"], s["horizon_days"]): s for s in page["scores"]}
        self.scores = [Row(MODELS.get(m, m), *[f.small(by.get((m, h), {}).get(k)) for h in (7, 30)
                                              for k in ("qlike", "mse")],
                           *[f.pct(by.get((m, h), {}).get("rmse_vol")) for h in (7, 30)],
                           f.integer(by.get((m, 30), {}).get("n")))
                       for m in MODELS if any((m, h) in by for h in (7, 30))]
        self.ivrv_fig = history_figures.iv_rv_forecast(page)
        self.ranks_fig = history_figures.ranks(page)
        self.skew_fig = history_figures.skew_history(page)
        self.cone_fig = history_figures.cone(page)

    @rx.event
    async def set_currency(self, value: str):
        self.currency = value
        await self._refresh(force=True)

    @rx.event
    async def set_source(self, value: str):
        self.source = value
        await self._refresh(force=True)


S = HistoryState


def page() -> rx.Component:
    return layout(
        S, "History",
        rx.cond(S.empty != "", notice(S.empty),
                rx.vstack(
                    rx.cond(S.vol_note != "", notice(S.vol_note)),
                    rx.hstack(stat("ATM IV 30d", S.iv_now, "latest daily summary", id="history-iv"),
                              stat("RV 30d", S.rv_now, "trailing close-close"),
                              stat("IV percentile / rank", S.iv_pct, "365-day lookback", id="history-iv-pct"),
                              stat("30d RV forecast", S.forecast, "best out-of-sample QLIKE", id="history-forecast"),
                              rx.text(S.info, size="1", color=MUTED), align="center", spacing="4", wrap="wrap"),
                    panel(plot(S.ivrv_fig, id="history-ivrv-plot"), width="100%"),
                    rx.grid(panel(plot(S.ranks_fig, id="history-ranks-plot")),
                            panel(plot(S.skew_fig, id="history-skew-plot")), columns="2", gap="16px", width="100%"),
                    panel(plot(S.cone_fig, id="history-cone-plot"), width="100%"),
                    panel(rx.heading("Rank and percentile", size="4"),
                          table(["measure", "lookback", "now", "rank", "percentile", "points", "span", "note"],
                                S.ranks, 8, id="history-ranks"), width="100%"),
                    panel(rx.heading("Out-of-sample scores (losses on annualised variance; same origins per horizon)",
                                     size="4"),
                          table(["model", "7d QLIKE", "7d MSE", "30d QLIKE", "30d MSE", "7d RMSE", "30d RMSE", "n (30d)"],
                                S.scores, 8, id="history-scores"), width="100%"),
                    width="100%", spacing="4")),
        extra=(selector(S.currencies, S.currency, S.set_currency, "history-currency-select"),
               selector(S.sources, S.source, S.set_source, "history-source-select")),
    )
