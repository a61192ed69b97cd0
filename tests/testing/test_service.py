"""Tests of the mscomm_service and mscomm_client fixtures, run as a user's tests."""

from __future__ import annotations

from .conftest import RunUserTests

FLASK_APP = """
from flask import Flask, request


def make_app():
    app = Flask("calc")

    @app.post("/add")
    def add():
        data = request.get_json()
        return {"sum": data["a"] + data["b"], "caller": request.environ["mscomm.caller"]}

    return app
"""


def test_service_answers_sealed_calls_by_name(run_user_tests: RunUserTests) -> None:
    """A Flask app started with ``mscomm_service`` answers a client's sealed call by name."""
    result = run_user_tests(
        FLASK_APP
        + """

def test_call(mscomm_service, mscomm_client):
    service = mscomm_service("calc", make_app())
    assert service.url.startswith("http://127.0.0.1:")
    client = mscomm_client("orders")
    response = client.request(
        target_service="calc", endpoint="/add", method="POST", payload={"a": 2, "b": 3}
    )
    assert response.status_code == 200
    assert response.json() == {"sum": 5, "caller": "orders"}
"""
    )
    result.assert_outcomes(passed=1)


def test_service_refuses_plaintext(run_user_tests: RunUserTests) -> None:
    """A service started with ``mscomm_service`` is behind the middleware: plaintext gets 401."""
    result = run_user_tests(
        FLASK_APP
        + """
import requests


def test_plaintext(mscomm_service):
    service = mscomm_service("calc", make_app())
    response = requests.post(service.url + "/add", json={"a": 2, "b": 3}, timeout=30)
    assert response.status_code == 401
    assert "sum" not in response.text
"""
    )
    result.assert_outcomes(passed=1)


def test_two_instances_are_both_registered(run_user_tests: RunUserTests) -> None:
    """Starting one name twice registers two instances, and both answer."""
    result = run_user_tests(
        FLASK_APP
        + """

def test_two(mscomm_service, mscomm_registry, mscomm_client):
    first, second = mscomm_service("calc", make_app()), mscomm_service("calc", make_app())
    urls = {i.url for i in mscomm_registry.get_instances("calc")}
    assert urls == {first.url, second.url}
    client = mscomm_client("orders")
    for n in range(6):
        response = client.request(
            target_service="calc", endpoint="/add", method="POST", payload={"a": n, "b": 1}
        )
        assert response.json()["sum"] == n + 1
"""
    )
    result.assert_outcomes(passed=1)


def test_service_is_stopped_and_deregistered_after_the_test(run_user_tests: RunUserTests) -> None:
    """After the test its service no longer listens and is no longer registered."""
    result = run_user_tests(
        FLASK_APP
        + """
import pytest
import requests

from mscomm_sync.registry import FileRegistry

SEEN = {}


def test_1_start(mscomm_service, mscomm_registry):
    service = mscomm_service("calc", make_app())
    SEEN["url"], SEEN["registry"] = service.url, mscomm_registry.location


def test_2_gone():
    with pytest.raises(requests.ConnectionError):
        requests.get(SEEN["url"] + "/health", timeout=30)
    with FileRegistry(SEEN["registry"]) as registry:
        assert registry.get_instances("calc") == []
"""
    )
    result.assert_outcomes(passed=2)
