"""Data of the viewer's Market page: plain JSON-able values from the market step's read-only report.

`market_page(db, currency=None, expiry=None) -> dict` (db: a read-only handle, `qortcli.store.readonly`) reads the
latest chain of `currency` (default: the first currency with a snapshot) through `qortcli.steps.market.market_report`
(no run record, nothing written) and returns:

- `currencies`, `currency`, `snapshot_id`, `timestamp` (ISO), `spot_usd`, `expiries` (codes), `expiry` (the chosen
  code or None = all expiries), `dealer_note`, `empty` ("" or the hint to collect data);
- `oi`: `strike_usd`, `calls_coin`, `puts_coin`, `calls_usd`, `puts_usd` — open interest by strike (the figure
  draws calls up and puts down); `levels`: `spot_usd`, `forward_usd` (None for all expiries),
  `max_pain_coin_payoff_usd`, `max_pain_usd_payoff_usd`, `gamma_flip_usd_marks`;
- `gex`: the net dealer gamma profile `spot_usd` / `gex_usd_per_pct_marks` (USD per 1 % move, marks, sticky
  strike) and by strike `strike_usd`, `calls`, `puts`, `net`;
- `pcr`: put/call ratios of open interest and volume with their call/put totals (coin) for the selection;
- `moves`: one row per expiry — days, forward, ATM strike, straddle (coin), implied move (fraction and USD), ATM IV,
  1-σ range, P/C ratios, both max pains and the gamma flip;
- `change`: the OI change against the snapshot 24 h earlier (`note`, `calls_change_coin`, `puts_change_coin`) or
  only its `note` when the store has none.
Unknown currency/expiry raise `qortcli.errors.UsageError` (one line naming what is listed).
"""

from __future__ import annotations

from qortcli.steps.market import DEALER_NOTES, market_report, market_view
from qortcli.store import read

MOVE_FIELDS = ("expiry_code", "days", "forward_usd", "atm_strike_usd", "straddle_coin_marks", "implied_move_fraction_marks",
               "implied_move_usd_marks", "atm_iv_marks", "one_sigma_low_usd_marks", "one_sigma_high_usd_marks", "pcr_oi",
               "pcr_volume", "max_pain_coin_payoff_usd", "max_pain_usd_payoff_usd", "gamma_flip_usd_marks")
EMPTY = "no options snapshot in the store yet: run `qortcli collect sample` (or `qortcli collect deribit`)"


def _column(rows: list[dict], key: str) -> list:
    return [r[key] for r in rows]


def market_page(db, currency: str | None = None, expiry: str | None = None) -> dict:
    """The Market page's data for one currency and expiry (None: all expiries), as plain values."""
    currencies = read.currencies(db)
    if not currencies:
        return {"currencies": [], "currency": "", "empty": EMPTY}
    cur = currency.upper() if currency else currencies[0]
    report = market_report(db, cur, expiry or None)
    view = market_view(report)
    sel, strikes = view["selected"], view["strikes"]
    change = view["change"]
    return {
        "currencies": currencies, "currency": view["currency"], "snapshot_id": view["snapshot_id"],
        "timestamp": view["timestamp"], "spot_usd": view["spot_usd"], "empty": "",
        "expiries": [e["expiry_code"] for e in view["expiries"]], "expiry": report.expiry_code,
        "dealer_note": DEALER_NOTES[report.stats.dealer.name],
        "oi": {"strike_usd": _column(strikes, "strike_usd"), "calls_coin": _column(strikes, "oi_calls_coin"),
               "puts_coin": _column(strikes, "oi_puts_coin"), "calls_usd": _column(strikes, "oi_calls_usd"),
               "puts_usd": _column(strikes, "oi_puts_usd")},
        "levels": {"spot_usd": view["spot_usd"], "forward_usd": sel["forward_usd"],
                   "max_pain_coin_payoff_usd": sel["max_pain_coin_payoff_usd"],
                   "max_pain_usd_payoff_usd": sel["max_pain_usd_payoff_usd"],
                   "gamma_flip_usd_marks": sel["gamma_flip_usd_marks"]},
        "gex": {**{k: view["gex_profile"][k] for k in ("spot_usd", "gex_usd_per_pct_marks")},
                "net_usd_per_pct_marks": sel["gex_usd_per_pct_marks"],
                "dex_usd_per_pct_marks": sel["dex_usd_per_pct_marks"],
                "strike_usd": _column(strikes, "strike_usd"), "calls": _column(strikes, "gex_calls_usd_per_pct_marks"),
                "puts": _column(strikes, "gex_puts_usd_per_pct_marks"), "net": _column(strikes, "gex_usd_per_pct_marks")},
        "pcr": {k: sel[k] for k in ("pcr_oi", "pcr_volume", "oi_calls_coin", "oi_puts_coin", "volume_calls_coin",
                                    "volume_puts_coin")},
        "moves": [{k: e[k] for k in MOVE_FIELDS} for e in view["expiries"]],
        "change": ({"note": view["change_note"], "calls_change_coin": change["selected"]["oi_calls_change_coin"],
                    "puts_change_coin": change["selected"]["oi_puts_change_coin"]} if change
                   else {"note": view["change_note"]}),
    }
