"""qortfolio: crypto options and portfolio analytics (coin-settled Black-76, SVI surfaces, sector portfolios)."""

__version__ = "0.1.0"
