"""The echo service the end-to-end benchmark calls, for any WSGI server.

One Flask handler echoes the request body. Plaintext requests reach it
directly; sealed ones (``X-Encrypted-Payload`` present) reach it through
:class:`~mscomm_sync.EncryptionMiddleware` as service ``billing``, with the
default host-wide replay store. gunicorn loads it as
``benchmarks.echo_app:create()``, with the keys in the environment.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from mscomm_sync.keyring import Keyring
from mscomm_sync.wsgi import EncryptionMiddleware


def create(keyring: Optional[Keyring] = None) -> Callable[..., Any]:
    """Return the WSGI app: plain Flask, or Flask behind the middleware when sealed."""
    from flask import Flask, request

    flask_app = Flask("bench")

    @flask_app.post("/echo")
    def echo() -> Any:
        return flask_app.response_class(request.get_data(), mimetype="application/octet-stream")

    plain = flask_app.wsgi_app
    sealed = EncryptionMiddleware(plain, "billing", keyring=keyring, allowed_callers=["orders"])

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        if "HTTP_X_ENCRYPTED_PAYLOAD" in environ:
            return sealed(environ, start_response)
        return plain(environ, start_response)

    return dispatch
