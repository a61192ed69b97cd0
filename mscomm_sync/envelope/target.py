"""The canonical request target: the method's path and query as bound into a seal.

A client and every WSGI server must compute the same string for the same
request, or no seal would ever open. The rules are in ``docs/protocol.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, unquote_to_bytes, urlsplit

__all__ = ["canonical_target", "target_from_environ", "target_from_url"]

# Characters left unescaped in a canonical path: RFC 3986 unreserved,
# sub-delims, ":" "@" and "/". Everything else is %XX with upper-case hex.
_PATH_SAFE = "/!$&'()*+,;=:@-._~"


def canonical_target(path: bytes, query: str) -> str:
    """Return the canonical form of a request target, as bound into the seal.

    Args:
        path: the *decoded* path bytes (what WSGI calls
            ``SCRIPT_NAME + PATH_INFO``, as bytes).
        query: the raw query string exactly as it crossed the wire, without
            the ``?``.

    The path is re-encoded so that every WSGI server and every client agree
    on it; the query is bound as sent, because decoding it would let
    ``a=1%26b=2`` and ``a=1&b=2`` share a seal.
    """
    canon = quote(path or b"/", safe=_PATH_SAFE)
    if not canon.startswith("/"):
        canon = "/" + canon
    return f"{canon}?{query}" if query else canon


def target_from_url(url: str) -> str:
    """Return the canonical target of a prepared request's URL."""
    parts = urlsplit(url)
    return canonical_target(unquote_to_bytes(parts.path), parts.query)


def target_from_environ(environ: Mapping[str, object]) -> str:
    """Return the canonical target of a WSGI request."""
    script = str(environ.get("SCRIPT_NAME", "") or "")
    path = str(environ.get("PATH_INFO", "") or "")
    # PEP 3333: these are bytes decoded as latin-1.
    raw = (script + path).encode("latin-1", "replace")
    return canonical_target(raw, str(environ.get("QUERY_STRING", "") or ""))
