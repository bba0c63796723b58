"""The crypto sector taxonomy: one primary sector per coin, each coin with its Yahoo symbol."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from qortcli.errors import ConfigError

EXPECTED_SECTORS = ("DeFi", "Digital Assets", "Infrastructure", "DApps", "Privacy", "Services", "AI", "Stablecoin")
_TICKER = re.compile(r"^[A-Z0-9]{1,15}$")
_YAHOO = re.compile(r"^[A-Z0-9]{1,20}-USD$")


@dataclass(frozen=True)
class Coin:
    ticker: str
    yahoo: str
    sector: str


@dataclass(frozen=True)
class Sectors:
    """Validated taxonomy: `coins` in file order; lookups by ticker and by sector."""

    coins: tuple[Coin, ...]

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(c.sector for c in self.coins))

    def in_sector(self, sector: str) -> list[Coin]:
        match = [c for c in self.coins if c.sector.lower() == sector.lower()]
        if not match:
            raise ConfigError(f"unknown sector {sector!r}; known: {', '.join(self.names)}")
        return match

    def by_ticker(self) -> dict[str, Coin]:
        return {c.ticker: c for c in self.coins}

    def by_yahoo(self) -> dict[str, Coin]:
        return {c.yahoo: c for c in self.coins}


def parse_sectors(data: object, origin: str = "sectors file") -> Sectors:
    """Validate a taxonomy document; the first bad entry is named in the ConfigError."""
    if not isinstance(data, dict) or not isinstance(data.get("sectors"), dict):
        raise ConfigError(f"{origin}: expected an object with a 'sectors' object")
    coins: list[Coin] = []
    seen: dict[str, str] = {}
    seen_yahoo: dict[str, str] = {}
    for sector, entries in data["sectors"].items():
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{origin}: sector {sector!r} must be a non-empty list of coins")
        for i, entry in enumerate(entries):
            where = f"{origin}: sector {sector!r} entry {i}"
            if not isinstance(entry, dict) or set(entry) != {"ticker", "yahoo"}:
                raise ConfigError(f"{where}: expected {{'ticker': ..., 'yahoo': ...}}, got {entry!r}")
            ticker, yahoo = entry["ticker"], entry["yahoo"]
            if not isinstance(ticker, str) or not _TICKER.match(ticker):
                raise ConfigError(f"{where}: bad ticker {ticker!r} (upper-case letters and digits)")
            if not isinstance(yahoo, str) or not _YAHOO.match(yahoo):
                raise ConfigError(f"{where}: bad Yahoo symbol {yahoo!r} for {ticker} (expected e.g. UNI7083-USD)")
            if ticker in seen:
                raise ConfigError(f"{where}: {ticker} is already in sector {seen[ticker]!r}; one primary sector per coin")
            if yahoo in seen_yahoo:
                raise ConfigError(f"{where}: Yahoo symbol {yahoo} is already used by {seen_yahoo[yahoo]}")
            seen[ticker] = sector
            seen_yahoo[yahoo] = ticker
            coins.append(Coin(ticker=ticker, yahoo=yahoo, sector=sector))
    return Sectors(coins=tuple(coins))


def load_sectors(path: Path | str | None = None) -> Sectors:
    """Load and validate the taxonomy from `path` (default: the configured sectors file)."""
    if path is None:
        from qortcli.config import get_settings

        path = get_settings().sectors_file
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"sectors file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"sectors file {path} is not valid JSON: {exc}") from None
    return parse_sectors(data, origin=str(path))
