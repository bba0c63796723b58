"""Webhook URLs are credentials (Slack, Discord and ntfy put the token in the path or query): what is shown,
stored and logged is `scheme://host/…#<hash>` — enough to tell two webhooks apart, nothing to reuse."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit


def url_hash(url: str) -> str:
    """The first 8 hex digits of the URL's SHA-256: the same URL always gives the same tag."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]


def redact_url(url: str) -> str:
    """`https://hooks.slack.com/…#1a2b3c4d`: scheme and host (with port) only, and the hash of the whole URL.
    Credentials in the authority (`user:pass@`) are dropped too."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"(malformed URL)#{url_hash(url)}"
    tail = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme or '?'}://{host}{port}{tail}#{url_hash(url)}"


def scrub(text: str, url: str | None) -> str:
    """`text` (an error message) with the URL, and any secret-bearing part of it (path, query, credentials),
    replaced by its redacted form."""
    if not url or not text:
        return text
    out = text.replace(url, redact_url(url))
    try:
        parts = urlsplit(url)
    except ValueError:
        return out
    secrets = [p for p in (parts.path.strip("/"), parts.query, parts.fragment, parts.password, parts.username,
                           parts.netloc if "@" in parts.netloc else "") if p and len(p) >= 4]
    for secret in sorted(secrets, key=len, reverse=True):
        out = out.replace(secret, "…")
    return out
