"""Display formatting of query values (strings only; "—" where a value is missing).

Small amounts keep their significant digits: a coin price of 0.000042 shows as "0.000042" (never "0.0000"),
a USD amount of 0.0042 as "$0.0042" (never "$0.00"); larger ones use the fixed decimals asked for.
"""

from __future__ import annotations

import math

DASH = "—"


def _ok(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _decimals(x: float, digits: int, sig: int) -> int:
    """Decimals showing at least `sig` significant digits of |x| < 1, never fewer than `digits`."""
    if x == 0 or abs(x) >= 1:
        return digits
    return max(digits, sig - 1 - math.floor(math.log10(abs(x))))


def _fixed(x: float, digits: int, sig: int) -> str:
    d = _decimals(x, digits, sig)
    text = f"{abs(x):,.{d}f}"
    if d > digits and "." in text:           # drop the padding zeros the significant digits added
        head, tail = text.split(".")
        tail = tail.rstrip("0")
        text = f"{head}.{tail.ljust(digits, '0')}" if tail or digits else head
    return text


def coin(x, digits: int = 4, sig: int = 3) -> str:
    """A coin amount: `digits` decimals, more for small values so `sig` significant digits show."""
    if not _ok(x):
        return DASH
    return ("-" if x < 0 else "") + _fixed(float(x), digits, sig)


def usd(x, digits: int = 2, sig: int = 2) -> str:
    """A USD amount: $1,234.56; below $1 with `sig` significant digits ($0.0042)."""
    if not _ok(x):
        return DASH
    return ("-" if x < 0 else "") + "$" + _fixed(float(x), digits, sig)


def usd0(x) -> str:
    return usd(x, 0) if not _ok(x) or abs(x) >= 1 else usd(x)


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


def sci(x, digits: int = 2) -> str:
    """One format for a whole column of tiny numbers (gamma per USD): 2.13e-05."""
    return f"{x:.{digits}e}" if _ok(x) else DASH


def integer(x) -> str:
    return f"{x:,.0f}" if _ok(x) else DASH


def compact(x) -> str:
    """Large counts and notionals short: 1.2k, 3.4M (contracts, USD)."""
    if not _ok(x):
        return DASH
    a = abs(x)
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= size:
            return f"{x / size:.1f}{suffix}"
    return f"{x:,.0f}" if a >= 10 or a == 0 else f"{x:.1f}"


def days(x) -> str:
    return f"{x:.1f} d" if _ok(x) else DASH


def text(x) -> str:
    return DASH if x is None or x == "" else str(x)
