"""Tests of the mscomm_mock fixture, run as a user's tests with the real client."""

from __future__ import annotations

from .conftest import RunUserTests

PRELUDE = """
import pytest
import requests

from mscomm_sync.errors import (
    InsecureResponseError,
    IntegrityError,
    RequestRejectedError,
    ServiceUnavailableError,
)
"""


def run(run_user_tests: RunUserTests, body: str) -> None:
    """Run one user test module made of the prelude and ``body``; it must pass."""
    result = run_user_tests(PRELUDE + body)
    result.assert_outcomes(passed=1)


def test_canned_reply_reaches_the_client_opened(run_user_tests: RunUserTests) -> None:
    """A canned JSON reply is sealed by the mock and opened by the client."""
    run(
        run_user_tests,
        """
def test_canned(mscomm_mock, mscomm_client):
    billing = mscomm_mock("billing")
    billing.add("GET", "/api/v1/balance", json={"balance": 42})
    response = mscomm_client("orders").request(target_service="billing", endpoint="/api/v1/balance")
    assert response.status_code == 200
    assert response.json() == {"balance": 42}
    assert billing.calls[0].sealed and billing.calls[0].request.caller == "orders"
""",
    )


def test_handler_sees_the_verified_plaintext_request(run_user_tests: RunUserTests) -> None:
    """A handler gets the opened request: caller, method, path, query and JSON body."""
    run(
        run_user_tests,
        """
def charge(request):
    assert request.caller == "orders" and request.params == {"dry": ["1"]}
    return 201, {"charged": request.json()["amount"]}


def test_handler(mscomm_mock, mscomm_client):
    mscomm_mock("billing").add("POST", "/api/v1/charge", handler=charge)
    response = mscomm_client("orders").request(
        target_service="billing",
        endpoint="/api/v1/charge",
        method="POST",
        payload={"amount": 7},
        params={"dry": "1"},
    )
    assert (response.status_code, response.json()) == (201, {"charged": 7})
""",
    )


def test_tampered_reply_is_rejected(run_user_tests: RunUserTests) -> None:
    """A sealed reply with one bit flipped is refused by the client with IntegrityError."""
    run(
        run_user_tests,
        """
def test_tampered(mscomm_mock, mscomm_client):
    billing = mscomm_mock("billing")
    billing.add("GET", "/balance", json={"balance": 42}, tamper=True)
    with pytest.raises(IntegrityError):
        mscomm_client("orders").request(target_service="billing", endpoint="/balance")
    assert [c.status for c in billing.calls] == [200]
""",
    )


def test_unsealed_reply_is_rejected(run_user_tests: RunUserTests) -> None:
    """A plaintext reply to a sealed request is refused by the client as a downgrade."""
    run(
        run_user_tests,
        """
def test_unsealed(mscomm_mock, mscomm_client):
    billing = mscomm_mock("billing")
    billing.add("GET", "/balance", json={"balance": 42}, seal=False)
    with pytest.raises(InsecureResponseError):
        mscomm_client("orders").request(target_service="billing", endpoint="/balance")
""",
    )


def test_mock_verifies_requests_like_the_middleware(run_user_tests: RunUserTests) -> None:
    """A request sealed under a key the mock does not trust gets the middleware's 401."""
    run(
        run_user_tests,
        """
from mscomm_sync.trust import Identity, generate_private_key


def test_wrong_key(mscomm_keys, mscomm_mock, mscomm_client):
    billing = mscomm_mock("billing")
    billing.add("GET", "/balance", json={"balance": 42})
    client = mscomm_client("orders", identity=Identity("orders", keys=[generate_private_key()]))
    with pytest.raises(RequestRejectedError) as caught:
        client.request(target_service="billing", endpoint="/balance")
    assert caught.value.status == 401
    assert [(c.request, c.status) for c in billing.calls] == [(None, 401)]
""",
    )


def test_plaintext_request_is_refused_except_health(run_user_tests: RunUserTests) -> None:
    """Plain requests to the mock get 401, except the exempt ``/health``."""
    run(
        run_user_tests,
        """
def test_plain(mscomm_mock):
    billing = mscomm_mock("billing")
    billing.add("GET", "/balance", json={"balance": 42})
    assert requests.get(billing.url + "/balance", timeout=5).status_code == 401
    assert requests.get(billing.url + "/health", timeout=5).json() == {"status": "ok"}
""",
    )


def test_refused_connections_are_retried(run_user_tests: RunUserTests) -> None:
    """Two refused connections, then success: the client's own retries get the answer."""
    run(
        run_user_tests,
        """
def test_retried(mscomm_mock, mscomm_client):
    billing = mscomm_mock("billing")
    billing.add("POST", "/charge", json={"ok": True})
    billing.fail(2, kind="refused")
    response = mscomm_client("orders").request(
        target_service="billing", endpoint="/charge", method="POST", payload={"amount": 1}
    )
    assert response.json() == {"ok": True}
    assert [(c.fault, c.status) for c in billing.calls] == [("refused", None)] * 2 + [(None, 200)]
""",
    )


def test_read_timeout_on_post_is_not_repeated(run_user_tests: RunUserTests) -> None:
    """A POST whose reply timed out was delivered once and is not sent again."""
    run(
        run_user_tests,
        """
def test_not_repeated(mscomm_mock, mscomm_client):
    billing = mscomm_mock("billing")
    billing.add("POST", "/charge", json={"ok": True})
    billing.fail(1, kind="read_timeout")
    with pytest.raises(ServiceUnavailableError):
        mscomm_client("orders").request(
            target_service="billing", endpoint="/charge", method="POST", payload={"amount": 1}
        )
    assert [(c.fault, c.status) for c in billing.calls] == [("read_timeout", 200)]
""",
    )


def test_reset_on_get_is_retried(run_user_tests: RunUserTests) -> None:
    """A GET whose connection was reset is retried, and the retry is sealed afresh."""
    run(
        run_user_tests,
        """
def test_retried(mscomm_mock, mscomm_client):
    billing = mscomm_mock("billing")
    billing.add("GET", "/balance", json={"balance": 1})
    billing.fail(1, kind="reset")
    response = mscomm_client("orders").request(target_service="billing", endpoint="/balance")
    assert response.json() == {"balance": 1}
    assert [(c.fault, c.status) for c in billing.calls] == [("reset", 200), (None, 200)]
""",
    )


def test_dead_instance_fails_over(run_user_tests: RunUserTests) -> None:
    """With one of two instances down for good, every call still succeeds on the other."""
    run(
        run_user_tests,
        """
def test_failover(mscomm_mock, mscomm_client):
    billing = mscomm_mock("billing", instances=2)
    billing.add("POST", "/charge", json={"ok": True})
    dead, alive = billing.urls
    billing.fail(None, kind="refused", url=dead)
    client = mscomm_client("orders")
    for _ in range(8):
        response = client.request(
            target_service="billing", endpoint="/charge", method="POST", payload={}
        )
        assert response.json() == {"ok": True}
    served = {c.url.split("/charge")[0] for c in billing.calls if c.status == 200}
    assert served == {alive}
""",
    )


def test_bodiless_replies_are_sealed(run_user_tests: RunUserTests) -> None:
    """HEAD and 204 replies carry their seal in a header, and the client opens them."""
    run(
        run_user_tests,
        """
def test_bodiless(mscomm_mock, mscomm_client):
    billing = mscomm_mock("billing")
    billing.add("HEAD", "/item", json={"x": 1})
    billing.add("DELETE", "/item", status=204)
    client = mscomm_client("orders")
    response = client.request(target_service="billing", endpoint="/item", method="HEAD")
    assert response.status_code == 200
    response = client.request(target_service="billing", endpoint="/item", method="DELETE")
    assert (response.status_code, response.content) == (204, b"")
""",
    )


def test_mock_and_real_service_work_side_by_side(run_user_tests: RunUserTests) -> None:
    """A mocked service does not stop calls to a real service on 127.0.0.1."""
    run(
        run_user_tests,
        """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"real"]


def test_both(mscomm_mock, mscomm_service, mscomm_client):
    mscomm_mock("billing").add("GET", "/x", body="mocked")
    mscomm_service("shipping", app)
    client = mscomm_client("orders")
    assert client.request(target_service="billing", endpoint="/x").text == "mocked"
    assert client.request(target_service="shipping", endpoint="/x").text == "real"
""",
    )
