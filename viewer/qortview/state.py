"""Reflex states of the pages: each loads its query through `db.run` on page load and on the timer."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import plotly.graph_objects as go
import reflex as rx

from qortview import db, figures, queries
from qortview import fmt as f


@dataclasses.dataclass
class Row:
    """A generic display row: up to 10 string cells and a tone ("ok", "failed", "" ...)."""

    c0: str = ""
    c1: str = ""
    c2: str = ""
    c3: str = ""
    c4: str = ""
    c5: str = ""
    c6: str = ""
    c7: str = ""
    c8: str = ""
    c9: str = ""
    tone: str = ""


@dataclasses.dataclass
class Card:
    """A currency card on the overview."""

    currency: str = ""
    snapshot_id: str = ""
    timestamp: str = ""
    spot: str = ""
    atm30: str = ""
    atm30_surface: str = ""
    instruments: str = ""
    expiries: str = ""
    snapshots: str = ""
    priced: str = ""
    source: str = ""


@dataclasses.dataclass
class ChainRow:
    strike: str = ""
    atm: bool = False
    c_symbol: str = ""
    c_oi: str = ""
    c_vega: str = ""
    c_gamma: str = ""
    c_delta: str = ""
    c_model_iv: str = ""
    c_mark_iv: str = ""
    c_bid: str = ""
    c_ask: str = ""
    c_usd: str = ""
    c_coin: str = ""
    p_symbol: str = ""
    p_coin: str = ""
    p_usd: str = ""
    p_bid: str = ""
    p_ask: str = ""
    p_mark_iv: str = ""
    p_model_iv: str = ""
    p_delta: str = ""
    p_gamma: str = ""
    p_vega: str = ""
    p_oi: str = ""


@dataclasses.dataclass
class Leg:
    side: str = ""
    quantity: str = ""
    symbol: str = ""
    price: str = ""
    iv: str = ""


@dataclasses.dataclass
class Suggestion:
    strategy: str = ""
    currency: str = ""
    expiry: str = ""
    score: str = ""
    status: str = ""
    reasoning: str = ""
    premium_coin: str = ""
    premium_usd: str = ""
    max_profit: str = ""
    max_loss: str = ""
    breakevens: str = ""
    pop: str = ""
    track: str = ""
    legs: list[Leg] = dataclasses.field(default_factory=list)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%H:%M:%S UTC")


class Base(rx.State, mixin=True):
    """Shared status: store description, last error, last load time and refresh count."""

    error: str = ""
    store: str = ""
    load_ms: int = 0
    refreshed: str = ""
    refreshes: int = 0
    loaded: bool = False

    def _done(self, error: str, ms: float) -> None:
        self.error = error
        self.store = db.describe()
        self.load_ms = int(round(ms))
        self.refreshed = _now()
        self.refreshes += 1
        self.loaded = True


class OverviewState(Base, rx.State):
    cards: list[Card] = []
    runs: list[Row] = []
    steps: list[Row] = []
    counts: list[Row] = []
    has_options: bool = False
    prices_line: str = ""
    empty_options: str = queries.empty_hint("options_data")

    async def _fetch(self):
        data, error, ms = await db.run(db.overview)
        if data:
            self.cards = [Card(currency=c["currency"], snapshot_id=c["snapshot_id"], timestamp=f.text(c["timestamp"]),
                               spot=f.usd(c["spot_usd"]), atm30=f.pct(c["atm_iv_30d_marks"]),
                               atm30_surface=f.pct(c["atm_iv_30d_svi"]), instruments=f.integer(c["instruments"]),
                               expiries=f.integer(c["expiries"]), snapshots=f.integer(c["snapshots"]),
                               priced=f.integer(c["priced"]), source=f.text(c["source"])) for c in data["currencies"]]
            self.runs = [Row(r["step"], r["status"], f.text(r["started"]), f.days(None) if r["seconds"] is None else f"{r['seconds']:.1f} s",
                             r["trigger"], r["counts"], r["error"], tone=r["status"]) for r in data["runs"]]
            self.steps = [Row(r["step"], r["status"], f.text(r["started"]), r["error"], tone=r["status"])
                          for r in data["last_per_step"]]
            self.counts = [Row(name, f.integer(n), queries.empty_hint(name) if n == 0 else "", tone="empty" if n == 0 else "")
                           for name, n in data["counts"].items()]
            self.has_options = bool(data["currencies"])
            self.prices_line = (f"daily prices: {len(data['price_symbols'])} assets ({', '.join(data['price_symbols'][:12])}"
                                f"{'…' if len(data['price_symbols']) > 12 else ''}), last day {data['latest_price_day']}"
                                if data["price_symbols"] else queries.empty_hint("price_data"))
        self._done(error, ms)

    @rx.event
    async def load(self):
        await self._fetch()

    @rx.event
    async def tick(self, _value: str = ""):
        await self._fetch()


class ChainState(Base, rx.State):
    currencies: list[str] = []
    currency: str = ""
    expiries: list[str] = []
    expiry: str = ""
    rows: list[ChainRow] = []
    info: str = ""
    forward: str = ""
    spot: str = ""
    priced_note: str = ""
    empty: str = ""

    async def _fetch(self):
        def work(rdb, currency, expiry):
            curs = queries.currencies(rdb)
            cur = currency if currency in curs else (curs[0] if curs else "")
            return curs, (queries.chain(rdb, cur, expiry or None) if cur else None)

        (result, error, ms) = await db.run(work, self.currency, self.expiry)
        if result:
            curs, ch = result
            self.currencies = curs
            if ch:
                self.currency = ch["currency"]
                self.expiries = ch["expiries"]
                self.expiry = ch["expiry"] or ""
                self.forward = f.usd(ch.get("forward_usd"))
                self.spot = f.usd(ch.get("spot_usd"))
                self.info = (f"{ch['snapshot_id']} · expiry {ch.get('expiry_date', '')} · {f.days(ch.get('days'))} · "
                             f"{len(ch['rows'])} of {ch.get('strikes_total', 0)} strikes around the forward")
                self.priced_note = "" if ch.get("priced") else "model IV and greeks need `qortcli price` (Deribit's published greeks shown where present)"
                self.rows = [self._row(r) for r in ch["rows"]]
            self.empty = "" if curs else queries.empty_hint("options_data")
        self._done(error, ms)

    @staticmethod
    def _row(r: dict) -> ChainRow:
        c, p = r["call"], r["put"]
        return ChainRow(strike=f.number(r["strike"], 0), atm=r["atm"],
                        c_symbol=f.text(c.get("symbol")), c_oi=f.integer(c.get("open_interest")), c_vega=f.number(c.get("vega"), 2),
                        c_gamma=f.small(c.get("gamma")), c_delta=f.signed(c.get("delta")), c_model_iv=f.pct(c.get("model_iv")),
                        c_mark_iv=f.pct(c.get("mark_iv")), c_bid=f.coin(c.get("bid_coin")), c_ask=f.coin(c.get("ask_coin")),
                        c_usd=f.usd(c.get("premium_usd")), c_coin=f.coin(c.get("premium_coin")),
                        p_symbol=f.text(p.get("symbol")), p_coin=f.coin(p.get("premium_coin")), p_usd=f.usd(p.get("premium_usd")),
                        p_bid=f.coin(p.get("bid_coin")), p_ask=f.coin(p.get("ask_coin")), p_mark_iv=f.pct(p.get("mark_iv")),
                        p_model_iv=f.pct(p.get("model_iv")), p_delta=f.signed(p.get("delta")), p_gamma=f.small(p.get("gamma")),
                        p_vega=f.number(p.get("vega"), 2), p_oi=f.integer(p.get("open_interest")))

    @rx.event
    async def load(self):
        await self._fetch()

    @rx.event
    async def tick(self, _value: str = ""):
        await self._fetch()

    @rx.event
    async def set_currency(self, value: str):
        self.currency = value
        self.expiry = ""
        await self._fetch()

    @rx.event
    async def set_expiry(self, value: str):
        self.expiry = value
        await self._fetch()


class VolState(Base, rx.State):
    currencies: list[str] = []
    currency: str = ""
    surface_fig: go.Figure = figures.empty("loading")
    smile_fig: go.Figure = figures.empty("loading")
    term_fig: go.Figure = figures.empty("loading")
    skew_fig: go.Figure = figures.empty("loading")
    term_rows: list[Row] = []
    info: str = ""
    atm30: str = ""
    surface_note: str = ""
    fit_line: str = ""
    empty: str = ""

    async def _fetch(self):
        def work(rdb, currency):
            curs = queries.currencies(rdb)
            cur = currency if currency in curs else (curs[0] if curs else "")
            return curs, (queries.volatility(rdb, cur) if cur else None)

        result, error, ms = await db.run(work, self.currency)
        if result:
            curs, vol = result
            self.currencies = curs
            if vol and vol.get("snapshot_id"):
                self.currency = vol["currency"]
                self.surface_fig = figures.surface3d(vol)
                self.smile_fig = figures.smiles(vol)
                self.term_fig = figures.term_structure(vol)
                self.skew_fig = figures.skew(vol)
                self.atm30 = f.pct(vol.get("atm_iv_30d_marks"))
                self.info = f"{vol['snapshot_id']} · {len(vol['smiles'])} expiries"
                self.surface_note = "" if vol["has_surface"] else queries.empty_hint("volatility_surfaces") + " for the SVI fit"
                d = vol.get("diagnostics") or {}
                self.fit_line = (f"SVI fit: {d.get('fitted')} of {d.get('slices')} expiries · RMSE median "
                                 f"{f.number(d.get('rmse_median_vol_points'), 2)} vol pts (max {f.number(d.get('rmse_max_vol_points'), 2)}) · "
                                 f"butterfly {'ok' if d.get('butterfly_ok') else 'violations'} · calendar "
                                 f"{'ok' if d.get('calendar_ok') else 'violations'} · 30d ATM (SVI) {f.pct(d.get('atm_iv_30d_svi'))} · "
                                 f"30d var-swap (SVI) {f.pct(d.get('vs_vol_30d_svi'))}") if d else ""
                self.term_rows = [Row(t["expiry"], f.days(t["days"]), f.pct(t["atm_iv_marks"]), f.vol_pts(t["rr25_marks"]),
                                      f.vol_pts(t["rr25_svi"]), f.vol_pts(t["bf25_marks"]), f.vol_pts(t["bf25_svi"]),
                                      f.pct(t["call25_iv_marks"]), f.pct(t["put25_iv_marks"]), f.usd0(t["forward_usd"]))
                                  for t in vol["term"]]
            self.empty = "" if curs else queries.empty_hint("options_data")
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
        await self._fetch()


class PortfolioState(Base, rx.State):
    has_data: bool = False
    empty: str = queries.empty_hint("portfolio_data")
    title: str = ""
    assets: list[Row] = []
    sectors: list[Row] = []
    metrics: list[Row] = []
    oos: list[Row] = []
    excluded: list[Row] = []
    asset_fig: go.Figure = figures.empty("loading")
    sector_fig: go.Figure = figures.empty("loading")
    equity_fig: go.Figure = figures.empty("loading")

    @staticmethod
    def _metric(name: str, value) -> str:
        if value is None:
            return f.DASH
        if name in ("days",):
            return f.integer(value)
        if name in ("sharpe", "sortino", "calmar", "omega"):
            return f.number(value, 2)
        return f.pct(value, 2)

    async def _fetch(self):
        data, error, ms = await db.run(queries.portfolio)
        self.has_data = bool(data)
        if data:
            self.title = f"{data['portfolio_id']} · model {data['model']} · {data['timestamp']}"
            self.assets = [Row(r["symbol"], f.pct(r["weight"], 2), r["sector"]) for r in data["assets"]]
            self.sectors = [Row(r["sector"], f.pct(r["weight"], 2)) for r in data["sectors"]]
            self.metrics = [Row(m["name"], self._metric(m["name"], m["portfolio"]), self._metric(m["name"], m["benchmark"]))
                            for m in data["in_sample"]]
            self.oos = [Row(m["name"], self._metric(m["name"], m["portfolio"]), self._metric(m["name"], m["benchmark"]))
                        for m in data["out_of_sample"]]
            self.excluded = [Row(e["symbol"], e["reason"]) for e in data["excluded"]]
            self.asset_fig = figures.weights_bar(data["assets"], "symbol", "Weights by asset")
            self.sector_fig = figures.weights_bar(data["sectors"], "sector", "Weights by sector")
            self.equity_fig = figures.equity(data["backtest"])
        self._done(error, ms)

    @rx.event
    async def load(self):
        await self._fetch()

    @rx.event
    async def tick(self, _value: str = ""):
        await self._fetch()


class SuggestState(Base, rx.State):
    cards: list[Suggestion] = []
    payoff_figs: list[go.Figure] = []
    track: list[Row] = []
    track_summary: str = ""
    empty: str = queries.empty_hint("strategy_suggestions")
    has_data: bool = False

    @staticmethod
    def _max(card: dict, kind: str) -> str:
        usd = "unbounded" if card.get(f"max_{kind}_usd_unbounded") else f.usd(card.get(f"max_{kind}_usd"))
        coin = "unbounded" if card.get(f"max_{kind}_coin_unbounded") else f.coin(card.get(f"max_{kind}_coin"))
        return f"{usd} / {coin} coin"

    async def _fetch(self):
        data, error, ms = await db.run(queries.suggestions)
        if data:
            self.has_data = bool(data["cards"]) or bool(data["track"]["rows"])
            self.cards = [Suggestion(
                strategy=c["strategy"].replace("_", " "), currency=c["currency"], expiry=c["expiry"], score=f.number(c["score"], 2),
                status=c["status"], reasoning=c["reasoning"], premium_coin=f.coin(c["premium_coin"]),
                premium_usd=f.usd(c["premium_usd"]), max_profit=self._max(c, "profit"), max_loss=self._max(c, "loss"),
                breakevens=", ".join(f.usd0(b) for b in c["breakevens_usd"]) or f.DASH, pop=f.pct(c["pop"]),
                track=(f"{c['track_points']} marks, last {f.usd(c['last_mark_pnl_usd'])}" if c["track_points"] else "not yet marked"),
                legs=[Leg(side=l["side"], quantity=f.number(l["quantity"], 2) if l["quantity"] is not None else "",
                          symbol=l["symbol"], price=f.coin(l["price_coin"]), iv=f.pct(l["iv"])) for l in c["legs"]],
            ) for c in data["cards"]]
            self.payoff_figs = [figures.payoff(c) for c in data["cards"]]
            tr = data["track"]
            self.track = [Row(r["strategy"].replace("_", " "), r["currency"], r["expiry"], f.text(r["timestamp"]), r["status"],
                              f.usd(r["last_mark_pnl_usd"]), f.usd(r["settled_pnl_usd"]), str(r["track_points"]), tone=r["status"])
                          for r in tr["rows"]]
            self.track_summary = (f"{tr['total']} suggestions · {tr['open']} open · {tr['settled']} settled"
                                  + (f" · {tr['wins']} won · settled P/L {f.usd(tr['settled_pnl_usd'])}" if tr["settled"] else ""))
        self._done(error, ms)

    @rx.event
    async def load(self):
        await self._fetch()

    @rx.event
    async def tick(self, _value: str = ""):
        await self._fetch()
