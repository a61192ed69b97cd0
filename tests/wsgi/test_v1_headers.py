"""No outer ``X-Mscomm-*`` header reaches the app, in v1 or v2, under a real waitress server.

The prefix is the protocol's: an app (or a middleware inside ours) that read
``X-Mscomm-Deadline`` or ``X-Mscomm-Caller`` from the environ would believe what
anyone on the path wrote. Every request here is sealed as a real caller seals
it, and the headers are added on the way, as an attacker on the path would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from client.servers import WaitressServer
from support.fleet import Fleet
from support.sealing import Call, keyring, open_reply, prepare

from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.wsgi import EncryptionMiddleware

#: Headers an attacker on the path adds to a sealed request.
ADDED = {
    "X-Mscomm-Caller": "admin",
    "X-Mscomm-Deadline": "999999",
    "X-Mscomm-Deadline-Spent": "true",
    "X-Mscomm-Sealed-Body": "AAAA",
    "X-MSCOMM-anything": "1",
    "X-Edge-Region": "eu-1",  # waitress itself clears X-Forwarded-*
    "X-Other": "kept in v1",
}


def headers_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer with every HTTP_* key of the environ, and the protocol version that verified."""
    seen = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    body = json.dumps({"headers": seen, "protocol": environ.get("mscomm.protocol")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    """v2 key pairs for orders and billing."""
    return Fleet("orders", "billing")


@pytest.fixture(scope="module")
def url(fleet: Fleet) -> Iterator[str]:
    """billing under waitress, speaking v1 and v2; one outer header allowed (the protocol's
    own cannot be: see test_options)."""
    app = EncryptionMiddleware(
        headers_app,
        "billing",
        keyring=keyring(),
        identity=fleet.identity("billing"),
        trust=fleet.trust("orders"),
        allowed_callers=["orders"],
        outer_headers=["X-Edge-Region"],
        replay_store=MemoryReplayStore(),
    )
    with WaitressServer(app, threads=2) as server:
        yield server.url


def protocol_headers(seen: dict[str, str]) -> dict[str, str]:
    """The HTTP_X_MSCOMM_* keys among those the app saw."""
    return {k: v for k, v in seen.items() if k.startswith("HTTP_X_MSCOMM_")}


def test_v1_drops_every_outer_mscomm_header(url: str) -> None:
    """A verified v1 request reaches the app without any X-Mscomm-* header, in any case;
    the other added headers pass, unauthenticated, as documented for v1."""
    prepared, sealed, target = prepare(url + "/h", method="GET", content_type=None)
    prepared.headers.update(ADDED)
    with requests.Session() as session:
        answer = session.send(prepared, timeout=30)
    assert answer.status_code == 200
    said = json.loads(open_reply(Call(sealed, "GET", target, answer)).body)
    assert said["protocol"] == "1"
    seen = said["headers"]
    assert protocol_headers(seen) == {}
    assert seen["HTTP_X_OTHER"] == "kept in v1"
    assert seen["HTTP_X_EDGE_REGION"] == "eu-1"


def test_v2_drops_outer_mscomm_headers(url: str, fleet: Fleet) -> None:
    """A verified v2 request reaches the app with its sealed headers (a sealed x-mscomm-*
    one included) and the allowed outer X-Edge-Region; no outer X-Mscomm-* or envelope
    header, and no other outer header."""
    orders = fleet.envelope("orders", "billing")
    sealed = orders.seal_request(
        recipient="billing",
        method="GET",
        target="/h",
        headers=[("x-mscomm-note", "sealed"), ("x-request-id", "r-1")],
    )
    request = requests.Request("GET", url + "/h", headers={**sealed.headers, **ADDED,
                                                           "X-Mscomm-Foo": "outer"})  # fmt: skip
    prepared = request.prepare()
    prepared.prepare_body(data=sealed.body, files=None)
    with requests.Session() as session:
        answer = session.send(prepared, timeout=30)
    assert answer.status_code == 200
    opened = orders.open_response(sender="billing", method="GET", target="/h", status=200,
                                  reply_to=sealed.message_id, headers=answer.headers,
                                  body=answer.content, request=sealed)  # fmt: skip
    said = json.loads(opened.body)
    assert said["protocol"] == "2"
    seen = said["headers"]
    assert protocol_headers(seen) == {"HTTP_X_MSCOMM_NOTE": "sealed"}
    assert seen["HTTP_X_EDGE_REGION"] == "eu-1"
    assert seen["HTTP_X_REQUEST_ID"] == "r-1"
    assert "HTTP_X_OTHER" not in seen
    assert "HTTP_X_ENCRYPTION_SERVICE" not in seen and "HTTP_X_ENCRYPTED_PAYLOAD" not in seen


def test_a_plaintext_request_loses_the_envelope_headers(url: str) -> None:
    """A plaintext request to an exempt path loses the envelope headers that name a seal or a
    sender, and every X-Mscomm-* header, so the app cannot mistake it for a verified one."""
    forged = {"X-Encryption-Service": "orders", "X-Mscomm-Seal": "v=1;kid=00", **ADDED}
    answer = requests.get(url + "/health", headers=forged, timeout=30)
    assert answer.status_code == 200
    seen = answer.json()["headers"]
    assert "HTTP_X_ENCRYPTION_SERVICE" not in seen
    assert protocol_headers(seen) == {}
    assert seen["HTTP_X_OTHER"] == "kept in v1"  # other headers of a plaintext request pass
    assert answer.json()["protocol"] is None
