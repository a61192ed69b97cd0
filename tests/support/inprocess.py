"""Call a WSGI app in-process, without a server, and collect its answer."""

from __future__ import annotations

from typing import Any


def run(app: Any, environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """Call a WSGI app in-process and return status code, headers and body."""
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        got["status"], got["headers"] = status, dict(headers)
        return lambda data: None

    body = b"".join(app(environ, start_response))
    return int(got["status"][:3]), got["headers"], body
