"""Flask integration: wrap an app's ``wsgi_app`` in :class:`EncryptionMiddleware`.

Trust model: as for the middleware. Inside a request, :func:`current_caller`
is the verified sender of a sealed request, and the only identity a view should
trust; headers such as ``X-Encryption-Service`` never reach the app.

Usage::

    from flask import Flask
    from mscomm_sync.flask import current_caller, init_app

    app = Flask(__name__)
    app.config["MSCOMM_SERVICE_NAME"] = "billing"
    init_app(app)

    @app.post("/api/v1/charge")
    def charge():
        return {"charged_for": current_caller()}
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

import attrs

from .errors import ConfigurationError
from .wsgi import CALLER_KEY, EncryptionMiddleware
from .wsgi.options import MIDDLEWARE_OPTIONS, reject_unknown_options

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

__all__ = ["OPTIONS", "MscommState", "caller_required", "current_caller", "init_app"]

#: The options ``init_app`` accepts, each also readable from ``app.config["MSCOMM_<NAME>"]``.
OPTIONS = MIDDLEWARE_OPTIONS
EXTENSION = "mscomm_sync"

F = TypeVar("F", bound=Callable[..., Any])


@attrs.frozen
class MscommState:
    """What ``app.extensions["mscomm_sync"]`` holds.

    Attributes:
        middleware: the middleware wrapped around ``app.wsgi_app``.
    """

    middleware: EncryptionMiddleware


def init_app(app: Flask, **options: Any) -> EncryptionMiddleware:
    """Protect ``app`` with :class:`~mscomm_sync.wsgi.EncryptionMiddleware`.

    Each option is taken from ``options`` if given there, else from
    ``app.config["MSCOMM_" + NAME.upper()]`` if set, else the middleware's
    default. The middleware wraps ``app.wsgi_app``, so other WSGI middleware
    added later still sees only verified requests.

    Args:
        app: the Flask application.
        **options: any of :data:`OPTIONS`.

    Returns:
        The middleware, also kept in ``app.extensions["mscomm_sync"]``.

    Raises:
        ConfigurationError: an unknown or invalid option, or ``init_app`` was
            already called on this app.
    """
    reject_unknown_options(options)
    if EXTENSION in app.extensions:
        raise ConfigurationError(
            "init_app was already called on this app", reason="initialised twice"
        )
    merged = {
        name: app.config[f"MSCOMM_{name.upper()}"]
        for name in OPTIONS
        if f"MSCOMM_{name.upper()}" in app.config
    }
    merged.update(options)
    service_name = merged.pop("service_name", None)
    middleware = EncryptionMiddleware(app.wsgi_app, service_name, **merged)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    app.extensions[EXTENSION] = MscommState(middleware=middleware)
    return middleware


def current_caller() -> Optional[str]:
    """Return the verified sender of the current request, or ``None``.

    ``None`` means the request was not sealed (it reached an exempt path, or
    encryption is not required).

    Raises:
        RuntimeError: called outside a request context (Flask's error).
    """
    from flask import request

    caller = request.environ.get(CALLER_KEY)
    return caller if isinstance(caller, str) else None


def caller_required(*allowed: str) -> Callable[[F], F]:
    """Decorate a view so that only a verified caller (one of ``allowed``, if given) reaches it.

    Others get 403 (sealed, when the request was sealed but its sender is not
    allowed here).

    Args:
        *allowed: service names; empty means any verified caller.
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from flask import abort

            caller = current_caller()
            if caller is None or (allowed and caller not in allowed):
                abort(403)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
