"""Internal: credentials kept out of everything shown to people: errors, warnings, log lines,
reprs and dumps. Standard library only, so that reprs and warnings can use it without importing
httpx.

What is hidden: the user information of URLs (``http://user:pass@host`` reads
``http://***@host``), bearer and basic credentials, the values of ``Authorization``- and
key-like fields, and any secret the caller names (an API key, a URL's password), also
percent-encoded.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from collections.abc import Iterable

HIDDEN = "***"

# Greedy up to the last "@" of the token: a password may hold characters that end a URL's
# authority, and over-hiding a path is better than showing a password.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s\"'<>]*@")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;}\]]+")
_BASIC = re.compile(r"(?i)\b(basic\s+)([A-Za-z0-9+/]{4,}=*)")
_CREDENTIAL_FIELD = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-api-key|api[-_]?key|password|secret|token)"
    r"([\"']?\s*[:=]\s*[\"']?)((?:bearer|basic)\s+)?[^\s\"',;}\]]+"
)


def url_secrets(url: str) -> list[str]:
    """The credentials in ``url``'s user information (its password; the user name when there
    is no password, as then it is the token), decoded and as written."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return []
    if "@" not in parts.netloc:
        return []
    user, _, password = parts.netloc.rpartition("@")[0].partition(":")
    written = password or user
    return [written, urllib.parse.unquote(written)] if written else []


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every credential replaced by ``***``: the given ``secrets`` wherever they
    appear, and whatever has the shape of one (see the module's docstring)."""
    named = {s for s in secrets if s}
    named |= {urllib.parse.quote(s, safe="") for s in named}
    for secret in sorted(named, key=len, reverse=True):  # a longer one may contain a shorter
        text = text.replace(secret, HIDDEN)
    text = _USERINFO.sub(rf"\1{HIDDEN}@", text)
    text = _BEARER.sub(rf"\1{HIDDEN}", text)
    text = _BASIC.sub(_hide_basic, text)
    return _CREDENTIAL_FIELD.sub(rf"\1\2\3{HIDDEN}", text)


def _hide_basic(match: re.Match[str]) -> str:
    """A basic credential (base64 of ``user:password``) hidden; other words after "basic"
    (English) kept."""
    try:
        decoded = base64.b64decode(match.group(2), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return match.group(0)
    return match.group(1) + HIDDEN if ":" in decoded else match.group(0)
