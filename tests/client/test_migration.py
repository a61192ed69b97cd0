"""Moving a fleet from protocol v1 to v2, one service at a time (docs/rotation.md).

billing is called by orders and shipping. Step by step: billing gets a key
pair and accepts both versions; orders, which now trusts billing's public
key, seals v2 while shipping keeps sealing v1; once every caller speaks v2,
billing stops accepting v1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.fleet import Fleet

from mscomm_sync import FileRegistry, MicroServiceClient, RequestRejectedError
from mscomm_sync.keyring import Keyring, generate_key
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.testing import LiveServer
from mscomm_sync.trust import Identity, TrustStore
from mscomm_sync.wsgi import EncryptionMiddleware

SHARED = {name: generate_key() for name in ("orders", "shipping", "billing")}


def version_seen(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer with the caller and the protocol version that verified the request."""
    body = {"caller": environ["mscomm.caller"], "protocol": environ["mscomm.protocol"]}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


def billing_app(fleet: Fleet, versions: tuple[str, ...], *, v2: bool) -> EncryptionMiddleware:
    return EncryptionMiddleware(
        version_seen,
        "billing",
        keyring=Keyring.from_mapping(SHARED),
        identity=fleet.identity("billing") if v2 else Identity("billing", environ={}),
        trust=fleet.trust("orders", "shipping"),
        versions=versions,
        allowed_callers=["orders", "shipping"],
        replay_store=MemoryReplayStore(),
    )


def caller(name: str, fleet: Fleet, registry: FileRegistry, *, v2: bool) -> MicroServiceClient:
    return MicroServiceClient(
        name,
        registry=registry,
        keyring=Keyring.from_mapping({name: SHARED[name], "billing": SHARED["billing"]}),
        identity=fleet.identity(name) if v2 else Identity(name, environ={}),
        trust=fleet.trust("billing") if v2 else TrustStore(environ={}),
    )


def version_of(client: MicroServiceClient) -> str:
    resp = client.request(target_service="billing", endpoint="/x", method="POST")
    return str(resp.json()["protocol"])


@pytest.fixture
def fleet() -> Fleet:
    return Fleet("orders", "shipping", "billing")


def test_a_fleet_moves_from_v1_to_v2_one_service_at_a_time(fleet: Fleet, tmp_path: Path) -> None:
    """Each step keeps every call working, and the last one leaves v1 refused."""
    registry = FileRegistry(tmp_path / "registry.json")
    orders_v1 = caller("orders", fleet, registry, v2=False)
    shipping_v1 = caller("shipping", fleet, registry, v2=False)
    # 1. Everyone on v1.
    with LiveServer(billing_app(fleet, ("1",), v2=False)) as billing:
        registry.register("billing", billing.url)
        assert (version_of(orders_v1), version_of(shipping_v1)) == ("1", "1")
        registry.deregister("billing", billing.url)
    # 2. billing gets a key pair and accepts both; orders trusts billing's public key.
    orders_v2 = caller("orders", fleet, registry, v2=True)
    with LiveServer(billing_app(fleet, ("1", "2"), v2=True)) as billing:
        registry.register("billing", billing.url)
        assert (version_of(orders_v2), version_of(shipping_v1)) == ("2", "1")
        registry.deregister("billing", billing.url)
    # 3. shipping moves too; then billing stops accepting v1.
    shipping_v2 = caller("shipping", fleet, registry, v2=True)
    with LiveServer(billing_app(fleet, ("2",), v2=True)) as billing:
        registry.register("billing", billing.url)
        assert (version_of(orders_v2), version_of(shipping_v2)) == ("2", "2")
        with pytest.raises(RequestRejectedError) as info:
            version_of(shipping_v1)
        assert info.value.status == 401
    for client in (orders_v1, shipping_v1, orders_v2, shipping_v2):
        client.close()
    registry.close()
