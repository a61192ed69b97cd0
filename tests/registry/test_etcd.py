"""The etcd backend against real etcd servers on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from mscomm_sync.errors import RegistryError
from mscomm_sync.registry import EtcdRegistry, initialize_registry
from mscomm_sync.registry.etcd_gateway import EtcdGateway

from .conftest import EtcdCluster


def wait_until(condition: object, *, seconds: float, step: float = 0.1) -> bool:
    """Poll ``condition()`` until true, at most ``seconds`` and 1000 times."""
    deadline = time.monotonic() + seconds
    for _ in range(1000):
        if condition():  # type: ignore[operator]
            return True
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(step)
    return False


# -- no server needed (locations: test_location.py) ---------------------------


def test_unreachable_etcd_at_start_raises_registry_error() -> None:
    """Opening a registry when no member answers raises RegistryError naming the endpoints."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RegistryError) as info:
        EtcdRegistry([f"http://127.0.0.1:{port}"], request_timeout=2)
    assert str(port) in info.value.location


# -- single node -------------------------------------------------------------


@pytest.mark.etcd
def test_initialize_registry_opens_an_etcd_location(
    etcd_node: EtcdCluster, etcd_prefix: str
) -> None:
    """initialize_registry('etcd://...') gives an EtcdRegistry on that prefix."""
    registry = initialize_registry(etcd_node.location(etcd_prefix), lease_ttl=5)
    assert isinstance(registry, EtcdRegistry)
    assert (registry.prefix, registry.lease_ttl) == (etcd_prefix, 5)


@pytest.mark.etcd
def test_lookups_do_not_call_etcd(etcd_node: EtcdCluster, etcd_prefix: str) -> None:
    """get_instances is served from the local cache, with no etcd request."""
    with EtcdRegistry(etcd_node.urls, prefix=etcd_prefix, refresh_interval=3600) as registry:
        registry.register("billing", "http://127.0.0.1:8001")
        calls: list[str] = []
        real_call = registry._gateway.call
        registry._gateway.call = lambda path, body: calls.append(path) or real_call(path, body)  # type: ignore[method-assign]
        for _ in range(100):
            assert len(registry.get_instances("billing")) == 1
        assert calls == []


@pytest.mark.etcd
def test_registrations_carry_a_lease_and_close_revokes_it(
    etcd_node: EtcdCluster, etcd_prefix: str
) -> None:
    """A clean close() deletes this process's instances at once."""
    with EtcdRegistry(etcd_node.urls, prefix=etcd_prefix, refresh_interval=3600) as reader:
        writer = EtcdRegistry(etcd_node.urls, prefix=etcd_prefix, lease_ttl=60)
        writer.register("billing", "http://127.0.0.1:8001")
        [kv], _ = EtcdGateway(etcd_node.urls).range_prefix(etcd_prefix + "/")
        assert kv.lease != 0
        writer.close()
        reader.refresh()
        assert reader.get_instances("billing") == []


@pytest.mark.etcd
def test_unleased_registration_survives_close(etcd_node: EtcdCluster, etcd_prefix: str) -> None:
    """register(lease=False), as the CLI uses, stays after the registry closes."""
    with EtcdRegistry(etcd_node.urls, prefix=etcd_prefix) as writer:
        writer.register("billing", "http://127.0.0.1:8001", lease=False)
    with EtcdRegistry(etcd_node.urls, prefix=etcd_prefix) as reader:
        assert len(reader.get_instances("billing")) == 1


@pytest.mark.etcd
def test_expired_lease_is_replaced_and_instances_put_back(
    etcd_node: EtcdCluster, etcd_prefix: str
) -> None:
    """If the lease is lost, the next keep-alive takes a new one and re-registers."""
    with EtcdRegistry(etcd_node.urls, prefix=etcd_prefix, lease_ttl=60) as registry:
        registry.register("billing", "http://127.0.0.1:8001")
        lease = registry._lease
        assert lease is not None
        EtcdGateway(etcd_node.urls).revoke(lease)  # as if it had expired
        registry.refresh()
        assert registry.get_instances("billing") == []
        registry.keep_lease_once()
        registry.refresh()
        assert len(registry.get_instances("billing")) == 1
        assert registry._lease != lease


@pytest.mark.etcd
def test_refresh_thread_picks_up_other_writers(etcd_node: EtcdCluster, etcd_prefix: str) -> None:
    """Without an explicit refresh, the cache catches up with another writer."""
    reader = EtcdRegistry(etcd_node.urls, prefix=etcd_prefix, refresh_interval=0.1)
    with reader, EtcdRegistry(etcd_node.urls, prefix=etcd_prefix) as writer:
        writer.register("billing", "http://127.0.0.1:8001")
        assert wait_until(lambda: reader.get_instances("billing"), seconds=30)


_VICTIM = """
import sys
from mscomm_sync.registry import EtcdRegistry
registry = EtcdRegistry(sys.argv[1].split(","), prefix=sys.argv[2], lease_ttl=2)
registry.register("victim", "http://127.0.0.1:9")
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.etcd
def test_sigkilled_process_instances_vanish_after_the_ttl(
    etcd_node: EtcdCluster, etcd_prefix: str
) -> None:
    """An instance whose process was SIGKILLed disappears once its lease expires."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _VICTIM, ",".join(etcd_node.urls), etcd_prefix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready and proc.stdout.readline().strip() == b"ready"
        with EtcdRegistry(etcd_node.urls, prefix=etcd_prefix, refresh_interval=3600) as reader:
            assert len(reader.get_instances("victim")) == 1
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)

            def gone() -> bool:
                reader.refresh()
                return reader.get_instances("victim") == []

            assert wait_until(gone, seconds=30, step=0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.etcd
def test_last_known_instances_serve_while_etcd_is_down(
    private_etcd_node: EtcdCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """With etcd gone, lookups keep the last known instances and a warning is logged."""
    with EtcdRegistry(private_etcd_node.urls, refresh_interval=3600, request_timeout=2) as registry:
        registry.register("billing", "http://127.0.0.1:8001")
        private_etcd_node.stop()
        with caplog.at_level(logging.WARNING, logger="mscomm_sync.registry"):
            assert registry.poll_once() is False
            assert registry.poll_once() is False
        assert len(registry.get_instances("billing")) == 1
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1


# -- three members -------------------------------------------------------------


@pytest.mark.etcd
def test_cluster_keeps_serving_when_the_current_member_dies(etcd_three: EtcdCluster) -> None:
    """Killing the member in use fails over: lookups, refreshes and writes keep working."""
    leader = etcd_three.leader()
    followers = [m for m in etcd_three.members if m is not leader]
    endpoints = [followers[0].url, leader.url, followers[1].url]
    with EtcdRegistry(endpoints, refresh_interval=3600, request_timeout=5) as registry:
        registry.register("billing", "http://127.0.0.1:8001")
        assert registry.current_endpoint == followers[0].url
        followers[0].kill()
        assert len(registry.get_instances("billing")) == 1
        registry.register("billing", "http://127.0.0.1:8002")
        registry.refresh()
        assert {i.url for i in registry.get_instances("billing")} == {
            "http://127.0.0.1:8001",
            "http://127.0.0.1:8002",
        }
        assert registry.current_endpoint != followers[0].url
        registry.keep_lease_once()
    with EtcdRegistry(endpoints, refresh_interval=3600) as fresh:
        assert fresh.get_instances("billing") == []  # close() revoked the lease


@pytest.mark.etcd
def test_cluster_survives_losing_its_leader(etcd_three: EtcdCluster) -> None:
    """After the leader dies, writes succeed again once the others elect a new one."""
    with EtcdRegistry(etcd_three.urls, refresh_interval=3600, request_timeout=5) as registry:
        registry.register("billing", "http://127.0.0.1:8001")
        etcd_three.leader().kill()
        assert len(registry.get_instances("billing")) == 1

        def writable() -> bool:
            try:
                registry.register("billing", "http://127.0.0.1:8002")
            except RegistryError:
                return False
            return True

        assert wait_until(writable, seconds=60, step=0.2)
        registry.refresh()
        assert len(registry.get_instances("billing")) == 2


@pytest.mark.etcd
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_closing_leaves_the_parent_lease_alone(
    etcd_node: EtcdCluster, etcd_prefix: str
) -> None:
    """A forked child that closes its copy of the registry does not revoke the parent's lease."""
    with EtcdRegistry(etcd_node.urls, prefix=etcd_prefix, refresh_interval=3600) as registry:
        registry.register("billing", "http://127.0.0.1:8001")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                registry.close()
            finally:
                os._exit(0)
        assert wait_until(lambda: os.waitpid(pid, os.WNOHANG)[0] == pid, seconds=60)
        with EtcdRegistry(etcd_node.urls, prefix=etcd_prefix) as other:
            assert len(other.get_instances("billing")) == 1
