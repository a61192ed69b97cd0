"""The plugin's fixtures on protocol v2, run as a user's tests: keys, callers, services, mocks."""

from __future__ import annotations

import pytest

from .conftest import RunUserTests

#: A service that says who called it and with which protocol version.
APP = """
import json

import pytest

from mscomm_sync.errors import ConfigurationError, IntegrityError, RequestRejectedError


def who(environ, start_response):
    body = json.dumps({"caller": environ["mscomm.caller"],
                       "protocol": environ["mscomm.protocol"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


@pytest.fixture(autouse=True)
def no_callers_variable(monkeypatch):
    # A user's environment names no callers: the fixtures must do without.
    monkeypatch.delenv("MSCOMM_CALLERS", raising=False)
"""


def passes(run_user_tests: RunUserTests, body: str, *args: str, count: int = 1) -> None:
    """Run the user module made of APP and ``body``; every test in it must pass."""
    run_user_tests(APP + body, *args).assert_outcomes(passed=count)


def test_keys_export_a_pair_and_a_shared_key(run_user_tests: RunUserTests) -> None:
    """mscomm_keys exports each name's v2 pair and v1 key, and the pair is consistent."""
    passes(
        run_user_tests,
        """
import os

from mscomm_sync.trust import PrivateKey


def test_exported(mscomm_keys):
    mscomm_keys("orders")
    private = PrivateKey.from_text(os.environ["ORDERS_PRIVATE_KEY"], source="test")
    assert os.environ["ORDERS_PUBLIC_KEY"] == private.public.text
    assert mscomm_keys.private_key("orders").kid == private.kid
    assert os.environ["ORDERS_ENCRYPTION_KEY"] == mscomm_keys.key("orders")
""",
    )


def test_a_service_is_called_with_v2(run_user_tests: RunUserTests) -> None:
    """A client calling an mscomm_service seals v2, and the service sees the verified caller."""
    passes(
        run_user_tests,
        """
def test_v2(mscomm_service, mscomm_client):
    mscomm_service("billing", who)
    answer = mscomm_client("orders").request(target_service="billing", endpoint="/who")
    assert answer.json() == {"caller": "orders", "protocol": "2"}
""",
    )


def test_callers_made_after_the_service_may_call_it(run_user_tests: RunUserTests) -> None:
    """Without MSCOMM_CALLERS, a service accepts every service of the test, including those
    whose keys were made after it started; one made outside the test's keys is refused."""
    passes(
        run_user_tests,
        """
from mscomm_sync import MicroServiceClient
from mscomm_sync.testing import KeyFactory


def test_late_callers(mscomm_service, mscomm_client, mscomm_keys, mscomm_registry, monkeypatch):
    mscomm_service("billing", who)
    for name in ("orders", "shipping"):
        answer = mscomm_client(name).request(target_service="billing", endpoint="/who")
        assert answer.json()["caller"] == name
    KeyFactory(setenv=monkeypatch.setenv)("stranger")  # keys, but not the test's fleet
    stranger = MicroServiceClient("stranger", registry=mscomm_registry)
    with pytest.raises(RequestRejectedError) as refused:
        stranger.request(target_service="billing", endpoint="/who")
    assert refused.value.status == 403
    stranger.close()
    assert sorted(mscomm_keys.fleet_trust().callers("billing")) == ["billing", "orders", "shipping"]
""",
    )


def test_allowed_callers_narrow_the_fleet(run_user_tests: RunUserTests) -> None:
    """allowed_callers given to mscomm_service wins over the fleet: others get 403."""
    passes(
        run_user_tests,
        """
def test_narrowed(mscomm_service, mscomm_client):
    mscomm_service("billing", who, allowed_callers=["orders"])
    assert mscomm_client("orders").request(target_service="billing", endpoint="/who").ok
    with pytest.raises(RequestRejectedError) as refused:
        mscomm_client("shipping").request(target_service="billing", endpoint="/who")
    assert refused.value.status == 403
""",
    )


def test_a_mock_opens_v2_and_answers_v2(run_user_tests: RunUserTests) -> None:
    """A mocked service opens a v2 request: its handler sees the sealed headers (the
    client's deadline among them); its reply headers travel sealed to the client."""
    passes(
        run_user_tests,
        """
def handler(request):
    assert request.caller == "orders"
    assert request.headers["Idempotency-Key"] == "k-1"
    assert "x-mscomm-deadline" in request.headers  # only v2 carries it, sealed
    return 201, {"Location": "/charges/1"}, {"charged": request.json()["amount"]}


def test_mock(mscomm_mock, mscomm_client):
    billing = mscomm_mock("billing")
    billing.add("POST", "/charge", handler=handler)
    answer = mscomm_client("orders").request(
        target_service="billing", endpoint="/charge", method="POST", payload={"amount": 3},
        idempotency_key="k-1",
    )
    assert (answer.status_code, answer.json()) == (201, {"charged": 3})
    assert answer.headers["Location"] == "/charges/1"
""",
    )


def test_a_mock_still_answers_bodiless_and_tampered_replies_in_v2(
    run_user_tests: RunUserTests,
) -> None:
    """Under v2, a mocked HEAD and 204 verify, and a tampered reply is refused."""
    passes(
        run_user_tests,
        """
def test_bodiless(mscomm_mock, mscomm_client):
    billing = mscomm_mock("billing")
    billing.add("HEAD", "/card", status=200)
    billing.add("DELETE", "/card", status=204)
    billing.add("GET", "/balance", json={"balance": 1}, tamper=True)
    client = mscomm_client("orders")
    assert client.request(target_service="billing", endpoint="/card", method="HEAD").ok
    assert client.request(
        target_service="billing", endpoint="/card", method="DELETE"
    ).status_code == 204
    with pytest.raises(IntegrityError):
        client.request(target_service="billing", endpoint="/balance")
""",
    )


def test_a_suite_may_ask_for_v2_keys_only(
    run_user_tests: RunUserTests, pytester: pytest.Pytester
) -> None:
    """With ``mscomm_key_versions = 2`` no shared key is exported, and calls still work."""
    pytester.makeini("[pytest]\nmscomm_key_versions = 2\n")
    passes(
        run_user_tests,
        """
import os


def test_v2_only(mscomm_keys, mscomm_service, mscomm_client):
    mscomm_service("billing", who)
    answer = mscomm_client("orders").request(target_service="billing", endpoint="/who")
    assert answer.json() == {"caller": "orders", "protocol": "2"}
    assert "ORDERS_ENCRYPTION_KEY" not in os.environ
    with pytest.raises(ConfigurationError):
        mscomm_keys.key("orders")
""",
    )


def test_a_suite_written_for_v1_keeps_working(
    run_user_tests: RunUserTests, pytester: pytest.Pytester
) -> None:
    """With ``mscomm_key_versions = 1`` the fixtures make shared keys only, as before v2: calls
    are v1, and a client given a wrong Keyring is refused."""
    pytester.makeini("[pytest]\nmscomm_key_versions = 1\n")
    passes(
        run_user_tests,
        """
import os

from mscomm_sync.keyring import Keyring, generate_key


def test_v1(mscomm_keys, mscomm_service, mscomm_client, mscomm_mock):
    mscomm_service("billing", who)
    answer = mscomm_client("orders").request(target_service="billing", endpoint="/who")
    assert answer.json() == {"caller": "orders", "protocol": "1"}
    assert "ORDERS_PRIVATE_KEY" not in os.environ
    mscomm_mock("ledger").add("GET", "/x", json={})
    ring = Keyring.from_mapping({"orders": generate_key(), "ledger": mscomm_keys.key("ledger")})
    with pytest.raises(RequestRejectedError):
        mscomm_client("orders", keyring=ring).request(target_service="ledger", endpoint="/x")
""",
    )


def test_every_variable_is_restored_after_the_test(
    run_user_tests: RunUserTests, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every variable the fixtures set (v2 pairs included) is gone, or restored, afterwards."""
    monkeypatch.setenv("BILLING_PUBLIC_KEY", "the user's own")
    passes(
        run_user_tests,
        """
import os


def test_1_sets(mscomm_keys):
    mscomm_keys("orders", "billing")
    assert os.environ["BILLING_PUBLIC_KEY"] != "the user's own"


def test_2_restored():
    assert not [v for v in os.environ if v.startswith("ORDERS_")]
    assert os.environ["BILLING_PUBLIC_KEY"] == "the user's own"
    assert "BILLING_PRIVATE_KEY" not in os.environ
""",
        count=2,
    )
