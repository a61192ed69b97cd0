"""What every registry backend provides, and the record it returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional, Protocol, runtime_checkable

import attrs

__all__ = ["Instance", "Registry"]


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
    health_endpoint: str = "/health"
    metadata: Mapping[str, Any] = attrs.field(factory=dict)


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

    def deregister(self, name: str, url: str) -> None:
        """Remove the instance ``(name, url)``, if present."""
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
