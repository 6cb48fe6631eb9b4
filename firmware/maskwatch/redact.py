"""Removing credentials from URLs and from text that may quote them.

Camera, webhook and MQTT addresses end up in logs, the status page, metrics labels and error
messages. Installers write them as they type them, so a password may hold ``/``, ``@`` or
``:`` unescaped, and tokens travel in query parameters as often as in the userinfo. Every
place that shows an address or an error that may quote one goes through this one module.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

MASK = "***"
# Query parameter names that carry a secret (matched anywhere in the name, any case).
SECRET_PARAM = re.compile(r"pass|pwd|token|key|secret|auth|sig|credential", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)(.*)", re.DOTALL)
# What may follow a userinfo's '@': a host name, IPv4 or [IPv6] address, and an optional port.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]+)(:\d*)?(?=[/?#]|$)")


def redact_url(url: str) -> str:
    """``url`` with the password of its userinfo (the whole userinfo when it has no user
    name: a bare token) and the values of secret-looking query parameters replaced by
    ``***``. Text that is not a URL comes back unchanged."""
    match = _SCHEME.fullmatch(url)
    if match is None:
        return url
    scheme, rest = match.groups()
    userinfo, rest = _split_userinfo(rest)
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        prefix = f"{user}:{MASK}@" if colon and user else f"{MASK}@"
    else:
        prefix = ""
    rest, hash_, fragment = rest.partition("#")
    path, question, query = rest.partition("?")
    if question:
        query = _redact_query(query)
    if fragment and SECRET_PARAM.search(fragment):
        fragment = MASK
    return f"{scheme}{prefix}{path}{question}{query}{hash_}{fragment}"


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url` (error messages from
    OpenCV, GStreamer or an HTTP client may quote the address they were given)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def has_userinfo(url: str) -> bool:
    """Whether ``url`` carries ``user[:password]@`` before its host."""
    match = _SCHEME.fullmatch(url)
    return match is not None and _split_userinfo(match.group(2))[0] is not None


def _split_userinfo(rest: str) -> tuple[str | None, str]:
    """(userinfo or None, the rest from the host on). The userinfo ends at the last '@'
    that a host follows, so a password holding '/', '@', '?' or ':' is still taken whole
    (when in doubt, more is hidden, never less)."""
    for at in reversed([i for i, c in enumerate(rest) if c == "@"]):
        if _HOST.match(rest, at + 1):
            return rest[:at], rest[at + 1:]
    return None, rest


def _redact_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        return query
    if not any(SECRET_PARAM.search(name) for name, _ in pairs):
        return query
    return urlencode(
        [(name, MASK if SECRET_PARAM.search(name) else value) for name, value in pairs],
        safe="*",
    )
