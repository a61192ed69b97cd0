"""The seal binds the endpoint the caller asked for, not where the registry says an instance is.

Whoever can write the registry can point callers at another URL, path
included; that must never change what runs.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from mscomm_sync.errors import ConfigurationError, RequestRejectedError
from mscomm_sync.registry import FileRegistry
from mscomm_sync.testing import LiveServer

from .servers import Recorder, echo, json_app, sealed


def test_registry_path_prefix_cannot_reroute_a_call(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """An instance registered as http://host/notes cannot turn POST /admin/wipe into
    /notes/admin/wipe: the service refuses it and runs nothing."""
    recorder = Recorder()
    app = sealed(json_app(recorder, {"/admin/wipe": echo, "/notes/admin/wipe": echo}))
    with LiveServer(app) as server:
        registry.register("billing", server.url + "/notes")
        client = make_client()
        with pytest.raises(RequestRejectedError) as info:
            client.request(target_service="billing", endpoint="/admin/wipe", method="POST")
        assert info.value.status == 401
        assert recorder.hits == {}
        # The same call through an honest entry runs the endpoint asked for.
        registry.register("billing", server.url)
        registry.deregister("billing", server.url + "/notes")
        resp = client.request(target_service="billing", endpoint="/admin/wipe", method="POST")
        assert resp.status_code == 200
        assert dict(recorder.hits) == {"/admin/wipe": 1}


def test_service_mounted_under_a_prefix_serves_the_endpoint(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """A service really mounted under /notes, and registered there, gets the endpoint the
    caller asked for as its PATH_INFO."""
    recorder = Recorder()
    inner = sealed(json_app(recorder, {"/admin/wipe": echo}), script_name="/notes")
    with LiveServer(DispatcherMiddleware(json_app(Recorder(), {}), {"/notes": inner})) as server:
        registry.register("billing", server.url + "/notes")
        resp = make_client().request(
            target_service="billing", endpoint="/admin/wipe", method="POST", payload={"n": 1}
        )
        assert resp.status_code == 200
        assert resp.json()["caller"] == "orders"
        assert dict(recorder.hits) == {"/admin/wipe": 1}


def test_an_endpoint_starting_with_two_slashes_fails_before_sending(
    serve: Callable[..., Any], make_client: Callable[..., Any]
) -> None:
    """Servers collapse a leading '//' (so it could never verify): the client refuses it with
    a ConfigurationError naming the endpoint, and sends nothing."""
    recorder = Recorder()
    serve(sealed(json_app(recorder, {"/x": echo})))
    with pytest.raises(ConfigurationError) as info:
        make_client().request(target_service="billing", endpoint="//x")
    assert info.value.variable == "endpoint"
    assert recorder.hits == {}


@pytest.mark.parametrize("endpoint", ["/a%zz", "/a%2", "/ok%20then%"])
def test_an_endpoint_with_an_invalid_escape_fails_before_sending(
    serve: Callable[..., Any], make_client: Callable[..., Any], endpoint: str
) -> None:
    """A '%' that does not start two hex digits is refused (requests would otherwise escape
    every other '%' in the endpoint too, and call another path)."""
    recorder = Recorder()
    serve(sealed(json_app(recorder, {})))
    with pytest.raises(ConfigurationError) as info:
        make_client().request(target_service="billing", endpoint=endpoint)
    assert info.value.variable == "endpoint"
    assert recorder.hits == {}


def test_headers_the_call_writes_itself_are_dropped_from_the_callers_own(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """A caller's traceparent, tracestate, X-Mscomm-Deadline and Transfer-Encoding, in any case,
    never travel: the context is the call's own, and the sealed body has a length."""
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append({k: v for k, v in environ.items() if k.startswith("HTTP_")})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["wsgi.input"].read()]

    with LiveServer(sealed(app)) as server:
        registry.register("billing", server.url)
        client = make_client()
        resp = client.request(
            target_service="billing", endpoint="/x", method="POST", payload=b"body",
            headers={"TraceParent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
                     "tracestate": "a=b", "X-MSCOMM-DEADLINE": "5",
                     "transfer-encoding": "chunked", "X-Kept": "yes"},
        )  # fmt: skip
    assert (resp.status_code, resp.content) == (200, b"body")
    (headers,) = seen
    assert headers.get("HTTP_X_KEPT") == "yes"
    for dropped in ("HTTP_TRACEPARENT", "HTTP_TRACESTATE", "HTTP_X_MSCOMM_DEADLINE",
                    "HTTP_TRANSFER_ENCODING"):  # fmt: skip
        assert dropped not in headers
    sent = {n.lower() for n in resp.request.headers}  # what went on the wire, in clear (v1)
    assert "x-kept" in sent
    assert not sent & {"traceparent", "tracestate", "x-mscomm-deadline", "transfer-encoding"}
    sent = resp.request.headers
    assert sent["Content-Length"] == str(len(resp.request.body or b""))
