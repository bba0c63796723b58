"""The one redaction function: credentials out of any text before it is printed, logged or stored.

`redact(text)` masks, in any string (a URL, an error line, a log record, a JSON document):
- the password of `scheme://user:password@host` for every scheme, in any letter case (`mongodb://`,
  `MONGODB://`, `mongdb://`, `postgres://`, `https://` ...), and token-only userinfo
  (`https://TOKEN@host` → `https://***@host`);
- `user:password@host` written without `//` (`mongodb:user:pw@host`);
- the values of secret query-string parameters (`password`, `tlsCertificateKeyFilePassword`,
  `authMechanismProperties` (AWS session tokens ride in it), `token`, `access_token`, `apikey`,
  `secret`, `signature`, ...).
Everything else is returned unchanged, so it is safe to apply to whole outputs. `redact_obj` applies it to
every string of a nested dict/list (job_runs arguments, JSON summaries).
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

# scheme://userinfo@ — userinfo runs to the last "@" before the path, query or fragment
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/\s?#@]*(?:@[^/\s?#@]*)*)@")
# user:password@host without "//" (also catches scheme:user:password@host)
_BARE_USERINFO = re.compile(r"(?<![\w/%.\-+~])([\w.\-+%~]+):([^\s/@]+)@(?=[\w\[])")
# secret query-string parameters: their value up to the next & (or ; # whitespace quote)
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:[\w.\-]*(?:password|passwd|pwd|secret|token|apikey|api_key|api-key|accesskey|access_key"
    r"|signature|credential)[\w.\-]*|authMechanismProperties|sig|key)=)([^&;#\s\"']*)")


def _mask_userinfo(match: re.Match) -> str:
    scheme, userinfo = match.group(1), match.group(2)
    if not userinfo or userinfo == MASK:
        return match.group(0)
    user, colon, _password = userinfo.partition(":")
    if colon:
        return f"{scheme}{user}:{MASK}@"
    return f"{scheme}{MASK}@"      # token-only userinfo: the whole of it is the secret


def redact(text: Any) -> Any:
    """`text` with every credential masked as *** (non-strings are returned unchanged)."""
    if not isinstance(text, str) or not text:
        return text
    if "@" not in text and "=" not in text:
        return text  # nothing that can hold a credential (fast path for table cells)
    out = _URL_USERINFO.sub(_mask_userinfo, text)
    out = _BARE_USERINFO.sub(lambda m: m.group(0) if m.group(2) == MASK else f"{m.group(1)}:{MASK}@", out)
    return _SECRET_PARAM.sub(lambda m: m.group(1) + (MASK if m.group(2) else ""), out)


def redact_obj(obj: Any) -> Any:
    """A copy of a nested dict/list/tuple with `redact` applied to every string (keys included)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact(k) if isinstance(k, str) else k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(v) for v in obj) if isinstance(obj, list) else tuple(redact_obj(v) for v in obj)
    return obj


__all__ = ["MASK", "redact", "redact_obj"]
