"""Django integration: settings from ``settings.MSCOMM``, a ``wsgi.py`` wrap, a view guard.

Trust model: as for the middleware, which sits *outside* Django in
``wsgi.py``, so Django (and every Django middleware) sees only verified,
opened requests. In a view, ``request.META["mscomm.caller"]`` (or
:func:`caller`) is the verified sender of a sealed request and the only
identity to trust; the ``X-Encryption-Service`` header never reaches Django.

In the project's ``wsgi.py``::

    import os
    from django.core.wsgi import get_wsgi_application
    from mscomm_sync.django import wrap

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    application = wrap(get_wsgi_application())

and in ``settings.py``::

    MSCOMM = {"service_name": "billing", "allowed_callers": ["orders"]}
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, TypeVar

from .errors import ConfigurationError
from .wsgi import CALLER_KEY, EncryptionMiddleware
from .wsgi.options import MIDDLEWARE_OPTIONS, reject_unknown_options
from .wsgi.response import WSGIApp

__all__ = ["OPTIONS", "caller", "caller_required", "settings_options", "wrap"]

#: The keys ``settings.MSCOMM`` may hold (the middleware's options).
OPTIONS = frozenset(MIDDLEWARE_OPTIONS)

F = TypeVar("F", bound=Callable[..., Any])


def settings_options() -> dict[str, Any]:
    """Return the middleware options in ``settings.MSCOMM`` (empty if unset).

    Raises:
        ConfigurationError: ``MSCOMM`` is not a dict or has unknown keys.
    """
    from django.conf import settings

    configured = getattr(settings, "MSCOMM", {})
    if not isinstance(configured, dict):
        raise ConfigurationError(
            "settings.MSCOMM must be a dict", variable="MSCOMM", reason="not a dict"
        )
    unknown = sorted(set(configured) - OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"settings.MSCOMM has unknown key(s): {', '.join(unknown)}",
            variable="MSCOMM",
            reason="unknown option",
        )
    return dict(configured)


def wrap(application: WSGIApp, **overrides: Any) -> EncryptionMiddleware:
    """Wrap Django's WSGI application in the middleware, configured from settings.

    Args:
        application: usually ``get_wsgi_application()``.
        **overrides: options that take precedence over ``settings.MSCOMM``.

    Returns:
        The WSGI application to expose as ``application``.

    Raises:
        ConfigurationError: unknown or invalid options, or no service name.
    """
    reject_unknown_options(overrides)
    options = settings_options()
    options.update(overrides)
    service_name = options.pop("service_name", None)
    return EncryptionMiddleware(application, service_name, **options)


def caller(request: Any) -> Optional[str]:
    """Return the verified sender of ``request`` (a Django ``HttpRequest``), or ``None``."""
    value = request.META.get(CALLER_KEY)
    return value if isinstance(value, str) else None


def caller_required(*allowed: str) -> Callable[[F], F]:
    """Decorate a view so that only a verified caller (one of ``allowed``, if given) reaches it.

    Others get a 403 with the body ``{"error": "forbidden"}``.

    Args:
        *allowed: service names; empty means any verified caller.
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            found = caller(request)
            if found is None or (allowed and found not in allowed):
                from django.http import JsonResponse

                return JsonResponse({"error": "forbidden"}, status=403)
            return view(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
