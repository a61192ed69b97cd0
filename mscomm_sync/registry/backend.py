"""What the file and etcd registries share: lookups, health checks, lifecycle."""

from __future__ import annotations

import random as _random
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Optional, TypeVar

import attrs

from .base import DEFAULT_HEALTH_ENDPOINT, Instance, make_instance
from .catalogue import Catalogue
from .health import HealthCheckConfig, HealthPoller
from .worker import PeriodicWorker, fork_generation, reset_after_fork

__all__ = ["BaseRegistry"]

_R = TypeVar("_R", bound="BaseRegistry")


class BaseRegistry:
    """Serve lookups from a :class:`Catalogue` and own the health poller.

    Subclasses fill the catalogue from their backend, implement
    :meth:`_store` (which :meth:`register` calls with a validated record),
    :meth:`deregister` and :meth:`refresh`, and list their own background
    workers in :meth:`_workers`.

    Args:
        health_check: health-check settings used by :meth:`start_health_checks`.
        clock: a monotonic clock in seconds, shared with the poller.
        random: returns a float in ``[0, 1)``; drives jitter.
    """

    #: Where the backend lives: an absolute file path or ``etcd://hosts/prefix``.
    #: Errors and messages that concern this registry name it.
    location: str = ""

    def __init__(
        self,
        *,
        health_check: Optional[HealthCheckConfig] = None,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.health_check = health_check if health_check is not None else HealthCheckConfig()
        self._clock = clock
        self._random = random
        self._catalogue = Catalogue()
        self._poller: Optional[HealthPoller] = None
        self._poller_lock = threading.Lock()
        self._fork_generation = fork_generation()
        reset_after_fork(self)

    # -- lookups ---------------------------------------------------------

    def get_instances(self, name: str) -> list[Instance]:
        """Return ``name``'s instances, with this process's health verdicts.

        Args:
            name: the service name.

        Returns:
            A new list of frozen :class:`Instance` records; empty for an
            unknown name.
        """
        if self._fork_generation != fork_generation():
            self._after_fork()
        self._maybe_reload()
        return self._catalogue.get(name)

    def services(self) -> list[str]:
        """Return the sorted names of all registered services."""
        self._maybe_reload()
        return self._catalogue.services()

    def instances(self) -> list[Instance]:
        """Return every registered instance, service by service."""
        self._maybe_reload()
        return self._catalogue.all()

    @property
    def exists(self) -> bool:
        """Whether the backend holds a registry yet (a file registry: whether its file exists).

        A registry that does not exist reads as empty; it is created by the
        first registration.
        """
        return True

    def _maybe_reload(self) -> None:
        """Bring the catalogue up to date if that is cheap (hook for subclasses)."""

    # -- writes (subclasses) ---------------------------------------------

    def register(
        self,
        name: str,
        url: str,
        *,
        health_endpoint: str = DEFAULT_HEALTH_ENDPOINT,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> Instance:
        """Add the instance ``(name, url)``, or update it in place if present.

        Args:
            name: the service name.
            url: the instance's base URL (a trailing slash is dropped).
            health_endpoint: the path health checks GET.
            metadata: JSON-serialisable values under string keys.

        Returns:
            The stored record.

        Raises:
            ConfigurationError: an argument is invalid.
            RegistryError: the backend cannot be read or written.
        """
        inst = make_instance(name, url, health_endpoint=health_endpoint, metadata=metadata)
        self._store(inst)
        return inst

    def _store(self, inst: Instance) -> None:
        """Add or replace the validated record ``inst`` in the backend."""
        raise NotImplementedError

    def deregister(self, name: str, url: str) -> bool:
        """Remove the instance ``(name, url)``; removing an absent one changes nothing.

        Returns:
            True if it was registered, False if there was nothing to remove.
        """
        raise NotImplementedError

    def refresh(self) -> None:
        """Read the backend now instead of waiting for the next change check."""
        raise NotImplementedError

    # -- copies ----------------------------------------------------------

    def __copy__(self) -> BaseRegistry:
        # A registry is a view of shared data with its own threads: copies share it.
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> BaseRegistry:
        return self

    # -- health checks ---------------------------------------------------

    @property
    def health_poller(self) -> Optional[HealthPoller]:
        """The poller, once :meth:`start_health_checks` has made one."""
        return self._poller

    def start_health_checks(self, interval: Optional[float] = None) -> HealthPoller:
        """Start probing every instance on an owned thread.

        Args:
            interval: seconds between sweeps; ``None`` keeps
                ``health_check.interval``.

        Returns:
            The running :class:`HealthPoller`.
        """
        with self._poller_lock:
            config = self.health_check
            if interval is not None:
                config = attrs.evolve(config, interval=interval)
            poller = self._poller
            if poller is not None and poller.config != config:
                poller.stop()
                poller = None
            if poller is None:
                poller = self.make_health_poller(config)
                self._poller = poller
            poller.start()
            return poller

    def make_health_poller(self, config: Optional[HealthCheckConfig] = None) -> HealthPoller:
        """Return a poller wired to this registry, not yet started.

        Tests drive it with :meth:`HealthPoller.poll_once`; its verdicts show
        up in :meth:`get_instances`.
        """
        return HealthPoller(
            self.instances,
            config=config if config is not None else self.health_check,
            on_change=self._catalogue.set_unhealthy,
            clock=self._clock,
            random=self._random,
        )

    def stop_health_checks(self, timeout: Optional[float] = 5.0) -> bool:
        """Stop the health poller; verdicts already made are kept.

        Returns:
            True if the polling thread has ended (or never ran).
        """
        poller = self._poller
        return poller.stop(timeout) if poller is not None else True

    # -- lifecycle -------------------------------------------------------

    def _workers(self) -> list[PeriodicWorker]:
        return []

    def _reset_after_fork(self) -> None:
        """Renew locks in a forked child (another thread may have held them)."""
        self._poller_lock = threading.Lock()
        self._catalogue.reset_lock()

    def _after_fork(self) -> None:
        self._fork_generation = fork_generation()
        for worker in self._workers():
            worker.ensure_running()
        if self._poller is not None:
            self._poller.ensure_running()

    def close(self) -> None:
        """Stop background threads and release resources; safe to call twice."""
        self.stop_health_checks()
        for worker in self._workers():
            worker.stop()

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} location={self.location!r} instances={len(self._catalogue)}>"
        )
