"""Data of the viewer's Market page: plain JSON-able values from the store's read functions and the quant core.

`market_page(db, currency=None, expiry=None) -> dict` (db: a read-only handle, `qortcli.store.readonly`) reads the
latest chain of `currency` (default: the first currency with a snapshot) with `qortcli.store.read`, computes
`qortcli.quant.market.market_statistics` (ACT/365, default dealer convention) and returns:

- `currencies`, `currency`, `snapshot_id`, `timestamp` (ISO), `spot_usd`, `expiries` (codes), `expiry` (the chosen
  code or None = all expiries), `dealer_note`, `empty` ("" or the hint to collect data);
- `oi`: `strike_usd`, `calls_coin`, `puts_coin`, `calls_usd`, `puts_usd` — open interest by strike (the figure
  draws calls up and puts down); `levels`: `spot_usd`, `forward_usd` (None for all expiries),
  `max_pain_coin_payoff_usd`, `max_pain_usd_payoff_usd`, `gamma_flip_usd_marks`;
- `gex`: the net dealer gamma profile `spot_usd` / `gex_usd_per_pct_marks` (USD per 1 % move, marks, sticky
  strike), its value at spot `net_usd_per_pct_marks`, `dex_usd_per_pct_marks`, and by strike `strike_usd`,
  `calls`, `puts`, `net`;
- `pcr`: put/call ratios of open interest and volume with their call/put totals (coin) for the selection;
- `moves`: one row per expiry — days, forward, ATM strike, straddle (coin), implied move (fraction and USD), ATM IV,
  1-σ range, P/C ratios, both max pains and the gamma flip;
- `change`: the OI change against the snapshot 24 h earlier (taken at most 3 h before that moment, as
  `qortcli market`): `note`, `calls_change_coin`, `puts_change_coin`; only `note` when there is none.
An unknown currency or expiry raises `qortcli.errors.UsageError` (one line naming what is listed).
"""

from __future__ import annotations

from datetime import timedelta

from qortcli.errors import UsageError
from qortcli.quant import market as qm
from qortcli.store import read
from qortcli.store.ops import to_plain
from qortcli.timeutils import BASES, DEFAULT_BASIS

COMPARE = timedelta(hours=24)
TOLERANCE = timedelta(hours=3)
MOVE_FIELDS = ("expiry_code", "forward_usd", "atm_strike_usd", "straddle_coin_marks", "implied_move_fraction_marks",
               "implied_move_usd_marks", "atm_iv_marks", "one_sigma_low_usd_marks", "one_sigma_high_usd_marks", "pcr_oi",
               "pcr_volume", "max_pain_coin_payoff_usd", "max_pain_usd_payoff_usd", "gamma_flip_usd_marks")
EMPTY = "no options snapshot in the store yet: run `qortcli collect sample` (or `qortcli collect deribit`)"


def _change(db, cur: str, chain: read.Chain, spot: float, expiry: str | None) -> dict:
    """OI change against the snapshot 24 h before the latest (within the tolerance), for the selection."""
    target = chain.snapshot.timestamp - COMPARE
    found = read.snapshot_near(db, cur, target)
    if found is None or target - found.timestamp > TOLERANCE:
        return {"note": f"no {cur} snapshot within {TOLERANCE.total_seconds() / 3600:g} h before "
                        f"{target:%Y-%m-%d %H:%M} UTC (24 h earlier)"}
    ch = qm.oi_changes(chain.frame, read.chain_at(db, found.snapshot_id, DEFAULT_BASIS).frame,
                       as_of=chain.snapshot.timestamp, spot_usd=spot)
    rows = ch.by_expiry if expiry is None else ch.by_expiry[ch.by_expiry["expiry_code"] == expiry]
    hours = (chain.snapshot.timestamp - found.timestamp).total_seconds() / 3600
    return {"note": f"against {found.snapshot_id}, {hours:.1f} h earlier",
            "calls_change_coin": float(rows["oi_calls_change_coin"].sum()),
            "puts_change_coin": float(rows["oi_puts_change_coin"].sum())}


def market_page(db, currency: str | None = None, expiry: str | None = None) -> dict:
    """The Market page's data for one currency and expiry (None: all expiries), as plain values."""
    currencies = read.currencies(db)
    if not currencies:
        return {"currencies": [], "currency": "", "empty": EMPTY}
    cur = (currency or currencies[0]).upper()
    if cur not in currencies:
        raise UsageError(f"no {cur} options snapshot in the store; currencies with one: {', '.join(currencies)}")
    chain = read.latest_chain(db, cur, DEFAULT_BASIS)
    st = qm.market_statistics(chain.frame, days_per_year=BASES[DEFAULT_BASIS])
    codes = [str(c) for c in st.expiries["expiry_code"]]
    code = expiry.strip().upper() if expiry else None
    if code is not None and code not in codes:
        raise UsageError(f"no expiry {code} in {chain.snapshot.snapshot_id}; listed: {', '.join(codes)}")
    if code is None:
        sel, strikes, profile = st.overall.iloc[0], st.all_by_strike, st.gex_profile[qm.ALL]
    else:
        sel = st.expiries[st.expiries["expiry_code"] == code].iloc[0]
        strikes, profile = st.by_strike[st.by_strike["expiry_code"] == code], st.gex_profile[code]

    def column(name: str) -> list:
        return to_plain(strikes[name].to_numpy())

    moves = st.expiries[list(MOVE_FIELDS)].assign(days=st.expiries["t_years"] * BASES[DEFAULT_BASIS])
    return to_plain({
        "currencies": currencies, "currency": cur, "snapshot_id": chain.snapshot.snapshot_id,
        "timestamp": chain.snapshot.timestamp.isoformat(), "spot_usd": st.spot_usd, "empty": "",
        "expiries": codes, "expiry": code, "dealer_note": st.dealer.description,
        "oi": {"strike_usd": column("strike_usd"), "calls_coin": column("oi_calls_coin"),
               "puts_coin": column("oi_puts_coin"), "calls_usd": column("oi_calls_usd"), "puts_usd": column("oi_puts_usd")},
        "levels": {"spot_usd": st.spot_usd, "forward_usd": sel["forward_usd"],
                   **{k: sel[k] for k in ("max_pain_coin_payoff_usd", "max_pain_usd_payoff_usd", "gamma_flip_usd_marks")}},
        "gex": {"spot_usd": profile.index.to_numpy(), "gex_usd_per_pct_marks": profile.to_numpy(),
                "net_usd_per_pct_marks": sel["gex_usd_per_pct_marks"], "dex_usd_per_pct_marks": sel["dex_usd_per_pct_marks"],
                "strike_usd": column("strike_usd"), "calls": column("gex_calls_usd_per_pct_marks"),
                "puts": column("gex_puts_usd_per_pct_marks"), "net": column("gex_usd_per_pct_marks")},
        "pcr": {k: sel[k] for k in ("pcr_oi", "pcr_volume", "oi_calls_coin", "oi_puts_coin", "volume_calls_coin",
                                    "volume_puts_coin")},
        "moves": moves.to_dict("records"),
        "change": _change(db, cur, chain, st.spot_usd, code),
    })
