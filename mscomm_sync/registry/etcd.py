"""The distributed registry: etcd v3 through its JSON gateway.

Every registration made by an :class:`EtcdRegistry` is attached to one lease
that an owned thread keeps alive; if the process dies, the lease expires
after ``lease_ttl`` seconds and etcd deletes its instances. A clean
:meth:`EtcdRegistry.close` revokes the lease at once. Lookups never call etcd:
they are served from a local cache that a second owned thread refreshes
every ``refresh_interval`` seconds, and that keeps the last known instances
(with a warning) while etcd is unreachable.

Layout: ``<prefix>/services/<name>/<url>`` holds the JSON entry
``{"url": ..., "health_endpoint": ..., "metadata": {...}}``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random as _random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional, Union

from ..errors import ConfigurationError, RegistryError
from ..telemetry.process import count_registry_error
from .backend import BaseRegistry
from .base import DEFAULT_HEALTH_ENDPOINT, Instance, make_instance
from .etcd_gateway import EtcdGateway
from .fileformat import DocumentError, decode_entry
from .health import HealthCheckConfig
from .location import DEFAULT_PREFIX, parse_location
from .worker import PeriodicWorker

__all__ = [
    "DEFAULT_LEASE_TTL",
    "DEFAULT_PREFIX",
    "DEFAULT_REFRESH_INTERVAL",
    "EtcdRegistry",
    "parse_location",
]

log = logging.getLogger("mscomm_sync.registry")

#: Seconds a registration outlives a process that stops renewing its lease.
DEFAULT_LEASE_TTL = 10
#: Seconds between cache refreshes.
DEFAULT_REFRESH_INTERVAL = 1.0


class EtcdRegistry(BaseRegistry):
    """A registry kept in etcd, shared by every host that can reach it.

    Args:
        endpoints: member URLs (``http://host:port``) or one ``etcd://`` location.
        prefix: the key prefix; instances live under ``<prefix>/services/``.
        lease_ttl: seconds (rounded up) a registration outlives its process;
            ``None`` means :data:`DEFAULT_LEASE_TTL`.
        refresh_interval: seconds between cache refreshes; ``None`` means
            :data:`DEFAULT_REFRESH_INTERVAL`.
        request_timeout: read timeout of one etcd request, in seconds.
        health_check: health-check settings.
        health_check_interval: if given, start health checks at once.
        clock: a monotonic clock in seconds.
        random: returns a float in ``[0, 1)``; drives jitter.

    Raises:
        ConfigurationError: an argument is invalid.
        RegistryError: no etcd member answered the first read.
    """

    def __init__(
        self,
        endpoints: Union[str, Sequence[str]],
        *,
        prefix: str = DEFAULT_PREFIX,
        lease_ttl: Optional[float] = None,
        refresh_interval: Optional[float] = None,
        request_timeout: float = 2.0,
        health_check: Optional[HealthCheckConfig] = None,
        health_check_interval: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        super().__init__(health_check=health_check, clock=clock, random=random)
        if isinstance(endpoints, str):
            endpoints, prefix = parse_location(endpoints)
        ttl = DEFAULT_LEASE_TTL if lease_ttl is None else lease_ttl
        interval = DEFAULT_REFRESH_INTERVAL if refresh_interval is None else refresh_interval
        if not ttl > 0 or not interval > 0 or not endpoints:
            raise ConfigurationError(
                "etcd registry needs endpoints, and a positive lease_ttl and refresh_interval",
                reason="invalid setting",
            )
        self.lease_ttl = math.ceil(ttl)
        self.prefix = "/" + prefix.strip("/")
        self._services_prefix = f"{self.prefix}/services/"
        self._gateway = EtcdGateway(endpoints, timeout=request_timeout)
        hosts = ",".join(e.split("://", 1)[-1] for e in self._gateway.endpoints)
        self.location = f"etcd://{hosts}{self.prefix}"
        self._write_lock = threading.RLock()
        self._lease: Optional[int] = None
        self._lease_pid = 0
        self._own: dict[tuple[str, str], Instance] = {}
        self._revision: Optional[int] = None
        self._outage = False
        self._keepalive = PeriodicWorker(
            self._keep_lease,
            name="mscomm-etcd-keepalive",
            interval=max(self.lease_ttl / 3.0, 0.2),
            run_immediately=False,
            restart_after_fork=False,  # the lease belongs to the process that took it
            clock=clock,
            random=random,
        )
        self._refresher = PeriodicWorker(
            self.poll_once,
            name="mscomm-etcd-refresh",
            interval=interval,
            jitter=0.1,
            run_immediately=False,
            clock=clock,
            random=random,
        )
        try:
            self.refresh()
        except RegistryError:
            self._gateway.close()
            raise
        self._refresher.start()
        if health_check_interval is not None:
            self.start_health_checks(health_check_interval)

    @classmethod
    def from_location(cls, location: str, **options: Any) -> EtcdRegistry:
        """Open ``etcd://host:port[,host:port...][/prefix]`` (see :func:`parse_location`)."""
        endpoints, prefix = parse_location(location)
        return cls(endpoints, prefix=prefix, **options)

    @property
    def endpoints(self) -> list[str]:
        """The member URLs, in failover order."""
        return list(self._gateway.endpoints)

    @property
    def current_endpoint(self) -> str:
        """The member that answered last."""
        return self._gateway.current

    # -- writes ----------------------------------------------------------

    def register(
        self,
        name: str,
        url: str,
        *,
        health_endpoint: str = DEFAULT_HEALTH_ENDPOINT,
        metadata: Optional[Mapping[str, Any]] = None,
        lease: bool = True,
    ) -> Instance:
        """Add or update the instance ``(name, url)`` under this registry's lease.

        Args:
            name: the service name.
            url: the instance's base URL.
            health_endpoint: the path health checks GET.
            metadata: JSON-serialisable values under string keys.
            lease: attach the entry to the lease (the default). ``False``
                stores it until deregistered, as ``mscomm registry register`` does.

        Returns:
            The stored record.

        Raises:
            ConfigurationError: an argument is invalid.
            RegistryError: etcd refused or no member answered.
        """
        inst = make_instance(name, url, health_endpoint=health_endpoint, metadata=metadata)
        self._store(inst, lease=lease)
        return inst

    def _store(self, inst: Instance, *, lease: bool = True) -> None:
        value = json.dumps(
            {
                "url": inst.url,
                "health_endpoint": inst.health_endpoint,
                "metadata": dict(inst.metadata),
            }
        ).encode()
        with self._write_lock:
            lease_id = self._current_lease() if lease else 0
            self._gateway.put(self._key(inst), value, lease=lease_id)
            if lease:
                self._own[inst.key] = inst
            else:
                self._own.pop(inst.key, None)
            self._catalogue.upsert(inst)
            self._revision = None  # the cache was patched: the next refresh must read

    def deregister(self, name: str, url: str) -> bool:
        """Delete the instance ``(name, url)``, whoever registered it.

        Returns:
            True if etcd held it, False if there was nothing to delete.

        Raises:
            RegistryError: etcd refused or no member answered.
        """
        key = (name, url.rstrip("/"))
        with self._write_lock:
            deleted = self._gateway.delete(f"{self._services_prefix}{key[0]}/{key[1]}")
            self._own.pop(key, None)
            self._catalogue.remove(key)
            self._revision = None
        return deleted > 0

    def _key(self, inst: Instance) -> str:
        return f"{self._services_prefix}{inst.service}/{inst.url}"

    # -- leases ----------------------------------------------------------

    def _current_lease(self) -> int:
        if self._lease is None or self._lease_pid != os.getpid():
            # First registration, or a forked child: take a lease of our own.
            self._lease = self._gateway.grant(self.lease_ttl)
            self._lease_pid = os.getpid()
            self._own = {}
            self._keepalive.start()
        return self._lease

    def _keep_lease(self) -> None:
        with self._write_lock:
            lease = self._lease
            if lease is None or self._lease_pid != os.getpid():
                return
            try:
                ttl = self._gateway.keepalive(lease)
            except RegistryError as exc:
                log.warning(
                    "etcd lease %x not renewed: %s", lease, exc,
                    extra={"mscomm.event": "etcd lease", "mscomm.reason": exc.reason},
                )  # fmt: skip
                return
            if ttl > 0:
                return
            # The lease expired (etcd was out of reach longer than the TTL):
            # take a new one and put our instances back.
            log.warning(
                "etcd lease %x expired; registering %d instances again", lease, len(self._own),
                extra={"mscomm.event": "etcd lease", "mscomm.reason": "expired"},
            )  # fmt: skip
            self._lease = self._gateway.grant(self.lease_ttl)
            for inst in list(self._own.values()):
                self._store(inst)

    def keep_lease_once(self) -> None:
        """Renew the lease now, as the keep-alive thread does (for tests)."""
        self._keep_lease()

    # -- reads -----------------------------------------------------------

    def refresh(self) -> None:
        """Read the instances from etcd now, if anything changed.

        Raises:
            RegistryError: no etcd member answered.
        """
        # Under the write lock, so that a stale read cannot overwrite a
        # registration this object has just made.
        with self._write_lock:
            # Any change anywhere in etcd moves the revision; an unchanged one
            # costs one tiny read instead of a range over every instance.
            if self._revision is not None and self._gateway.revision() == self._revision:
                return
            kvs, revision = self._gateway.range_prefix(self._services_prefix)
            instances = []
            for kv in kvs:
                name = kv.key[len(self._services_prefix) :].partition("/")[0]
                try:
                    instances.append(decode_entry(name, json.loads(kv.value)))
                except (ValueError, DocumentError) as exc:
                    log.warning(
                        "etcd key %s skipped: %s", kv.key, exc,
                        extra={"mscomm.event": "registry entry skipped", "mscomm.key": kv.key,
                               "mscomm.target": name},
                    )  # fmt: skip
            self._catalogue.replace(instances)
            self._revision = revision

    def poll_once(self) -> bool:
        """Refresh the cache as the refresh thread does, never raising.

        Returns:
            False if etcd was unreachable; the last known instances are kept
            and a warning is logged once per outage.
        """
        try:
            self.refresh()
        except RegistryError as exc:
            count_registry_error("etcd", "unreachable")
            if not self._outage:
                log.warning(
                    "etcd unreachable (%s); serving the %d last known instances",
                    exc,
                    len(self._catalogue),
                    extra={"mscomm.event": "registry unreachable", "mscomm.reason": exc.reason,
                           "mscomm.location": exc.location},
                )  # fmt: skip
            self._outage = True
            return False
        if self._outage:
            log.info(
                "etcd reachable again at %s", self._gateway.current,
                extra={"mscomm.event": "registry reachable",
                       "mscomm.location": self._gateway.current},
            )  # fmt: skip
        self._outage = False
        return True

    # -- lifecycle -------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the way to open this location again (its health checks are not running)."""
        reopen = functools.partial(
            EtcdRegistry, self.location, lease_ttl=self.lease_ttl, health_check=self.health_check
        )
        return (reopen, ())

    def _reset_after_fork(self) -> None:
        super()._reset_after_fork()
        self._write_lock = threading.RLock()

    def _workers(self) -> list[PeriodicWorker]:
        return [self._refresher, self._keepalive]

    def close(self) -> None:
        """Stop the threads and revoke the lease, deleting this process's instances."""
        super().close()
        with self._write_lock:
            lease, self._lease = self._lease, None
            if lease is not None and self._lease_pid == os.getpid():
                try:
                    self._gateway.revoke(lease)
                except RegistryError as exc:
                    log.warning(
                        "etcd lease %x not revoked (it expires by itself): %s", lease, exc,
                        extra={"mscomm.event": "etcd lease", "mscomm.reason": exc.reason},
                    )  # fmt: skip
            self._own = {}
        self._gateway.close()
