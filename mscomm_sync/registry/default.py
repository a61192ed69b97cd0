"""The process-wide default registry, made explicitly by :func:`initialize_registry`.

Nothing here runs at import. The default lives behind a lock; tests reset it
with :func:`reset_registry`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any, Optional, Union

from ..errors import ConfigurationError
from .backend import BaseRegistry
from .base import DEFAULT_HEALTH_ENDPOINT, Instance
from .health import HealthCheckConfig
from .location import ENV_REGISTRY, default_location

__all__ = [
    "get_registry",
    "initialize_registry",
    "open_registry",
    "register_from_env",
    "reset_registry",
]

_lock = threading.Lock()
_default: Optional[BaseRegistry] = None


def open_registry(
    location: Optional[Union[str, os.PathLike[str]]] = None,
    *,
    health_check_interval: Optional[float] = None,
    lease_ttl: Optional[float] = None,
    health_check: Optional[HealthCheckConfig] = None,
    **options: Any,
) -> BaseRegistry:
    """Return a new registry for ``location`` without making it the default.

    Opening reads; it never creates a registry. A file registry's file is
    created by its first registration, in a directory that must exist, except
    for the per-user default file (``location`` is ``None`` and
    ``$MSCOMM_REGISTRY`` unset), whose directory the first registration
    creates too.

    Args:
        location: a JSON file path, or ``etcd://host:port[,host:port...][/prefix]``;
            ``None`` means :func:`default_location`.
        health_check_interval: start health checks at once with this interval.
        lease_ttl: seconds an etcd registration outlives its process; ignored
            by the file backend, so one call suits both.
        health_check: health-check settings.
        **options: further keyword arguments for the backend's constructor
            (for a file: ``lock_timeout``, ``create_parents``).

    Returns:
        A :class:`~mscomm_sync.registry.FileRegistry` or
        :class:`~mscomm_sync.registry.EtcdRegistry`.

    Raises:
        ConfigurationError: the location is malformed.
        RegistryError: the backend cannot be reached or read.
    """
    where = default_location() if location is None else os.fspath(location)
    if not where:
        raise ConfigurationError(
            "empty registry location", variable=ENV_REGISTRY, reason="empty location"
        )
    if where.startswith("etcd://"):
        from .etcd import EtcdRegistry

        return EtcdRegistry.from_location(
            where,
            health_check_interval=health_check_interval,
            lease_ttl=lease_ttl,
            health_check=health_check,
            **options,
        )
    if "://" in where:
        raise ConfigurationError(
            f"unsupported registry location {where!r}: use a file path or etcd://host:port",
            variable=ENV_REGISTRY,
            reason="unsupported scheme",
        )
    from .file import FileRegistry

    if location is None and not os.environ.get(ENV_REGISTRY, "").strip():
        # Nobody typed this path, so a missing directory is no typo: the
        # per-user state directory simply has not been made yet.
        options.setdefault("create_parents", True)
    return FileRegistry(
        where, health_check_interval=health_check_interval, health_check=health_check, **options
    )


def initialize_registry(
    location: Optional[Union[str, os.PathLike[str]]] = None,
    *,
    health_check_interval: Optional[float] = None,
    lease_ttl: Optional[float] = None,
    health_check: Optional[HealthCheckConfig] = None,
    **options: Any,
) -> BaseRegistry:
    """Open a registry and make it this process's default.

    Clients built without ``registry=`` use the default. Calling this again
    closes the previous default and replaces it.

    Args:
        location: a JSON file path, or ``etcd://host:port[,host:port...][/prefix]``;
            ``None`` reads ``$MSCOMM_REGISTRY``, then uses
            ``~/.local/state/mscomm/registry.json`` (see :func:`default_location`).
        health_check_interval: start health checks at once with this interval
            in seconds; ``None`` leaves them off until
            :meth:`~BaseRegistry.start_health_checks`.
        lease_ttl: seconds an etcd registration outlives a dead process
            (default 10); ignored by the file backend.
        health_check: health-check settings (timeouts, thresholds, pool size).
        **options: further keyword arguments for the backend's constructor.

    Returns:
        The new default registry.

    Raises:
        ConfigurationError: the location is malformed.
        RegistryError: the backend cannot be reached or read.
    """
    global _default
    registry = open_registry(
        location,
        health_check_interval=health_check_interval,
        lease_ttl=lease_ttl,
        health_check=health_check,
        **options,
    )
    with _lock:
        previous, _default = _default, registry
    if previous is not None:
        previous.close()
    return registry


def get_registry() -> BaseRegistry:
    """Return the default registry.

    Raises:
        ConfigurationError: :func:`initialize_registry` has not been called.
    """
    with _lock:
        registry = _default
    if registry is None:
        raise ConfigurationError(
            "no default service registry: call "
            "mscomm_sync.registry.initialize_registry() first, or pass registry= explicitly",
            reason="registry not initialized",
        )
    return registry


def reset_registry() -> None:
    """Close and forget the default registry (for tests); a no-op if there is none."""
    global _default
    with _lock:
        previous, _default = _default, None
    if previous is not None:
        previous.close()


def register_from_env(
    registry: Optional[BaseRegistry] = None, *, environ: Optional[Mapping[str, str]] = None
) -> Instance:
    """Register this service from ``SERVICE_NAME`` and ``SERVICE_URL``.

    ``SERVICE_HEALTH_ENDPOINT`` may override the health path (default ``/health``).

    Args:
        registry: where to register; the default registry if ``None``.
        environ: the environment to read (``os.environ`` by default).

    Returns:
        The registered instance.

    Raises:
        ConfigurationError: a variable is missing or invalid, or there is no
            default registry.
        RegistryError: the registry cannot be written.
    """
    env = os.environ if environ is None else environ
    values = {}
    for variable in ("SERVICE_NAME", "SERVICE_URL"):
        value = env.get(variable, "").strip()
        if not value:
            raise ConfigurationError(
                f"{variable} is not set: export it to register this service at start-up",
                variable=variable,
                reason="missing",
            )
        values[variable] = value
    target = registry if registry is not None else get_registry()
    endpoint = env.get("SERVICE_HEALTH_ENDPOINT", "").strip() or DEFAULT_HEALTH_ENDPOINT
    return target.register(values["SERVICE_NAME"], values["SERVICE_URL"], health_endpoint=endpoint)
