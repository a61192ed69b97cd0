"""Service discovery: the file and etcd registries and the health poller.

Importing this package does no work; the etcd backend is imported only when
an ``etcd://`` location is opened or :class:`EtcdRegistry` is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backend import BaseRegistry
from .base import DEFAULT_HEALTH_ENDPOINT, Instance, Registry
from .default import (
    ENV_REGISTRY,
    default_location,
    get_registry,
    initialize_registry,
    open_registry,
    register_from_env,
    reset_registry,
)
from .file import FileRegistry
from .health import DEFAULT_HEALTH_CHECK_INTERVAL, HealthCheckConfig, HealthPoller

if TYPE_CHECKING:
    from .etcd import DEFAULT_LEASE_TTL, EtcdRegistry

__all__ = [
    "DEFAULT_HEALTH_CHECK_INTERVAL",
    "DEFAULT_HEALTH_ENDPOINT",
    "DEFAULT_LEASE_TTL",
    "ENV_REGISTRY",
    "BaseRegistry",
    "EtcdRegistry",
    "FileRegistry",
    "HealthCheckConfig",
    "HealthPoller",
    "Instance",
    "Registry",
    "default_location",
    "get_registry",
    "initialize_registry",
    "open_registry",
    "register_from_env",
    "reset_registry",
]


def __getattr__(name: str) -> Any:
    if name in ("EtcdRegistry", "DEFAULT_LEASE_TTL"):
        from . import etcd

        return getattr(etcd, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
