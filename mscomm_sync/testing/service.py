"""A real sealed service for tests: any WSGI app, behind the middleware, on 127.0.0.1."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Optional

from ..registry.base import DEFAULT_HEALTH_ENDPOINT, Instance, Registry
from .server import LiveServer

__all__ = ["SealedService"]


class SealedService:
    """Serve ``app`` behind :class:`~mscomm_sync.wsgi.EncryptionMiddleware` and register it.

    The app is wrapped exactly as in production, served by a real threaded
    HTTP server (:class:`LiveServer`) on ``127.0.0.1`` and a free port, and
    registered under ``name`` so clients find it by name. Unless a
    ``replay_store`` is given, it uses an in-memory one of its own, so tests
    leave nothing on the host.

    Args:
        name: the service name (it needs a key of its own: ``<NAME>_PRIVATE_KEY``,
            or, for protocol v1, ``<NAME>_ENCRYPTION_KEY``).
        app: any WSGI application (a Flask app, a Django handler, a function).
        registry: where to register; ``None`` registers nowhere.
        health_endpoint: the health path recorded with the registration.
        **options: keyword arguments for ``EncryptionMiddleware``
            (``encrypt_responses``, ``allowed_callers``, ``trust``, ``identity`` ...).

    Raises:
        ConfigurationError: the service has no usable key, or an option is
            invalid (raised by the middleware).
    """

    def __init__(
        self,
        name: str,
        app: Any,
        *,
        registry: Optional[Registry] = None,
        health_endpoint: str = DEFAULT_HEALTH_ENDPOINT,
        **options: Any,
    ) -> None:
        from ..replay import MemoryReplayStore
        from ..wsgi import EncryptionMiddleware

        options.setdefault("replay_store", MemoryReplayStore())
        self.name = name
        self.app = app
        self.middleware = EncryptionMiddleware(app, name, **options)
        self.server = LiveServer(self.middleware)
        self.registry = registry
        self.health_endpoint = health_endpoint
        self.instance: Optional[Instance] = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (after :meth:`start`)."""
        return self.server.url

    def start(self) -> SealedService:
        """Start serving, then register; returns ``self``."""
        self.server.start()
        if self.registry is not None:
            try:
                self.instance = self.registry.register(
                    self.name, self.url, health_endpoint=self.health_endpoint
                )
            except BaseException:
                self.server.stop()
                raise
        return self

    def stop(self) -> None:
        """Deregister (so no client is sent to a dead port), then stop serving."""
        try:
            if self.registry is not None and self.instance is not None:
                self.registry.deregister(self.name, self.instance.url)
                self.instance = None
        finally:
            self.server.stop()

    def __enter__(self) -> SealedService:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SealedService name={self.name!r} server={self.server!r}>"
