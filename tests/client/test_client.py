"""The service form of MicroServiceClient against the real middleware and registry."""

from __future__ import annotations

import json
from typing import Any, Callable

import attrs
import pytest

from mscomm_sync.client import MicroServiceClient
from mscomm_sync.client.policies import CallPolicy
from mscomm_sync.errors import (
    ConfigurationError,
    InsecureResponseError,
    IntegrityError,
    RequestRejectedError,
    ServiceNotFoundError,
)
from mscomm_sync.keyring import Keyring, generate_key
from mscomm_sync.registry import FileRegistry, initialize_registry, reset_registry

from .servers import KEYS, Recorder, echo, json_app, sealed


def test_post_round_trip(serve: Callable[..., Any], make_client: Callable[..., Any]) -> None:
    """A JSON payload reaches the app in plaintext and the opened answer is returned."""
    recorder = Recorder()
    serve(sealed(json_app(recorder, {"/echo": echo})))
    resp = make_client().request(
        target_service="billing", endpoint="/echo", method="POST", payload={"amount": 42}
    )
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    got = resp.json()
    assert json.loads(got["body"]) == {"amount": 42}
    assert got["caller"] == "orders"
    assert got["content_type"] == "application/json"


def test_params_and_text_payload(
    serve: Callable[..., Any], make_client: Callable[..., Any]
) -> None:
    """Query parameters and a text payload travel, bound into the seal."""
    serve(sealed(json_app(Recorder(), {"/echo": echo})))
    got = (
        make_client()
        .request(target_service="billing", endpoint="/echo", method="PUT", payload="héllo",
                 params={"a": "1 2", "b": ["x", "y"]})
        .json()
    )  # fmt: skip
    assert got["body"] == "héllo"
    assert got["query"] == "a=1+2&b=x&b=y"


def test_error_status_is_returned(
    serve: Callable[..., Any], make_client: Callable[..., Any]
) -> None:
    """An HTTP error status from the app is returned, opened, not raised."""
    serve(sealed(json_app(Recorder(), {})))
    resp = make_client().request(target_service="billing", endpoint="/missing")
    assert resp.status_code == 404
    assert resp.json() == {"error": 1}


def test_head_and_204(serve: Callable[..., Any], make_client: Callable[..., Any]) -> None:
    """Bodiless answers (HEAD, 204) verify and come back empty."""

    def empty(environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        return 204, [], b""

    serve(sealed(json_app(Recorder(), {"/echo": echo, "/empty": empty})))
    client = make_client()
    assert client.request(target_service="billing", endpoint="/echo", method="HEAD").content == b""
    resp = client.request(target_service="billing", endpoint="/empty", method="DELETE")
    assert (resp.status_code, resp.content) == (204, b"")


def test_request_id_header(serve: Callable[..., Any], make_client: Callable[..., Any]) -> None:
    """Each call carries a fresh X-Request-Id; a caller's own id is kept."""
    recorder = Recorder()
    serve(sealed(json_app(recorder, {"/echo": echo})))
    client = make_client()
    client.request(target_service="billing", endpoint="/echo")
    client.request(target_service="billing", endpoint="/echo")
    client.request(target_service="billing", endpoint="/echo", headers={"X-Request-Id": "abc"})
    first, second, third = recorder.request_ids
    assert first and second and first != second
    assert third == "abc"


def test_unknown_service(make_client: Callable[..., Any]) -> None:
    """A name with no registered instance raises ServiceNotFoundError naming it."""
    with pytest.raises(ServiceNotFoundError) as info:
        make_client().request(target_service="nowhere", endpoint="/x")
    assert info.value.service == "nowhere"


def test_plaintext_reply_refused(
    serve: Callable[..., Any], make_client: Callable[..., Any]
) -> None:
    """An unsealed answer to a sealed request raises InsecureResponseError by default."""
    serve(sealed(json_app(Recorder(), {"/echo": echo}), encrypt_responses=False))
    with pytest.raises(InsecureResponseError) as info:
        make_client().request(target_service="billing", endpoint="/echo")
    assert (info.value.service, info.value.status) == ("billing", 200)


def test_plaintext_reply_allowed(
    serve: Callable[..., Any], make_client: Callable[..., Any]
) -> None:
    """A target configured to allow plaintext replies returns them as they came."""
    serve(sealed(json_app(Recorder(), {"/echo": echo}), encrypt_responses=False))
    policy = attrs.evolve(CallPolicy(), allow_plaintext_replies=True)
    client = make_client(policies={"billing": policy})
    assert client.request(target_service="billing", endpoint="/echo").json()["caller"] == "orders"


def test_refusal_raises(serve: Callable[..., Any], make_client: Callable[..., Any]) -> None:
    """A request the peer cannot verify raises RequestRejectedError with the status."""
    serve(sealed(json_app(Recorder(), {"/echo": echo})))
    wrong = Keyring.from_mapping({**KEYS, "orders": generate_key()})
    with pytest.raises(RequestRejectedError) as info:
        make_client(keyring=wrong).request(target_service="billing", endpoint="/echo")
    assert (info.value.service, info.value.status) == ("billing", 401)


def test_swapped_answer_refused(serve: Callable[..., Any], make_client: Callable[..., Any]) -> None:
    """An answer sealed for an earlier request raises IntegrityError."""
    inner = sealed(json_app(Recorder(), {"/echo": echo}))
    kept: list[tuple[str, list[tuple[str, str]], list[bytes]]] = []

    def swapper(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
            captured.update(status=status, headers=headers)
            return lambda data: None

        body = list(inner(environ, capture))
        if not kept:
            kept.append((captured["status"], captured["headers"], body))
        status, headers, old = kept[0]
        start_response(status, headers)
        return old

    serve(swapper)
    client = make_client()
    client.request(target_service="billing", endpoint="/echo")
    with pytest.raises(IntegrityError):
        client.request(target_service="billing", endpoint="/echo")


def test_defaults_from_environment(
    serve: Callable[..., Any], registry: FileRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SERVICE_NAME names the caller and the process registry is looked up at call time."""
    from .servers import keyring

    monkeypatch.setenv("SERVICE_NAME", "orders")
    reset_registry()
    client = MicroServiceClient(keyring=keyring())
    try:
        assert client.service_name == "orders"
        initialize_registry(registry.path)
        serve(sealed(json_app(Recorder(), {"/echo": echo})))
        assert client.request(target_service="billing", endpoint="/echo").status_code == 200
    finally:
        client.close()
        reset_registry()


def test_missing_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a name or SERVICE_NAME, construction raises ConfigurationError."""
    monkeypatch.delenv("SERVICE_NAME", raising=False)
    with pytest.raises(ConfigurationError):
        MicroServiceClient()


def test_a_v1_caller_without_the_callees_key_fails_before_sending(
    serve: Callable[..., Any], make_client: Callable[..., Any]
) -> None:
    """v1, orders holds its own key but not billing's (needed to open the answer): the call
    raises a ConfigurationError naming BILLING_ENCRYPTION_KEY before any byte is sent, so
    billing never runs a request whose answer the caller could not read."""
    arrived = []

    def counting(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        arrived.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ran"]

    serve(counting)
    client = make_client(keyring=Keyring.from_mapping({"orders": KEYS["orders"]}))
    with pytest.raises(ConfigurationError) as info:
        client.request(target_service="billing", endpoint="/charge", method="POST", payload={})
    assert info.value.reason == "no key for recipient"
    assert "BILLING_ENCRYPTION_KEY is missing" in str(info.value)
    assert KEYS["orders"] not in str(info.value)
    assert arrived == []
