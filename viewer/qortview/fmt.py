"""Display formatting of query values (strings only; "—" where a value is missing)."""

from __future__ import annotations

import math

DASH = "—"


def _ok(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def coin(x, digits: int = 4) -> str:
    return f"{x:.{digits}f}" if _ok(x) else DASH


def usd(x, digits: int = 2) -> str:
    if not _ok(x):
        return DASH
    sign = "-" if x < 0 else ""
    return f"{sign}${abs(x):,.{digits}f}"


def usd0(x) -> str:
    return usd(x, 0)


def pct(x, digits: int = 1) -> str:
    """A fraction as a percentage: 0.547 → 54.7%."""
    return f"{100 * x:.{digits}f}%" if _ok(x) else DASH


def vol_pts(x, digits: int = 2) -> str:
    """A vol difference in vol points: 0.0382 → +3.82 pts."""
    return f"{100 * x:+.{digits}f} pts" if _ok(x) else DASH


def number(x, digits: int = 2) -> str:
    return f"{x:,.{digits}f}" if _ok(x) else DASH


def signed(x, digits: int = 3) -> str:
    return f"{x:+.{digits}f}" if _ok(x) else DASH


def small(x) -> str:
    """Gamma-like tiny numbers: 3 significant digits."""
    if not _ok(x):
        return DASH
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def integer(x) -> str:
    return f"{x:,.0f}" if _ok(x) else DASH


def days(x) -> str:
    return f"{x:.1f} d" if _ok(x) else DASH


def text(x) -> str:
    return DASH if x is None or x == "" else str(x)
