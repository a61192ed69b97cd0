"""Plain Session use is unchanged; the URL form and `responses` work."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest
import requests
import responses

from mscomm_sync.client import MicroServiceClient
from mscomm_sync.errors import ConfigurationError, InsecureResponseError, ServiceUnavailableError
from mscomm_sync.registry import FileRegistry
from mscomm_sync.testing import LiveServer

from .servers import Recorder, echo, json_app, sealed


def plain_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer with the headers that matter here, unsealed."""
    body = json.dumps(
        {
            "sealed": environ.get("HTTP_X_ENCRYPTED_PAYLOAD"),
            "cookie": environ.get("HTTP_COOKIE"),
            "query": environ.get("QUERY_STRING"),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Set-Cookie", "k=v")])
    return [body]


def test_is_a_session(make_client: Callable[..., Any]) -> None:
    """The client is a requests.Session."""
    assert isinstance(make_client(), requests.Session)


def test_plain_urls_are_not_sealed(make_client: Callable[..., Any]) -> None:
    """A plain URL goes out unsealed, with params and cookies handled as by a Session."""
    client = make_client()
    with LiveServer(plain_app) as server:
        first = client.get(server.url + "/p", params={"a": "1"})
        second = client.request("GET", server.url + "/p")
    assert first.json() == {"sealed": None, "cookie": None, "query": "a=1"}
    assert second.json()["cookie"] == "k=v"


def test_hooks_and_mounts_apply_to_plain_urls(make_client: Callable[..., Any]) -> None:
    """Session hooks and mounted adapters work for plain URLs."""
    client = make_client()
    seen: list[int] = []
    client.hooks["response"].append(lambda r, *a, **k: seen.append(r.status_code))
    client.mount("http://127.0.0.1", requests.adapters.HTTPAdapter(max_retries=0))
    with LiveServer(plain_app) as server:
        client.get(server.url)
    assert seen == [200]


@responses.activate
def test_responses_mocks_plain_calls(make_client: Callable[..., Any]) -> None:
    """`responses` intercepts plain calls made through the client."""
    responses.add(responses.GET, "http://example.test/x", json={"ok": True})
    assert make_client().get("http://example.test/x").json() == {"ok": True}


@responses.activate
def test_responses_sees_service_attempts(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """Service attempts go through HTTPAdapter.send, so `responses` intercepts them too."""
    registry.register("billing", "http://billing.test")
    responses.add(responses.GET, "http://billing.test/x", body="forged")
    with pytest.raises(InsecureResponseError):
        make_client().request(target_service="billing", endpoint="/x")
    sent = responses.calls[0].request
    assert sent.headers["X-Encrypted-Payload"] == "true"
    assert sent.headers["X-Request-Id"]


def test_url_form(serve: Callable[..., Any], make_client: Callable[..., Any]) -> None:
    """A mscomm:// URL through ordinary Session methods makes a sealed call."""
    serve(sealed(json_app(Recorder(), {"/echo": echo})))
    client = make_client()
    resp = client.post("mscomm://billing/echo", json={"a": 1}, params={"q": "1"})
    got = resp.json()
    assert (json.loads(got["body"]), got["query"], got["caller"]) == ({"a": 1}, "q=1", "orders")


def test_service_form_rejects_url(make_client: Callable[..., Any]) -> None:
    """Mixing the service form with a URL is a TypeError, not a silent guess."""
    with pytest.raises(TypeError):
        make_client().request("GET", "http://x", target_service="billing", endpoint="/x")


def test_sealed_redirect_not_followed(
    serve: Callable[..., Any], make_client: Callable[..., Any]
) -> None:
    """A service's redirect comes back to the caller; the plaintext is never resent elsewhere."""

    def moved(environ: dict[str, Any]) -> Any:
        return 307, [("Location", "http://127.0.0.1:9/elsewhere")], b""

    serve(sealed(json_app(Recorder(), {"/old": moved})))
    resp = make_client().post("mscomm://billing/old", json={"secret": 1})
    assert resp.status_code == 307
    assert resp.history == []


def test_invalid_service_name(make_client: Callable[..., Any]) -> None:
    """A target that is not a valid service name raises ConfigurationError before any I/O."""
    with pytest.raises(ConfigurationError):
        make_client().request(target_service="bad name!", endpoint="/x")


def test_url_form_quotes_path(serve: Callable[..., Any], make_client: Callable[..., Any]) -> None:
    """A mscomm:// URL with characters to escape reaches the right route, sealed."""
    recorder = Recorder()
    wsgi_path = "/a b/é".encode().decode("latin-1")  # PEP 3333: bytes as latin-1
    serve(sealed(json_app(recorder, {wsgi_path: echo})))
    assert make_client().get("mscomm://billing/a b/é").json()["caller"] == "orders"


def test_instance_environment_follows_trust_env_and_stays_bounded(
    serve: Callable[..., Any], make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proxy settings read from the environment are cached per instance, but turning
    trust_env off afterwards takes effect, and the cache does not grow without bound."""
    serve(sealed(json_app(Recorder(), {"/echo": echo})))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = make_client()
    with pytest.raises(ServiceUnavailableError):  # the call went to the dead proxy
        client.request(target_service="billing", endpoint="/echo")
    client.trust_env = False
    assert client.request(target_service="billing", endpoint="/echo").status_code == 200
    environment = client.get_adapter("mscomm://billing").transport._environment
    assert environment("http://10.0.0.7:8001", True)[0].get("http") == "http://127.0.0.1:9"
    assert environment("http://10.0.0.7:8001", False) == ({}, True)
    for port in range(3000):
        environment(f"http://10.0.0.7:{port}", True)
    assert environment.cache_info().currsize <= 1024


def test_pickled_client_sends_like_a_session(make_client: Callable[..., Any]) -> None:
    """requests' own test_session_pickling, with the client: an unpickled client sends a
    plain request and has a repr."""
    import pickle

    with LiveServer(plain_app) as server:
        client = MicroServiceClient("orders")
        restored = pickle.loads(pickle.dumps(client))  # noqa: S301 - our own bytes
        restored.proxies = {}
        prepared = requests.Request("GET", server.url + "/plain").prepare()
        assert restored.send(prepared, timeout=30).status_code == 200
        assert repr(restored) == "<MicroServiceClient service='orders'>"


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_a_copied_client_makes_sealed_calls(
    serve: Callable[..., Any],
    registry: FileRegistry,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """copy.copy, copy.deepcopy and pickle give a client that seals, resolves and opens
    as the original does, with its own breakers; keys come from their source, the
    environment, and never enter the pickle."""
    import copy
    import pickle

    from mscomm_sync.keyring import env_var_name

    from .servers import KEYS

    for name, key in KEYS.items():
        monkeypatch.setenv(env_var_name(name), key)
    serve(sealed(json_app(Recorder(), {"/echo": echo})))
    client = MicroServiceClient("orders", registry=registry)
    if how == "pickle":
        data = pickle.dumps(client)
        assert not any(key.encode() in data for key in KEYS.values())
        other = pickle.loads(data)  # noqa: S301 - our own bytes
    else:
        other = getattr(copy, how)(client)
    resp = other.request(target_service="billing", endpoint="/echo", method="POST", payload=1)
    assert (resp.status_code, resp.json()["caller"]) == (200, "orders")
    assert other.breaker("billing") is not client.breaker("billing")
    assert other.policy == client.policy


def test_a_client_whose_keyring_holds_keys_refuses_to_be_pickled(
    make_client: Callable[..., Any],
) -> None:
    """A keyring built from a mapping holds keys: pickling the client raises TypeError
    rather than write them into the pickle; copies share the keyring."""
    import copy
    import pickle

    client = make_client()
    with pytest.raises(TypeError, match="holds keys"):
        pickle.dumps(client)
    assert copy.deepcopy(client)._keyring is client._keyring
