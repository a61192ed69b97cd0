"""What every registry backend provides, and the record it returns.

Registries hold addresses, not secrets: anyone who can write the registry can
point callers at another URL, and the sealed envelope is what makes that
harmless (a wrong peer cannot open or forge sealed messages). Registry data is
still validated on the way in so that a bad entry fails loudly and early.
"""

from __future__ import annotations

import functools
import json
import types
from collections.abc import Mapping
from typing import Any, Optional, Protocol, runtime_checkable
from urllib.parse import urlsplit

import attrs

from ..errors import ConfigurationError
from ..keyring import validate_service_name

__all__ = ["DEFAULT_HEALTH_ENDPOINT", "Instance", "Registry", "make_instance", "normalize_url"]

#: The path probed by health checks unless a registration says otherwise.
DEFAULT_HEALTH_ENDPOINT = "/health"


@attrs.frozen(kw_only=True)
class Instance:
    """One registered instance of a service.

    Attributes:
        service: the service name.
        url: the base URL, e.g. ``http://127.0.0.1:8001``.
        healthy: the last known health. An instance nobody has checked yet
            counts as healthy until proven otherwise.
        health_endpoint: the path probed by health checks.
        metadata: free-form string metadata given at registration.
    """

    service: str
    url: str
    healthy: bool = True
    health_endpoint: str = DEFAULT_HEALTH_ENDPOINT
    metadata: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """The identity of the instance: ``(service, url)``."""
        return (self.service, self.url)

    @property
    def health_url(self) -> str:
        """The full URL that health checks GET."""
        return self.url + self.health_endpoint


@runtime_checkable
class Registry(Protocol):
    """The operations every registry backend supports."""

    def register(
        self,
        name: str,
        url: str,
        *,
        health_endpoint: str = "/health",
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> Instance:
        """Add or update the instance ``(name, url)``."""
        ...  # pragma: no cover

    def deregister(self, name: str, url: str) -> Optional[bool]:
        """Remove the instance ``(name, url)``, if present; True if it was."""
        ...  # pragma: no cover

    def get_instances(self, name: str) -> list[Instance]:
        """Return ``name``'s instances; an empty list for an unknown name."""
        ...  # pragma: no cover

    def services(self) -> list[str]:
        """Return the names of all registered services."""
        ...  # pragma: no cover

    def close(self) -> None:
        """Stop background work and release resources."""
        ...  # pragma: no cover


@functools.lru_cache(maxsize=65536)
def normalize_url(url: str) -> str:
    """Return ``url`` without a trailing slash, after checking it.

    Args:
        url: an ``http`` or ``https`` base URL with a host.

    Returns:
        The URL as registered, so that ``http://a:1/`` and ``http://a:1`` are
        the same instance.

    Raises:
        ConfigurationError: the URL is not an http(s) URL with a host, or has
            a query or fragment.
    """
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is not None and "@" in parts.netloc:
        # Credentials would end up in log lines, errors and reprs; never echo them.
        raise ConfigurationError(
            "instance URLs must not carry credentials (user:password@)",
            reason="credentials in url",
        )
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
    ):
        raise ConfigurationError(
            f"invalid instance URL {url!r}: use http(s)://host[:port][/path]",
            reason="invalid url",
        )
    return url.rstrip("/")


def make_instance(
    name: str,
    url: str,
    *,
    health_endpoint: str = DEFAULT_HEALTH_ENDPOINT,
    metadata: Optional[Mapping[str, Any]] = None,
) -> Instance:
    """Validate a registration and return its :class:`Instance`.

    Args:
        name: the service name (see :func:`mscomm_sync.keyring.validate_service_name`).
        url: the instance's base URL.
        health_endpoint: a path starting with ``/``.
        metadata: JSON-serialisable values under string keys.

    Returns:
        A healthy instance record whose metadata is a read-only copy.

    Raises:
        ConfigurationError: any argument is invalid.
    """
    validate_service_name(name)
    url = normalize_url(url)
    if not isinstance(health_endpoint, str) or not health_endpoint.startswith("/"):
        raise ConfigurationError(
            f"invalid health endpoint {health_endpoint!r}: it must be a path starting with '/'",
            reason="invalid health endpoint",
        )
    meta = dict(metadata) if metadata is not None else {}
    try:
        if not all(isinstance(k, str) for k in meta):
            raise TypeError("metadata keys must be strings")
        meta = json.loads(json.dumps(meta))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"metadata for service {name!r} must be JSON with string keys",
            reason="invalid metadata",
        ) from exc
    return Instance(
        service=name,
        url=url,
        health_endpoint=health_endpoint,
        metadata=types.MappingProxyType(meta),
    )
