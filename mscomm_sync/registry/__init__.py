"""Service discovery: the file and etcd registries and the health poller.

Importing this package does no work: no threads, files or network. The etcd
backend needs nothing beyond ``requests``, and is itself imported only when
first used: through :func:`open_registry` or :func:`initialize_registry` with
an ``etcd://`` location, or by asking this package for ``EtcdRegistry`` or
``DEFAULT_LEASE_TTL``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backend import BaseRegistry
from .base import DEFAULT_HEALTH_ENDPOINT, Instance, Registry
from .default import (
    get_registry,
    initialize_registry,
    open_registry,
    register_from_env,
    reset_registry,
)
from .file import DEFAULT_LOCK_TIMEOUT, FileRegistry
from .health import DEFAULT_HEALTH_CHECK_INTERVAL, HealthCheckConfig, HealthPoller
from .location import ENV_REGISTRY, default_location
from .probe import ProbeResult

if TYPE_CHECKING:
    from .etcd import DEFAULT_LEASE_TTL, EtcdRegistry

__all__ = [
    "DEFAULT_HEALTH_CHECK_INTERVAL",
    "DEFAULT_HEALTH_ENDPOINT",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_LOCK_TIMEOUT",
    "ENV_REGISTRY",
    "BaseRegistry",
    "EtcdRegistry",
    "FileRegistry",
    "HealthCheckConfig",
    "HealthPoller",
    "Instance",
    "ProbeResult",
    "Registry",
    "default_location",
    "get_registry",
    "initialize_registry",
    "open_registry",
    "register_from_env",
    "reset_registry",
]

_LAZY = frozenset({"DEFAULT_LEASE_TTL", "EtcdRegistry"})


def __getattr__(name: str) -> Any:
    # PEP 562: the etcd backend (and its gateway) load on first use only.
    if name in _LAZY:
        from . import etcd

        value = getattr(etcd, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
