"""`run_suggest` / `run_track` / `qortcli suggest` on recorded January 2026 snapshots imported with
`run_collect_file`; tracked P/L and settlements checked by hand against the CSV rows themselves.

Four of the 28 snapshots are imported here (importing is ~4 s a file): the first (suggestions are made
on it), the last before the 9 JAN 08:00 expiry, the first after it, and the last of the week. The whole
week is exercised by the CLI run in the issue report.
"""

from __future__ import annotations

from pathlib import Path

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qortcli.quant.strategies import STRATEGIES
from qortcli.store import connect, ensure_schema, ops, schema
from qortcli.steps.collect import run_collect_file
from qortcli.steps.suggest import run_suggest, run_track
from qortcli.steps.surface import run_backfill, run_surface
FIXTURES = Path(__file__).parent / "fixtures"

pytestmark = pytest.mark.slow  # imports four recorded snapshots (~5 s each) and fits a surface

STAMPS = ["20260105T041127Z", "20260109T035640Z", "20260109T092126Z", "20260111T211857Z"]
FILES = {s: FIXTURES / f"deribit_options_snapshot_{s}.csv" for s in STAMPS}
F0, F1, F2, F3 = STAMPS
#: "now" for suggestions on the latest snapshot: its own time (the recorded expiries have all passed today)
AT_F0 = datetime.strptime(F0, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def rows(stamp: str, currency: str | None = None) -> pd.DataFrame:
    raw = pd.read_csv(FILES[stamp])
    return raw if currency is None else raw[raw["currency"] == currency]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("suggest") / "db"
    db = connect(str(path))
    ensure_schema(db)
    # the last 40 recorded BTC closes (ending 2023-03-31) as price_data, for the realised-vol input
    btc = pd.read_csv(FIXTURES / "prices" / "BTC-USD.csv", parse_dates=["Date"]).tail(40)
    ops.upsert_many(db, schema.PRICES, [
        {"symbol": "BTC", "yfinance_symbol": "BTC-USD", "sector": "Digital Assets",
         "timestamp": d.to_pydatetime().replace(tzinfo=timezone.utc), "open": o, "high": h, "low": lo, "close": c,
         "adj_close": a, "price_usd": c, "volume_24h": v, "source": "test"}
        for d, o, h, lo, c, a, v in btc[["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]].itertuples(index=False)])
    run_collect_file(db, FILES[F0])
    run_surface(db)  # the first snapshot's SVI surface: POP uses its risk-neutral distribution
    by_rules = run_suggest(db, now=AT_F0)
    every = run_suggest(db, strategies=list(STRATEGIES), top=0, now=AT_F0)
    short_dated = run_suggest(db, expiry="9JAN26", strategies=["short_strangle", "iron_condor", "long_straddle"], top=0,
                              now=AT_F0)
    for stamp in STAMPS[1:]:
        run_collect_file(db, FILES[stamp])
    run_backfill(db)   # the per-snapshot summaries (the worker's surface step writes them after each collect)
    later = [run_suggest(db, snapshot_id=f"{cur}-{F2}", strategies=list(STRATEGIES), top=5) for cur in ("BTC", "ETH")]
    track = run_track(db)
    yield {"db": db, "path": path, "by_rules": by_rules, "every": every, "short_dated": short_dated,
           "later": later, "track": track}
    db.close()


def doc(db, stamp, currency, strategy, expiry_yyyymmdd):
    found = db[schema.SUGGESTIONS].find_one({"_id": f"{currency}-{stamp}|{strategy}|{expiry_yyyymmdd}"})
    assert found is not None, (stamp, currency, strategy, expiry_yyyymmdd)
    return found


def test_rules_on_the_first_snapshot(store):
    by_cur = {c["currency"]: c for c in store["by_rules"]["currencies"]}
    assert set(by_cur) == {"BTC", "ETH"}
    for cur in by_cur.values():
        assert cur["snapshot_id"].endswith(F0) and cur["expiry"] == "23JAN26"  # 18 days: nearest in 14..45
        rules = {r["rule"]: r for r in cur["rules"]}
        iv = cur["regime"]["atm_iv_marks"]
        assert rules["iv_above_high"]["fired"] == (iv > 0.60)
        assert rules["iv_below_low"]["fired"] == (iv < 0.30)
        # no look-ahead: only the first snapshot existed in the history at that time
        assert cur["regime"]["iv_history_n"] == 1 and not rules["iv_rich_percentile"]["evaluated"]
        made = {s["strategy"] for s in cur["suggestions"]}
        fired_for = {s for r in cur["rules"] if r["fired"] for s in r["strategies"]}
        assert made == fired_for  # fewer than --top fired, so every fired strategy is suggested
        for s in cur["suggestions"]:
            assert s["reasoning"] and not s["requested"]
    # BTC: the recorded price history ends 2023-03-31, so the IV − RV rules are reported stale, not used
    btc = by_cur["BTC"]
    assert btc["regime"]["rv_end"].date().isoformat() == "2023-03-31"
    assert btc["regime"]["rv_start"].date().isoformat() == "2023-03-01"
    over = next(r for r in btc["rules"] if r["rule"] == "iv_over_rv")
    assert not over["evaluated"] and "stale" in over["note"]
    eth = by_cur["ETH"]
    assert next(r for r in eth["rules"] if r["rule"] == "iv_over_rv")["note"] == "no price history"


def test_term_structure_input_matches_the_csv_marks(store):
    btc = next(c for c in store["by_rules"]["currencies"] if c["currency"] == "BTC")
    reg = btc["regime"]
    assert reg["term_front_expiry"] == "9JAN26" and reg["term_back_expiry"] == "23JAN26"
    assert reg["term_shape"].startswith("backwardation") and reg["term_slope_marks_per_year"] < 0
    raw = rows(F0, "BTC")
    for code, key in (("9JAN26", "term_front_atm_iv_marks"), ("23JAN26", "term_back_atm_iv_marks")):
        g = raw[raw["instrument_name"].str.contains(f"-{code}-")]
        f = g["underlying"].median()
        iv_by_k = g.groupby("strike")["implied_volatility"].mean()
        lo, hi = iv_by_k[iv_by_k.index <= f].index.max(), iv_by_k[iv_by_k.index > f].index.min()
        w = np.log(f / lo) / np.log(hi / lo)  # linear in ln(K/F) between the strikes around F
        assert reg[key] == pytest.approx(iv_by_k[lo] + w * (iv_by_k[hi] - iv_by_k[lo]), abs=1e-12)


def test_every_leg_exists_is_live_and_crosses_a_real_quote(store):
    db = store["db"]
    docs = list(db[schema.SUGGESTIONS].find({}))
    assert len(docs) >= 2 * len(STRATEGIES) + 3
    checked = 0
    for d in docs:
        stamp = d["snapshot_id"].split("-", 1)[1]
        raw = rows(stamp, d["currency"]).set_index("instrument_name")
        taken = pd.Timestamp(raw["timestamp"].iloc[0]).to_pydatetime()
        for leg in d["legs"]:
            if leg["option_type"] == "underlying":
                continue
            assert leg["instrument"] in raw.index, leg["instrument"]
            row = raw.loc[leg["instrument"]]
            assert pd.Timestamp(row["expiry_datetime"]).to_pydatetime() > taken
            assert leg["expiry"] > taken
            if leg["side"] == "sell":
                assert row["bid_price"] > 0 and leg["price_coin"] == row["bid_price"]
            else:
                assert leg["side"] == "buy" and row["ask_price"] > 0 and leg["price_coin"] == row["ask_price"]
            assert leg["mark_coin"] == row["mark_price"]
            checked += 1
    assert checked > 40


def _hand_pnl(entry_stamp, legs, mark_stamp, currency):
    """P/L of a set of (instrument, side, size, entry price) at `mark_stamp` from the CSV rows: coin
    Σ q(mark − entry); USD Σ q·mark·index_t − Σ q·entry·index_0 (index: median over the legs' rows)."""
    e = rows(entry_stamp, currency).set_index("instrument_name")
    m = rows(mark_stamp, currency).set_index("instrument_name")
    names = [leg["instrument"] for leg in legs]
    index0 = float(np.median(e.loc[names, "index_price"]))
    index_t = float(np.median(m.loc[names, "index_price"]))
    q = np.array([leg["side_sign"] * leg["size"] for leg in legs])
    entry = np.array([e.loc[n, "bid_price"] if leg["side"] == "sell" else e.loc[n, "ask_price"]
                      for n, leg in zip(names, legs)])
    mark = m.loc[names, "mark_price"].to_numpy()
    return float(q @ (mark - entry)), float(q @ mark * index_t - q @ entry * index0), index_t


def test_tracked_pnl_matches_hand_computation_from_the_csv(store):
    db = store["db"]
    d = doc(db, F0, "BTC", "short_strangle", "20260123")
    assert [leg["side"] for leg in d["legs"]] == ["sell", "sell"]
    assert [p["snapshot_id"] for p in d["track"]] == [f"BTC-{s}" for s in STAMPS[1:]]
    for point, stamp in zip(d["track"], STAMPS[1:]):
        coin, usd, index_t = _hand_pnl(F0, d["legs"], stamp, "BTC")
        assert point["index_usd"] == pytest.approx(index_t)
        assert point["pnl_coin"] == pytest.approx(coin, abs=1e-12)
        assert point["pnl_usd"] == pytest.approx(usd, abs=1e-7)
        assert point["missing"] == []
        # the exit P/L beside it: both legs are short, so closing buys them back at the snapshot's asks
        m = rows(stamp, "BTC").set_index("instrument_name")
        e = rows(F0, "BTC").set_index("instrument_name")
        names = [leg["instrument"] for leg in d["legs"]]
        asks = m.loc[names, "ask_price"].to_numpy()
        bids0 = e.loc[names, "bid_price"].to_numpy()
        index0 = float(np.median(e.loc[names, "index_price"]))
        assert point["exit_pnl_coin"] == pytest.approx(-(asks - bids0).sum(), abs=1e-12)
        assert point["exit_pnl_usd"] == pytest.approx(-asks.sum() * index_t + bids0.sum() * index0, abs=1e-7)
        assert point["exit_cost_usd"] == pytest.approx(point["pnl_usd"] - point["exit_pnl_usd"]) and point["exit_cost_usd"] > 0
    assert d["status"] == "open" and d["settlement"]["pending"]  # 23 JAN is after the stored week


def test_calendar_front_leg_settles_on_the_last_forward(store):
    db = store["db"]
    d = doc(db, F0, "BTC", "calendar_spread", "20260109")
    short, long_ = d["legs"]
    assert short["side"] == "sell" and "-9JAN26-" in short["instrument"] and "-23JAN26-" in long_["instrument"]
    # delivery price: no stored snapshot within 30 min of 9 JAN 08:00, so the last stored forward of the
    # 9JAN26 expiry (snapshot 03:56, ~4 h before) — the median `underlying` of those rows
    g = rows(F1, "BTC")
    delivery = float(g[g["instrument_name"].str.contains("-9JAN26-")]["underlying"].median())
    e = rows(F0, "BTC").set_index("instrument_name")
    m = rows(F2, "BTC").set_index("instrument_name")
    k = short["strike"]
    settled_coin = max(delivery - k, 0.0) / delivery
    entry_short, entry_long = e.loc[short["instrument"], "bid_price"], e.loc[long_["instrument"], "ask_price"]
    index0 = float(np.median(e.loc[[short["instrument"], long_["instrument"]], "index_price"]))
    mark_long, index_t = m.loc[long_["instrument"], "mark_price"], m.loc[long_["instrument"], "index_price"]
    point = next(p for p in d["track"] if p["snapshot_id"] == f"BTC-{F2}")
    assert point["marks"][short["instrument"]]["delivery_usd"] == pytest.approx(delivery)
    assert point["pnl_coin"] == pytest.approx(-(settled_coin - entry_short) + (mark_long - entry_long), abs=1e-12)
    assert point["pnl_usd"] == pytest.approx(-settled_coin * delivery + mark_long * index_t
                                             - (entry_long - entry_short) * index0, abs=1e-7)


def test_short_dated_strategies_settle_at_expiry(store):
    db = store["db"]
    d = doc(db, F0, "ETH", "short_strangle", "20260109")
    assert d["status"] == "settled"
    st = d["settlement"]
    dl = st["deliveries"]["9JAN26"]
    assert dl["method"] == "last forward" and f"ETH-{F1}" in dl["detail"]
    g = rows(F1, "ETH")
    delivery = float(g[g["instrument_name"].str.contains("-9JAN26-")]["underlying"].median())
    assert dl["price_usd"] == pytest.approx(delivery)
    e = rows(F0, "ETH").set_index("instrument_name")
    coin = usd = 0.0
    for leg in d["legs"]:
        k = leg["strike"]
        pay = (max(delivery - k, 0) if leg["option_type"] == "call" else max(k - delivery, 0)) / delivery
        entry = e.loc[leg["instrument"], "bid_price"]
        coin += -(pay - entry)
        usd += -pay * delivery
    index0 = float(np.median(e.loc[[leg["instrument"] for leg in d["legs"]], "index_price"]))
    usd += sum(e.loc[leg["instrument"], "bid_price"] for leg in d["legs"]) * index0
    assert st["pnl_coin"] == pytest.approx(coin, abs=1e-12)
    assert st["pnl_usd"] == pytest.approx(usd, abs=1e-7)
    assert d["track"][-1].get("settlement") and d["track"][-1]["pnl_usd"] == pytest.approx(usd, abs=1e-7)
    # the settled outcome is the stored payoff maths at the delivery price (same conventions)
    from qortcli.quant import payoff, strategies

    legs = strategies.payoff_legs(d["legs"], d["t_years"])
    assert payoff.pnl_usd(legs, [delivery], d["index_usd"])[0] == pytest.approx(usd, abs=1e-7)
    assert payoff.pnl_coin(legs, [delivery])[0] == pytest.approx(coin, abs=1e-12)
    m = d["metrics"]
    assert m["max_profit_usd"] + 1e-9 >= st["pnl_usd"]


def test_suggestions_made_later_see_more_history(store):
    for out in store["later"]:
        cur = out["currencies"][0]
        assert cur["snapshot_id"].endswith(F2)
        assert cur["regime"]["iv_history_n"] == 3  # F0, F1, F2 — not F3, which is later
        # 9 JAN 09:21 → 23 JAN 08:00 is 13.9 days (< expiry_min_days 14): the default moves to 30JAN26
        assert cur["expiry"] == "30JAN26"


def test_rerun_keeps_the_track_record(store):
    db = store["db"]
    before = doc(db, F0, "BTC", "short_strangle", "20260123")
    run_suggest(db, snapshot_id=f"BTC-{F0}", strategies=["short_strangle"], top=0)
    after = doc(db, F0, "BTC", "short_strangle", "20260123")
    assert after["track"] == before["track"] and len(after["track"]) == 3
    assert after["legs"] == before["legs"]


def test_step_errors(store):
    from qortcli.errors import UsageError

    with pytest.raises(UsageError):
        run_suggest(store["db"], currency="BTC", expiry="1JAN20")
    with pytest.raises(UsageError):
        run_suggest(store["db"], currency="BTC", strategies=["butterfly"])
    with pytest.raises(UsageError, match=r"no SOL option snapshot in the store \(it has BTC, ETH\)"):
        run_suggest(store["db"], currency="SOL")  # an unknown currency is a usage error, not "collect it"


def test_cli_suggest_json_and_track(store):
    from qortcli.cli import app  # the package registers every command

    runner = CliRunner()
    db = str(store["path"])
    out = runner.invoke(app, ["suggest", "--db", db, "--snapshot", f"BTC-{F3}", "--expiry", "30JAN26", "--top", "3",
                              "-s", "iron_condor", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    cur = summary["currencies"][0]
    assert cur["expiry"] == "30JAN26" and cur["snapshot_id"] == f"BTC-{F3}"
    ic = next(s for s in cur["suggestions"] if s["strategy"] == "iron_condor")
    assert len(ic["legs"]) == 4 and ic["metrics"]["max_loss_usd"] < 0 and len(ic["payoff_grid"]["s_usd"]) == 201
    # the net vega beside the spot-USD premiums is spot-USD: Σ side·size·vega_coin × the entry index
    legs = [leg for leg in ic["legs"] if leg["option_type"] != "underlying"]
    vega_coin = sum(leg["side_sign"] * leg["size"] * leg["greeks"]["vega"] / leg["forward_usd"] for leg in legs)
    assert ic["metrics"]["net_greeks"]["vega_spot_usd"] == pytest.approx(vega_coin * ic["index_usd"], rel=1e-9)
    panel = runner.invoke(app, ["suggest", "--db", db, "--currency", "BTC", "--expiry", "30JAN26", "--top", "0",
                                "-s", "iron_condor", "--as-of-snapshot"], env={"COLUMNS": "200"})
    assert panel.exit_code == 0, panel.output
    assert "spot-USD/vol pt" in panel.output and "(marks)" in panel.output and "USD/vol pt ·" not in panel.output
    text = runner.invoke(app, ["suggest", "--db", db, "--currency", "BTC", "--track"])
    assert text.exit_code == 0, text.output
    assert "short_strangle" in text.output and "P/L USD" in text.output and "settle" in text.output
    bad = runner.invoke(app, ["suggest", "--db", db, "--currency", "BTC", "--expiry", "1JAN20"])
    assert bad.exit_code == 2 and "not listed" in bad.output


def test_pop_uses_the_stored_surface_distribution(store):
    """POP of a two-breakeven short strangle = P(be_lo < S_T < be_hi) = prob_above(be_lo) − prob_above(be_hi)
    with the surface module's own risk-neutral digital, on the stored surface of that snapshot."""
    from qortcli.quant.surface import prob_above

    db = store["db"]
    surface = db[schema.SURFACES].find_one({"_id": f"BTC-{F0}"})
    assert surface is not None
    d = doc(db, F0, "BTC", "short_strangle", "20260123")
    m = d["metrics"]
    assert "SVI surface" in m["pop_method"]
    lo, hi = m["breakevens_usd"]
    want = prob_above(lo, d["forward_usd"], d["t_years"], surface) - prob_above(hi, d["forward_usd"], d["t_years"], surface)
    assert m["pop"] == pytest.approx(want, abs=1e-9)
    long_ = doc(db, F0, "BTC", "long_strangle", "20260123")["metrics"]
    assert 0 < long_["pop"] < 1 and 0 < m["pop"] < 1
    # a snapshot without a stored surface falls back to the mark smile
    later = doc(db, F2, "BTC", "short_strangle", "20260130")
    assert "mark smile" in later["metrics"]["pop_method"]


def test_a_missing_instrument_is_reported_not_guessed(store):
    from qortcli.steps.suggest import suggest_settings, track_suggestion

    d = doc(store["db"], F0, "BTC", "short_strangle", "20260123")
    ghost = dict(d, legs=[dict(d["legs"][0], instrument="BTC-23JAN26-999000-C")] + d["legs"][1:])
    out = track_suggestion(store["db"], ghost, suggest_settings(), datetime(2026, 1, 12, tzinfo=timezone.utc))
    assert len(out["track"]) == 3
    for point in out["track"]:
        assert point["missing"] == ["BTC-23JAN26-999000-C"]
        assert point["pnl_coin"] is None and point["pnl_usd"] is None
    assert out["settlement"] is None and out["status"] == "open"  # 23 JAN is after `now`
