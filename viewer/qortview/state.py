"""Reflex states of the pages. Each mixes in `Base`: the page's data loads once on open (the page's `load`),
and the refresh clock's `tick` asks the store thread only for the page's version stamp — when it is the one
shown, nothing is assigned and the reply carries no data; when it changed, the data is fetched (once for every
client, `qortview.db`) and assigned only if its content digest differs. Selections (currency, expiry, strike
range, sort, portfolio) live in the state and survive refreshes.

A page state sets `PAGE` (a key of `queries.PAGE_LOADS`), `_selection()` (keyword arguments of its load) and
`_show(data)` (assign the display values); `_ages(data)` lists the data times to show and flag.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import ClassVar

import reflex as rx

from qortview import ages as age_rules
from qortview import db, figures
from qortview import fmt as f
from qortview import queries

CHAIN_RANGES = ["ATM ±10 strikes", "ATM ±20 strikes", "80–125 % of forward", "all strikes"]
DEFAULT_RANGE = "ATM ±20 strikes"
LIVE_POLL_MS = 500            # the chain's poll of the live stamp while the stream writes its currency
#: after a load or a new selection: the chain's ATM row in the middle of its panel, and (on a narrow screen) the
#: strike column in the middle of the sideways scroll
CENTRE_CHAIN_JS = ("setTimeout(() => {const b = document.getElementById('chain-scroll'); if (!b) return;"
                   " const a = b.querySelector('tr.atm-row'); if (a) b.scrollTop = Math.max(0, a.offsetTop - b.clientHeight / 2);"
                   " const k = b.querySelector('th.pin-k'); if (k && b.scrollWidth > b.clientWidth)"
                   " b.scrollLeft = Math.max(0, k.offsetLeft + k.offsetWidth / 2 - b.clientWidth / 2);}, 80)")


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
class AgeRow:
    label: str = ""
    at_text: str = ""
    iso: str = ""
    stale: bool = False
    rule: str = ""
    note: str = ""


def _age_rows(sources, now=None) -> list[AgeRow]:
    """Display rows of (label, time, kind[, whole day]) data times."""
    out = []
    for label, at, kind, *day in sources:
        a = age_rules.age(label, at, kind, now, day=bool(day and day[0]))
        out.append(AgeRow(label=a.label, at_text=a.at_text, iso=a.iso, stale=a.stale, rule=a.rule, note=a.note))
    return out


class Base(rx.State, mixin=True):
    """Shared status (store, error, data ages, load count and time) and the load/refresh protocol."""

    PAGE: ClassVar[str] = ""

    error: str = ""
    load_note: str = ""
    store: str = ""
    load_ms: int = 0
    refreshes: int = 0
    loaded: bool = False
    version_short: str = ""
    ages: list[AgeRow] = []
    _version: str = ""
    _digest: str = ""
    _age_src: tuple = ()
    _checked: float = 0.0

    def __setattr__(self, name: str, value) -> None:
        """An assignment of the value a var already holds is skipped: Reflex would send it to the browser again
        (this keeps a page that refetches by itself, e.g. on a timer, from resending unchanged data)."""
        if not name.startswith("_") and name in type(self).base_vars:
            try:
                if getattr(self, name) == value:
                    return
            except Exception:  # values without a plain equality (arrays): assign
                pass
        super().__setattr__(name, value)

    # -- to override
    def _selection(self) -> dict:
        return {}

    def _show(self, data: dict) -> None:
        raise NotImplementedError

    def _ages(self, data: dict) -> list[tuple]:
        return []

    # -- protocol
    def _put(self, **values) -> None:
        """Assign several vars (`__setattr__` skips the unchanged ones)."""
        for name, value in values.items():
            setattr(self, name, value)

    def _on_time(self) -> None:
        """What changes with the clock alone (no new data): the ages' stale flags."""
        self.ages = _age_rows(self._age_src)      # assigned only if a flag changed (see __setattr__)

    async def _refresh(self, force: bool = True) -> None:
        res = await db.load(self.PAGE, self._selection(), None if force else self._version)
        self._checked = time.monotonic()
        if res.status == "same":
            self._on_time()
            return
        if res.status == "error":
            self._put(error=res.error, loaded=True, store=db.describe())
            return
        self._version = res.version
        if res.digest != self._digest:
            self._digest = res.digest
            self._show(res.data)
            self._age_src = tuple(self._ages(res.data))
            self.refreshes += 1
            self.load_ms = int(round(res.ms))
            self.version_short = res.digest[:10]
        self._put(error="", load_note=res.note, loaded=True, store=db.describe())
        self._on_time()

    @rx.event
    async def load(self):
        """The page opened: its data, once."""
        await self._refresh(force=True)

    @rx.event
    async def tick(self, _value: str = ""):
        """The refresh clock: a version check (the clock's first firing, right after `load`, is skipped)."""
        if time.monotonic() - self._checked < 0.5 * db.refresh_seconds():
            return
        await self._refresh(force=False)


# ============================================================================================ overview

@dataclasses.dataclass
class Card:
    """A currency card on the overview."""

    currency: str = ""
    snapshot_id: str = ""
    timestamp: str = ""
    spot: str = ""
    atm30: str = ""
    atm30_svi: str = ""
    vs30: str = ""
    rr25: str = ""
    pcr: str = ""
    max_pain: str = ""
    instruments: str = ""
    expiries: str = ""
    snapshots: str = ""
    priced: str = ""
    source: str = ""
    summary_note: str = ""


class OverviewState(Base, rx.State):
    PAGE: ClassVar[str] = "overview"
    cards: list[Card] = []
    runs: list[Row] = []
    jobs: list[Row] = []
    counts: list[Row] = []
    alerts: list[Row] = []
    has_alerts: bool = False
    alerts_line: str = ""
    _jobs: tuple = ()
    has_options: bool = False
    prices_line: str = ""
    empty_options: str = queries.NO_CHAIN

    def _show(self, data: dict) -> None:
        cards = []
        for c in data["currencies"]:
            lag = ""
            if c.get("summary_snapshot_id") is None:
                lag = "no summary stored yet — run `qortcli surface` (smile figures appear then)"
            elif c["summary_snapshot_id"] != c["snapshot_id"]:
                lag = f"summary of {c['summary_snapshot_id']} (the latest chain has none yet)"
            cards.append(Card(
                currency=c["currency"], snapshot_id=c["snapshot_id"], timestamp=f.text(c["timestamp"])[:16].replace("T", " "),
                spot=f.usd(c.get("index_usd")), atm30=f.pct(c.get("atm_iv_30d_marks")), atm30_svi=f.pct(c.get("atm_iv_30d_svi")),
                vs30=f.pct(c.get("vs_vol_30d_svi")), rr25=f.vol_pts(c.get("rr25_30d_marks")), pcr=f.number(c.get("pcr_oi")),
                max_pain=f.usd0(c.get("max_pain_coin_payoff_usd")), instruments=f.integer(c.get("instruments")),
                expiries=f.integer(c.get("n_expiries")), snapshots=f.integer(c.get("snapshots")),
                priced=f.integer(c.get("priced")) if c.get("priced") is not None else "—", source=f.text(c.get("source")),
                summary_note=lag))
        self.cards = cards
        self.has_options = bool(cards)
        self._jobs = tuple(data["jobs"])       # rows drawn by _on_time, which follows every _show
        alerts = data.get("alerts")
        self.has_alerts = alerts is not None
        self.alerts = [Row(a.get("severity") or "", a.get("short_id") or a.get("id") or "", a.get("rule") or "",
                           a.get("subject") or "", a.get("latest_title") or a.get("title") or "", a.get("opened_at") or "",
                           "acknowledged" if a.get("acknowledged") else "open", a.get("delivery") or "",
                           tone="failed" if a.get("severity") == "critical" else "running" if a.get("severity") == "warning"
                           else "open") for a in alerts or []]
        self.alerts_line = (f"{len(self.alerts)} open — acknowledge with `qortcli alerts ack ID`" if self.alerts
                            else "no open alert")
        self.runs = [Row(r["step"], r["status"], f.text(r["started"])[:19].replace("T", " "),
                         f.DASH if r["seconds"] is None else f"{r['seconds']:.1f} s", r["trigger"] + (f" · {r['job']}" if r["job"] else ""),
                         r["counts"], r["error"], tone=r["status"]) for r in data["runs"]]
        self.counts = [Row(name, f.integer(n), data["hints"].get(name, ""), tone="empty" if n == 0 else "")
                       for name, n in data["counts"].items()]
        syms = data["price_symbols"]
        self.prices_line = (f"daily prices: {len(syms)} assets ({', '.join(syms[:12])}{'…' if len(syms) > 12 else ''}), "
                            f"last day {data['price_day']}" if syms else queries.empty_hint("price_data"))

    def _job_rows(self) -> None:
        """Each job's last run and whether it is older than its schedule (re-evaluated on every refresh tick)."""
        jobs = []
        for j in self._jobs:
            last = j["last"] or {}
            a = age_rules.age(j["job"], last.get("ended") or last.get("started"), j["job"])
            tone = last.get("status") or "empty"
            if a.stale and tone == "ok":
                tone = "stale"
            jobs.append(Row(j["job"], j["rule"], last.get("status") or "never run", a.at_text, a.iso,
                            "older than its schedule" if a.stale else "", last.get("error") or "", tone=tone))
        self.jobs = jobs

    def _on_time(self) -> None:
        super()._on_time()
        self._job_rows()

    def _ages(self, data: dict) -> list[tuple]:
        out = [(f"{c['currency']} chain", c["timestamp"], "chain") for c in data["currencies"]]
        out += [(f"{c['currency']} summary", c["summary_timestamp"], "summary") for c in data["currencies"]
                if c.get("summary_timestamp")]
        if data.get("price_through"):
            out.append(("prices through", data["price_through"], "prices", True))
        return out


# ============================================================================================ chain

@dataclasses.dataclass
class ChainRow:
    strike: str = ""
    atm: bool = False
    itm_call: bool = False
    itm_put: bool = False
    c_symbol: str = ""
    c_oi: str = ""
    c_vol: str = ""
    c_theta: str = ""
    c_vega: str = ""
    c_gamma: str = ""
    c_delta: str = ""
    c_iv_ba: str = ""
    c_iv: str = ""
    c_ba: str = ""
    c_ba_usd: str = ""
    c_mark: str = ""
    c_mark_usd: str = ""
    c_live: bool = False
    p_symbol: str = ""
    p_oi: str = ""
    p_vol: str = ""
    p_theta: str = ""
    p_vega: str = ""
    p_gamma: str = ""
    p_delta: str = ""
    p_iv_ba: str = ""
    p_iv: str = ""
    p_ba: str = ""
    p_ba_usd: str = ""
    p_mark: str = ""
    p_mark_usd: str = ""
    p_live: bool = False


#: sort keys of the chain's columns → the data column they sort by
SORT_COLUMNS = {"strike": "strike_usd",
                **{f"{side[0]}_{key}": f"{side}_{column}" for side in ("call", "put")
                   for key, column in (("oi", "oi_coin"), ("theta", "theta"), ("vega", "vega"), ("gamma", "gamma"),
                                       ("delta", "delta"), ("iv", "mark_iv"), ("ba", "bid_coin"), ("mark", "mark_coin"))}}


def _pair(a, b, fn) -> str:
    return f"{fn(a)} · {fn(b)}" if a is not None or b is not None else f.DASH


def gamma_exponent(rows: dict) -> int:
    """The power of ten the gamma columns are shown in (their largest magnitude between 1 and 10)."""
    values = [abs(v) for side in ("call", "put") for v in rows.get(f"{side}_gamma") or [] if v]
    return int(math.floor(math.log10(max(values)))) if values else 0


def chain_rows(rows: dict, forward, atm_strike, choice: str, sort_key: str, descending: bool,
               gamma_exp: int = 0) -> list[ChainRow]:
    """The display rows of the chain data's columns: the strikes of the range `choice`, sorted; gamma in units
    of 10^gamma_exp per USD."""
    strikes = rows["strike_usd"]
    idx = list(range(len(strikes)))
    if strikes and choice != "all strikes":
        if choice.startswith("ATM") and atm_strike is not None:
            width = int(choice.split("±")[1].split()[0])
            centre = min(idx, key=lambda i: abs(strikes[i] - atm_strike))
            idx = idx[max(0, centre - width): centre + width + 1]
        elif forward:
            idx = [i for i in idx if 0.8 * forward <= strikes[i] <= 1.25 * forward]
    key = SORT_COLUMNS.get(sort_key, "strike_usd")
    values = rows.get(key) or strikes
    present = [i for i in idx if values[i] is not None]
    missing = [i for i in idx if values[i] is None]
    present.sort(key=lambda i: values[i], reverse=descending)
    out = []
    for i in present + missing:
        k = strikes[i]

        def side(s: str) -> dict:
            g = lambda name: rows[f"{s}_{name}"][i]  # noqa: E731
            p = s[0]
            return {f"{p}_symbol": rows[f"{s}_instrument"][i] or f.DASH, f"{p}_oi": f.compact(g("oi_coin")),
                    f"{p}_vol": f.compact(g("volume_coin")), f"{p}_theta": f.number(g("theta"), 1),
                    f"{p}_vega": f.number(g("vega"), 1),
                    f"{p}_gamma": f.number(g("gamma") / 10 ** gamma_exp, 2) if g("gamma") is not None else f.DASH,
                    f"{p}_delta": f.signed(g("delta"), 3),
                    f"{p}_iv_ba": _pair(g("iv_bid"), g("iv_ask"), lambda x: f.number(100 * x, 1) if x is not None else f.DASH),
                    f"{p}_iv": f.pct(g("mark_iv"), 1), f"{p}_ba": _pair(g("bid_coin"), g("ask_coin"), f.coin),
                    f"{p}_ba_usd": _pair(g("bid_usd"), g("ask_usd"), f.usd0), f"{p}_mark": f.coin(g("mark_coin")),
                    f"{p}_mark_usd": f.usd0(g("mark_usd")), f"{p}_live": g("live_age_s") is not None}

        out.append(ChainRow(strike=f.number(k, 0), atm=k == atm_strike, itm_call=bool(forward and k < forward),
                            itm_put=bool(forward and k > forward), **side("call"), **side("put")))
    return out


class ChainState(Base, rx.State):
    PAGE: ClassVar[str] = "chain"
    currencies: list[str] = []
    currency: str = ""
    expiries: list[str] = []
    expiry: str = ""
    ranges: list[str] = CHAIN_RANGES
    range_choice: str = DEFAULT_RANGE
    sort_key: str = "strike"
    sort_desc: bool = False
    rows: list[ChainRow] = []
    shown: str = ""
    info: str = ""
    forward: str = ""
    spot: str = ""
    atm_iv: str = ""
    greeks_note: str = ""
    live_on: bool = False
    live_line: str = ""
    gamma_unit: str = "per USD"
    empty: str = ""
    _rows: dict = {}
    _forward: float = 0.0
    _atm: float = 0.0
    _live_stamp: str = ""

    def _selection(self) -> dict:
        return {k: v for k, v in (("currency", self.currency), ("expiry", self.expiry)) if v}

    def _show(self, data: dict) -> None:
        self._put(currencies=data["currencies"], empty=data["empty"])
        if data["empty"]:
            self.rows = []
            return
        self._put(currency=data["currency"], expiries=data["expiries"], expiry=data["expiry"] or "")
        self._rows = data["rows"]
        self._forward = data["forward_usd"] or 0.0
        self._atm = data["atm_strike_usd"] or 0.0
        self.forward = f.usd(data["forward_usd"])
        self.spot = f.usd(data["spot_usd"])
        self.info = (f"{data['snapshot_id']} · expiry {f.text(data['expiry_date'])[:16].replace('T', ' ')} UTC · "
                     f"{f.days(data['days'])} · {data['strikes_total']} strikes, {data['options']} options · "
                     f"t on {data['basis']}")
        self.greeks_note = (f"Greeks: {data['greeks_source']} — Δ per coin, Γ per USD, vega USD per vol point, θ USD per day "
                            "(forward-USD, Deribit's convention); USD prices are coin × the spot index.")
        live = data.get("live")
        self.live_on = live is not None
        self.live_line = (f"live marks and greeks from the stream on {live['matched']} of {data['options']} options "
                          f"({'connected' if live['connected'] else 'feed down'}); bid/ask, OI and volume from the snapshot"
                          if live else "")
        self._render()

    def _render(self) -> None:
        if not self._rows:
            return
        exp = gamma_exponent(self._rows)
        self._put(gamma_unit=f"×1e{exp} /USD" if exp else "per USD")
        self.rows = chain_rows(self._rows, self._forward or None, self._atm or None, self.range_choice, self.sort_key,
                               self.sort_desc, exp)
        self.shown = f"{len(self.rows)} of {len(self._rows['strike_usd'])} strikes"

    def _ages(self, data: dict) -> list[tuple]:
        if data.get("empty"):
            return []
        out = [(f"{data['currency']} chain", data["timestamp"], "chain")]
        if data.get("live"):
            out.append(("live marks", data["live"]["updated_at"], "live"))
        return out

    @rx.event
    async def load(self):
        await self._refresh(force=True)
        return rx.call_script(CENTRE_CHAIN_JS)

    @rx.event
    async def set_currency(self, value: str):
        self.currency, self.expiry = value, ""
        await self._refresh(force=True)
        return rx.call_script(CENTRE_CHAIN_JS)

    @rx.event
    async def set_expiry(self, value: str):
        self.expiry = value
        await self._refresh(force=True)
        return rx.call_script(CENTRE_CHAIN_JS)

    @rx.event
    def set_range(self, value: str):
        self.range_choice = value
        self._render()
        return rx.call_script(CENTRE_CHAIN_JS)

    @rx.event
    def sort_by(self, key: str):
        if self.sort_key == key:
            self.sort_desc = not self.sort_desc
        else:
            self.sort_key, self.sort_desc = key, key in ("c_oi", "p_oi")
        self._render()

    @rx.event
    async def live_tick(self, _value: str = ""):
        """The fast poll while the stream writes this currency: a tiny stamp, the data only when it moved."""
        if not self.currency:
            return
        stamp = await db.live_stamp(self.currency)
        if stamp != self._live_stamp:
            self._live_stamp = stamp
            await self._refresh(force=False)


# ============================================================================================ volatility

class VolState(Base, rx.State):
    PAGE: ClassVar[str] = "volatility"
    currencies: list[str] = []
    currency: str = ""
    smile_choices: list[str] = []
    smile_expiry: str = ""
    surface_fig: dict = figures.BLANK
    smile_fig: dict = figures.BLANK
    term_fig: dict = figures.BLANK
    skew_fig: dict = figures.BLANK
    term_rows: list[Row] = []
    tenor_rows: list[Row] = []
    info: str = ""
    atm30: str = ""
    atm30_svi: str = ""
    vs30: str = ""
    slope: str = ""
    surface_note: str = ""
    summary_note: str = ""
    fit_line: str = ""
    calendar_line: str = ""
    smile_note: str = ""
    empty: str = ""
    _data: dict = {}

    def _selection(self) -> dict:
        return {"currency": self.currency} if self.currency else {}

    def _show(self, data: dict) -> None:
        self._put(currencies=data["currencies"], empty=data["empty"])
        if data["empty"]:
            return
        self._data = data
        self._put(currency=data["currency"])
        codes = [s["expiry"] for s in data["smiles"]]
        self.smile_choices = ["all expiries", *codes]
        if self.smile_expiry not in self.smile_choices:
            near = min(data["smiles"], key=lambda s: abs(s["days"] - queries.CM_DAYS))["expiry"] if codes else "all expiries"
            self.smile_expiry = near
        self.surface_fig = figures.plain(figures.surface3d(data))
        self._smile()
        self.term_fig = figures.plain(figures.term_structure(data))
        self.skew_fig = figures.plain(figures.skew(data))
        self.atm30 = f.pct(data["atm_iv_30d_marks"])
        self.atm30_svi = f.pct(data["atm_iv_30d_svi"])
        self.vs30 = f.pct(data["vs_vol_30d_svi"])
        self.slope = f"{f.vol_pts(data['term_slope_marks'])} / {f.vol_pts(data['term_slope_svi'])}"
        self.info = f"{data['snapshot_id']} · {len(data['smiles'])} expiries · t on {data['basis']}"
        self.surface_note = data["surface_note"]
        self.summary_note = f"smile statistics: {data['summary_source']}"
        d = data.get("diagnostics") or {}
        self.fit_line = (f"SVI fit: {d.get('fitted')} of {d.get('slices')} expiries · RMSE median "
                         f"{f.number(d.get('rmse_median_vol_points'), 2)} vol pts (max {f.number(d.get('rmse_max_vol_points'), 2)}) · "
                         f"butterfly {'free' if d.get('butterfly_ok') else 'arbitrage found'} · 30d ATM (SVI) "
                         f"{f.pct(data['atm_iv_30d_svi'])} · 30d var-swap (SVI) {f.pct(data['vs_vol_30d_svi'])}") if d else ""
        inside = d.get("calendar_in_quotes") or []
        outside = d.get("calendar_outside_quotes") or 0
        self.calendar_line = ("" if not d else
                              f"calendar: variance decreases between {', '.join(inside)} inside the quoted strikes" if inside else
                              f"calendar: clean within the quoted strikes ({outside} crossing{'s' if outside != 1 else ''} "
                              "only in the SVI wings beyond the quotes)" if outside else "calendar: clean")
        pts = lambda x: f.signed(100 * x, 2) if x is not None else f.DASH  # noqa: E731  (vol points: in the header)
        self.term_rows = [Row(t["expiry"], f.days(t["days"]), f.usd0(t["forward_usd"]), f.pct(t["atm_iv_marks"]),
                              f.pct(t["atm_iv_svi"]), pts(t["rr25_marks"]), pts(t["rr25_svi"]), pts(t["bf25_marks"]),
                              pts(t["bf25_svi"])) for t in data["term"]]
        self.tenor_rows = [Row(f"{t['tenor_days']:g} d", f.pct(t["atm_iv_marks"]), f.pct(t["atm_iv_svi"]),
                               pts(t["rr25_marks"]), pts(t["rr25_svi"]), pts(t["bf25_marks"]), pts(t["bf25_svi"]))
                           for t in data["tenors"]]

    def _smile(self) -> None:
        data = self._data
        choice = "all" if self.smile_expiry == "all expiries" else self.smile_expiry
        self.smile_fig = figures.plain(figures.smile(data, choice))
        s = next((x for x in data.get("smiles") or [] if x["expiry"] == choice), None)
        self.smile_note = (f"{s['expiry']} · {f.days(s['days'])} · forward {f.usd0(s['forward_usd'])} · "
                           f"{len(s['k'])} OTM quotes · SVI RMSE {f.number(s['fit_rmse_vol_points'], 2)} vol pts"
                           + (f" · flags: {', '.join(s['fit_flags'])}" if s["fit_flags"] else "")) if s else \
            "every expiry: OTM mark IVs (points) and the SVI fit (lines) against ln(K/F)"

    def _ages(self, data: dict) -> list[tuple]:
        if data.get("empty"):
            return []
        out = [(f"{data['currency']} chain", data["timestamp"], "chain")]
        if data.get("surface_timestamp"):
            out.append(("SVI fit", data["surface_timestamp"], "surface"))
        return out

    @rx.event
    async def set_currency(self, value: str):
        self.currency = value
        await self._refresh(force=True)

    @rx.event
    def set_smile(self, value: str):
        self.smile_expiry = value
        if self._data:
            self._smile()


# ============================================================================================ portfolio

def metric_value(kind: str, value) -> str:
    if value is None:
        return f.DASH
    return {"pct": lambda v: f.pct(v, 2), "ratio": lambda v: f.number(v, 2), "int": f.integer,
            "text": f.text}.get(kind, lambda v: f.number(v, 4))(value)


class PortfolioState(Base, rx.State):
    PAGE: ClassVar[str] = "portfolio"
    ids: list[str] = []
    portfolio_id: str = ""
    empty: str = ""
    title: str = ""
    params_line: str = ""
    assets: list[Row] = []
    sectors: list[Row] = []
    metrics: list[Row] = []
    oos: list[Row] = []
    excluded: list[Row] = []
    others: list[Row] = []
    has_oos: bool = False
    equity_label: str = ""
    in_sample_note: str = ""
    asset_fig: dict = figures.BLANK
    sector_fig: dict = figures.BLANK
    equity_fig: dict = figures.BLANK

    def _selection(self) -> dict:
        return {"portfolio_id": self.portfolio_id} if self.portfolio_id else {}

    def _show(self, data: dict) -> None:
        self._put(ids=data["ids"], empty=data["empty"])
        if data["empty"]:
            return
        pid = data["portfolio_id"]
        self._put(portfolio_id=pid)
        self.title = f"{pid} · model {data['model']} · as of {f.text(data['timestamp'])[:10]}"
        self.params_line = " · ".join(f"{k} {v}" for k, v in data["params"].items() if v not in (None, "", False))
        self.assets = [Row(r["symbol"], f.pct(r["weight"], 2), r["sector"]) for r in data["assets"]]
        self.sectors = [Row(r["sector"], f.pct(r["weight"], 2)) for r in data["sectors"]]
        self.metrics = [Row(m["name"], metric_value(m["kind"], m["portfolio"]), metric_value(m["kind"], m["benchmark"]))
                        for m in data["in_sample"]]
        self.oos = [Row(m["name"], metric_value(m["kind"], m["portfolio"]), metric_value(m["kind"], m["benchmark"]))
                    for m in data["out_of_sample"]]
        self.has_oos = bool(data["out_of_sample"])
        self.in_sample_note = data["in_sample_note"]
        self.excluded = [Row(e["symbol"], e["reason"]) for e in data["excluded"]]
        self.others = [Row(h["portfolio_id"], h["model"], f.text(h["timestamp"])[:10], f.text(h["computed_at"])[:16].replace("T", " "))
                       for h in data["heads"]]
        bt = data["backtest"]
        self.equity_label = ("out of sample: walk-forward, weights refitted at each rebalance on past data only"
                             if bt["out_of_sample"] else
                             "in sample: today's weights applied over the window they were fitted on (not a forecast)")
        self.asset_fig = figures.plain(figures.weights_bar(data["assets"], "symbol", pid, "asset"))
        self.sector_fig = figures.plain(figures.weights_bar(data["sectors"], "sector", pid, "sector"))
        self.equity_fig = figures.plain(figures.equity(bt, pid))

    def _ages(self, data: dict) -> list[tuple]:
        if data.get("empty"):
            return []
        return [("optimised", data["computed_at"], "portfolio"), ("returns through", data["data_through"], "prices", True)]

    @rx.event
    async def set_portfolio(self, value: str):
        self.portfolio_id = value
        await self._refresh(force=True)


# ============================================================================================ suggestions

@dataclasses.dataclass
class Leg:
    side: str = ""
    size: str = ""
    instrument: str = ""
    price: str = ""
    iv: str = ""
    delta: str = ""


@dataclasses.dataclass
class Suggestion:
    strategy: str = ""
    currency: str = ""
    expiry: str = ""
    score: str = ""
    status: str = ""
    reasoning: str = ""
    flow: str = ""               # "debit" | "credit"
    premium: str = ""
    premium_coin: str = ""
    max_profit: str = ""
    max_loss: str = ""
    breakevens: str = ""
    pop: str = ""
    delta: str = ""
    vega: str = ""
    theta: str = ""
    gamma: str = ""
    track: str = ""
    snapshot: str = ""
    legs: list[Leg] = dataclasses.field(default_factory=list)


def _extreme(card: dict, kind: str) -> str:
    usd = "unbounded" if card.get(f"max_{kind}_usd_unbounded") else f.usd0(card.get(f"max_{kind}_usd"))
    coin = "unbounded" if card.get(f"max_{kind}_coin_unbounded") else f.coin(card.get(f"max_{kind}_coin"))
    return f"{usd} · {coin} coin"


def suggestion_view(c: dict) -> Suggestion:
    premium = c["premium_usd"]
    flow = "debit" if (premium or 0) > 0 else "credit"
    g = c["net_greeks"]
    return Suggestion(
        strategy=c["strategy"].replace("_", " "), currency=c["currency"], expiry=c["expiry"], score=f.number(c["score"], 2),
        status=c["status"], reasoning=c["reasoning"], flow=flow,
        premium=f"{flow} {f.usd(abs(premium)) if premium is not None else f.DASH}",
        premium_coin=f"{f.coin(abs(c['premium_coin'])) if c['premium_coin'] is not None else f.DASH} coin {'paid' if flow == 'debit' else 'received'}",
        max_profit=_extreme(c, "profit"), max_loss=_extreme(c, "loss"),
        breakevens=", ".join(f.usd0(b) for b in c["breakevens_usd"]) or f.DASH,
        pop=f.pct(c["pop"]) if c["pop"] is not None else f"— ({c['pop_reason'] or 'n/a'})",
        delta=f"{f.signed(g.get('delta'), 3)} coin", vega=f"{f.usd(g.get('vega_spot_usd'))} / vol pt",
        theta=f"{f.usd(g.get('theta_spot_usd'))} / day", gamma=f"{f.sci(g.get('gamma_fwd_usd'))} / USD",
        track=(f"{c['track_points']} marks · last mark P/L {f.usd(c['last_mark_pnl_usd'])} · closing there "
               f"{f.usd(c['last_exit_pnl_usd'])}" if c["track_points"] else "not yet marked"),
        snapshot=f"{c['snapshot_id']}",
        legs=[Leg(side=l["side"], size=f.number(l["size"], 2) if l["size"] is not None else "", instrument=l["instrument"],
                  price=f"{f.coin(l['price_coin'])} ({l['cross'] or 'mark'})", iv=f.pct(l["iv"]), delta=f.signed(l["delta"], 2))
              for l in c["legs"]])


class SuggestState(Base, rx.State):
    PAGE: ClassVar[str] = "suggestions"
    cards: list[Suggestion] = []
    payoff_figs: list[dict] = []
    groups: list[Row] = []
    track: list[Row] = []
    track_summary: str = ""
    empty: str = ""

    def _show(self, data: dict) -> None:
        self._put(empty=data["empty"])
        cards, figs, groups = [], [], []
        for g in data["groups"]:
            for c in g["cards"]:
                cards.append(suggestion_view(c))
                figs.append(figures.plain(figures.payoff(c)))
            behind = g["chain_snapshot_id"] and g["chain_snapshot_id"] != g["snapshot_id"]
            groups.append(Row(g["currency"], f"{len(g['cards'])} suggestions on {g['snapshot_id']}",
                              f"the latest chain is {g['chain_snapshot_id']}: these suggestions are older than it"
                              if behind else "made on the latest chain", tone="stale" if behind else "ok"))
        self.cards, self.payoff_figs, self.groups = cards, figs, groups
        self.track = [Row(r["strategy"].replace("_", " "), r["currency"], r["expiry"], f.text(r["timestamp"])[:16].replace("T", " "),
                          r["status"], f.usd(r["premium_usd"]), f.usd(r["last_mark_pnl_usd"]), f.usd(r["last_exit_pnl_usd"]),
                          f.usd(r["settled_pnl_usd"]), str(r["track_points"]), tone=r["status"]) for r in data["track"]]
        self.track_summary = (f"{data['total']} suggestions stored · {data['open']} open · newest {data['listed']} listed"
                              + (f" · {data['settled']} of them settled, {data['wins']} won, settled P/L "
                                 f"{f.usd(data['settled_pnl_usd'])}" if data["settled"] else ""))

    def _ages(self, data: dict) -> list[tuple]:
        return [(f"{g['currency']} suggestions", g["timestamp"], "suggestions") for g in data["groups"]]

