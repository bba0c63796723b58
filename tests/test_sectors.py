from pathlib import Path

import pytest

from qortcli.config import package_data
from qortcli.errors import ConfigError
from qortcli.sectors import EXPECTED_SECTORS, load_sectors, parse_sectors

ROOT = Path(__file__).resolve().parents[1]


def test_packaged_taxonomy_is_valid_and_complete():
    sectors = load_sectors(package_data("crypto_sectors.json"))
    assert tuple(sectors.names) == EXPECTED_SECTORS
    tickers = [c.ticker for c in sectors.coins]
    assert len(tickers) == len(set(tickers))  # one primary sector per coin
    by_ticker = sectors.by_ticker()
    assert by_ticker["UNI"].yahoo == "UNI7083-USD" and by_ticker["UNI"].sector == "DeFi"
    assert by_ticker["TAO"].yahoo == "TAO22974-USD"
    assert by_ticker["USDT"].yahoo == "USDT-USD" and by_ticker["USDC"].sector == "Stablecoin"
    for coin in ("BTC", "ETH", "ADA", "BNB", "DOGE", "LINK", "XLM", "XRP", "SOL", "DOT"):
        assert coin in by_ticker, f"{coin} has recorded prices and must be in the taxonomy"


def test_config_file_is_the_packaged_file():
    assert (ROOT / "config" / "crypto_sectors.json").read_bytes() == package_data("crypto_sectors.json").read_bytes()


def good():
    return {"sectors": {"DeFi": [{"ticker": "UNI", "yahoo": "UNI7083-USD"}], "AI": [{"ticker": "FET", "yahoo": "FET-USD"}]}}


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["sectors"]["AI"].append({"ticker": "UNI", "yahoo": "UNI-USD"}), "UNI is already in sector 'DeFi'"),
    (lambda d: d["sectors"]["AI"].append({"ticker": "X", "yahoo": "UNI7083-USD"}), "already used by UNI"),
    (lambda d: d["sectors"]["AI"].__setitem__(0, {"ticker": "FET", "yahoo": "FET"}), "bad Yahoo symbol 'FET'"),
    (lambda d: d["sectors"]["AI"].__setitem__(0, {"ticker": "fet", "yahoo": "FET-USD"}), "bad ticker 'fet'"),
    (lambda d: d["sectors"]["AI"].__setitem__(0, {"ticker": "FET"}), "sector 'AI' entry 0"),
    (lambda d: d["sectors"].__setitem__("Privacy", []), "sector 'Privacy' must be a non-empty list"),
    (lambda d: d.pop("sectors"), "expected an object with a 'sectors' object"),
])
def test_malformed_taxonomy_names_the_bad_entry(mutate, message):
    data = good()
    parse_sectors(data)
    mutate(data)
    with pytest.raises(ConfigError, match=message):
        parse_sectors(data)


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_sectors(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_sectors(bad)


def test_sector_lookup():
    sectors = load_sectors(package_data("crypto_sectors.json"))
    assert {c.ticker for c in sectors.in_sector("defi")} >= {"UNI", "AAVE"}
    with pytest.raises(ConfigError, match="unknown sector"):
        sectors.in_sector("Memes")
