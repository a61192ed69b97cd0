"""Errors that tell the user what to do, raised by a real client against a real service.

billing runs behind the real middleware under a real server on 127.0.0.1;
orders calls it with a wrong key, as a caller billing does not accept, with
too large a body, or through a registry where billing is not registered.
Each error must carry what the caller knew (its key ids, the protocol, the
registry read) and say where the reason is, and never a key.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.etcd import etcd_cluster
from support.fleet import Fleet

from mscomm_sync import (
    EtcdRegistry,
    FileRegistry,
    MicroServiceClient,
    RequestRejectedError,
    ServiceNotFoundError,
)
from mscomm_sync.keyring import Key, Keyring, generate_key
from mscomm_sync.registry import initialize_registry, reset_registry
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.testing import LiveServer
from mscomm_sync.trust import Identity, generate_private_key
from mscomm_sync.wsgi import EncryptionMiddleware


def ok(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer 200 with a fixed body."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture
def fleet() -> Fleet:
    return Fleet("orders", "billing")


def v2_billing(fleet: Fleet, **options: Any) -> EncryptionMiddleware:
    """billing speaking v2 only, trusting orders' current public key."""
    options.setdefault("allowed_callers", ["orders"])
    return EncryptionMiddleware(
        ok,
        "billing",
        identity=fleet.identity("billing"),
        trust=fleet.trust("orders"),
        keyring=Keyring.from_mapping({}),
        versions=("2",),
        replay_store=MemoryReplayStore(),
        **options,
    )


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[FileRegistry]:
    reg = FileRegistry(tmp_path / "registry.json")
    yield reg
    reg.close()


def serve(app: Any, registry: FileRegistry) -> LiveServer:
    server = LiveServer(app).start()
    registry.register("billing", server.url)
    return server


def v2_orders(fleet: Fleet, registry: Any, identity: Identity) -> MicroServiceClient:
    return MicroServiceClient(
        "orders",
        registry=registry,
        identity=identity,
        trust=fleet.trust("billing"),
        keyring=Keyring.from_mapping({}),
    )


def rejected(client: MicroServiceClient, **options: Any) -> RequestRejectedError:
    options.setdefault("method", "POST")
    with client, pytest.raises(RequestRejectedError) as caught:
        client.request(target_service="billing", endpoint="/charge", **options)
    return caught.value


def test_a_caller_with_the_wrong_own_key_learns_its_key_ids_and_where_the_reason_is(
    fleet: Fleet, registry: FileRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 for a key billing does not trust names the pair sealed with, v2, the caller,
    and billing's log, whose refusal line shows the same key id."""
    wrong = generate_private_key()  # orders' key is not this one
    billing_kid = fleet.keys["billing"][0].kid
    caplog.set_level(logging.WARNING, logger="mscomm_sync.wsgi")
    server = serve(v2_billing(fleet), registry)
    try:
        error = rejected(v2_orders(fleet, registry, Identity("orders", keys=[wrong])))
    finally:
        server.stop()
    assert (error.status, error.caller, error.version) == (401, "orders", "2")
    assert error.key_id == f"{wrong.kid}-{billing_kid}"
    message = str(error)
    assert f"key ids {wrong.kid}-{billing_kid}" in message
    assert "logger mscomm_sync.wsgi" in message and "WARNING" in message
    assert f"kid={wrong.kid!r}" in message
    assert "mscomm key id --from-env ORDERS_PRIVATE_KEY" in message
    assert "clocks" in message and "altered" in message
    (line,) = [r.getMessage() for r in caplog.records if r.name == "mscomm_sync.wsgi"]
    assert line.startswith("refused 401: verification failed")
    assert f"kid={wrong.kid!r}" in line  # the error points at this very line
    for text in (message, repr(error)):
        assert wrong.text() not in text and fleet.keys["orders"][0].text() not in text


def test_a_v1_caller_with_the_wrong_shared_key_learns_that_key_id(registry: FileRegistry) -> None:
    """In v1 the 401 carries the id of the caller's shared key it sealed with, and says
    the two sides' copies of that variable differ."""
    orders_key, billing_copy, billing_key = generate_key(), generate_key(), generate_key()
    app = EncryptionMiddleware(
        ok,
        "billing",
        keyring=Keyring.from_mapping({"billing": billing_key, "orders": billing_copy}),
        versions=("1",),
        allowed_callers=["orders"],
        replay_store=MemoryReplayStore(),
    )
    server = serve(app, registry)
    try:
        keyring = Keyring.from_mapping({"billing": billing_key, "orders": orders_key})
        error = rejected(MicroServiceClient("orders", registry=registry, keyring=keyring))
    finally:
        server.stop()
    kid = Key.from_text(orders_key, source="test").kid
    assert (error.status, error.version, error.key_id, error.caller) == (401, "1", kid, "orders")
    message = str(error)
    assert f"key id {kid}" in message and "--v1-from-env ORDERS_ENCRYPTION_KEY" in message
    for key in (orders_key, billing_copy, billing_key):
        assert key not in message and key not in repr(error)


def test_a_caller_the_service_does_not_accept_is_told_where_callers_are_named(
    fleet: Fleet, registry: FileRegistry
) -> None:
    """A 403 says the caller was verified, and names the trust file's callers,
    allowed_callers= and MSCOMM_CALLERS."""
    server = serve(v2_billing(fleet, allowed_callers=["shipping"]), registry)
    try:
        error = rejected(v2_orders(fleet, registry, fleet.identity("orders")))
    finally:
        server.stop()
    assert (error.status, error.caller, error.version) == (403, "orders", "2")
    assert error.key_id == f"{fleet.keys['orders'][0].kid}-{fleet.keys['billing'][0].kid}"
    message = str(error)
    assert "verified 'orders'" in message
    for place in ("trust file's callers", "allowed_callers=", "MSCOMM_CALLERS"):
        assert place in message
    assert "Usual causes" not in message  # the 401 causes are not offered for a 403


def test_a_body_above_the_limit_is_said_to_be_too_large(
    fleet: Fleet, registry: FileRegistry
) -> None:
    """A 413 says the body is larger than the service accepts."""
    server = serve(v2_billing(fleet, max_body_size=1024), registry)
    payload = b"x" * (1024 * 1024)  # far above the limit and the room a v2 seal may take
    try:
        error = rejected(v2_orders(fleet, registry, fleet.identity("orders")), payload=payload)
    finally:
        server.stop()
    assert (error.status, error.version) == (413, "2")
    assert "larger than billing accepts" in str(error)


def test_a_body_just_above_the_limit_is_a_413_too(fleet: Fleet, registry: FileRegistry) -> None:
    """A v2 body a byte over max_body_size fits the read limit (the seal's room for its
    sealed fields) and is found too large on opening: still 413, not 401."""
    server = serve(v2_billing(fleet, max_body_size=1024), registry)
    try:
        error = rejected(v2_orders(fleet, registry, fleet.identity("orders")), payload=b"x" * 1025)
    finally:
        server.stop()
    assert (error.status, error.version) == (413, "2")


def test_the_fields_survive_pickling(fleet: Fleet, registry: FileRegistry) -> None:
    """A refusal raised by a real call pickles with its key id, version and caller."""
    import pickle

    server = serve(v2_billing(fleet, allowed_callers=["shipping"]), registry)
    try:
        error = rejected(v2_orders(fleet, registry, fleet.identity("orders")))
    finally:
        server.stop()
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (copy.key_id, copy.version, copy.caller, str(copy)) == (
        error.key_id,
        "2",
        "orders",
        str(error),
    )


# -- which registry was read -----------------------------------------------------------


def test_an_unknown_service_names_the_file_registry_read(
    fleet: Fleet, registry: FileRegistry
) -> None:
    """ServiceNotFoundError carries the registry's path and says how to list it."""
    registry.register("shipping", "http://127.0.0.1:9")
    client = v2_orders(fleet, registry, fleet.identity("orders"))
    with client, pytest.raises(ServiceNotFoundError) as caught:
        client.request(target_service="billing", endpoint="/charge")
    error = caught.value
    assert (error.service, error.registry) == ("billing", registry.location)
    assert f"mscomm registry list --registry {registry.location}" in str(error)
    assert "MSCOMM_REGISTRY" in str(error)


def test_an_unknown_service_names_the_etcd_registry_read(fleet: Fleet) -> None:
    """Read from etcd, the error names the etcd location (members and prefix)."""
    with etcd_cluster(1) as cluster:
        location = cluster.location("/mscomm-hints")
        with EtcdRegistry.from_location(location) as etcd:
            client = v2_orders(fleet, etcd, fleet.identity("orders"))
            with client, pytest.raises(ServiceNotFoundError) as caught:
                client.request(target_service="billing", endpoint="/charge")
            assert caught.value.registry == etcd.location
            assert etcd.location.startswith("etcd://127.0.0.1:")
            assert etcd.location in str(caught.value)


def test_a_registry_without_a_location_leaves_the_field_empty(fleet: Fleet) -> None:
    """A registry of the caller's own making, with no location, gives registry=None."""

    class Empty:
        def get_instances(self, name: str) -> list[Any]:
            return []

    client = v2_orders(fleet, Empty(), fleet.identity("orders"))
    with client, pytest.raises(ServiceNotFoundError) as caught:
        client.request(target_service="billing", endpoint="/charge")
    assert caught.value.registry is None
    assert str(caught.value) == "no instances registered for service 'billing'"


def test_a_call_through_the_default_registry_names_it_and_creates_nothing(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With $MSCOMM_REGISTRY unset, a call through the default registry raises
    ServiceNotFoundError naming the per-user path, and creates no file or directory."""
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.delenv("MSCOMM_REGISTRY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    reset_registry()
    try:
        initialize_registry()
        client = MicroServiceClient(
            "orders",
            identity=fleet.identity("orders"),
            trust=fleet.trust("billing"),
            keyring=Keyring.from_mapping({}),
        )
        with client, pytest.raises(ServiceNotFoundError) as caught:
            client.request(target_service="billing", endpoint="/charge", method="POST")
    finally:
        reset_registry()
    expected = str(state / "mscomm" / "registry.json")
    assert caught.value.registry == expected
    assert expected in str(caught.value)
    assert os.listdir(state) == []
