"""Protocol v2 end to end: the real client, the real middleware, a man in the middle.

In v2 the caller's end-to-end headers and the app's answer headers travel
inside the seal: an attacker on the path who rewrites, adds or strips
headers changes nothing the app or the caller sees. In v1 the same attacker
succeeds (shown here so that the difference is on record).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from support.fleet import Fleet
from support.mitm import Message, MitmProxy

from mscomm_sync import (
    ConfigurationError,
    MicroServiceClient,
    RequestRejectedError,
    UnverifiedAnswerError,
)
from mscomm_sync.keyring import Keyring
from mscomm_sync.registry import FileRegistry
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.testing import LiveServer
from mscomm_sync.wsgi import EncryptionMiddleware

from .servers import KEYS


def seen(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer with what the app was given, and a few headers of its own."""
    body = json.dumps(
        {
            "method": environ["REQUEST_METHOD"],
            "caller": environ.get("mscomm.caller"),
            "idempotency_key": environ.get("HTTP_IDEMPOTENCY_KEY"),
            "override": environ.get("HTTP_X_HTTP_METHOD_OVERRIDE"),
            "forwarded_for": environ.get("HTTP_X_FORWARDED_FOR"),
            "content_type": environ.get("CONTENT_TYPE"),
            "http_keys": sorted(k for k in environ if k.startswith("HTTP_")),
        }
    ).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("ETag", '"v1"'), ("X-Answer", "sealed")],
    )
    return [body]


@pytest.fixture
def fleet() -> Fleet:
    return Fleet("orders", "billing")


@pytest.fixture
def billing(fleet: Fleet) -> Iterator[LiveServer]:
    """billing, speaking v2 only, with orders as its caller."""
    app = EncryptionMiddleware(
        seen,
        "billing",
        identity=fleet.identity("billing"),
        trust=fleet.trust("orders"),
        keyring=Keyring.from_mapping({}),
        versions=("2",),
        allowed_callers=["orders"],
        outer_headers=["X-Forwarded-For"],
        replay_store=MemoryReplayStore(),
    )
    with LiveServer(app) as live:
        yield live


@pytest.fixture
def call(fleet: Fleet, tmp_path: Any) -> Iterator[Callable[..., Any]]:
    """Call billing at ``url`` as orders, with v2 keys only."""
    clients = []

    def run(url: str, **kwargs: Any) -> Any:
        registry = FileRegistry(tmp_path / f"r{len(clients)}.json")
        registry.register("billing", url)
        client = MicroServiceClient(
            "orders",
            registry=registry,
            identity=fleet.identity("orders"),
            trust=fleet.trust("billing"),
            keyring=Keyring.from_mapping({}),
        )
        clients.append((client, registry))
        kwargs.setdefault("method", "POST")
        return client.request(target_service="billing", endpoint="/charge", **kwargs)

    yield run
    for client, registry in clients:
        client.close()
        registry.close()


def test_a_v2_call_carries_its_headers_sealed(
    billing: LiveServer, call: Callable[..., Any]
) -> None:
    """The app sees the caller's headers, and the caller the app's, with none on the wire."""
    with MitmProxy(billing.url) as proxy:
        resp = call(proxy.url, payload={"n": 1}, headers={"Idempotency-Key": "charge-1"})
    body = resp.json()
    assert (body["caller"], body["idempotency_key"]) == ("orders", "charge-1")
    assert body["content_type"] == "application/json"
    assert (resp.headers["ETag"], resp.headers["X-Answer"]) == ('"v1"', "sealed")
    (request,) = proxy.requests
    assert request.header("Idempotency-Key") is None  # only inside the seal
    assert request.header("X-Mscomm-Seal").startswith("v=2;")
    assert proxy.responses[0].header("ETag") is None


def rewrite_request(message: Message) -> Message:
    message.set("Idempotency-Key", "charge-999")
    message.set("X-HTTP-Method-Override", "DELETE")
    message.set("X-Injected", "1")
    return message


def rewrite_response(message: Message) -> Message:
    message.set("Set-Cookie", "session=attacker")
    message.set("ETag", '"forged"')
    return message


def test_headers_rewritten_on_the_path_change_nothing(
    billing: LiveServer, call: Callable[..., Any]
) -> None:
    """An attacker who rewrites the Idempotency-Key, adds a method override and other headers,
    and forges answer headers, changes nothing: the app sees the sealed request, the caller
    the sealed answer."""
    with MitmProxy(billing.url, on_request=rewrite_request, on_response=rewrite_response) as proxy:
        resp = call(proxy.url, payload={"n": 1}, headers={"Idempotency-Key": "charge-1"})
    body = resp.json()
    assert (body["method"], body["idempotency_key"], body["override"]) == ("POST", "charge-1", None)
    assert "HTTP_X_INJECTED" not in body["http_keys"]
    assert resp.headers["ETag"] == '"v1"'
    assert "Set-Cookie" not in resp.headers


def test_an_allowed_outer_header_passes_and_others_do_not(
    billing: LiveServer, call: Callable[..., Any]
) -> None:
    """X-Forwarded-For (allowed by name) reaches the app from outside the seal; a header
    the caller did not seal and that is not allowed does not."""

    def from_proxy(message: Message) -> Message:
        message.set("X-Forwarded-For", "10.1.2.3")
        message.set("X-Other", "x")
        return message

    with MitmProxy(billing.url, on_request=from_proxy) as proxy:
        body = call(proxy.url).json()
    assert body["forwarded_for"] == "10.1.2.3"
    assert "HTTP_X_OTHER" not in body["http_keys"]


def test_a_tampered_v2_answer_is_refused(billing: LiveServer, call: Callable[..., Any]) -> None:
    """One flipped bit in the sealed answer: UnverifiedAnswerError."""

    def flip(message: Message) -> Message:
        message.body = bytes([message.body[0] ^ 1]) + message.body[1:]
        return message

    with MitmProxy(billing.url, on_response=flip) as proxy, pytest.raises(UnverifiedAnswerError):
        call(proxy.url)


def test_v1_does_not_protect_headers(tmp_path: Any) -> None:
    """The same attacker against protocol v1: the Idempotency-Key it writes reaches the app
    (the reason v2 seals headers; v1 drops only the method overrides), so a v1 client
    refuses to send a key at all."""
    ring = Keyring.from_mapping(KEYS)
    app = EncryptionMiddleware(
        seen, "billing", keyring=ring, versions=("1",), replay_store=MemoryReplayStore()
    )
    registry = FileRegistry(tmp_path / "r.json")
    with LiveServer(app) as server, MitmProxy(server.url, on_request=rewrite_request) as proxy:
        registry.register("billing", proxy.url)
        client = MicroServiceClient("orders", registry=registry, keyring=ring)
        body = client.request(target_service="billing", endpoint="/charge", method="POST").json()
        with pytest.raises(ConfigurationError) as info:
            client.request(
                target_service="billing", endpoint="/charge", method="POST",
                headers={"Idempotency-Key": "charge-1"},
            )  # fmt: skip
        client.close()
    assert info.value.variable == "idempotency_key"
    registry.close()
    assert body["idempotency_key"] == "charge-999"
    assert body["override"] is None  # dropped by the v1 hardening


def test_a_service_told_of_no_caller_accepts_none(
    fleet: Fleet, call: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without allowed_callers, trust-file callers or MSCOMM_CALLERS, a verified request gets
    403: holding a caller's public key (to answer it) does not make it a caller."""
    monkeypatch.delenv("MSCOMM_CALLERS", raising=False)
    app = EncryptionMiddleware(
        seen, "billing", identity=fleet.identity("billing"), trust=fleet.trust("orders"),
        keyring=Keyring.from_mapping({}), replay_store=MemoryReplayStore(),
    )  # fmt: skip
    with LiveServer(app) as server, pytest.raises(RequestRejectedError) as info:
        call(server.url)
    assert info.value.status == 403
