"""The routes of a mocked service: which reply answers which request."""

from __future__ import annotations

import logging
import threading
from typing import Optional, Union

import attrs

from .mock_types import Handler, MockReply, MockRequest, as_reply

__all__ = ["Route", "RouteTable"]

log = logging.getLogger("mscomm_sync.testing")

_JSON = "application/json"
HEALTHY = MockReply(status=200, body=b'{"status": "ok"}', content_type=_JSON)
NOT_FOUND = MockReply(status=404, body=b'{"error": "not found"}', content_type=_JSON)
FAILED = MockReply(status=500, body=b'{"error": "internal server error"}', content_type=_JSON)
NOT_ALLOWED = MockReply(status=405, body=b'{"error": "method not allowed"}', content_type=_JSON)


@attrs.frozen(kw_only=True)
class Route:
    """One route: a method and exact path, and how it answers.

    Attributes:
        method: the HTTP method, upper case.
        path: the exact path, without the query string.
        reply: a canned reply, or a handler called with the request.
        seal: seal the reply (``False`` answers in plaintext).
        tamper: flip a bit of the sealed reply.
    """

    method: str
    path: str
    reply: Union[MockReply, Handler]
    seal: bool = True
    tamper: bool = False


class RouteTable:
    """Routes, the most recently added first; safe to use from many threads.

    Args:
        exempt_paths: paths that answer :data:`HEALTHY` when no route matches.
    """

    def __init__(self, exempt_paths: frozenset[str]) -> None:
        self.exempt_paths = exempt_paths
        self._routes: list[Route] = []
        self._lock = threading.Lock()

    def add(self, route: Route) -> None:
        """Add ``route`` in front of the others, so it wins over earlier ones."""
        with self._lock:
            self._routes.insert(0, route)

    def answer(self, request: MockRequest) -> tuple[Optional[Route], MockReply]:
        """Return the route that answers ``request`` and its reply.

        A path with routes for other methods only answers 405; an unknown
        path 404, except an exempt path, which answers :data:`HEALTHY`.
        The route is ``None`` for these defaults.

        A handler that raises gets a 500, as the middleware sends when an
        app fails; the exception goes to the ``mscomm_sync.testing`` log.
        """
        with self._lock:
            on_path = [r for r in self._routes if r.path == request.path]
        for route in on_path:
            if route.method == request.method:
                return route, _call(route, request)
        if on_path:
            return None, NOT_ALLOWED
        if request.path in self.exempt_paths:
            return None, HEALTHY
        return None, NOT_FOUND


def _call(route: Route, request: MockRequest) -> MockReply:
    if isinstance(route.reply, MockReply):
        return route.reply
    try:
        return as_reply(route.reply(request))
    except Exception:
        log.exception(
            "mock handler for %s %s failed", route.method, route.path,
            extra={"mscomm.event": "mock handler failed", "mscomm.method": route.method,
                   "mscomm.route": route.path},
        )  # fmt: skip
        return FAILED
