"""The registry contract, run against every backend (file and etcd)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from mscomm_sync.errors import ConfigurationError
from mscomm_sync.registry import (
    BaseRegistry,
    EtcdRegistry,
    FileRegistry,
    HealthCheckConfig,
    Registry,
)

Factory = Callable[[], BaseRegistry]


@pytest.fixture(params=["file", pytest.param("etcd", marks=pytest.mark.etcd)])
def open_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Open registry objects that share one backend location; all closed afterwards."""
    opened: list[BaseRegistry] = []
    if request.param == "file":

        def factory() -> BaseRegistry:
            opened.append(FileRegistry(tmp_path / "contract.json"))
            return opened[-1]

    else:
        node = request.getfixturevalue("etcd_node")
        prefix = request.getfixturevalue("etcd_prefix")

        def factory() -> BaseRegistry:
            opened.append(EtcdRegistry(node.urls, prefix=prefix, refresh_interval=60))
            return opened[-1]

    yield factory
    for registry in opened:
        registry.close()


@pytest.fixture
def registry(open_registry: Factory) -> BaseRegistry:
    return open_registry()


def urls(registry: BaseRegistry, name: str) -> set[str]:
    return {inst.url for inst in registry.get_instances(name)}


def test_satisfies_the_registry_protocol(registry: BaseRegistry) -> None:
    """Every backend is a Registry."""
    assert isinstance(registry, Registry)


def test_registered_instance_is_returned(registry: BaseRegistry) -> None:
    """A registration comes back with its fields, healthy until checked."""
    registry.register(
        "billing", "http://127.0.0.1:8001", health_endpoint="/ready", metadata={"a": 1}
    )
    [inst] = registry.get_instances("billing")
    assert (inst.service, inst.url, inst.healthy, inst.health_endpoint) == (
        "billing",
        "http://127.0.0.1:8001",
        True,
        "/ready",
    )
    assert dict(inst.metadata) == {"a": 1}


def test_register_returns_the_stored_record(registry: BaseRegistry) -> None:
    """register() returns the same record a lookup then gives."""
    inst = registry.register("billing", "http://127.0.0.1:8001/")
    assert registry.get_instances("billing") == [inst]


def test_unknown_service_gives_an_empty_list(registry: BaseRegistry) -> None:
    """Looking up a name nobody registered returns []."""
    assert registry.get_instances("nobody") == []


def test_registering_again_updates_instead_of_duplicating(registry: BaseRegistry) -> None:
    """The same (name, url) twice is one instance carrying the latest metadata."""
    registry.register("billing", "http://127.0.0.1:8001", metadata={"v": 1})
    registry.register("billing", "http://127.0.0.1:8001/", metadata={"v": 2})
    [inst] = registry.get_instances("billing")
    assert inst.metadata["v"] == 2


def test_several_instances_of_one_service(registry: BaseRegistry) -> None:
    """Different URLs under one name are different instances."""
    registry.register("billing", "http://127.0.0.1:8001")
    registry.register("billing", "http://127.0.0.1:8002")
    assert urls(registry, "billing") == {"http://127.0.0.1:8001", "http://127.0.0.1:8002"}


def test_deregister_removes_only_that_instance(registry: BaseRegistry) -> None:
    """Deregistering one URL leaves the service's other instances."""
    registry.register("billing", "http://127.0.0.1:8001")
    registry.register("billing", "http://127.0.0.1:8002")
    registry.deregister("billing", "http://127.0.0.1:8001")
    assert urls(registry, "billing") == {"http://127.0.0.1:8002"}


def test_deregistering_an_absent_instance_is_a_no_op(registry: BaseRegistry) -> None:
    """Removing something that is not there raises nothing and changes nothing."""
    registry.register("billing", "http://127.0.0.1:8002")
    registry.deregister("billing", "http://127.0.0.1:8001")
    assert urls(registry, "billing") == {"http://127.0.0.1:8002"}


def test_deregister_says_whether_anything_was_removed(registry: BaseRegistry) -> None:
    """deregister returns True for a registered instance and False when nothing was there."""
    registry.register("billing", "http://127.0.0.1:8001")
    assert registry.deregister("billing", "http://127.0.0.1:8001/") is True
    assert registry.deregister("billing", "http://127.0.0.1:8001") is False
    assert registry.deregister("nosuch", "http://x") is False


def test_location_and_existence_are_exposed(registry: BaseRegistry) -> None:
    """Every backend names its location, and exists once something is registered."""
    registry.register("billing", "http://127.0.0.1:8001")
    assert registry.location.startswith(("/", "etcd://"))
    assert registry.exists is True


def test_services_lists_registered_names(registry: BaseRegistry) -> None:
    """services() gives every name with an instance, sorted, and drops emptied ones."""
    registry.register("payments", "http://127.0.0.1:8002")
    registry.register("billing", "http://127.0.0.1:8001")
    registry.register("audit", "http://127.0.0.1:8003")
    registry.deregister("audit", "http://127.0.0.1:8003")
    assert registry.services() == ["billing", "payments"]


def test_invalid_service_name_is_refused(registry: BaseRegistry) -> None:
    """A bad name raises ConfigurationError and stores nothing."""
    with pytest.raises(ConfigurationError):
        registry.register("bad name", "http://127.0.0.1:8001")
    assert registry.services() == []


def test_returned_records_are_frozen_copies(registry: BaseRegistry) -> None:
    """Changing a returned list or record cannot change the registry."""
    registry.register("billing", "http://127.0.0.1:8001")
    found = registry.get_instances("billing")
    found.clear()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        registry.get_instances("billing")[0].url = "http://evil"  # type: ignore[misc]
    assert len(registry.get_instances("billing")) == 1


def test_another_registry_object_sees_registrations(open_registry: Factory) -> None:
    """A second object on the same location sees a registration after refresh()."""
    writer, reader = open_registry(), open_registry()
    writer.register("billing", "http://127.0.0.1:8001")
    reader.refresh()
    assert urls(reader, "billing") == {"http://127.0.0.1:8001"}


def test_another_registry_object_sees_deregistrations(open_registry: Factory) -> None:
    """A second object on the same location sees a removal after refresh()."""
    writer, reader = open_registry(), open_registry()
    writer.register("billing", "http://127.0.0.1:8001")
    reader.refresh()
    writer.deregister("billing", "http://127.0.0.1:8001")
    reader.refresh()
    assert reader.get_instances("billing") == []


def test_health_verdicts_apply_to_lookups(registry: BaseRegistry) -> None:
    """An instance on a dead port is reported unhealthy once the poller judges it so."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    registry.register("billing", dead)
    poller = registry.make_health_poller(HealthCheckConfig(fall=1, timeout=5.0))
    try:
        poller.poll_once()
    finally:
        poller.stop()
    assert [i.healthy for i in registry.get_instances("billing")] == [False]


def test_context_manager_closes_and_close_is_idempotent(registry: BaseRegistry) -> None:
    """Leaving the with-block closes the registry; closing again is harmless."""
    with registry as entered:
        assert entered is registry
        registry.start_health_checks(interval=3600)
    poller = registry.health_poller
    assert poller is not None and not poller.running
    registry.close()
