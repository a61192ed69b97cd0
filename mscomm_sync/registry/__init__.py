"""Service discovery: the file and etcd registries and the health poller.

Importing this package does no work: no threads, files or network. The etcd
backend needs nothing beyond ``requests``.
"""

from __future__ import annotations

from .backend import BaseRegistry
from .base import DEFAULT_HEALTH_ENDPOINT, Instance, Registry
from .default import (
    get_registry,
    initialize_registry,
    open_registry,
    register_from_env,
    reset_registry,
)
from .etcd import DEFAULT_LEASE_TTL, EtcdRegistry
from .file import FileRegistry
from .health import DEFAULT_HEALTH_CHECK_INTERVAL, HealthCheckConfig, HealthPoller
from .location import ENV_REGISTRY, default_location

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
