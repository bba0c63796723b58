from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from qortcli.timeutils import expiry_code, parse_instrument, year_fraction, year_fractions

UTC = timezone.utc


def test_one_calendar_year_is_one_year_act365():
    now = datetime(2025, 1, 1, 8, tzinfo=UTC)
    assert year_fraction(now, now + timedelta(days=365)) == pytest.approx(1.0, abs=1e-15)
    assert year_fraction(now, now + timedelta(days=365), "ACT/365.25") == pytest.approx(365 / 365.25, abs=1e-15)


def test_known_values_from_the_recorded_snapshot():
    # tests/fixtures data: 2026-01-05T04:11:27.551698Z → BTC-16JAN26 expiry 08:00 UTC; the file's
    # time_to_maturity column (ACT/365.25, their choice) is 0.030550879924392222
    now = datetime(2026, 1, 5, 4, 11, 27, 551698, tzinfo=UTC)
    expiry = parse_instrument("BTC-16JAN26-82000-C").expiry
    assert year_fraction(now, expiry, "ACT/365.25") == pytest.approx(0.030550879924392222, rel=1e-12)
    seconds = (11 * 86400 + 3 * 3600 + 48 * 60 + 32.448302)
    assert year_fraction(now, expiry) == pytest.approx(seconds / (365 * 86400), rel=1e-12)


def test_legacy_formula_is_not_what_we_return():
    now = datetime(2026, 1, 5, tzinfo=UTC)
    expiry = datetime(2026, 3, 27, 8, tzinfo=UTC)
    legacy = (expiry - now).total_seconds() / 31536000 * 365  # the original design's bug: days, not years
    ours = year_fraction(now, expiry)
    assert legacy == pytest.approx(ours * 365)
    assert abs(legacy - ours) > 50


def test_naive_datetimes_are_rejected():
    with pytest.raises(ValueError, match="naive"):
        year_fraction(datetime(2026, 1, 1), datetime(2026, 2, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="naive"):
        year_fraction(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1))


def test_other_timezones_are_converted():
    now = datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=1)))  # 08:00 UTC
    assert year_fraction(now, datetime(2026, 1, 2, 8, tzinfo=UTC)) == pytest.approx(1 / 365)


def test_unknown_basis():
    with pytest.raises(ValueError, match="basis"):
        year_fraction(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), "30/360")


def test_vectorised_matches_scalar():
    now = datetime(2026, 1, 5, 4, tzinfo=UTC)
    expiries = [datetime(2026, 1, 16, 8, tzinfo=UTC), datetime(2026, 12, 25, 8, tzinfo=UTC)]
    vec = year_fractions(now, np.array([e.timestamp() for e in expiries]))
    assert vec == pytest.approx([year_fraction(now, e) for e in expiries], rel=1e-12)


@pytest.mark.parametrize("name, underlying, expiry, strike, kind", [
    ("BTC-29MAR25-50000-C", "BTC", datetime(2025, 3, 29, 8, tzinfo=UTC), 50000.0, "call"),
    ("ETH-3APR26-2000-P", "ETH", datetime(2026, 4, 3, 8, tzinfo=UTC), 2000.0, "put"),
    ("XRP_USDC-30JAN26-2d2-C", "XRP_USDC", datetime(2026, 1, 30, 8, tzinfo=UTC), 2.2, "call"),
])
def test_parse_instrument(name, underlying, expiry, strike, kind):
    inst = parse_instrument(name)
    assert (inst.underlying, inst.expiry, inst.strike, inst.option_type) == (underlying, expiry, strike, kind)
    assert expiry_code(inst.expiry) == name.split("-")[1]


@pytest.mark.parametrize("bad", ["BTC-29MAR25-50000", "BTC-29XYZ25-50000-C", "BTC-31FEB26-50000-C",
                                 "BTC-PERPETUAL", "", "btc-29MAR25-50000-C", "BTC-29MAR25-abc-C"])
def test_malformed_instrument_names(bad):
    with pytest.raises(ValueError, match="instrument name"):
        parse_instrument(bad)
