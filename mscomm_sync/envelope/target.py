"""The canonical request target: the endpoint's path and query as bound into a seal.

A client and every WSGI server must compute the same string for the same
request, or no seal would ever open. The rules are in ``docs/protocol.md``.

What is bound is the *endpoint*: the path the caller asked for, relative to
wherever the service is mounted. A client binds the endpoint it calls, never
the path of the instance URL it sends it to (the registry, which is not
trusted, says where instances are); a server binds ``PATH_INFO``, the path
its app routes on, and refuses a request whose ``SCRIPT_NAME`` is not its
configured mount point. So what an app routes is exactly what was verified.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, unquote_to_bytes, urlsplit

__all__ = ["canonical_target", "target_from_endpoint", "target_from_environ", "target_from_url"]

# Characters left unescaped in a canonical path: RFC 3986 unreserved,
# sub-delims, ":" "@" and "/". Everything else is %XX with upper-case hex.
_PATH_SAFE = "/!$&'()*+,;=:@-._~"


def canonical_target(path: bytes, query: str) -> str:
    """Return the canonical form of a request target, as bound into the seal.

    Args:
        path: the *decoded* path bytes of the endpoint (what WSGI calls
            ``PATH_INFO``, as bytes).
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


def target_from_endpoint(path: str, query: str = "") -> str:
    """Return the canonical target of an endpoint: its (percent-encoded) path and raw query."""
    return canonical_target(unquote_to_bytes(path), query)


def target_from_url(url: str) -> str:
    """Return the canonical target of a URL whose whole path is the endpoint.

    That is so for a service mounted at the root and reached without a path
    prefix; otherwise bind the endpoint (:func:`target_from_endpoint`).
    """
    parts = urlsplit(url)
    return target_from_endpoint(parts.path, parts.query)


def target_from_environ(environ: Mapping[str, object]) -> str:
    """Return the canonical target of a WSGI request: ``PATH_INFO`` and the raw query.

    ``SCRIPT_NAME`` is not part of it: the middleware checks it against its
    configured mount point before anything else.
    """
    path = str(environ.get("PATH_INFO", "") or "")
    # PEP 3333: this is bytes decoded as latin-1.
    raw = path.encode("latin-1", "replace")
    return canonical_target(raw, str(environ.get("QUERY_STRING", "") or ""))
