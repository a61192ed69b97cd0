"""Tests for mscomm_sync.registry.backend: what BaseRegistry does for every backend.

The backend here is the smallest real one: it keeps its records in the catalogue itself,
as BaseRegistry's documented extension points (``_store``, ``deregister``, ``refresh``,
``_workers``) allow. Behaviour that depends on a real backend is in test_contract.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mscomm_sync.errors import ConfigurationError
from mscomm_sync.registry import BaseRegistry, HealthCheckConfig, Registry
from mscomm_sync.registry.base import Instance
from mscomm_sync.registry.worker import PeriodicWorker

WAIT_SECONDS = 30.0


class MemoryRegistry(BaseRegistry):
    """A backend whose storage is the catalogue; it counts reload checks."""

    location = "memory"

    def __init__(self, *, workers: tuple[PeriodicWorker, ...] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stored: list[Instance] = []
        self.reload_checks = 0
        self._extra_workers = list(workers)

    def _store(self, inst: Instance) -> None:
        self.stored.append(inst)
        self._catalogue.upsert(inst)

    def deregister(self, name: str, url: str) -> None:
        self._catalogue.remove((name, url))

    def refresh(self) -> None:
        pass

    def _maybe_reload(self) -> None:
        self.reload_checks += 1

    def _workers(self) -> list[PeriodicWorker]:
        return self._extra_workers


class Unfinished(BaseRegistry):
    """A backend that implements none of the backend methods."""


@pytest.fixture
def registry() -> Iterator[MemoryRegistry]:
    with MemoryRegistry(health_check=HealthCheckConfig(interval=3600)) as reg:
        yield reg


def idle_worker() -> PeriodicWorker:
    """A real worker that does nothing, an hour apart."""
    return PeriodicWorker(lambda: None, name="test-idle", interval=3600, run_immediately=False)


def dead_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def wait_for_exit(pid: int, seconds: float = WAIT_SECONDS) -> int:
    """Return the exit status of child ``pid``; kill it and fail if it runs past ``seconds``."""
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        pause.wait(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"forked child did not exit within {seconds}s")


# -- registering and looking up -------------------------------------------------------


def test_a_backend_satisfies_the_registry_protocol(registry: MemoryRegistry) -> None:
    """Any BaseRegistry subclass with the backend methods is a Registry."""
    assert isinstance(registry, Registry)


def test_register_stores_the_validated_record_and_returns_it(registry: MemoryRegistry) -> None:
    """register() hands the backend one normalised, read-only record and returns that record."""
    inst = registry.register(
        "billing", "http://127.0.0.1:8001/", health_endpoint="/ready", metadata={"zone": "a"}
    )
    assert registry.stored == [inst]
    assert (inst.service, inst.url, inst.health_endpoint) == (
        "billing",
        "http://127.0.0.1:8001",
        "/ready",
    )
    with pytest.raises(TypeError):
        inst.metadata["zone"] = "b"  # type: ignore[index]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("not a name", "http://127.0.0.1:1"), {}),
        (("billing", "ftp://127.0.0.1:1"), {}),
        (("billing", "http://127.0.0.1:1"), {"health_endpoint": "health"}),
        (("billing", "http://127.0.0.1:1"), {"metadata": {"k": object()}}),
    ],
    ids=["name", "url", "endpoint", "metadata"],
)
def test_an_invalid_registration_never_reaches_the_backend(
    registry: MemoryRegistry, args: tuple[str, str], kwargs: dict[str, Any]
) -> None:
    """A bad argument raises ConfigurationError before the backend is asked to store anything."""
    with pytest.raises(ConfigurationError):
        registry.register(*args, **kwargs)
    assert registry.stored == []


def test_lookups_come_from_the_catalogue(registry: MemoryRegistry) -> None:
    """get_instances, services and instances answer what was stored; unknown names are []."""
    first = registry.register("billing", "http://127.0.0.1:8001")
    second = registry.register("alpha", "http://127.0.0.1:9001")
    assert registry.get_instances("billing") == [first]
    assert registry.get_instances("nobody") == []
    assert registry.services() == ["alpha", "billing"]
    assert registry.instances() == [second, first]


def test_every_lookup_lets_the_backend_check_for_changes(registry: MemoryRegistry) -> None:
    """Each of get_instances, services and instances calls the reload hook once."""
    registry.get_instances("billing")
    registry.services()
    registry.instances()
    assert registry.reload_checks == 3


def test_the_backend_methods_must_be_provided() -> None:
    """A subclass that implements no backend method cannot store, remove or refresh."""
    with Unfinished() as unfinished:
        with pytest.raises(NotImplementedError):
            unfinished.register("billing", "http://127.0.0.1:8001")
        with pytest.raises(NotImplementedError):
            unfinished.deregister("billing", "http://127.0.0.1:8001")
        with pytest.raises(NotImplementedError):
            unfinished.refresh()


def test_repr_names_the_backend_location_and_size(registry: MemoryRegistry) -> None:
    """The repr is short: class, location and instance count."""
    registry.register("billing", "http://127.0.0.1:8001")
    registry.register("billing", "http://127.0.0.1:8002")
    assert repr(registry) == "<MemoryRegistry location='memory' instances=2>"


# -- health checks -------------------------------------------------------------------------


def test_no_poller_exists_until_asked_for(registry: MemoryRegistry) -> None:
    """A registry starts with no health poller, and stopping none succeeds."""
    assert registry.health_poller is None
    assert registry.stop_health_checks() is True


def test_start_health_checks_starts_a_poller_with_the_registry_settings(
    registry: MemoryRegistry,
) -> None:
    """The poller runs on its own thread with the registry's health-check settings."""
    poller = registry.start_health_checks()
    assert poller.running
    assert registry.health_poller is poller
    assert poller.config == registry.health_check


def test_starting_again_with_the_same_settings_keeps_the_poller(registry: MemoryRegistry) -> None:
    """A second start with unchanged settings returns the same running poller."""
    first = registry.start_health_checks(interval=3600)
    assert registry.start_health_checks(interval=3600) is first
    assert first.running


def test_starting_with_another_interval_replaces_the_poller(registry: MemoryRegistry) -> None:
    """A new interval stops the old poller and starts one with that interval."""
    first = registry.start_health_checks(interval=3600)
    second = registry.start_health_checks(interval=1800)
    assert second is not first
    assert not first.running and second.running
    assert second.config.interval == 1800
    assert registry.health_check.interval == 3600  # the registry's own setting is unchanged


def test_a_stopped_poller_starts_again(registry: MemoryRegistry) -> None:
    """After stop_health_checks, starting again resumes the same poller."""
    poller = registry.start_health_checks()
    assert registry.stop_health_checks(timeout=10) is True
    assert registry.start_health_checks() is poller
    assert poller.running


def test_a_made_poller_is_not_started_and_feeds_lookups() -> None:
    """make_health_poller gives an idle poller whose verdicts, at the registry's clock, show up
    in lookups."""
    with MemoryRegistry(clock=lambda: 42.0) as registry:
        dead = dead_url()
        registry.register("billing", dead)
        poller = registry.make_health_poller(HealthCheckConfig(fall=1, timeout=5.0))
        try:
            assert not poller.running
            poller.poll_once()
            assert poller.checked_at("billing", dead) == 42.0
        finally:
            poller.stop()
        assert [inst.healthy for inst in registry.get_instances("billing")] == [False]


# -- lifecycle --------------------------------------------------------------------------------


def test_close_stops_the_poller_and_every_worker() -> None:
    """close() ends the health poller's thread and each background worker's."""
    worker = idle_worker()
    registry = MemoryRegistry(workers=(worker,))
    worker.start()
    poller = registry.start_health_checks(interval=3600)
    registry.close()
    assert not poller.running and not worker.running
    registry.close()  # a second close is harmless


def test_the_with_block_gives_the_registry_and_closes_it() -> None:
    """``with`` yields the registry itself and closes it at the end."""
    worker = idle_worker()
    with MemoryRegistry(workers=(worker,)) as registry:
        assert isinstance(registry, MemoryRegistry)
        worker.start()
    assert not worker.running


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_restarts_workers_on_its_first_lookup() -> None:
    """In a forked child the workers' threads are gone; the first lookup restarts them."""
    worker = idle_worker()
    with MemoryRegistry(workers=(worker,)) as registry:
        worker.start()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            status = 99
            try:
                before = worker.running
                registry.get_instances("billing")
                status = 10 * before + worker.running
            finally:
                os._exit(status)
        assert wait_for_exit(pid) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_can_start_health_checks_although_a_thread_held_the_lock() -> None:
    """A poller lock held by another thread at the fork is fresh in the child."""
    with MemoryRegistry(health_check=HealthCheckConfig(interval=3600)) as registry:
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with registry._poller_lock:
                held.set()
                release.wait(WAIT_SECONDS)

        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        try:
            assert held.wait(WAIT_SECONDS)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                status = 99
                try:
                    status = 0 if registry.start_health_checks().running else 1
                finally:
                    os._exit(status)
            assert wait_for_exit(pid) == 0
        finally:
            release.set()
            holder.join(WAIT_SECONDS)
